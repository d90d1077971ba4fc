//! The runbook that moves an application between regions, pure (DESIGN section 6).
//!
//! - [`plan`]: the steps of a planned rotation or an unplanned failover, each with the outcome it
//!   must verify before the next may start.
//! - [`Journal`]: what a run has done, step by step, as stored (DynamoDB) after every change, and
//!   [`Journal::next`]: where a run, or an interrupted one resumed, goes on.
//! - [`Journal::rto`]: how long the application took no traffic.
//!
//! keel-operations carries the steps out; this crate decides their order and reads the journal.

mod facts;
mod journal;
mod plan;

pub use facts::{Facts, GapCounts, HopTally, Reconciled, Rpo};
pub use journal::{Journal, JournalError, Next, StepRecord, StepState};
pub use plan::{plan, Mode, Plan, PlanError, Step};
