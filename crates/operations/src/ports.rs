//! Every outside system the runbook talks to, as a trait. keel-operations-live implements each
//! against the real system (ARC, DynamoDB, Postgres, `/readyz`, Kafka); [`crate::fakes`] holds an
//! in-memory one of each, so the runbook's logic is tested in milliseconds.
//!
//! Applications and regions are named, never connected to: a port owns its connections.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use keel_rotation::{Journal, Mode, Reconciled};
use keel_routing::{App, ControlStates};
use serde::Serialize;

use crate::audit::AuditEntry;
use crate::health::Health;
use crate::telemetry::Sample;

/// Route 53 ARC's routing controls.
#[async_trait]
pub trait RoutingControls: Send + Sync {
    /// Every control's state, from one reading.
    async fn states(&self) -> Result<ControlStates, ControlsError>;
    /// Changes these controls all at once, or none (the cluster checks its safety rules against
    /// the result); `overrides` names the rules this change may break.
    async fn set(
        &self,
        changes: &[(String, bool)],
        overrides: &[String],
    ) -> Result<(), ControlsError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlsError {
    /// No endpoint of the cluster answered.
    #[error("no ARC endpoint answered: {0}")]
    Unreachable(String),
    /// A safety rule refused the change; nothing changed.
    #[error("refused by the cluster: {0}")]
    Refused(String),
    /// The cluster answered that the request is wrong (an unknown control, access).
    #[error("{0}")]
    Rejected(String),
}

/// Each application's database in each region: its replication, and moving its primary.
#[async_trait]
pub trait Databases: Send + Sync {
    /// Whether the database is a primary or a standby, and how far behind.
    async fn replication(&self, app: App, region: &str) -> Result<Replication, DatabaseError>;
    /// The name `app`'s standby in `region` replicates as.
    fn standby_name(&self, app: App, region: &str) -> Result<String, DatabaseError>;
    /// The primary's flushed WAL position.
    async fn flushed_position(&self, app: App, region: &str) -> Result<String, DatabaseError>;
    /// Waits until the standby has replayed up to `position`; how long it took.
    async fn wait_replayed(
        &self,
        app: App,
        region: &str,
        position: &str,
        bound: Duration,
    ) -> Result<Duration, DatabaseError>;
    /// How many records `app` acknowledged, in its database in `region`.
    async fn acknowledged(&self, app: App, region: &str) -> Result<Acknowledged, DatabaseError>;
    /// How many acknowledged records `app`'s database in `from` holds that `to`'s lacks.
    async fn acknowledged_missing(
        &self,
        app: App,
        from: &str,
        to: &str,
    ) -> Result<i64, DatabaseError>;
    /// Whether the database takes a connection within `within` (tried at least once).
    async fn answers(&self, app: App, region: &str, within: Duration) -> bool;
    /// Whether the database takes writes now (one attempt): a primary that answers.
    async fn takes_writes(&self, app: App, region: &str) -> bool;
    /// Makes `to`'s database the primary, within `bound`, and says what was done, in order.
    /// Planned: `from`'s stops taking writes before `to`'s takes any, and nothing `from`
    /// acknowledged is lost; if `from` cannot be stopped, nothing is promoted. Unplanned: `from`
    /// may be lost or cut off; `to` takes writes whatever `from` still holds (it is fenced by its
    /// routing controls).
    async fn switch_primary(
        &self,
        app: App,
        from: &str,
        to: &str,
        mode: Mode,
        bound: Duration,
    ) -> Result<Vec<String>, DatabaseError>;
    /// Rebuilds the database in `region` as a standby of the primary in `primary_region`; the name
    /// it streams as.
    async fn rebuild_standby(
        &self,
        app: App,
        region: &str,
        primary_region: &str,
        bound: Duration,
    ) -> Result<String, DatabaseError>;
    /// Waits until the primary in `primary_region` streams to the standby named `name`.
    async fn wait_streaming(
        &self,
        app: App,
        primary_region: &str,
        name: &str,
        bound: Duration,
    ) -> Result<(), DatabaseError>;
}

/// A database's role in replication.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum Replication {
    /// A primary, and the standbys streaming from it.
    Primary { standbys: Vec<StandbyLink> },
    /// A standby: WAL received and not yet replayed (none where the engine does not tell, as
    /// Aurora's API does not), and the age of the last replayed commit.
    Standby {
        behind_bytes: Option<i64>,
        last_replayed_seconds_ago: Option<f64>,
    },
}

/// One standby as its primary sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandbyLink {
    pub name: String,
    pub state: String,
    pub behind_bytes: Option<i64>,
    /// How long ago the last commit it replayed was made on the primary (Postgres's `replay_lag`;
    /// none when nothing is being replayed).
    pub replay_lag_seconds: Option<f64>,
    pub synchronous: bool,
}

/// What an application acknowledged: the records and where they are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    pub count: i64,
    /// The table, and the id its records are compared by.
    pub table: &'static str,
    pub id: &'static str,
}

/// What trade matching and settlement each acknowledge: ingress's accepted submissions, and the
/// instructions settlement took from trade matching.
pub fn acknowledged_records(app: App) -> (&'static str, &'static str) {
    match app {
        App::TradeMatching => ("ingress.submissions", "leg_id"),
        App::Settlement => ("settlement.inbox", "message_id"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{app}'s database in {region}: {detail}")]
pub struct DatabaseError {
    pub app: App,
    pub region: String,
    pub detail: String,
}

/// The runbook lock and the journals (a DynamoDB table).
#[async_trait]
pub trait RunbookStore: Send + Sync {
    /// The run holding `app`'s lock, if any.
    async fn lock_holder(&self, app: App) -> Result<Option<String>, StoreError>;
    /// Takes `app`'s lock for `run_id`, or confirms this run holds it already.
    async fn lock(&self, app: App, run_id: &str, holder: &str) -> Result<(), StoreError>;
    /// Releases `app`'s lock if `run_id` holds it.
    async fn unlock(&self, app: App, run_id: &str) -> Result<(), StoreError>;
    /// A run's journal and its version.
    async fn load(&self, run_id: &str) -> Result<Option<(Journal, u64)>, StoreError>;
    /// Saves `journal` over `version` (0: new); the new version.
    async fn save(&self, journal: &Journal, version: u64) -> Result<u64, StoreError>;
}

/// What each process serves at `/metrics`.
#[async_trait]
pub trait Telemetry: Send + Sync {
    /// `service`'s samples in `region`.
    async fn samples(
        &self,
        region: &str,
        service: &'static str,
    ) -> Result<Vec<Sample>, TelemetryError>;
    /// The continuous reconciler's samples (gaps per hop, replication).
    async fn reconciler(&self) -> Result<Vec<Sample>, TelemetryError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name} metrics: {detail}")]
pub struct TelemetryError {
    pub source_name: String,
    pub detail: String,
}

/// The trail of operators' actions (the same DynamoDB table as the runbook's).
#[async_trait]
pub trait AuditTrail: Send + Sync {
    /// Writes `entry`, replacing the entry with its id (an action's outcome, once known).
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The latest entries, newest first, at most `limit`.
    async fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the runbook store ({endpoint}) failed: {detail}")]
    Failed { endpoint: String, detail: String },
    #[error("{app}'s runbook lock is held by run {run_id}; resume it with the same command, or see runbooks/rotation.md")]
    Locked { app: App, run_id: String },
    #[error("run {0}'s journal was changed by someone else; it no longer holds the lock")]
    LostRace(String),
    /// An item that does not parse: what it is ("run X's journal"), and why.
    #[error("{0} cannot be read: {1}")]
    Corrupt(String, String),
}

/// Each service's `/readyz`, and each region's ingress.
#[async_trait]
pub trait ServiceProbes: Send + Sync {
    async fn health(&self, region: &str, service: &'static str) -> Health;
    /// Whether `region`'s ingress accepts submissions (anything but a 503 or no answer).
    async fn ingress(&self, region: &str) -> IngressAnswer;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressAnswer {
    /// It answered, with this status, past its traffic gate.
    Accepting(String),
    /// 503, or no answer at all.
    Refusing(String),
}

/// Each region's Kafka.
#[async_trait]
pub trait Brokers: Send + Sync {
    async fn answers(&self, region: &str) -> Result<(), BrokerError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{region}'s Kafka ({brokers}): {detail}")]
pub struct BrokerError {
    pub region: String,
    pub brokers: String,
    pub detail: String,
}

/// The pipeline's stores, across the stages and the applications: their queues, reconciliation
/// and replay, and the checks after a move.
#[async_trait]
pub trait Pipeline: Send + Sync {
    /// `app`'s outbox rows not yet published in `region`, and its consumers' lag per topic there.
    async fn queues(&self, app: App, region: &str) -> Result<Queues, PipelineError>;
    /// Reconciles `app`'s hops in each application's active database, replaying and restoring
    /// what is missing, audited under `run_id`.
    async fn reconcile(&self, app: App, run_id: &str) -> Result<Reconciled, PipelineError>;
    /// After a move: no duplicate notification, the ledger verifies.
    async fn verify(&self, app: App) -> Result<Verification, PipelineError>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Queues {
    pub outbox_depth: i64,
    pub consumer_lag: BTreeMap<String, i64>,
}

impl Queues {
    pub fn is_empty(&self) -> bool {
        self.outbox_depth == 0 && self.consumer_lag.values().all(|lag| *lag == 0)
    }
}

/// What the checks after a move saw, and the problems they found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub seen: Vec<String>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Database(String),
    #[error("{0}")]
    Broker(String),
    #[error("cannot read the routing controls: {0}")]
    Controls(ControlsError),
    #[error("{0}")]
    Repair(String),
    #[error("the runbook store: {0}")]
    Store(StoreError),
    #[error("{0}")]
    Configuration(String),
}

/// Milliseconds since the epoch: the runbook's only reading of time.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        chrono::Utc::now().timestamp_millis().max(0) as u64
    }
}
