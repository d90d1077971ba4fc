use std::net::SocketAddr;
use std::path::PathBuf;

use keel_streaming::KafkaOptions;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub region: String,
    pub listen: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    pub kafka: KafkaOptions,
    /// `[{"participant_id", "role": "im"|"broker", "client_id", "client_secret"}]`
    pub participants_file: PathBuf,
    /// Signs access tokens (HS256). Every region must share it, so a token survives a failover.
    pub token_secret: String,
    pub token_ttl_seconds: i64,
    /// Most blocks in one batch request.
    pub max_batch: usize,
    pub request_timeout_ms: u64,
    /// The settlement application's settings; ingress reads positions from its ledger.
    pub settlement: SettlementDatabase,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SettlementDatabase {
    /// The settlement application's database (schema `settlement`), read only.
    pub database_url: String,
    pub max_connections: u32,
}

impl Default for SettlementDatabase {
    fn default() -> Self {
        Self {
            database_url: "postgres://keel@127.0.0.1:54322/keel_st".to_owned(),
            max_connections: 4,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            listen: "127.0.0.1:8081".parse().expect("literal address"),
            database_url: "postgres://keel@127.0.0.1:54321/keel_tm".to_owned(),
            db_max_connections: 16,
            kafka: KafkaOptions::default(),
            participants_file: PathBuf::from("deploy/local/participants.json"),
            token_secret: "keel-local-development-token-secret".to_owned(),
            token_ttl_seconds: 3600,
            max_batch: 1000,
            request_timeout_ms: 30_000,
            settlement: SettlementDatabase::default(),
        }
    }
}
