use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;

use crate::KafkaOptions;

/// Reads topics' high watermarks (the offset the next message will get, per partition): what a
/// consumer's lag is measured against. Blocking calls, one broker round trip per partition; keep one
/// per cluster and call it off the async threads.
pub struct Watermarks {
    client: BaseConsumer,
}

impl Watermarks {
    pub fn new(kafka: &KafkaOptions) -> Result<Self, KafkaError> {
        Ok(Self {
            client: kafka.client_config().create()?,
        })
    }

    /// Every partition's high watermark of `topic`.
    pub fn high(&self, topic: &str, timeout: Duration) -> Result<BTreeMap<i32, i64>, KafkaError> {
        let metadata = self.client.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut high = BTreeMap::new();
        for partition in partitions {
            let (_, watermark) = self.client.fetch_watermarks(topic, partition, timeout)?;
            high.insert(partition, watermark);
        }
        Ok(high)
    }
}
