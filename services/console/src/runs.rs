//! The runbook run the console started, as it goes: its plan, each step's state as the runbook
//! reports it, and the report (RTO, RPO) at the end. The run itself is keel-operations' `Runbook`,
//! the same as keelctl's; this only keeps what the page shows. Past runs are in the audit trail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_operations::{Opened, Progress, Report};
use keel_rotation::{Mode, Step, StepState};
use keel_routing::App;

/// Where one step of the plan stands.
#[derive(Debug, Clone, PartialEq)]
pub enum StepView {
    Waiting,
    Running,
    Done {
        took: Option<Duration>,
        detail: String,
    },
    Failed {
        took: Duration,
        why: String,
    },
}

/// A run as the page shows it.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run_id: String,
    pub operator: String,
    pub app: App,
    pub mode: Mode,
    pub from: String,
    pub to: String,
    pub steps: Vec<(Step, StepView)>,
    /// Set once the run has ended: its report, or why it stopped.
    pub ended: Option<Result<Report, String>>,
}

impl RunView {
    fn of(opened: &Opened, operator: &str) -> RunView {
        let plan = opened.plan();
        let done = Report::of(&opened.journal, false).steps;
        let steps = plan
            .steps
            .iter()
            .map(|step| {
                let view = done
                    .iter()
                    .find(|report| report.step == *step && report.state == StepState::Done)
                    .map_or(StepView::Waiting, |report| StepView::Done {
                        took: report.took_ms.map(Duration::from_millis),
                        detail: report.detail.clone(),
                    });
                (*step, view)
            })
            .collect();
        RunView {
            run_id: opened.journal.run_id.clone(),
            operator: operator.to_owned(),
            app: plan.app,
            mode: plan.mode,
            from: plan.from.clone(),
            to: plan.to.clone(),
            steps,
            ended: None,
        }
    }

    fn step(&mut self, step: Step, view: StepView) {
        if let Some((_, current)) = self.steps.iter_mut().find(|(s, _)| *s == step) {
            *current = view;
        }
    }
}

/// The console's run: at most one at a time, kept after it ends until the next one starts.
#[derive(Clone, Default)]
pub struct RunBoard {
    latest: Arc<Mutex<Option<RunView>>>,
}

impl RunBoard {
    /// Claims the board for `opened`, unless a run is still going.
    pub fn begin(&self, opened: &Opened, operator: &str) -> Result<(), String> {
        let mut latest = self.latest.lock().expect("run board lock");
        if let Some(run) = latest.as_ref().filter(|run| run.ended.is_none()) {
            return Err(run.run_id.clone());
        }
        *latest = Some(RunView::of(opened, operator));
        Ok(())
    }

    /// Records what the runbook reports as it goes.
    pub fn progress(&self, progress: Progress<'_>) {
        let mut latest = self.latest.lock().expect("run board lock");
        let Some(run) = latest.as_mut() else { return };
        match progress {
            Progress::Started { run_id, .. } => run.run_id = run_id.to_owned(),
            Progress::Step { step, .. } => run.step(step, StepView::Running),
            Progress::Done { step, took, detail } => run.step(
                step,
                StepView::Done {
                    took: Some(took),
                    detail: detail.to_owned(),
                },
            ),
            Progress::Failed { step, took, why } => run.step(
                step,
                StepView::Failed {
                    took,
                    why: why.to_owned(),
                },
            ),
        }
    }

    pub fn end(&self, result: Result<Report, String>) {
        if let Some(run) = self.latest.lock().expect("run board lock").as_mut() {
            run.ended = Some(result);
        }
    }

    pub fn latest(&self) -> Option<RunView> {
        self.latest.lock().expect("run board lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use keel_operations::fakes::{World, WEST};
    use keel_operations::MoveRequest;

    use super::*;

    #[tokio::test]
    async fn the_board_follows_a_run_and_refuses_a_second_while_it_goes() {
        let world = World::two_regions(5);
        let runbook = world.runbook();
        let request = MoveRequest {
            app: App::TradeMatching,
            mode: Mode::Planned,
            to: WEST.to_owned(),
            from: None,
        };
        let opened = runbook.open(&request).await.unwrap();
        let board = RunBoard::default();
        board.begin(&opened, "ada").unwrap();
        let first = board.latest().unwrap();
        assert!(first
            .steps
            .iter()
            .all(|(_, view)| *view == StepView::Waiting));
        assert_eq!(board.begin(&opened, "bob"), Err(first.run_id.clone()));

        let follower = board.clone();
        let report = runbook
            .run(opened, "ada", &move |progress| follower.progress(progress))
            .await
            .unwrap();
        board.end(Ok(report));
        let done = board.latest().unwrap();
        assert_eq!(done.operator, "ada");
        assert!(
            done.steps
                .iter()
                .all(|(_, view)| matches!(view, StepView::Done { .. })),
            "{:?}",
            done.steps
        );
        assert!(matches!(done.ended, Some(Ok(ref report)) if report.ok));

        // Ended, the board takes the next run.
        let back = MoveRequest {
            to: keel_operations::fakes::EAST.to_owned(),
            ..request
        };
        board
            .begin(&runbook.open(&back).await.unwrap(), "bob")
            .unwrap();
        assert_eq!(board.latest().unwrap().operator, "bob");
    }
}
