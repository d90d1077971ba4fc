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
    /// The participants' API.
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics`, apart from the API so that participants cannot reach
    /// them.
    pub ops_listen: SocketAddr,
    pub db_max_connections: u32,
    /// Kafka tuning; the brokers come from `regions`.
    pub kafka: KafkaOptions,
    /// `local` only in the local stack, where the checked-in example secrets are accepted.
    pub environment: String,
    /// `[{"participant_id", "role": "im"|"broker", "client_id", "client_secret_hash",
    /// "scopes"?, "revoked"?, "expires_at"?}]`: client secrets as argon2id hashes only.
    pub credentials_file: PathBuf,
    /// How often the credentials file is read again: the bound on refusing a participant revoked
    /// or expired there.
    pub credentials_reload_ms: u64,
    /// Securities, accounts and their owners, brokers' commissions: every block is screened
    /// against it at the door (the file settlement loads into the ledger).
    pub reference_data: PathBuf,
    /// Signs access tokens (HS256). Every region must share it, so a token survives a failover.
    /// No default: ingress does not start without one (KEEL_TOKEN_SECRET), nor with the local
    /// stack's example outside `environment = "local"`.
    pub token_secret: String,
    pub token_ttl_seconds: i64,
    /// Seals participants' webhook signing secrets (base64 AES-256, shared with notification).
    /// No default, as for `token_secret`.
    pub webhook_key: String,
    /// Which webhook URLs may be registered (`[webhooks]`, shared with notification).
    pub webhooks: keel_security::egress::EgressPolicy,
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
            ops_listen: "127.0.0.1:9110".parse().expect("literal address"),
            db_max_connections: 16,
            kafka: KafkaOptions::default(),
            environment: String::new(),
            credentials_file: PathBuf::from("deploy/local/config/participant-credentials.json"),
            credentials_reload_ms: 5_000,
            reference_data: PathBuf::from("deploy/local/reference-data.json"),
            token_secret: String::new(),
            token_ttl_seconds: 3600,
            webhook_key: String::new(),
            webhooks: keel_security::egress::EgressPolicy::default(),
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

#[cfg(test)]
mod deployment_tests {
    use super::*;

    /// The variables the deployment gives this process are settings its configuration takes.
    #[test]
    fn it_takes_every_variable_the_deployment_gives_it() {
        keel_platform::config::assert_takes_deployment_variables::<Config>(
            env!("CARGO_MANIFEST_DIR"),
            "ingress",
        );
    }
}
