//! The chaos suite's pure parts (DESIGN section 10).
//!
//! - [`schedule`]: a seeded random schedule of faults: which process, when, for how long, of which
//!   class. The same seed gives the same schedule, so a run is replayed with `make chaos SEED=…`.
//! - [`checker`]: the invariants, in the spirit of Jepsen's Elle, over a [`checker::History`]
//!   gathered from the stores and the generator: every acknowledged leg reaches exactly one final
//!   status, nothing appears from nothing, each party is notified once per status change, each
//!   trade's history is gapless and never leaves a final status, the ledger verifies and
//!   reconciliation finds no gap. Each violation names its ids.

pub mod checker;
pub mod schedule;

pub use checker::{check, Anomaly, History};
pub use schedule::{Fault, FaultClass, Path, Schedule, Scheduled, Space, Target};
