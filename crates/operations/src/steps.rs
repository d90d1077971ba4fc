//! Each step of the runbook carried out through the ports, and its outcome checked: a step returns
//! only once it has seen what it did take effect (a service's `/readyz`, an ingress's answer, the
//! databases' own positions), or fails naming what it saw. Every step is safe to run again, so an
//! interrupted run resumes by repeating the step it was in.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use keel_rotation::{Journal, Mode, Rpo, Step};
use keel_routing::{control_name, App, Gate};
use keel_topology::services_of;

use crate::error::StepError;
use crate::health::Health;
use crate::ports::{acknowledged_records, DatabaseError, IngressAnswer, Replication};
use crate::runbook::Runbook;

/// What a look at the world found: the outcome, or not yet (and what was seen instead).
pub(crate) enum Seen {
    Done(String),
    NotYet(String),
}

/// One of the preflight's checks: what it saw, or what is wrong.
enum Finding {
    Fine(String),
    Problem(String),
}

/// What a step saw, once it saw its outcome.
type Outcome = Result<String, StepError>;

pub(crate) struct Steps<'a> {
    runbook: &'a Runbook,
}

impl<'a> Steps<'a> {
    pub(crate) fn new(runbook: &'a Runbook) -> Self {
        Steps { runbook }
    }

    pub(crate) async fn run(&self, step: Step, journal: &mut Journal) -> Outcome {
        let plan = journal.plan.clone();
        let (app, from, to) = (plan.app, plan.from.as_str(), plan.to.as_str());
        match step {
            Step::Preflight => self.preflight(app, plan.mode, from, to).await,
            Step::TrafficOff => {
                self.set(&[(control_name(app, Gate::Traffic, from), false)])
                    .await?;
                self.see_traffic(app, from, false).await
            }
            Step::Drain => self.drain(app, from).await,
            Step::ProcessingOff => {
                self.set(&[(control_name(app, Gate::Processing, from), false)])
                    .await?;
                self.see_services(app, from, Health::is_stopped, "standing by")
                    .await
            }
            Step::FenceSource => self.fence_source(app, from).await,
            Step::WaitReplayed => self.wait_replayed(app, from, to, journal).await,
            Step::SwitchDatabase => {
                self.switch_database(app, plan.mode, from, to, journal)
                    .await
            }
            Step::ProcessingOn => {
                self.set(&[(control_name(app, Gate::Processing, to), true)])
                    .await?;
                self.see_services(app, to, Health::is_active, "active")
                    .await
            }
            Step::Reconcile => self.reconcile(app, journal).await,
            Step::Verify => self.verify(app, journal).await,
            Step::TrafficOn => {
                self.set(&[(control_name(app, Gate::Traffic, to), true)])
                    .await?;
                self.see_traffic(app, to, true).await
            }
            Step::Reprotect => Ok(self.reprotect(app, from, to).await?),
        }
    }

    async fn set(&self, changes: &[(String, bool)]) -> Result<(), StepError> {
        Ok(self.runbook.ports.controls.set(changes, &[]).await?)
    }

    /// Looks until `look` sees the outcome or the step's bound passes; the error names what it saw
    /// last.
    async fn until<F, Fut>(&self, what: &str, mut look: F) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Seen>,
    {
        let bound = self.runbook.settings.step_bound;
        let started = Instant::now();
        loop {
            let last = match look().await {
                Seen::Done(done) => {
                    return Ok(format!(
                        "{done} (seen after {:.1} s)",
                        started.elapsed().as_secs_f64()
                    ))
                }
                Seen::NotYet(seen) => seen,
            };
            if started.elapsed() >= bound {
                return Err(StepError::NotSeen {
                    what: what.to_owned(),
                    within: bound,
                    last: Some(last),
                });
            }
            tokio::time::sleep(self.runbook.settings.poll).await;
        }
    }

    /// Every service of `app` in `region`, by name, with its health.
    async fn healths(&self, app: App, region: &str) -> BTreeMap<&'static str, Health> {
        let mut out = BTreeMap::new();
        for service in services_of(app) {
            let health = self.runbook.ports.probes.health(region, service.name).await;
            out.insert(service.name, health);
        }
        out
    }

    async fn see_services(
        &self,
        app: App,
        region: &str,
        wanted: fn(&Health) -> bool,
        described: &str,
    ) -> Outcome {
        self.until(
            &format!("{app}'s services in {region} {described}"),
            || async {
                let not = not_yet(&self.healths(app, region).await, wanted);
                if not.is_empty() {
                    Seen::Done(format!("every {app} service in {region} {described}"))
                } else {
                    Seen::NotYet(not.join(", "))
                }
            },
        )
        .await
    }

    /// Trade matching's traffic is its ingress: seen refusing or accepting. Settlement's traffic
    /// is the instructions trade matching's relays send it; no process shows having read the
    /// control, so the step waits two poll intervals, after which every reader has
    /// (docs/decisions.md).
    async fn see_traffic(&self, app: App, region: &str, accepting: bool) -> Outcome {
        let what = if accepting { "accepting" } else { "refusing" };
        if app == App::Settlement {
            let wait = self.runbook.settings.settlement_traffic_wait;
            tokio::time::sleep(wait).await;
            return Ok(format!(
                "settlement's traffic control in {region} read as {} by every reader ({} ms, two poll intervals)",
                if accepting { "On" } else { "Off" },
                wait.as_millis()
            ));
        }
        self.until(&format!("{region}'s ingress {what}"), || async {
            match (self.runbook.ports.probes.ingress(region).await, accepting) {
                (IngressAnswer::Accepting(seen), true) | (IngressAnswer::Refusing(seen), false) => {
                    Seen::Done(format!("{region}'s ingress {what} (answered {seen})"))
                }
                (IngressAnswer::Accepting(seen) | IngressAnswer::Refusing(seen), _) => {
                    Seen::NotYet(format!("answered {seen}"))
                }
            }
        })
        .await
    }

    async fn preflight(&self, app: App, mode: Mode, from: &str, to: &str) -> Outcome {
        let ports = &self.runbook.ports;
        let mut problems = Vec::new();
        let mut seen = Vec::new();
        // One runbook at a time: the other application's run would reconcile the same hops. A run
        // that has not passed its own preflight has changed nothing yet; between two such runs the
        // application first in the topology's order goes first, so that two runs stopped at their
        // preflights (each holding its lock, each seeing the other's) cannot block each other for
        // good (found by the chaos suite).
        for other in App::ALL.into_iter().filter(|a| *a != app) {
            match ports.store.lock_holder(other).await {
                Ok(Some(run)) => {
                    let other_started = match ports.store.load(&run).await {
                        Ok(Some((journal, _))) => journal.passed(Step::Preflight),
                        Ok(None) | Err(_) => true,
                    };
                    let goes_first = App::ALL.iter().position(|a| *a == app)
                        < App::ALL.iter().position(|a| *a == other);
                    if other_started || !goes_first {
                        problems.push(format!("{other}'s run {run} is running"));
                    }
                }
                Ok(None) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        let mut regions = vec![to];
        if mode == Mode::Planned {
            regions.push(from);
        }
        for region in &regions {
            for (service, health) in self.healths(app, region).await {
                if !health.is_ready() {
                    problems.push(format!("{service} in {region}: {health}"));
                }
            }
            if let Err(e) = ports.brokers.answers(region).await {
                problems.push(e.to_string());
            }
        }
        match ports.databases.replication(app, to).await {
            Ok(Replication::Standby {
                behind_bytes,
                last_replayed_seconds_ago,
            }) => seen.push(format!(
                "{to}'s standby: {} bytes received and not replayed, last commit replayed {} ago",
                behind_bytes.map_or("unknown".to_owned(), |b| b.to_string()),
                last_replayed_seconds_ago.map_or("never".to_owned(), |s| format!("{s:.1} s"))
            )),
            Ok(Replication::Primary { .. }) => {
                seen.push(format!("{to}'s database is already a primary (resumed)"))
            }
            Err(e) => problems.push(e.to_string()),
        }
        if mode == Mode::Planned {
            match self.streams_to(app, from, to).await {
                Finding::Fine(streams) => seen.push(streams),
                Finding::Problem(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(format!(
                "{app} services ready in {}, Kafka answers; {}",
                regions.join(" and "),
                seen.join("; ")
            ))
        } else {
            Err(StepError::Problems(problems))
        }
    }

    /// Whether `from`'s primary streams to `to`'s standby, or what is wrong.
    async fn streams_to(&self, app: App, from: &str, to: &str) -> Finding {
        let databases = &self.runbook.ports.databases;
        let name = match databases.standby_name(app, to) {
            Ok(name) => name,
            Err(e) => return Finding::Problem(e.to_string()),
        };
        match databases.replication(app, from).await {
            Ok(Replication::Primary { standbys }) => {
                match standbys.iter().find(|s| s.name == name) {
                    Some(link) if link.state == "streaming" => Finding::Fine(format!(
                        "{from}'s primary streams to {name}, {} bytes behind",
                        link.behind_bytes.unwrap_or(0)
                    )),
                    link => Finding::Problem(format!(
                        "{from}'s primary does not stream to {name} ({}): re-protect first",
                        link.map_or("not connected", |l| l.state.as_str())
                    )),
                }
            }
            Ok(Replication::Standby { .. }) => Finding::Problem(format!(
                "{app}'s database in {from} is a standby, not the primary"
            )),
            Err(e) => Finding::Problem(e.to_string()),
        }
    }

    async fn drain(&self, app: App, from: &str) -> Outcome {
        // Atomic rather than a Cell so that a run is a `Send` future: the console runs it on a task.
        let quiet = std::sync::atomic::AtomicBool::new(false);
        self.until(&format!("{app} drained in {from}"), || async {
            match self.runbook.ports.pipeline.queues(app, from).await {
                Err(e) => {
                    quiet.store(false, std::sync::atomic::Ordering::Relaxed);
                    Seen::NotYet(e.to_string())
                }
                // Twice in a row: a message in flight between a relay and a consumer shows in
                // neither for an instant.
                Ok(queues)
                    if queues.is_empty()
                        && quiet.swap(true, std::sync::atomic::Ordering::Relaxed) =>
                {
                    Seen::Done(format!("outboxes empty and consumer lag 0 in {from}"))
                }
                Ok(queues) => {
                    if !queues.is_empty() {
                        quiet.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                    Seen::NotYet(format!(
                        "{} unpublished, consumer lag {:?}",
                        queues.outbox_depth, queues.consumer_lag
                    ))
                }
            }
        })
        .await
    }

    async fn fence_source(&self, app: App, from: &str) -> Outcome {
        self.set(&[
            (control_name(app, Gate::Traffic, from), false),
            (control_name(app, Gate::Processing, from), false),
        ])
        .await?;
        // What of the source still answers must be seen to stop; what does not answer is down or
        // cut off, and fences itself once it cannot read its controls.
        let healths = self.healths(app, from).await;
        if healths.values().all(|h| matches!(h, Health::Down(_))) {
            return Ok(format!(
                "{from}'s controls Off; none of its {app} services answers (down or cut off; they fence themselves within {} ms of losing the controls)",
                self.runbook.settings.fence_after.as_millis()
            ));
        }
        self.see_services(app, from, Health::is_stopped, "standing by or down")
            .await
            .map(|seen| format!("{from}'s controls Off; {seen}"))
    }

    async fn wait_replayed(
        &self,
        app: App,
        from: &str,
        to: &str,
        journal: &mut Journal,
    ) -> Outcome {
        let databases = &self.runbook.ports.databases;
        let position = databases.flushed_position(app, from).await?;
        let took = databases
            .wait_replayed(app, to, &position, self.runbook.settings.step_bound)
            .await?;
        // Nothing writes now, so both sides must hold the same acknowledged records.
        let in_source = databases.acknowledged(app, from).await?;
        let in_target = databases.acknowledged(app, to).await?;
        let (table, id) = (in_source.table, in_source.id);
        journal.facts.rpo = Some(Rpo {
            acknowledged_missing: Some((in_source.count - in_target.count).max(0)),
            how: format!(
                "{table}: {} in {from}'s primary, {} in {to}'s standby once it replayed {position} ({id})",
                in_source.count, in_target.count
            ),
        });
        Ok(format!(
            "{to}'s standby replayed up to {position} in {:.2} s; {table}: {} in both",
            took.as_secs_f64(),
            in_source.count
        ))
    }

    async fn switch_database(
        &self,
        app: App,
        mode: Mode,
        from: &str,
        to: &str,
        journal: &mut Journal,
    ) -> Outcome {
        let databases = &self.runbook.ports.databases;
        let settings = &self.runbook.settings;
        // The target must answer before the source is stopped.
        if !databases.answers(app, to, Duration::from_secs(5)).await {
            return Err(DatabaseError {
                app,
                region: to.to_owned(),
                detail: "does not answer".to_owned(),
            }
            .into());
        }
        if mode == Mode::Unplanned && journal.facts.rpo.is_none() {
            journal.facts.rpo = Some(self.unplanned_rpo(app, from, to).await);
        }
        let done = databases
            .switch_primary(app, from, to, mode, settings.database_switch_bound)
            .await?;
        // Seen, not taken on trust: a planned move leaves nothing that can write the old primary.
        if mode == Mode::Planned && databases.takes_writes(app, from).await {
            return Err(StepError::StillAnswers {
                region: from.to_owned(),
            });
        }
        Ok(done.join("; "))
    }

    /// Unplanned: how many acknowledged records the target lacks, if the source's database still
    /// answers; otherwise how far behind the standby was, as far as it knows.
    async fn unplanned_rpo(&self, app: App, from: &str, to: &str) -> Rpo {
        let databases = &self.runbook.ports.databases;
        let (table, id) = acknowledged_records(app);
        // One attempt: a lost region's database does not come back in a second or two, and the
        // failover waits on this answer.
        if databases.answers(app, from, Duration::ZERO).await {
            if let Ok(missing) = databases.acknowledged_missing(app, from, to).await {
                return Rpo {
                    acknowledged_missing: Some(missing),
                    how: format!(
                        "{table} rows in {from}'s database missing from {to}'s, compared by {id}"
                    ),
                };
            }
        }
        let last = match databases.replication(app, to).await {
            Ok(Replication::Standby {
                last_replayed_seconds_ago: Some(seconds),
                ..
            }) => format!("{seconds:.1} s"),
            _ => "at an unknown time".to_owned(),
        };
        Rpo {
            acknowledged_missing: None,
            how: format!(
                "{from}'s database does not answer, so the loss cannot be counted; {to}'s standby's last replayed commit was {last} before its promotion"
            ),
        }
    }

    async fn reconcile(&self, app: App, journal: &mut Journal) -> Outcome {
        let reconciled = self
            .runbook
            .ports
            .pipeline
            .reconcile(app, &journal.run_id)
            .await?;
        journal.facts.reconciliation = Some(reconciled.clone());
        if reconciled.missing_left() > 0 {
            return Err(StepError::MissingLeft { reconciled });
        }
        Ok(reconciled.to_string())
    }

    async fn verify(&self, app: App, journal: &Journal) -> Outcome {
        let mut verification = self.runbook.ports.pipeline.verify(app).await?;
        // Stage counts: every hop's two sides agree (the Reconcile step's result).
        if let Some(reconciled) = &journal.facts.reconciliation {
            verification.seen.push(match reconciled.left {
                0 => "every hop's two sides agree".to_owned(),
                left => format!("{left} gap(s) need investigation (see the report)"),
            });
        }
        if verification.problems.is_empty() {
            Ok(verification.seen.join("; "))
        } else {
            Err(StepError::Problems(verification.problems))
        }
    }

    /// Rebuilds `app`'s database in `region` as a standby of the primary in `primary_region`, and
    /// waits until it streams.
    pub(crate) async fn reprotect(
        &self,
        app: App,
        region: &str,
        primary_region: &str,
    ) -> Result<String, DatabaseError> {
        let databases = &self.runbook.ports.databases;
        let settings = &self.runbook.settings;
        let started = Instant::now();
        let name = databases
            .rebuild_standby(app, region, primary_region, settings.rebuild_bound)
            .await?;
        databases
            .wait_streaming(app, primary_region, &name, settings.step_bound)
            .await?;
        Ok(format!(
            "{region}'s database rebuilt as standby {name} of {primary_region}, streaming, in {:.1} s",
            started.elapsed().as_secs_f64()
        ))
    }
}

/// The services not yet as `wanted`, each with what it says.
fn not_yet(healths: &BTreeMap<&'static str, Health>, wanted: fn(&Health) -> bool) -> Vec<String> {
    healths
        .iter()
        .filter(|(_, health)| !wanted(health))
        .map(|(service, health)| format!("{service}: {health}"))
        .collect()
}
