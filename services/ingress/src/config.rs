use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use keel_arc::ControlConfig;
use keel_routing::RegionConfig;
use keel_streaming::KafkaOptions;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The region this ingress serves; one of `regions`.
    pub region: String,
    /// Every region's Kafka, ingress URL and databases (trade matching's for submissions,
    /// settlement's for positions).
    pub regions: BTreeMap<String, RegionConfig>,
    /// The ARC cluster: the `traffic` control gates the API, `processing` the relay.
    pub control: ControlConfig,
    pub listen: SocketAddr,
    pub db_max_connections: u32,
    /// Kafka tuning; the brokers come from `regions`.
    pub kafka: KafkaOptions,
    /// `[{"participant_id", "role": "im"|"broker", "client_id", "client_secret"}]`
    pub participants_file: PathBuf,
    /// Securities, accounts and their owners, brokers' commissions: every block is screened
    /// against it at the door (the file settlement loads into the ledger).
    pub reference_data: PathBuf,
    /// Signs access tokens (HS256). Every region must share it, so a token survives a failover.
    pub token_secret: String,
    pub token_ttl_seconds: i64,
    /// Most blocks in one batch request.
    pub max_batch: usize,
    pub request_timeout_ms: u64,
    /// Connections to the settlement ledger (read only, for positions).
    pub ledger_max_connections: u32,
    pub replication: Replication,
    pub admission: crate::admission::AdmissionConfig,
    /// Transactions recording submissions at once (group commit: each takes every request waiting).
    pub commit_workers: usize,
    /// Most legs one group commit records.
    pub max_commit_legs: usize,
    /// How long the outbox and idempotency keys are kept (submissions are kept for good).
    pub retention: keel_safestore::Retention,
}

/// `[replication]`: whether an acknowledgement waits for the other region's standby.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Replication {
    /// Acknowledge a submission only once the standby has flushed it (RPO 0 for acknowledged
    /// trades). Needs `synchronous_standby_names` on the primary. Off: asynchronous, faster, and a
    /// lost region can take the last acknowledged submissions with it.
    pub synchronous: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            regions: BTreeMap::new(),
            control: ControlConfig::default(),
            listen: "127.0.0.1:8081".parse().expect("literal address"),
            db_max_connections: 16,
            kafka: KafkaOptions::default(),
            participants_file: PathBuf::from("deploy/local/participants.json"),
            reference_data: PathBuf::from("deploy/local/reference-data.json"),
            token_secret: "keel-local-development-token-secret".to_owned(),
            token_ttl_seconds: 3600,
            max_batch: 1000,
            request_timeout_ms: 30_000,
            ledger_max_connections: 4,
            replication: Replication::default(),
            admission: crate::admission::AdmissionConfig::default(),
            commit_workers: 2,
            max_commit_legs: 5000,
            retention: keel_safestore::Retention::default(),
        }
    }
}
