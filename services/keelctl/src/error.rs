//! Everything keelctl can fail with, and the one mapping from a failure to an exit code.

use std::process::ExitCode;

use keel_ledger::Violation;
use keel_operations::access::{Denied, SignInRejected, UnknownPrincipal};
use keel_operations::ports::{ControlsError, StoreError};
use keel_operations::{ActiveError, RunbookError};
use keel_operations_live::ledger::LedgerReadError;
use keel_operations_live::reconcile::ReconcileError;
use keel_operations_live::{ConfigError, IdentityError, OperatorsError};
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
    #[error("this command changes Keel: say who you are with --operator NAME (or KEEL_OPERATOR)")]
    NoOperator,
    #[error("no password: set KEEL_OPERATOR_PASSWORD, or run keelctl on a terminal to be asked")]
    NoPassword,
    #[error("sign-in refused: {0}")]
    SignIn(SignInRejected),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Operators(#[from] OperatorsError),
    #[error("nothing was done: the audit trail cannot be written: {0}")]
    Unrecorded(StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("sign-in refused: {0}")]
    UnknownPrincipal(UnknownPrincipal),
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
            | Error::Incomplete(_)
            | Error::NoOperator
            | Error::NoPassword
            | Error::SignIn(_)
            | Error::Denied(_)
            | Error::Operators(_)
            | Error::Unrecorded(_)
            | Error::Identity(_)
            | Error::UnknownPrincipal(_) => false,
        };
        ExitCode::from(if found_wrong { 1 } else { 2 })
    }

    /// Whether nothing was done because something said no (as the audit trail records it), rather
    /// than because something failed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Runbook(RunbookError::Refused(_))
                | Error::Controls(ControlsError::Refused(_))
                | Error::LockHeldByOther { .. }
                | Error::Unconfirmed
                | Error::Declined
                | Error::Denied(_)
        )
    }
}
