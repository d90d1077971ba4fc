//! Everything keelctl can fail with, and the one mapping from a failure to an exit code.

use std::process::ExitCode;

use keel_ledger::Violation;
use keel_operations::ports::{ControlsError, StoreError};
use keel_operations::{ActiveError, RunbookError};
use keel_operations_live::ledger::LedgerReadError;
use keel_operations_live::reconcile::ReconcileError;
use keel_operations_live::ConfigError;
use keel_routing::App;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    MissingConfig(#[from] ConfigError),
    #[error(transparent)]
    Runbook(#[from] RunbookError),
    #[error("{0}")]
    Controls(#[from] ControlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Active(#[from] ActiveError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("cannot check the ledger: {0}")]
    LedgerUnreadable(#[from] LedgerReadError),
    /// What a check found wrong.
    #[error("ledger violation: {0}")]
    LedgerViolation(#[from] Violation),
    #[error("{left} gap(s) left")]
    GapsLeft { left: usize },
    #[error("this changes routing controls and databases: confirm with --yes")]
    Unconfirmed,
    #[error("not confirmed; nothing changed")]
    Declined,
    #[error("{change:?} is not NAME=On or NAME=Off")]
    BadChange { change: String },
    #[error("{app}'s lock is held by run {holder}, not {run}")]
    LockHeldByOther {
        app: App,
        holder: String,
        run: String,
    },
    #[error("no audit for run {0}")]
    NoAudit(String),
    /// Shown, but not all of it could be read.
    #[error("{0}")]
    Incomplete(String),
}

impl Error {
    /// 1: the command ran and found something wrong (a step that did not see its outcome, a
    /// refused control change, gaps left, a ledger violation, a lock held by another run, no such
    /// audit). 2: it could not run, or would not (a refusal, no confirmation, bad input, a system
    /// that does not answer).
    pub fn exit_code(&self) -> ExitCode {
        let found_wrong = match self {
            Error::Runbook(RunbookError::Stopped { .. })
            | Error::Controls(ControlsError::Refused(_))
            | Error::GapsLeft { .. }
            | Error::LedgerViolation(_)
            | Error::LockHeldByOther { .. }
            | Error::NoAudit(_) => true,
            Error::Config(_)
            | Error::MissingConfig(_)
            | Error::Runbook(_)
            | Error::Controls(_)
            | Error::Store(_)
            | Error::Active(_)
            | Error::Reconcile(_)
            | Error::LedgerUnreadable(_)
            | Error::Unconfirmed
            | Error::Declined
            | Error::BadChange { .. }
            | Error::Incomplete(_) => false,
        };
        ExitCode::from(if found_wrong { 1 } else { 2 })
    }
}
