//! The brokers port over each region's Kafka (librdkafka's admin reads): whether it answers, and
//! how far the consumers' stored offsets are behind its high watermarks.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use keel_operations::ports::{BrokerError, Brokers};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::config::Config;

pub struct KafkaBrokers {
    config: Config,
}

impl KafkaBrokers {
    pub fn new(config: &Config) -> Self {
        KafkaBrokers {
            config: config.clone(),
        }
    }
}

fn client(brokers: &str) -> Result<BaseConsumer, KafkaError> {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .create()
}

#[async_trait]
impl Brokers for KafkaBrokers {
    async fn answers(&self, region: &str) -> Result<(), BrokerError> {
        let brokers = self
            .config
            .regions
            .get(region)
            .map(|r| r.kafka.clone())
            .unwrap_or_default();
        let error = |detail: String| BrokerError {
            region: region.to_owned(),
            brokers: brokers.clone(),
            detail,
        };
        let asked = brokers.clone();
        tokio::task::spawn_blocking(move || {
            client(&asked)?
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|_| ())
        })
        .await
        .map_err(|e| error(e.to_string()))?
        .map_err(|e| error(e.to_string()))
    }
}

/// Why the consumer lag could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker {brokers}: consumer lag unreadable: {reason}")]
pub struct LagUnreadable {
    pub brokers: String,
    pub reason: String,
}

/// Per topic: the broker's high watermark minus the offset the consumer stored (topic, partition,
/// next offset). A broker that does not answer is an error: a lag that cannot be read is not zero.
pub async fn consumer_lag(
    brokers: &str,
    offsets: &[(String, i32, i64)],
) -> Result<BTreeMap<String, i64>, LagUnreadable> {
    let unreadable = |reason: String| LagUnreadable {
        brokers: brokers.to_owned(),
        reason,
    };
    let asked = brokers.to_owned();
    let offsets = offsets.to_vec();
    // A failure names the topic whose watermark could not be read (none: the client itself).
    let read = tokio::task::spawn_blocking(
        move || -> Result<BTreeMap<String, i64>, (Option<String>, KafkaError)> {
            let consumer = client(&asked).map_err(|e| (None, e))?;
            let mut lag = BTreeMap::new();
            for (topic, partition, next) in offsets {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(2))
                    .map_err(|e| (Some(topic.clone()), e))?;
                *lag.entry(topic).or_insert(0) += (high - next).max(0);
            }
            Ok(lag)
        },
    )
    .await
    .map_err(|e| unreadable(e.to_string()))?;
    read.map_err(|(topic, e)| match topic {
        Some(topic) => unreadable(format!("{topic}: {e}")),
        None => unreadable(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_broker_that_does_not_answer_is_named_with_the_topic() {
        // Nothing listens on the discard port: the watermark read fails after its timeout.
        let error = consumer_lag("127.0.0.1:9", &[("tm.trades".to_owned(), 0, 0)])
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("broker 127.0.0.1:9: consumer lag unreadable: tm.trades:"),
            "{error}"
        );
    }
}
