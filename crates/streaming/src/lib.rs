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
pub use relay::{republish, Destinations, OutboxRelay, RelayOptions, SingleCluster};

use serde::{Deserialize, Serialize};

/// How to reach a Kafka cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaOptions {
    /// `host:port[,host:port…]`
    pub brokers: String,
    /// Partitions given to topics Keel creates. One by default: each stage runs one consumer per
    /// region, so more partitions add no parallelism, and an idle tansu 0.6 consumer costs the broker
    /// about 7% of a core per partition (measured; see docs/decisions.md). Production sets more.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// The longest a consumer's fetch waits for data. tansu 0.6 always waits this long per fetch
    /// (and scans every assigned partition each time), so it is both the per-hop latency floor and
    /// what idle consumers cost the broker.
    #[serde(default = "default_fetch_wait_ms")]
    pub fetch_wait_ms: u32,
    /// How long the producer gathers messages into one request. Every produce request is a storage
    /// transaction in tansu, so a few milliseconds buy much throughput.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// Publish with the idempotent producer (the default, as DESIGN section 4 says). Exactly-once
    /// does not rest on it: consumers dedup by message id. Turned off for tansu 0.6, which panics
    /// in its idempotent-produce check after a restart (docs/decisions.md); the relay then keeps
    /// one request in flight, so ordering holds and a retry can only duplicate, which is deduped.
    #[serde(default = "default_idempotent_producer")]
    pub idempotent_producer: bool,
}

fn default_idempotent_producer() -> bool {
    true
}

fn default_linger_ms() -> u32 {
    10
}

fn default_fetch_wait_ms() -> u32 {
    50
}

fn default_partitions() -> i32 {
    1
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".to_owned(),
            partitions: default_partitions(),
            fetch_wait_ms: default_fetch_wait_ms(),
            linger_ms: default_linger_ms(),
            idempotent_producer: default_idempotent_producer(),
        }
    }
}

impl KafkaOptions {
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("broker.address.family", "v4");
        config
    }
}

/// Header carrying a message's id, so a consumer can dedup without parsing the payload.
pub const MESSAGE_ID_HEADER: &str = "keel-message-id";
