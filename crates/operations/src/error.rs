//! Why a runbook did not run, or stopped.

use std::time::Duration;

use keel_rotation::{JournalError, PlanError, Reconciled, Step};
use keel_routing::App;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::ports::{ControlsError, DatabaseError, PipelineError, StoreError};
use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    /// The runbook will not do what was asked; nothing changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the routing controls: {0}")]
    Controls(ControlsError),
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// A step did not see its outcome: the run keeps its lock and journal, and the same command
    /// resumes it at that step.
    #[error("run {run_id} stopped at step {number} ({step:?}): {failure}")]
    Stopped {
        run_id: String,
        number: usize,
        step: Step,
        failure: Box<StepError>,
        report: Box<Report>,
    },
}

/// What the runbook refuses to do, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}; finish that run first (runbooks/rotation.md)")]
    DifferentRun(JournalError),
    #[error("{app}'s lock is held by run {run_id}, which has no journal")]
    LockWithoutJournal { app: App, run_id: String },
    #[error("{app} processes in no region; say which it moves from with --from")]
    NoSource { app: App },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{app} processes in no region: finish its failover first")]
    NotProcessing { app: App },
    #[error("{app} processes in {region}: its database there is the primary")]
    ReprotectPrimary { app: App, region: String },
    #[error("unknown region {0}")]
    UnknownRegion(String),
    #[error("there is no other region to move to")]
    NoOtherRegion,
    #[error("several regions could take over from {region}; say which with --to")]
    SeveralTargets { region: String },
}

impl Refusal {
    /// A stable name for the kind of refusal, for JSON and the console.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::DifferentRun(_) => "different-run",
            Refusal::LockWithoutJournal { .. } => "lock-without-journal",
            Refusal::NoSource { .. } => "no-source",
            Refusal::Plan(_) => "plan",
            Refusal::NotProcessing { .. } => "not-processing",
            Refusal::ReprotectPrimary { .. } => "reprotect-primary",
            Refusal::UnknownRegion(_) => "unknown-region",
            Refusal::NoOtherRegion => "no-other-region",
            Refusal::SeveralTargets { .. } => "several-targets",
        }
    }
}

impl Serialize for Refusal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut refusal = serializer.serialize_struct("Refusal", 2)?;
        refusal.serialize_field("refused", self.code())?;
        refusal.serialize_field("reason", &self.to_string())?;
        refusal.end()
    }
}

/// Why a step did not see its outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    #[error("{what}: not seen within {within:?}{}", last.as_ref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
    NotSeen {
        what: String,
        within: Duration,
        last: Option<String>,
    },
    /// What a check found wrong (the preflight's, the verification's), each named.
    #[error("{}", .0.join("; "))]
    Problems(Vec<String>),
    #[error("routing controls: {0}")]
    Controls(#[from] ControlsError),
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("{region}'s database still takes writes after the switch")]
    StillAnswers { region: String },
    #[error("{reconciled}: {} still missing downstream", reconciled.missing_left())]
    MissingLeft { reconciled: Reconciled },
}
