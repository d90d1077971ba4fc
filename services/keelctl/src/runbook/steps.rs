//! Each step of the runbook carried out, and its outcome checked: a step returns only once it has
//! seen what it did take effect (a service's `/readyz`, an ingress's answer, the databases' own
//! positions), or fails naming what it saw. Every step is safe to run again, so an interrupted run
//! resumes by repeating the step it was in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_arc::ArcClient;
use keel_reconcile::hops_of;
use keel_rotation::{Journal, Mode, Step};
use keel_routing::{control_name, App, Gate};
use serde_json::json;
use sqlx::PgPool;

use super::databases::{self, Databases};
use super::store::RunbookStore;
use crate::reconcile::{active_pools, reconcile_hops, Repairing, Window};
use crate::status::{active_regions, queues, readiness, Health};
use crate::Config;
use keel_topology::services_of;

pub struct Steps<'a> {
    pub config: &'a Config,
    pub store: &'a RunbookStore,
    pub arc: ArcClient,
    pub http: reqwest::Client,
    pub databases: Databases<'a>,
    /// How long a step may wait to see its outcome.
    pub bound: Duration,
}

type Outcome = Result<String, String>;

/// Where each application is active now, and the databases there that answer.
struct Active {
    regions: BTreeMap<App, String>,
    pools: BTreeMap<App, PgPool>,
    unreachable: Vec<String>,
}

impl Steps<'_> {
    pub async fn run(&self, step: Step, journal: &mut Journal) -> Outcome {
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
            Step::Reprotect => self.reprotect(app, from, to).await,
        }
    }

    async fn set(&self, changes: &[(String, bool)]) -> Result<(), String> {
        let changes: Vec<(&str, bool)> = changes.iter().map(|(n, on)| (n.as_str(), *on)).collect();
        self.arc
            .set(&changes, &[])
            .await
            .map_err(|e| format!("routing controls: {e}"))
    }

    /// Polls `check` until it says done (Some) or the bound passes; the error names what it saw
    /// last.
    async fn until<F, Fut>(&self, what: &str, mut check: F) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, String>>,
    {
        let started = Instant::now();
        loop {
            let seen = match check().await {
                Ok(Some(done)) => {
                    return Ok(format!(
                        "{done} (seen after {:.1} s)",
                        started.elapsed().as_secs_f64()
                    ))
                }
                Ok(None) => None,
                Err(why) => Some(why),
            };
            if started.elapsed() >= self.bound {
                return Err(format!(
                    "{what}: not seen within {:?}{}",
                    self.bound,
                    seen.map(|s| format!(" (last: {s})")).unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn region(&self, region: &str) -> Result<&keel_routing::RegionConfig, String> {
        self.config
            .regions
            .get(region)
            .ok_or_else(|| format!("no region {region} in the configuration"))
    }

    /// Every service of `app` in `region`, by name, with its health.
    async fn healths(
        &self,
        app: App,
        region: &str,
    ) -> Result<BTreeMap<&'static str, Health>, String> {
        let topology = self.region(region)?;
        let mut out = BTreeMap::new();
        for service in services_of(app).map(|service| service.name) {
            let base = topology
                .services
                .get(service)
                .ok_or_else(|| format!("no {service} in regions.{region}.services"))?;
            out.insert(service, readiness(&self.http, base).await);
        }
        Ok(out)
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
                let healths = self.healths(app, region).await?;
                let not = not_yet(&healths, wanted);
                if not.is_empty() {
                    Ok(Some(format!("every {app} service in {region} {described}")))
                } else {
                    Err(not.join(", "))
                }
            },
        )
        .await
    }

    /// Trade matching's traffic is its ingress: seen refusing (503) or accepting (anything else;
    /// an unauthenticated probe gets 401 once past the traffic gate). Settlement's traffic is the
    /// instructions trade matching's relays send it; no process shows having read the control, so
    /// the step waits two poll intervals, after which every reader has (docs/decisions.md).
    async fn see_traffic(&self, app: App, region: &str, accepting: bool) -> Outcome {
        let what = if accepting { "accepting" } else { "refusing" };
        if app == App::Settlement {
            let wait = Duration::from_millis(2 * self.config.control.poll_interval_ms);
            tokio::time::sleep(wait).await;
            return Ok(format!(
                "settlement's traffic control in {region} read as {} by every reader ({} ms, two poll intervals)",
                if accepting { "On" } else { "Off" },
                wait.as_millis()
            ));
        }
        let ingress = self.region(region)?.ingress_url.clone();
        self.until(&format!("{region}'s ingress {what}"), || async {
            let answer = self
                .http
                .post(format!("{ingress}/v1/trade-blocks"))
                .json(&json!({}))
                .send()
                .await;
            let refusing = match &answer {
                Err(_) => true,
                Ok(response) => response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            };
            let seen = match answer {
                Err(e) => format!("unreachable ({})", e.without_url()),
                Ok(r) => r.status().to_string(),
            };
            if refusing != accepting {
                Ok(Some(format!("{region}'s ingress {what} (answered {seen})")))
            } else {
                Err(format!("answered {seen}"))
            }
        })
        .await
    }

    async fn preflight(&self, app: App, mode: Mode, from: &str, to: &str) -> Outcome {
        let mut problems = Vec::new();
        let mut seen = Vec::new();
        // One runbook at a time: the other application's run would reconcile the same hops.
        let other = App::ALL
            .into_iter()
            .find(|a| *a != app)
            .expect("two applications");
        match self.store.lock_holder(other).await {
            Ok(Some(run)) => problems.push(format!("{other}'s run {run} is running")),
            Ok(None) => {}
            Err(e) => problems.push(e.to_string()),
        }
        let mut regions = vec![to];
        if mode == Mode::Planned {
            regions.push(from);
        }
        for region in &regions {
            match self.healths(app, region).await {
                Ok(healths) => {
                    for (service, health) in healths {
                        if matches!(health, Health::Ready(_)) {
                            continue;
                        }
                        problems.push(format!("{service} in {region}: {health}"));
                    }
                }
                Err(e) => problems.push(e),
            }
            let kafka = self.region(region)?.kafka.clone();
            if let Err(e) = broker_answers(&kafka).await {
                problems.push(format!("{region}'s Kafka ({kafka}): {e}"));
            }
        }
        match self
            .databases
            .connect(app, to, Duration::from_secs(5))
            .await
        {
            Err(e) => problems.push(e),
            Ok(target) => {
                match standby_lag(&target).await {
                    Ok(Some(lag)) => seen.push(format!("{to}'s standby: {lag}")),
                    Ok(None) => {
                        seen.push(format!("{to}'s database is already a primary (resumed)"))
                    }
                    Err(e) => problems.push(format!("{to}'s database: {e}")),
                }
                target.close().await;
            }
        }
        if mode == Mode::Planned {
            match self
                .databases
                .connect(app, from, Duration::from_secs(5))
                .await
            {
                Err(e) => problems.push(e),
                Ok(source) => {
                    let name = self.databases.standby_name(app, to)?;
                    match sqlx::query_as::<_, (String, Option<i64>)>(
                        "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
                         FROM pg_stat_replication WHERE application_name = $1",
                    )
                    .bind(&name)
                    .fetch_optional(&source)
                    .await
                    {
                        Ok(Some((state, lag))) if state == "streaming" => seen.push(format!(
                            "{from}'s primary streams to {name}, {} bytes behind",
                            lag.unwrap_or(0)
                        )),
                        Ok(other) => problems.push(format!(
                            "{from}'s primary does not stream to {name} ({other:?}): re-protect first"
                        )),
                        Err(e) => problems.push(format!("{from}'s database: {e}")),
                    }
                    source.close().await;
                }
            }
        }
        if problems.is_empty() {
            Ok(format!(
                "{} services ready in {}, Kafka answers; {}",
                app,
                regions.join(" and "),
                seen.join("; ")
            ))
        } else {
            Err(problems.join("; "))
        }
    }

    async fn drain(&self, app: App, from: &str) -> Outcome {
        let source = self
            .databases
            .connect(app, from, Duration::from_secs(5))
            .await?;
        let kafka = self.region(from)?.kafka.clone();
        let quiet = std::cell::Cell::new(false);
        let outcome = self
            .until(&format!("{app} drained in {from}"), || {
                let (source, kafka, quiet) = (&source, &kafka, &quiet);
                async move {
                    let (depth, lag) = queues(source, app, from, kafka)
                        .await
                        .map_err(|e| e.to_string())?;
                    let lagging: i64 = lag.values().sum();
                    if depth == 0 && lagging == 0 {
                        // Twice in a row: a message in flight between a relay and a consumer
                        // shows in neither for an instant.
                        if quiet.replace(true) {
                            return Ok(Some(format!(
                                "outboxes empty and consumer lag 0 in {from}"
                            )));
                        }
                    } else {
                        quiet.set(false);
                    }
                    Err(format!("{depth} unpublished, consumer lag {lag:?}"))
                }
            })
            .await;
        source.close().await;
        outcome
    }

    async fn fence_source(&self, app: App, from: &str) -> Outcome {
        self.set(&[
            (control_name(app, Gate::Traffic, from), false),
            (control_name(app, Gate::Processing, from), false),
        ])
        .await?;
        // What of the source still answers must be seen to stop; what does not answer is down or
        // cut off, and fences itself once it cannot read its controls (control.fence_after_ms).
        let healths = self.healths(app, from).await?;
        let reachable: Vec<&str> = healths
            .iter()
            .filter(|(_, h)| !matches!(h, Health::Down(_)))
            .map(|(s, _)| *s)
            .collect();
        if reachable.is_empty() {
            return Ok(format!(
                "{from}'s controls Off; none of its {app} services answers (down or cut off; they fence themselves within {} ms of losing the controls)",
                self.config.control.fence_after_ms
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
        let source = self
            .databases
            .connect(app, from, Duration::from_secs(5))
            .await?;
        let target = self
            .databases
            .connect(app, to, Duration::from_secs(5))
            .await?;
        let outcome = async {
            let lsn = databases::flushed_lsn(&source).await?;
            let took = databases::wait_replayed(&target, &lsn, self.bound).await?;
            // Nothing writes now, so both sides must hold the same acknowledged records.
            let acknowledged = acknowledged(app);
            let (table, id) = (acknowledged.table, acknowledged.id);
            let in_source = count(&source, &acknowledged).await?;
            let in_target = count(&target, &acknowledged).await?;
            let missing = (in_source - in_target).max(0);
            journal.facts.insert(
                "rpo".into(),
                json!({
                    "acknowledged_missing": missing,
                    "how": format!("{table}: {in_source} in {from}'s primary, {in_target} in {to}'s standby once it replayed {lsn} ({id})"),
                }),
            );
            Ok::<_, String>(format!(
                "{to}'s standby replayed up to {lsn} in {:.2} s; {table}: {in_source} in both",
                took.as_secs_f64()
            ))
        }
        .await;
        source.close().await;
        target.close().await;
        outcome
    }

    async fn switch_database(
        &self,
        app: App,
        mode: Mode,
        from: &str,
        to: &str,
        journal: &mut Journal,
    ) -> Outcome {
        let mut done = Vec::new();
        let target = self
            .databases
            .connect(app, to, Duration::from_secs(5))
            .await?;
        if mode == Mode::Unplanned && !journal.facts.contains_key("rpo") {
            journal.facts.insert(
                "rpo".into(),
                self.unplanned_rpo(app, from, to, &target).await,
            );
        }
        // The old primary is stopped first, so nothing can write it once the target is promoted.
        match self
            .databases
            .stop(app, from, Duration::from_secs(90))
            .await
        {
            Ok(()) => done.push(format!("{from}'s primary stopped")),
            Err(e) if mode == Mode::Planned => return Err(e),
            Err(e) => done.push(format!(
                "{from}'s primary could not be stopped ({e}); its services are fenced"
            )),
        }
        if mode == Mode::Planned {
            if let Ok(still) = self
                .databases
                .connect(app, from, Duration::from_secs(1))
                .await
            {
                still.close().await;
                return Err(format!(
                    "{from}'s primary still answers after being stopped"
                ));
            }
        }
        databases::promote(&target).await?;
        target.close().await;
        done.push(format!("{to}'s database promoted and taking writes"));
        Ok(done.join("; "))
    }

    /// Unplanned: how many acknowledged records the target lacks, if the source's database still
    /// answers; otherwise how far behind the standby was, as far as it knows.
    async fn unplanned_rpo(
        &self,
        app: App,
        from: &str,
        to: &str,
        target: &PgPool,
    ) -> serde_json::Value {
        let acknowledged = acknowledged(app);
        let (table, id) = (acknowledged.table, acknowledged.id);
        if let Ok(source) = self
            .databases
            .connect(app, from, Duration::from_secs(2))
            .await
        {
            let missing = missing_ids(&source, target, &acknowledged).await;
            source.close().await;
            if let Ok(missing) = missing {
                return json!({
                    "acknowledged_missing": missing,
                    "how": format!("{table} rows in {from}'s database missing from {to}'s, compared by {id}"),
                });
            }
        }
        let last: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
        )
        .fetch_one(target)
        .await
        .ok()
        .flatten();
        json!({
            "acknowledged_missing": null,
            "how": format!(
                "{from}'s database does not answer, so the loss cannot be counted; {to}'s standby's last replayed commit was {} before its promotion",
                last.map_or("at an unknown time".to_owned(), |s| format!("{s:.1} s"))
            ),
        })
    }

    /// Where each application is active, and its database there when it answers: the other
    /// application's may not (its region lost too, before its own failover), and is named instead.
    async fn active(&self, app: App) -> Result<Active, String> {
        let regions = active_regions(self.config, &App::ALL).await?;
        let others: Vec<App> = App::ALL.into_iter().filter(|a| *a != app).collect();
        let (pools, unreachable) = active_pools(self.config, &regions, &others).await?;
        Ok(Active {
            regions,
            pools,
            unreachable,
        })
    }

    async fn reconcile(&self, app: App, journal: &mut Journal) -> Outcome {
        let Active {
            regions,
            pools,
            unreachable: skipped,
        } = self.active(app).await?;
        // A hop between the applications waits for the other one's failover when its database
        // does not answer; that failover reconciles it.
        let hops: Vec<_> = hops_of(app)
            .filter(|hop| {
                pools.contains_key(&hop.upstream.app) && pools.contains_key(&hop.downstream.app)
            })
            .collect();
        let repairing = Repairing::new(self.config, self.store, journal.run_id.clone(), &regions);
        let window = Window {
            seconds: self.config.runbook.reconcile_window_seconds,
            settle_seconds: 0.0,
        };
        window.within(&self.config.retention)?;
        let result = reconcile_hops(&pools, &hops, window, Some(&repairing)).await;
        for pool in pools.values() {
            pool.close().await;
        }
        let result = result?;
        let summary = format!(
            "{} gap(s) found, {} repaired, {} left over {} hops{}",
            result.found,
            result.repaired,
            result.left,
            result.hops.len(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; hops between the applications skipped: {}",
                    skipped.join("; ")
                )
            }
        );
        let missing_left: usize = result.hops.iter().map(|h| h.left.missing.len()).sum();
        journal.facts.insert(
            "reconcile".into(),
            serde_json::to_value(&result).expect("json"),
        );
        if missing_left > 0 {
            return Err(format!(
                "{summary}: {missing_left} still missing downstream"
            ));
        }
        Ok(summary)
    }

    async fn verify(&self, app: App, journal: &mut Journal) -> Outcome {
        let mut problems = Vec::new();
        let Active {
            regions,
            pools,
            unreachable,
        } = self.active(app).await?;
        let mut seen = unreachable;
        if let Some(tm) = pools.get(&App::TradeMatching) {
            let duplicates: Result<i64, _> = sqlx::query_scalar(
                "SELECT count(*) - count(DISTINCT (trade_id, body->>'history_seq', recipient))
                 FROM notification.notifications",
            )
            .fetch_one(tm)
            .await;
            match duplicates {
                Ok(0) => seen.push("no duplicate notification".to_owned()),
                Ok(n) => problems.push(format!("{n} duplicate notification(s)")),
                Err(e) => problems.push(format!("notifications: {e}")),
            }
        }
        let settlement_reachable = pools.contains_key(&App::Settlement);
        for pool in pools.values() {
            pool.close().await;
        }
        if settlement_reachable {
            let settlement = self
                .config
                .database_url(App::Settlement, &regions[&App::Settlement])?;
            match crate::ledger::check(settlement).await {
                Ok(summary) => seen.push(summary),
                Err(e) => problems.push(e),
            }
        }
        // Stage counts: every hop's upstream and downstream agree (the Reconcile step's result).
        if let Some(reconciled) = journal.facts.get("reconcile") {
            let left = reconciled["left"].as_u64().unwrap_or(0);
            if left == 0 {
                seen.push("every hop's two sides agree".to_owned());
            } else {
                seen.push(format!("{left} gap(s) need investigation (see the report)"));
            }
        }
        if problems.is_empty() {
            Ok(seen.join("; "))
        } else {
            Err(problems.join("; "))
        }
    }

    async fn reprotect(&self, app: App, from: &str, to: &str) -> Outcome {
        reprotect(&self.databases, app, from, to, self.bound).await
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

/// Rebuilds `app`'s database in `region` as a standby of the primary in `primary_region`, and
/// waits until it streams.
pub async fn reprotect(
    databases: &Databases<'_>,
    app: App,
    region: &str,
    primary_region: &str,
    bound: Duration,
) -> Outcome {
    let started = Instant::now();
    let name = databases
        .rebuild_standby(app, region, primary_region, Duration::from_secs(300))
        .await?;
    let primary = databases
        .connect(app, primary_region, Duration::from_secs(5))
        .await?;
    let streaming = databases::wait_streaming(&primary, &name, bound).await;
    primary.close().await;
    streaming?;
    Ok(format!(
        "{region}'s database rebuilt as standby {name} of {primary_region}, streaming, in {:.1} s",
        started.elapsed().as_secs_f64()
    ))
}

/// What an application acknowledges, and the fixed queries that count it: trade matching the
/// submissions ingress accepted, settlement the instructions it took from trade matching.
struct Acknowledged {
    table: &'static str,
    id: &'static str,
    count: &'static str,
    ids: &'static str,
    present: &'static str,
}

fn acknowledged(app: App) -> Acknowledged {
    match app {
        App::TradeMatching => Acknowledged {
            table: "ingress.submissions",
            id: "leg_id",
            count: "SELECT count(*) FROM ingress.submissions",
            ids: "SELECT leg_id FROM ingress.submissions",
            present: "SELECT count(*) FROM ingress.submissions WHERE leg_id = ANY($1)",
        },
        App::Settlement => Acknowledged {
            table: "settlement.inbox",
            id: "message_id",
            count: "SELECT count(*) FROM settlement.inbox",
            ids: "SELECT message_id FROM settlement.inbox",
            present: "SELECT count(*) FROM settlement.inbox WHERE message_id = ANY($1)",
        },
    }
}

async fn count(pool: &PgPool, acknowledged: &Acknowledged) -> Result<i64, String> {
    sqlx::query_scalar(acknowledged.count)
        .fetch_one(pool)
        .await
        .map_err(|e| format!("{}: {e}", acknowledged.table))
}

/// How many of the acknowledged ids in `source` `target` lacks.
async fn missing_ids(
    source: &PgPool,
    target: &PgPool,
    acknowledged: &Acknowledged,
) -> Result<i64, String> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(acknowledged.ids)
        .fetch_all(source)
        .await
        .map_err(|e| e.to_string())?;
    let present: i64 = sqlx::query_scalar(acknowledged.present)
        .bind(&ids)
        .fetch_one(target)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ids.len() as i64 - present)
}

/// A standby's lag as it knows it, or None for a primary.
async fn standby_lag(pool: &PgPool) -> Result<Option<String>, String> {
    if !databases::in_recovery(pool).await? {
        return Ok(None);
    }
    let (bytes, seconds): (Option<i64>, Option<f64>) = sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
                extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
    )
    .fetch_one(pool)
    .await
    .map_err(|e| e.to_string())?;
    Ok(Some(format!(
        "{} bytes received and not replayed, last commit replayed {} ago",
        bytes.unwrap_or(0),
        seconds.map_or("never".to_owned(), |s| format!("{s:.1} s"))
    )))
}

async fn broker_answers(kafka: &str) -> Result<(), String> {
    let kafka = kafka.to_owned();
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .set("broker.address.family", "v4")
            .create()
            .map_err(|e| e.to_string())?;
        consumer
            .fetch_metadata(None, Duration::from_secs(3))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_waits_for_every_service_to_be_as_wanted() {
        let active = Health::Ready("active".into());
        let standby = Health::Ready("standby (x is Off)".into());
        let down = Health::Down("connection refused".into());
        let failing = |check: &str, why: &str| BTreeMap::from([(check.to_owned(), why.to_owned())]);
        let fenced = Health::Unready(failing("routing-controls", "fenced"));
        let starting = Health::Unready(failing("session", "starting"));
        let healths = BTreeMap::from([("ingress", active.clone()), ("matching", standby.clone())]);
        assert_eq!(not_yet(&healths, Health::is_stopped), ["ingress: active"]);
        assert_eq!(
            not_yet(&healths, Health::is_active),
            ["matching: standby (x is Off)"]
        );
        for stopped in [&standby, &down, &fenced] {
            assert!(stopped.is_stopped(), "{stopped}");
            assert!(!stopped.is_active(), "{stopped}");
        }
        assert!(!starting.is_stopped() && !starting.is_active());
        assert!(not_yet(&BTreeMap::from([("a", active)]), Health::is_active).is_empty());
    }
}
