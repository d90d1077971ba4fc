//! The audit trail of operators' actions (DESIGN section 9): who did what, when, from where, and
//! what came of it, for every action from the console or keelctl.
//!
//! An action is recorded before it is carried out, and its entry is completed with the outcome
//! after: an action that cannot be recorded is not taken (nobody could account for it later), and
//! one whose outcome cannot be written stays in the trail as begun. A viewer's attempt to act is
//! recorded as refused.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use keel_routing::App;
use serde::{Deserialize, Serialize};

use crate::access::{Denied, Operator};
use crate::ports::{AuditTrail, Clock, StoreError};

/// Where an action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Console,
    Keelctl,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Console => "console",
            Channel::Keelctl => "keelctl",
        })
    }
}

/// One routing control set On or Off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlChange {
    pub control: String,
    pub on: bool,
}

/// What an operator did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    SignIn,
    Rotate {
        app: App,
        from: Option<String>,
        to: String,
    },
    Failover {
        app: App,
        from: Option<String>,
        to: String,
    },
    Reprotect {
        app: App,
        region: Option<String>,
    },
    SetControls {
        changes: Vec<ControlChange>,
        overrides: Vec<String>,
    },
    Unlock {
        app: App,
        run: String,
    },
    Repair {
        run: String,
    },
    StartGenerator,
    StopGenerator,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = |from: &Option<String>| {
            from.as_deref()
                .map(|r| format!(" from {r}"))
                .unwrap_or_default()
        };
        match self {
            Action::SignIn => write!(f, "sign in"),
            Action::Rotate {
                app,
                from: source,
                to,
            } => {
                write!(f, "rotate {app}{} to {to}", from(source))
            }
            Action::Failover {
                app,
                from: source,
                to,
            } => {
                write!(f, "fail over {app}{} to {to}", from(source))
            }
            Action::Reprotect { app, region } => match region {
                Some(region) => write!(f, "re-protect {app} in {region}"),
                None => write!(f, "re-protect {app}"),
            },
            Action::SetControls { changes, overrides } => {
                let changes: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{}={}", c.control, if c.on { "On" } else { "Off" }))
                    .collect();
                write!(f, "set controls {}", changes.join(" "))?;
                if !overrides.is_empty() {
                    write!(f, " overriding {}", overrides.join(", "))?;
                }
                Ok(())
            }
            Action::Unlock { app, run } => write!(f, "unlock {app}'s runbook (run {run})"),
            Action::Repair { run } => write!(f, "reconcile and repair (run {run})"),
            Action::StartGenerator => write!(f, "start the generator"),
            Action::StopGenerator => write!(f, "stop the generator"),
        }
    }
}

/// What came of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Recorded before it was carried out; an entry left so never had its outcome written.
    Begun,
    Succeeded {
        detail: String,
    },
    /// Not carried out: the operator may not act, or a safety check said no.
    Refused {
        reason: String,
    },
    /// Carried out and failed, or stopped part way (a runbook run can be resumed).
    Failed {
        reason: String,
    },
}

impl Outcome {
    /// What the trail records of `result`: its summary, or the error, as a refusal when `refused`
    /// says so (nothing was done because something said no) and as a failure otherwise.
    pub fn of<T, E: fmt::Display>(
        result: &Result<T, E>,
        summary: impl FnOnce(&T) -> String,
        refused: impl FnOnce(&E) -> bool,
    ) -> Outcome {
        match result {
            Ok(value) => Outcome::Succeeded {
                detail: summary(value),
            },
            Err(error) if refused(error) => Outcome::Refused {
                reason: error.to_string(),
            },
            Err(error) => Outcome::Failed {
                reason: error.to_string(),
            },
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Begun => write!(f, "begun (no outcome recorded)"),
            Outcome::Succeeded { detail } if detail.is_empty() => write!(f, "succeeded"),
            Outcome::Succeeded { detail } => write!(f, "succeeded: {detail}"),
            Outcome::Refused { reason } => write!(f, "refused: {reason}"),
            Outcome::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique, and ordered as the entries were begun.
    pub id: String,
    pub at: DateTime<Utc>,
    pub operator: String,
    pub channel: Channel,
    pub action: Action,
    pub outcome: Outcome,
    pub finished_at: Option<DateTime<Utc>>,
}

impl fmt::Display for AuditEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} via {}: {}: {}",
            self.at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
            self.operator,
            self.channel,
            self.action,
            self.outcome
        )
    }
}

/// Why an audited action did not happen, or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Acted<E> {
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The trail could not be written, so nothing was done.
    #[error("the action was not taken because the audit trail cannot be written: {0}")]
    Unrecorded(StoreError),
    #[error(transparent)]
    Failed(E),
}

/// Records actions in a trail.
pub struct Auditor<'a> {
    pub trail: &'a dyn AuditTrail,
    pub clock: &'a dyn Clock,
    pub channel: Channel,
}

impl Auditor<'_> {
    /// Carries out `work` as `operator`'s `action`, recorded before and after; `outcome` says what
    /// the result means for the trail. A viewer is refused (and that is recorded) without `work`
    /// starting, and so is anyone when the trail cannot be written.
    pub async fn act<T, E, F>(
        &self,
        operator: &Operator,
        action: Action,
        work: F,
        outcome: impl FnOnce(&Result<T, E>) -> Outcome,
    ) -> Result<T, Acted<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let mut entry = self.begin(&operator.name, action);
        if let Err(denied) = operator.may_act() {
            entry.outcome = Outcome::Refused {
                reason: denied.to_string(),
            };
            entry.finished_at = Some(entry.at);
            self.trail.record(&entry).await.map_err(Acted::Unrecorded)?;
            return Err(Acted::Denied(denied));
        }
        self.trail.record(&entry).await.map_err(Acted::Unrecorded)?;
        let result = work.await;
        entry.outcome = outcome(&result);
        entry.finished_at = Some(self.now());
        // The action is done whatever the trail says now: its entry then stays as begun.
        let _ = self.trail.record(&entry).await;
        result.map_err(Acted::Failed)
    }

    /// Records a sign-in attempt (by the name given, whether or not it is an operator's).
    pub async fn sign_in(&self, name: &str, accepted: bool) -> Result<(), StoreError> {
        let mut entry = self.begin(name, Action::SignIn);
        entry.outcome = if accepted {
            Outcome::Succeeded {
                detail: String::new(),
            }
        } else {
            Outcome::Refused {
                reason: crate::access::SignInRejected.to_string(),
            }
        };
        entry.finished_at = Some(entry.at);
        self.trail.record(&entry).await
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.clock.now_ms() as i64).unwrap_or_default()
    }

    fn begin(&self, operator: &str, action: Action) -> AuditEntry {
        let at = self.now();
        AuditEntry {
            id: format!(
                "{}#{}",
                at.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                uuid::Uuid::new_v4().simple()
            ),
            at,
            operator: operator.to_owned(),
            channel: self.channel,
            action,
            outcome: Outcome::Begun,
            finished_at: None,
        }
    }
}
