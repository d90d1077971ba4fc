//! What a service says about itself on `/readyz`, as the runbook reads it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// A service's health, as its `/readyz` answers (the live probe reads keel-platform's `ReadyzBody`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "health", content = "detail", rename_all = "kebab-case")]
pub enum Health {
    /// It does not answer, or not with readiness.
    Down(String),
    /// It cannot read its routing controls, so it neither consumes nor produces.
    Fenced(String),
    /// The checks that fail, and why.
    Unready(BTreeMap<String, String>),
    /// Ready, processing or standing by.
    Ready(Processing),
}

/// Whether a ready service processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Processing {
    Active,
    /// Standing by, and why (which control is Off).
    Standby(String),
}

impl Health {
    pub fn is_active(&self) -> bool {
        matches!(self, Health::Ready(Processing::Active))
    }

    /// Not processing: standing by, fenced, or down.
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            Health::Down(_) | Health::Fenced(_) | Health::Ready(Processing::Standby(_))
        )
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready(_))
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Down(why) => write!(f, "down ({why})"),
            Health::Fenced(why) => write!(f, "fenced ({why})"),
            Health::Unready(failing) => {
                let failing: Vec<String> = failing
                    .iter()
                    .map(|(check, why)| format!("{check}: {why}"))
                    .collect();
                write!(f, "unready ({})", failing.join("; "))
            }
            Health::Ready(Processing::Active) => f.write_str("active"),
            Health::Ready(Processing::Standby(why)) => write!(f, "standby ({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_means_standing_by_fenced_or_down_and_active_means_processing() {
        let active = Health::Ready(Processing::Active);
        let standby = Health::Ready(Processing::Standby("x is Off".into()));
        let down = Health::Down("connection refused".into());
        let fenced = Health::Fenced("controls unreadable for 5 s".into());
        let starting = Health::Unready(BTreeMap::from([("session".into(), "starting".into())]));
        assert!(active.is_active() && !active.is_stopped());
        for stopped in [&standby, &down, &fenced] {
            assert!(stopped.is_stopped(), "{stopped}");
            assert!(!stopped.is_active(), "{stopped}");
        }
        assert!(!starting.is_stopped() && !starting.is_active());
        assert_eq!(standby.to_string(), "standby (x is Off)");
    }
}
