//! The operations library: what an SRE does to Keel, as a library that `keelctl` and the console
//! both drive (DESIGN section 6).
//!
//! - [`Runbook`]: planned rotation and unplanned failover of one application, journaled and
//!   resumable, and re-protection; its [`Report`] gives RTO, RPO and every hop's repairs.
//! - [`ports`]: every outside system it talks to, as a trait; keel-operations-live implements them
//!   against ARC, DynamoDB, Postgres, `/readyz` and Kafka.
//! - [`access`] and [`audit`]: who may act (a registry of operators with hashed passwords and
//!   roles), and the trail of every action, recorded before it is taken and completed after.
//! - [`telemetry`]: the services' own metrics read for the console: per-stage counts and rates,
//!   gaps per hop.
//! - [`fakes`]: an in-memory implementation of every port, one small world, for tests that run in
//!   milliseconds.
//!
//! The plan and the journal are keel-rotation's (pure); this crate carries them out.

pub mod access;
pub mod active;
pub mod audit;
pub mod error;
pub mod fakes;
pub mod health;
pub mod ports;
pub mod report;
pub mod runbook;
pub mod status;
mod steps;
pub mod telemetry;

pub use access::{Operator, Registry, Role};
pub use active::{active_regions, ActiveError};
pub use audit::{Acted, Action, AuditEntry, Auditor, Channel, Outcome};
pub use error::{Refusal, RunbookError, StepError};
pub use health::{Health, Processing};
pub use report::{Report, StepReport};
pub use runbook::{describe, MoveRequest, Opened, Ports, Progress, Runbook, Settings};
