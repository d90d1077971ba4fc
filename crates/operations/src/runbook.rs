//! The runbook engine (DESIGN section 6): one runbook, two modes. The plan and the journal are
//! keel-rotation's (pure); the engine takes the runbook lock, keeps the journal in the runbook
//! store after every change, carries each step out through [`crate::steps`], tells its caller how
//! it goes, and ends with the [`Report`]: RTO, RPO, and every hop's gaps found and repaired.
//!
//! A run that stops (a step failed its check, or its caller was killed) keeps its lock and
//! journal; the same request resumes it at the step it stopped in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_rotation::{plan, Journal, Mode, Next, Plan, Step, StepState};
use keel_routing::{App, Gate};

use crate::error::{Refusal, RunbookError};
use crate::ports::{
    Brokers, Clock, Databases, Pipeline, RoutingControls, RunbookStore, ServiceProbes,
};
use crate::report::Report;
use crate::steps::Steps;

/// Every port the runbook needs.
#[derive(Clone)]
pub struct Ports {
    pub controls: Arc<dyn RoutingControls>,
    pub databases: Arc<dyn Databases>,
    pub store: Arc<dyn RunbookStore>,
    pub probes: Arc<dyn ServiceProbes>,
    pub brokers: Arc<dyn Brokers>,
    pub pipeline: Arc<dyn Pipeline>,
    pub clock: Arc<dyn Clock>,
}

/// How long the runbook waits, and for what.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long one step may take to see its outcome before the run stops (resumable).
    pub step_bound: Duration,
    /// How often a step looks again.
    pub poll: Duration,
    /// Settlement's traffic is read by no process that shows it: the step waits this long (two of
    /// the services' control poll intervals), after which every reader has read it.
    pub settlement_traffic_wait: Duration,
    /// How long a service that cannot read its controls goes on before it fences itself.
    pub fence_after: Duration,
    /// How long moving a database's primary may take (stopping the old and promoting the new).
    pub database_switch_bound: Duration,
    /// How long rebuilding a standby may take.
    pub rebuild_bound: Duration,
}

/// Move `app` to `to`: a planned rotation or an unplanned failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRequest {
    pub app: App,
    pub mode: Mode,
    pub to: String,
    /// The region it moves from; by default the one where it processes now.
    pub from: Option<String>,
}

/// A run, new or resumed, before it is carried out: what a dry run shows.
#[derive(Debug, Clone)]
pub struct Opened {
    pub journal: Journal,
    pub resumed: bool,
    version: u64,
}

impl Opened {
    pub fn plan(&self) -> &Plan {
        &self.journal.plan
    }
}

/// How a run goes, as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    Started {
        run_id: &'a str,
        resumed: bool,
        plan: &'a Plan,
    },
    Step {
        number: usize,
        total: usize,
        step: Step,
        /// It was started before and not finished: it runs again from its beginning.
        again: bool,
    },
    Done {
        step: Step,
        took: Duration,
        detail: &'a str,
    },
    Failed {
        step: Step,
        took: Duration,
        why: &'a str,
    },
}

pub struct Runbook {
    pub(crate) ports: Ports,
    pub(crate) regions: Vec<String>,
    pub(crate) settings: Settings,
}

impl Runbook {
    pub fn new(ports: Ports, regions: Vec<String>, settings: Settings) -> Runbook {
        Runbook {
            ports,
            regions,
            settings,
        }
    }

    /// The application's current run, if one holds its lock, or a new one. Changes nothing.
    pub async fn open(&self, request: &MoveRequest) -> Result<Opened, RunbookError> {
        let store = &self.ports.store;
        let app = request.app;
        if let Some(run_id) = store.lock_holder(app).await? {
            let (journal, version) = store
                .load(&run_id)
                .await?
                .ok_or(Refusal::LockWithoutJournal { app, run_id })?;
            journal
                .check_resumes(app, request.mode, &request.to)
                .map_err(Refusal::DifferentRun)?;
            return Ok(Opened {
                journal,
                resumed: true,
                version,
            });
        }
        let from = match &request.from {
            Some(from) => from.clone(),
            None => self.source(app, &request.to).await?,
        };
        let plan =
            plan(app, request.mode, &from, &request.to, &self.regions).map_err(Refusal::Plan)?;
        let now_ms = self.ports.clock.now_ms();
        let run_id = format!(
            "{app}-{}-{}-{:04x}",
            match request.mode {
                Mode::Planned => "rotate",
                Mode::Unplanned => "failover",
            },
            chrono::DateTime::from_timestamp_millis(now_ms as i64)
                .unwrap_or_default()
                .format("%Y%m%dT%H%M%SZ"),
            // Two runs started in the same second by two operators still get different ids.
            (std::process::id() as u16) ^ (now_ms as u16)
        );
        Ok(Opened {
            journal: Journal::new(&run_id, plan, now_ms),
            resumed: false,
            version: 0,
        })
    }

    /// What `keelctl failover --region LOST` moves: every application that processes in `lost`,
    /// or whose run (a failover interrupted, say) holds its lock, failed over to `to`, by default
    /// the one other region, in the topology's order. Each is a run of its own (its own lock and
    /// journal), carried out one after another, and each resumes on its own. Changes nothing.
    pub async fn evacuation(
        &self,
        lost: &str,
        to: Option<&str>,
    ) -> Result<Vec<MoveRequest>, RunbookError> {
        if !self.regions.iter().any(|r| r == lost) {
            return Err(Refusal::UnknownRegion(lost.to_owned()).into());
        }
        let others: Vec<&String> = self.regions.iter().filter(|r| *r != lost).collect();
        let to = match (to, others.as_slice()) {
            (Some(to), _) => to.to_owned(),
            (None, [only]) => (*only).clone(),
            (None, []) => return Err(Refusal::NoOtherRegion.into()),
            (None, _) => {
                return Err(Refusal::SeveralTargets {
                    region: lost.to_owned(),
                }
                .into())
            }
        };
        let states = self
            .ports
            .controls
            .states()
            .await
            .map_err(RunbookError::Controls)?;
        let mut moves = Vec::new();
        for app in App::ALL {
            let under_way = self.ports.store.lock_holder(app).await?.is_some();
            let processes_there =
                states.active_region(app, Gate::Processing, &self.regions) == Some(lost);
            if under_way || processes_there {
                moves.push(MoveRequest {
                    app,
                    mode: Mode::Unplanned,
                    to: to.clone(),
                    from: Some(lost.to_owned()),
                });
            }
        }
        Ok(moves)
    }

    /// Where `app` moves from: where it processes now. After a failed or interrupted failover
    /// nothing may process: then it is the one other region, when there is just one.
    async fn source(&self, app: App, to: &str) -> Result<String, RunbookError> {
        let states = self
            .ports
            .controls
            .states()
            .await
            .map_err(RunbookError::Controls)?;
        if let Some(region) = states.active_region(app, Gate::Processing, &self.regions) {
            return Ok(region.to_owned());
        }
        match self
            .regions
            .iter()
            .filter(|r| *r != to)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [only] => Ok((*only).clone()),
            _ => Err(Refusal::NoSource { app }.into()),
        }
    }

    /// Carries `opened` out under the runbook lock, taken for `holder` (who runs it), from the
    /// step it stands at to the end, or until a step fails ([`RunbookError::Stopped`]).
    pub async fn run(
        &self,
        opened: Opened,
        holder: &str,
        progress: &(dyn Fn(Progress<'_>) + Send + Sync),
    ) -> Result<Report, RunbookError> {
        let store = &self.ports.store;
        let Opened {
            mut journal,
            resumed,
            mut version,
        } = opened;
        let plan = journal.plan.clone();
        store.lock(plan.app, &journal.run_id, holder).await?;
        if version == 0 {
            version = store.save(&journal, version).await?;
        }
        progress(Progress::Started {
            run_id: &journal.run_id,
            resumed,
            plan: &plan,
        });
        let steps = Steps::new(self);
        let total = plan.steps.len();
        while let Next::Run { index, step, again } = journal.next() {
            progress(Progress::Step {
                number: index + 1,
                total,
                step,
                again,
            });
            let now = self.ports.clock.now_ms();
            journal
                .record(step, StepState::Started, now, "")
                .expect("only the next step is recorded");
            version = store.save(&journal, version).await?;
            let started = Instant::now();
            let outcome = steps.run(step, &mut journal).await;
            let took = started.elapsed();
            let now = self.ports.clock.now_ms();
            match outcome {
                Ok(detail) => {
                    journal
                        .record(step, StepState::Done, now, &detail)
                        .expect("only the next step is recorded");
                    version = store.save(&journal, version).await?;
                    progress(Progress::Done {
                        step,
                        took,
                        detail: &detail,
                    });
                }
                Err(failure) => {
                    let why = failure.to_string();
                    journal
                        .record(step, StepState::Failed, now, &why)
                        .expect("only the next step is recorded");
                    store.save(&journal, version).await?;
                    progress(Progress::Failed {
                        step,
                        took,
                        why: &why,
                    });
                    return Err(RunbookError::Stopped {
                        run_id: journal.run_id.clone(),
                        number: index + 1,
                        step,
                        failure: Box::new(failure),
                        report: Box::new(Report::of(&journal, false)),
                    });
                }
            }
        }
        store.unlock(plan.app, &journal.run_id).await?;
        Ok(Report::of(&journal, true))
    }

    /// Rebuilds `app`'s database in `region` (by default the region it does not process in) as a
    /// standby of the primary where it processes, under the runbook lock (a rotation cannot start
    /// meanwhile). What it saw, once the standby streams.
    pub async fn reprotect(&self, app: App, region: Option<&str>) -> Result<String, RunbookError> {
        let states = self
            .ports
            .controls
            .states()
            .await
            .map_err(RunbookError::Controls)?;
        let active = states
            .active_region(app, Gate::Processing, &self.regions)
            .ok_or(Refusal::NotProcessing { app })?
            .to_owned();
        let region = match region {
            Some(region) => region.to_owned(),
            None => self
                .regions
                .iter()
                .find(|r| **r != active)
                .cloned()
                .ok_or(Refusal::NoOtherRegion)?,
        };
        if region == active {
            return Err(Refusal::ReprotectPrimary { app, region }.into());
        }
        if !self.regions.contains(&region) {
            return Err(Refusal::UnknownRegion(region).into());
        }
        let store = &self.ports.store;
        let now = chrono::DateTime::from_timestamp_millis(self.ports.clock.now_ms() as i64)
            .unwrap_or_default();
        let run_id = format!("{app}-reprotect-{}", now.format("%Y%m%dT%H%M%SZ"));
        store.lock(app, &run_id, "keelctl reprotect").await?;
        let outcome = Steps::new(self).reprotect(app, &region, &active).await;
        store.unlock(app, &run_id).await?;
        Ok(outcome?)
    }
}

/// What the run does, as a dry run prints it.
pub fn describe(opened: &Opened) -> String {
    let plan = opened.plan();
    let mut out = format!(
        "{} of {} from {} to {} ({}); nothing is changed:",
        crate::report::verb(plan.mode),
        plan.app,
        plan.from,
        plan.to,
        if opened.resumed {
            format!("resumes run {}", opened.journal.run_id)
        } else {
            "a new run".to_owned()
        }
    );
    for (index, step) in plan.steps.iter().enumerate() {
        out.push_str(&format!("\n  {:>2}. {}", index + 1, step.describe()));
    }
    out
}
