//! Kafka on Keel's terms (DESIGN section 4): Kafka delivers at least once and Postgres makes the effect
//! exactly once.
//!
//! - [`consumer`]: polls batches; in one Postgres transaction per batch claims message ids in the inbox,
//!   applies the service's handler, writes its outbox and stores the consumed offsets. Partitions are
//!   assigned from the offsets stored in Postgres.
//! - [`relay`]: publishes outbox rows continuously with the idempotent producer, and records per topic
//!   how far the broker has acknowledged them.
//! - [`admin`]: creates topics.
//! - [`Watermarks`]: topics' high watermarks, against which consumer lag is measured.

pub mod admin;
pub mod consumer;
pub mod relay;
mod retry;
mod watermarks;

pub use consumer::{ConsumerError, ConsumerOptions, Handler, Inbound, Instances, PoisonLimit};
pub use relay::{
    republish, spawn_depth_gauge, Destinations, OutboxRelay, RelayOptions, SingleCluster,
};
pub use watermarks::Watermarks;

use serde::{Deserialize, Serialize};

/// How to reach a Kafka cluster, and how Keel's clients use it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaOptions {
    /// `host:port[,host:port…]`
    pub brokers: String,
    /// Partitions given to topics Keel creates. A stage's instances split them (`instance`,
    /// `instances` in the stage's configuration), so this bounds how far a stage scales out; each
    /// assigned partition also costs the broker a little on every fetch.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Copies of each partition Keel's topics are created with: 1 on the local single broker, 3 on
    /// MSK across three zones (with `min.insync.replicas` 2 in the cluster's configuration).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// How clients talk to the brokers: `plaintext` locally, `ssl` to MSK's TLS listener.
    #[serde(default = "default_security_protocol")]
    pub security_protocol: String,
    /// The longest a consumer's fetch waits for data. nisshi answers as soon as data is there and
    /// otherwise re-reads the partitions at halving intervals until this passes (sleeping half of
    /// what is left after each empty round), so it bounds the per-hop latency of an idle pipeline
    /// (a message arriving mid-wait is seen up to half of it later) and sets what polling costs
    /// the broker (docs/decisions.md, item 11).
    #[serde(default = "default_fetch_wait_ms")]
    pub fetch_wait_ms: u32,
    /// How long the producer gathers messages into one request. Every produce request is a storage
    /// transaction in the broker, so a few milliseconds buy much throughput.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// Publish with the idempotent producer (DESIGN section 4). Exactly-once does not rest on it:
    /// consumers dedup by message id. Off: the relay keeps one request in flight, so ordering holds
    /// and a retry can only duplicate, which is deduped.
    #[serde(default = "default_idempotent_producer")]
    pub idempotent_producer: bool,
    /// The producer's compression codec (`none`, `lz4`, `zstd`, `snappy`, `gzip`). None by default:
    /// nisshi stores records uncompressed and compresses them again on every fetch, which on one
    /// machine costs more CPU than the loopback bytes it saves.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Also commit consumed offsets to Kafka, for tools that read consumer groups' lag. Postgres
    /// holds the real position either way (DESIGN section 4).
    #[serde(default = "default_advisory_commits")]
    pub advisory_commits: bool,
}

fn default_idempotent_producer() -> bool {
    true
}

fn default_advisory_commits() -> bool {
    true
}

fn default_compression() -> String {
    "none".to_owned()
}

fn default_linger_ms() -> u32 {
    5
}

fn default_fetch_wait_ms() -> u32 {
    100
}

fn default_partitions() -> i32 {
    1
}

fn default_replication_factor() -> i32 {
    1
}

fn default_security_protocol() -> String {
    "plaintext".to_owned()
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".to_owned(),
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            security_protocol: default_security_protocol(),
            fetch_wait_ms: default_fetch_wait_ms(),
            linger_ms: default_linger_ms(),
            idempotent_producer: default_idempotent_producer(),
            compression: default_compression(),
            advisory_commits: default_advisory_commits(),
        }
    }
}

impl KafkaOptions {
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("security.protocol", &self.security_protocol)
            .set("broker.address.family", "v4");
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_defaults_are_one_copy_in_plaintext_and_msk_sets_three_over_tls() {
        let local: KafkaOptions =
            serde_json::from_str(r#"{"brokers": "127.0.0.1:19092"}"#).unwrap();
        assert_eq!(local.replication_factor, 1);
        assert_eq!(
            local.client_config().get("security.protocol"),
            Some("plaintext")
        );
        let msk: KafkaOptions = serde_json::from_str(
            r#"{"brokers": "b-1.keel:9094", "partitions": 6, "replication_factor": 3, "security_protocol": "ssl"}"#,
        )
        .unwrap();
        assert_eq!((msk.partitions, msk.replication_factor), (6, 3));
        assert_eq!(msk.client_config().get("security.protocol"), Some("ssl"));
        // librdkafka refuses `ssl` when it was built without OpenSSL.
        let consumer: Result<rdkafka::consumer::BaseConsumer, _> = msk.client_config().create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
    }
}
