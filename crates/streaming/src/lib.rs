//! Kafka on Keel's terms (DESIGN section 4): Kafka delivers at least once and Postgres makes the effect
//! exactly once.
//!
//! - [`consumer`]: polls batches; in one Postgres transaction per batch claims message ids in the inbox,
//!   applies the service's handler, writes its outbox and stores the consumed offsets. Partitions are
//!   assigned from the offsets stored in Postgres.
//! - [`relay`]: publishes outbox rows with the idempotent producer, then marks them published.
//! - [`admin`]: creates topics.

pub mod admin;
pub mod consumer;
pub mod relay;
mod retry;

pub use consumer::{ConsumerError, ConsumerOptions, Handler, Inbound, PoisonLimit};
pub use relay::{OutboxRelay, RelayOptions};

use serde::{Deserialize, Serialize};

/// How to reach a Kafka cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaOptions {
    /// `host:port[,host:port…]`
    pub brokers: String,
    /// Partitions given to topics Keel creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
}

fn default_partitions() -> i32 {
    4
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self { brokers: "127.0.0.1:19092".to_owned(), partitions: default_partitions() }
    }
}

impl KafkaOptions {
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("broker.address.family", "v4");
        config
    }
}

/// Header carrying a message's id, so a consumer can dedup without parsing the payload.
pub const MESSAGE_ID_HEADER: &str = "keel-message-id";
