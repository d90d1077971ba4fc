//! What a run's steps measured, kept in its journal so that a resumed run still reports what the
//! steps before the interruption found.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// How many acknowledged records the target lacked when it took over, and how that was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Rpo>,
    /// What the Reconcile step found and repaired.
    #[serde(default, rename = "reconcile", skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciled>,
}

/// The recovery point: acknowledged records the target lacks (None: they could not be counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rpo {
    pub acknowledged_missing: Option<i64>,
    pub how: String,
}

impl fmt::Display for Rpo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.acknowledged_missing {
            Some(n) => write!(f, "{n} acknowledged record(s) missing ({})", self.how),
            None => write!(f, "unknown ({})", self.how),
        }
    }
}

/// Gaps of one kind each, as counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapCounts {
    pub missing: usize,
    pub differing: usize,
    pub orphaned: usize,
}

impl fmt::Display for GapCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.missing, self.differing, self.orphaned)
    }
}

/// One hop's reconciliation: the gaps found, what was repaired, the gaps left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopTally {
    pub hop: String,
    pub found: GapCounts,
    pub replayed: usize,
    pub restored: usize,
    pub left: GapCounts,
}

/// A reconciliation over several hops, in counts; the ids are in its audit trail (`run_id`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    pub run_id: Option<String>,
    pub found: usize,
    pub repaired: usize,
    pub left: usize,
    pub hops: Vec<HopTally>,
    /// Hops between the applications not compared, because the other application's database did
    /// not answer (its own failover reconciles them), each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

impl Reconciled {
    pub fn missing_left(&self) -> usize {
        self.hops.iter().map(|hop| hop.left.missing).sum()
    }
}

impl fmt::Display for Reconciled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} gap(s) found, {} repaired, {} left over {} hops",
            self.found,
            self.repaired,
            self.left,
            self.hops.len()
        )?;
        if !self.skipped.is_empty() {
            write!(
                f,
                "; hops between the applications skipped: {}",
                self.skipped.join("; ")
            )?;
        }
        Ok(())
    }
}
