use keel_routing::App;
use serde::{Deserialize, Serialize};

/// Planned rotation, with both regions up, or unplanned failover, with the source lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Planned,
    Unplanned,
}

/// One step of the runbook. Every step verifies its own outcome (no fixed sleeps) and is
/// idempotent, so a resumed run can repeat the step it was interrupted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Target services ready, standby lag known, brokers reachable (planned: in both regions).
    Preflight,
    /// Planned: the source's traffic control Off, and its ingress seen refusing.
    TrafficOff,
    /// Planned: the source's outboxes empty and its consumer lag zero.
    Drain,
    /// Planned: the source's processing control Off, and its services seen standing by.
    ProcessingOff,
    /// Unplanned: the source's traffic and processing controls Off in one change, and whatever of
    /// the source can still be reached seen fenced or down.
    FenceSource,
    /// Planned: the standby has replayed everything the primary flushed.
    WaitReplayed,
    /// Planned: the target promoted, the old primary stopped (re-protected separately).
    /// Unplanned: the target promoted, detached from the lost primary.
    SwitchDatabase,
    /// The target's processing control On, and its services seen active.
    ProcessingOn,
    /// Every hop reconciled and replayed until no gap is left or the bound is hit.
    Reconcile,
    /// Stage counts agree, the ledger balances, no duplicate notification.
    Verify,
    /// The target's traffic control On, and its ingress seen accepting.
    TrafficOn,
    /// Planned: the old primary rebuilt as a streaming standby of the new one, and seen streaming.
    /// After traffic is back: it is not part of the outage. (Unplanned: `keelctl reprotect`, once
    /// the lost region is back.)
    Reprotect,
}

impl Step {
    /// The step's name, as the journal and the report spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::TrafficOff => "traffic-off",
            Step::Drain => "drain",
            Step::ProcessingOff => "processing-off",
            Step::FenceSource => "fence-source",
            Step::WaitReplayed => "wait-replayed",
            Step::SwitchDatabase => "switch-database",
            Step::ProcessingOn => "processing-on",
            Step::Reconcile => "reconcile",
            Step::Verify => "verify",
            Step::TrafficOn => "traffic-on",
            Step::Reprotect => "reprotect",
        }
    }

    /// What the step does and what it checks, as `--dry-run` prints it.
    pub fn describe(&self) -> &'static str {
        match self {
            Step::Preflight => {
                "preflight: target services ready, standby lag known, brokers reachable"
            }
            Step::TrafficOff => {
                "traffic Off in the source; wait until its ingress is seen refusing"
            }
            Step::Drain => {
                "drain: wait until the source's outboxes are empty and its consumer lag is zero"
            }
            Step::ProcessingOff => {
                "processing Off in the source; wait until its services are seen standing by"
            }
            Step::FenceSource => {
                "fence the source: traffic and processing Off; check what of it answers is fenced"
            }
            Step::WaitReplayed => {
                "wait until the target's standby has replayed everything the primary flushed"
            }
            Step::SwitchDatabase => {
                "switch the database: stop the source's primary if reachable, promote the target"
            }
            Step::ProcessingOn => {
                "processing On in the target; wait until its services are seen active"
            }
            Step::Reconcile => "reconcile and replay every hop until no gap is left",
            Step::Verify => {
                "verify: stage counts agree, the ledger balances, no duplicate notification"
            }
            Step::TrafficOn => "traffic On in the target; wait until its ingress is seen accepting",
            Step::Reprotect => {
                "re-protect: rebuild the source's database as a standby of the target; wait until it streams"
            }
        }
    }

    /// Whether the step needs the source region to answer.
    pub fn needs_source(&self) -> bool {
        matches!(
            self,
            Step::TrafficOff
                | Step::Drain
                | Step::ProcessingOff
                | Step::WaitReplayed
                | Step::Reprotect
        )
    }
}

const PLANNED: &[Step] = &[
    Step::Preflight,
    Step::TrafficOff,
    Step::Drain,
    Step::ProcessingOff,
    Step::WaitReplayed,
    Step::SwitchDatabase,
    Step::ProcessingOn,
    Step::Reconcile,
    Step::Verify,
    Step::TrafficOn,
    Step::Reprotect,
];

const UNPLANNED: &[Step] = &[
    Step::Preflight,
    Step::FenceSource,
    Step::SwitchDatabase,
    Step::ProcessingOn,
    Step::Reconcile,
    Step::Verify,
    Step::TrafficOn,
];

/// One run's plan: move `app` from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub app: App,
    pub mode: Mode,
    pub from: String,
    pub to: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("unknown region {0:?} (known: {1})")]
    UnknownRegion(String, String),
    #[error("{app} is already active in {region}: nothing to move")]
    AlreadyThere { app: App, region: String },
}

/// The plan to move `app`, active in `from`, to `to`, among `regions`.
pub fn plan(
    app: App,
    mode: Mode,
    from: &str,
    to: &str,
    regions: &[String],
) -> Result<Plan, PlanError> {
    for region in [from, to] {
        if !regions.iter().any(|known| known == region) {
            return Err(PlanError::UnknownRegion(
                region.to_owned(),
                regions.join(", "),
            ));
        }
    }
    if from == to {
        return Err(PlanError::AlreadyThere {
            app,
            region: to.to_owned(),
        });
    }
    let steps = match mode {
        Mode::Planned => PLANNED,
        Mode::Unplanned => UNPLANNED,
    };
    Ok(Plan {
        app,
        mode,
        from: from.to_owned(),
        to: to.to_owned(),
        steps: steps.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<String> {
        vec!["us-east-1".into(), "us-west-2".into()]
    }

    #[test]
    fn a_step_is_named_as_the_journal_spells_it() {
        for step in PLANNED.iter().chain(UNPLANNED) {
            let stored = serde_json::to_value(step).unwrap();
            assert_eq!(stored, step.name(), "{step:?}");
        }
    }

    #[test]
    fn a_planned_rotation_stops_the_source_before_it_promotes_and_opens_traffic_last() {
        let plan = plan(
            App::TradeMatching,
            Mode::Planned,
            "us-east-1",
            "us-west-2",
            &regions(),
        )
        .unwrap();
        let at = |step| plan.steps.iter().position(|s| *s == step).unwrap();
        assert!(at(Step::TrafficOff) < at(Step::Drain));
        assert!(at(Step::Drain) < at(Step::ProcessingOff));
        assert!(at(Step::ProcessingOff) < at(Step::WaitReplayed));
        assert!(at(Step::WaitReplayed) < at(Step::SwitchDatabase));
        assert!(at(Step::SwitchDatabase) < at(Step::ProcessingOn));
        assert!(at(Step::Reconcile) < at(Step::Verify));
        assert!(at(Step::Verify) < at(Step::TrafficOn));
        // Re-protection is not part of the outage.
        assert_eq!(plan.steps.last(), Some(&Step::Reprotect));
        assert!(!plan.steps.contains(&Step::FenceSource));
    }

    #[test]
    fn an_unplanned_failover_needs_nothing_from_the_source_and_fences_it_first() {
        let plan = plan(
            App::Settlement,
            Mode::Unplanned,
            "us-east-1",
            "us-west-2",
            &regions(),
        )
        .unwrap();
        assert!(plan.steps.iter().all(|step| !step.needs_source()));
        assert_eq!(
            &plan.steps[..3],
            &[Step::Preflight, Step::FenceSource, Step::SwitchDatabase]
        );
        assert_eq!(plan.steps.last(), Some(&Step::TrafficOn));
    }

    #[test]
    fn bad_regions_are_named() {
        assert_eq!(
            plan(
                App::TradeMatching,
                Mode::Planned,
                "us-east-1",
                "eu-west-1",
                &regions()
            ),
            Err(PlanError::UnknownRegion(
                "eu-west-1".into(),
                "us-east-1, us-west-2".into()
            ))
        );
        assert!(matches!(
            plan(
                App::TradeMatching,
                Mode::Planned,
                "us-east-1",
                "us-east-1",
                &regions()
            ),
            Err(PlanError::AlreadyThere { .. })
        ));
    }

    #[test]
    fn every_step_says_what_it_checks() {
        for step in PLANNED.iter().chain(UNPLANNED) {
            assert!(step.describe().len() > 20);
        }
    }
}
