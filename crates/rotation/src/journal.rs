use keel_routing::App;
use serde::{Deserialize, Serialize};

use crate::{Facts, Mode, Plan, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    Started,
    Done,
    Failed,
}

/// One change of one step's state, with when (ms since the epoch) and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub state: StepState,
    pub at_ms: u64,
    pub detail: String,
}

/// A run's record: its plan and every step's progress, in order. Stored after every change, so an
/// interrupted run can be resumed from it by whoever holds the runbook lock next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub run_id: String,
    pub plan: Plan,
    pub started_at_ms: u64,
    pub records: Vec<StepRecord>,
    /// What steps measured for the report (the RPO, the reconciliation).
    #[serde(default)]
    pub facts: Facts,
}

/// Where a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run the plan's step at `index`; `again` when it was started before and not finished (it is
    /// idempotent, so it runs again from its beginning).
    Run {
        index: usize,
        step: Step,
        again: bool,
    },
    /// Every step is done.
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("step {step:?} is not next; next is {next:?}")]
    OutOfOrder { step: Step, next: Next },
    #[error("run {run_id} moves {app} to {to} ({mode:?}); it cannot be resumed as {asked}")]
    DifferentRun {
        run_id: String,
        app: App,
        to: String,
        mode: Mode,
        asked: String,
    },
}

impl Journal {
    pub fn new(run_id: &str, plan: Plan, now_ms: u64) -> Journal {
        Journal {
            run_id: run_id.to_owned(),
            plan,
            started_at_ms: now_ms,
            records: Vec::new(),
            facts: Facts::default(),
        }
    }

    fn latest(&self, step: Step) -> Option<&StepRecord> {
        self.records.iter().rev().find(|record| record.step == step)
    }

    /// Whether `step` is done (a run that has not passed its preflight has changed nothing).
    pub fn passed(&self, step: Step) -> bool {
        self.latest(step)
            .is_some_and(|record| record.state == StepState::Done)
    }

    /// The first step of the plan that is not done.
    pub fn next(&self) -> Next {
        for (index, step) in self.plan.steps.iter().enumerate() {
            match self.latest(*step).map(|record| record.state) {
                Some(StepState::Done) => continue,
                seen => {
                    return Next::Run {
                        index,
                        step: *step,
                        again: seen.is_some(),
                    }
                }
            }
        }
        Next::Finished
    }

    /// Records `step` changing to `state`. Only the next step may change: a step never starts
    /// before the one before it is done.
    pub fn record(
        &mut self,
        step: Step,
        state: StepState,
        at_ms: u64,
        detail: &str,
    ) -> Result<(), JournalError> {
        match self.next() {
            Next::Run { step: next, .. } if next == step => {
                self.records.push(StepRecord {
                    step,
                    state,
                    at_ms,
                    detail: detail.to_owned(),
                });
                Ok(())
            }
            next => Err(JournalError::OutOfOrder { step, next }),
        }
    }

    /// Whether this journal's run is the one asked for, so resuming it does what the operator meant.
    pub fn check_resumes(&self, app: App, mode: Mode, to: &str) -> Result<(), JournalError> {
        let plan = &self.plan;
        if plan.app == app && plan.mode == mode && plan.to == to {
            Ok(())
        } else {
            Err(JournalError::DifferentRun {
                run_id: self.run_id.clone(),
                app: plan.app,
                to: plan.to.clone(),
                mode: plan.mode,
                asked: format!("{app} to {to} ({mode:?})"),
            })
        }
    }

    /// How long the application took no traffic, in ms, once traffic is back On: from the source's
    /// traffic going Off (planned) or from the start of the run (unplanned: the source was lost
    /// before it, at a time keelctl cannot know, so this is the time from the command).
    pub fn rto_ms(&self) -> Option<u64> {
        let back = self.latest(Step::TrafficOn)?;
        if back.state != StepState::Done {
            return None;
        }
        let from = match self.plan.mode {
            Mode::Planned => {
                self.records
                    .iter()
                    .find(|record| record.step == Step::TrafficOff)?
                    .at_ms
            }
            Mode::Unplanned => self.started_at_ms,
        };
        Some(back.at_ms.saturating_sub(from))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::plan;

    fn journal(mode: Mode) -> Journal {
        let regions = vec!["us-east-1".to_owned(), "us-west-2".to_owned()];
        let plan = plan(App::TradeMatching, mode, "us-east-1", "us-west-2", &regions).unwrap();
        Journal::new("run-1", plan, 1_000)
    }

    #[test]
    fn steps_run_in_order_and_an_interrupted_one_runs_again() {
        let mut journal = journal(Mode::Planned);
        assert_eq!(
            journal.next(),
            Next::Run {
                index: 0,
                step: Step::Preflight,
                again: false
            }
        );
        assert!(matches!(
            journal.record(Step::TrafficOff, StepState::Started, 1_001, ""),
            Err(JournalError::OutOfOrder { .. })
        ));
        journal
            .record(Step::Preflight, StepState::Started, 1_001, "")
            .unwrap();
        assert!(!journal.passed(Step::Preflight));
        journal
            .record(Step::Preflight, StepState::Done, 1_002, "ready")
            .unwrap();
        assert!(journal.passed(Step::Preflight));
        journal
            .record(Step::TrafficOff, StepState::Started, 1_003, "")
            .unwrap();
        // Interrupted here: resuming runs traffic Off again.
        assert_eq!(
            journal.next(),
            Next::Run {
                index: 1,
                step: Step::TrafficOff,
                again: true
            }
        );
        journal
            .record(
                Step::TrafficOff,
                StepState::Failed,
                1_004,
                "ingress still accepting",
            )
            .unwrap();
        assert_eq!(
            journal.next(),
            Next::Run {
                index: 1,
                step: Step::TrafficOff,
                again: true
            }
        );
    }

    #[test]
    fn the_rto_runs_from_traffic_off_planned_and_from_the_command_unplanned() {
        for (mode, expected) in [(Mode::Planned, 4_500), (Mode::Unplanned, 9_500)] {
            let mut journal = journal(mode);
            let mut now = 5_000;
            let mut traffic_back = false;
            while let Next::Run { step, .. } = journal.next() {
                assert_eq!(journal.rto_ms().is_some(), traffic_back, "{step:?}");
                journal.record(step, StepState::Started, now, "").unwrap();
                now += 500;
                journal.record(step, StepState::Done, now, "").unwrap();
                now += 500;
                if step == Step::Verify {
                    now = 10_000;
                }
                traffic_back |= step == Step::TrafficOn;
            }
            assert_eq!(journal.next(), Next::Finished);
            // Traffic On is done at 10,500. Planned: traffic Off started at 6,000 (after preflight);
            // unplanned: the run started at 1,000.
            assert_eq!(journal.rto_ms(), Some(expected), "{mode:?}");
        }
    }

    #[test]
    fn a_journal_resumes_only_the_run_it_records() {
        let journal = journal(Mode::Planned);
        assert!(journal
            .check_resumes(App::TradeMatching, Mode::Planned, "us-west-2")
            .is_ok());
        for (app, mode, to) in [
            (App::Settlement, Mode::Planned, "us-west-2"),
            (App::TradeMatching, Mode::Unplanned, "us-west-2"),
            (App::TradeMatching, Mode::Planned, "us-east-1"),
        ] {
            assert!(journal.check_resumes(app, mode, to).is_err());
        }
    }

    proptest! {
        /// Whatever is attempted, in any order, the done steps are a prefix of the plan, `next` is
        /// the first step after it, and a stored and reloaded journal resumes in the same place.
        #[test]
        fn done_steps_are_always_a_prefix_and_survive_storage(
            unplanned in any::<bool>(),
            attempts in proptest::collection::vec((0usize..12, 0u8..3), 0..60),
        ) {
            let mut journal = journal(if unplanned { Mode::Unplanned } else { Mode::Planned });
            let steps = journal.plan.steps.clone();
            for (i, (which, state)) in attempts.into_iter().enumerate() {
                let step = steps[which % steps.len()];
                let state = [StepState::Started, StepState::Done, StepState::Failed][state as usize];
                let before = journal.next();
                let result = journal.record(step, state, i as u64, "");
                prop_assert_eq!(result.is_ok(), matches!(before, Next::Run { step: next, .. } if next == step));
            }
            let done = steps.iter().take_while(|s| journal.latest(**s).is_some_and(|r| r.state == StepState::Done)).count();
            prop_assert!(steps[done..].iter().all(|s| journal.latest(*s).is_none_or(|r| r.state != StepState::Done)));
            match journal.next() {
                Next::Finished => prop_assert_eq!(done, steps.len()),
                Next::Run { index, .. } => prop_assert_eq!(index, done),
            }
            let stored = serde_json::to_string(&journal).unwrap();
            let reloaded: Journal = serde_json::from_str(&stored).unwrap();
            prop_assert_eq!(reloaded.next(), journal.next());
        }
    }
}
