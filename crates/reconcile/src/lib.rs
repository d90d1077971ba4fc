//! Reconciliation, pure (DESIGN section 7). A hop is a producer's outbox and the next consumer's
//! inbox, within one application or across the two. Reconciling a hop compares the two sides by
//! message id and content digest and names what each gap needs:
//!
//! - [`hops`]: every hop, in the order a replay propagates through them;
//! - [`diff`]: one hop's sides compared: missing downstream, differing, or downstream only;
//! - [`repairs`]: what to do about each gap;
//! - [`HopTracker`]: the continuous reconciler's memory of a hop, so each round looks only at what
//!   is new.
//!
//! Reading the stores, replaying and auditing are keelctl's; this crate decides.

mod diff;
mod hops;
mod repair;
mod tracker;

pub use diff::{diff, Differing, HopDiff, Record};
pub use hops::{hops, hops_of, Hop, Side};
pub use repair::{repairs, Repair};
pub use tracker::HopTracker;

/// A record whose id is `n` repeated, for tests.
#[cfg(test)]
fn test_record(n: u8, digest: &str) -> Record {
    Record {
        id: uuid::Uuid::from_bytes([n; 16]),
        digest: digest.to_owned(),
    }
}
