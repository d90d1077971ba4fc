//! The operations ports of keel-operations, implemented against the real systems:
//!
//! - [`ArcControls`]: Route 53 ARC's routing controls (keel-arc, every cluster endpoint in turn);
//! - [`DynamoStore`]: the runbook lock, journals and audit in DynamoDB;
//! - [`LocalDatabases`]: the local stack's Postgres clusters (SQL, and keel-localstack's `Cluster`
//!   for what needs the cluster's files); [`AuroraDatabases`]: Aurora Global Databases (the RDS
//!   API, and SQL);
//! - [`HttpProbes`]: each service's `/readyz` and each region's ingress;
//! - [`KafkaBrokers`]: each region's Kafka;
//! - [`StorePipeline`]: the stages' stores: queues, reconciliation and replay, the ledger check.
//!
//! [`runbook`] wires them from the configuration into keel-operations' `Runbook`.

pub mod brokers;
pub mod config;
pub mod controls;
pub mod databases;
pub mod deployment;
pub mod ledger;
pub mod pipeline;
pub mod probes;
pub mod reconcile;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use keel_operations::ports::SystemClock;
use keel_operations::{Ports, Runbook, Settings};

pub use brokers::KafkaBrokers;
pub use config::{
    Config, ConfigError, IdentityError, IdentitySource, LocalConfig, OperatorsConfig,
    OperatorsError, ReplicationLink,
};
pub use controls::ArcControls;
pub use databases::{AuroraDatabases, DatabaseKind, LocalDatabases};
/// The local stack's Postgres password file for this process, if it is the local stack.
pub use keel_localstack::credentials::use_local_pgpass;
pub use pipeline::StorePipeline;
pub use probes::HttpProbes;
pub use store::{DynamoStore, RunbookConfig};

/// The databases `[runbook] databases` names.
pub fn databases(config: &Config) -> Arc<dyn keel_operations::ports::Databases> {
    match config.runbook.databases {
        DatabaseKind::Local => Arc::new(LocalDatabases::new(config)),
        DatabaseKind::Aurora => Arc::new(AuroraDatabases::new(config)),
    }
}

/// Every port, against the systems `config` names.
pub fn ports(config: &Config) -> Ports {
    // One client for the runbook's lock and journal and for the audit of its repairs.
    let store = Arc::new(DynamoStore::new(&config.runbook));
    Ports {
        controls: Arc::new(ArcControls::new(config)),
        databases: databases(config),
        store: store.clone(),
        probes: Arc::new(HttpProbes::new(config)),
        brokers: Arc::new(KafkaBrokers::new(config)),
        pipeline: Arc::new(StorePipeline::new(config, store)),
        clock: Arc::new(SystemClock),
    }
}

/// The runbook over the real systems, waiting as `config` says.
pub fn runbook(config: &Config) -> Runbook {
    let poll_interval = Duration::from_millis(config.control.poll_interval_ms);
    Runbook::new(
        ports(config),
        config.region_names(),
        Settings {
            step_bound: Duration::from_secs(config.runbook.step_timeout_seconds),
            poll: Duration::from_millis(100),
            settlement_traffic_wait: 2 * poll_interval,
            fence_after: Duration::from_millis(config.control.fence_after_ms),
            // Aurora's switchover and a new secondary's creation take minutes, not seconds.
            database_switch_bound: match config.runbook.databases {
                DatabaseKind::Local => Duration::from_secs(90),
                DatabaseKind::Aurora => Duration::from_secs(900),
            },
            rebuild_bound: match config.runbook.databases {
                DatabaseKind::Local => Duration::from_secs(300),
                DatabaseKind::Aurora => Duration::from_secs(3600),
            },
        },
    )
}
