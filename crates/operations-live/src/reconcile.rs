//! Reconciliation and replay (DESIGN section 7): compares every hop's two sides in each
//! application's active database by message id and content digest, and, when asked to repair,
//! replays what is missing downstream (the upstream's stored message, published straight into the
//! Kafka of the region where the receiving application processes), restores what only the downstream has across applications, and waits for each
//! hop's repairs to arrive before it checks the next hop. Every run and every repaired id is
//! audited in the runbook store before the repair is made.
//!
//! `keelctl reconcile` runs it on its own (`--repair`, `--watch` for the continuous mode and its
//! metrics); the rotation runbook runs it as its Reconcile step.

// Windows and watermarks are clock readings in seconds, not money: floats are the right type.
#![allow(clippy::float_arithmetic)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use keel_reconcile::{diff, hops, hops_of, Hop, HopDiff, Record, Repair};
use keel_routing::App;
use keel_safestore::hop::{
    consumed, consumed_ids, consumed_payloads, produced, produced_with_ids, restore,
    stored_messages, unpublished,
};
use keel_safestore::Outgoing;
use keel_streaming::KafkaOptions;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use keel_operations::ports::StoreError;
use keel_operations::{active_regions, ActiveError};
use keel_rotation::{GapCounts, HopTally, Reconciled};

use crate::config::{Config, ConfigError};
use crate::controls::ArcControls;
use crate::store::{AuditedRepair, DynamoStore};

/// Why a reconciliation could not run, or could not repair.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Active(#[from] ActiveError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{app}'s database: {source}")]
    Database { app: App, source: sqlx::Error },
    #[error("{hop}: {source}")]
    Hop { hop: String, source: sqlx::Error },
    #[error("the runbook store: {0}")]
    Store(#[from] StoreError),
    #[error("{hop}: {app} processes in no region: nowhere to replay")]
    NowhereToReplay { hop: String, app: App },
    #[error("{hop}: replaying into {brokers}: {detail}")]
    Replay {
        hop: String,
        brokers: String,
        detail: String,
    },
    #[error("{hop}: {missing} of {replayed} replayed message(s) not seen downstream after {bound:?} (is {app} processing?)")]
    NotSeenDownstream {
        hop: String,
        missing: usize,
        replayed: usize,
        bound: Duration,
        app: App,
    },
    #[error("a reconciliation window of {seconds:.0} s reaches past the stores' retention ({hours} h, [retention] hours): inbox and outbox rows older than that are retired")]
    PastRetention { seconds: f64, hours: u64 },
    #[error("cannot listen on {listen}: {source}")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
}

/// How far back to look, and how much of the newest to leave out as still in flight.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    pub seconds: f64,
    pub settle_seconds: f64,
}

impl Window {
    /// A window must end inside the stores' retention: rows older than that are retired, and a gap
    /// found there would be a row aged out, not a message lost.
    pub fn within(&self, retention: &keel_safestore::Retention) -> Result<(), ReconcileError> {
        let kept = retention.messages().as_secs_f64();
        if self.seconds >= kept {
            return Err(ReconcileError::PastRetention {
                seconds: self.seconds,
                hours: retention.hours,
            });
        }
        Ok(())
    }
}

/// Repairing: where the audit goes, under which run, and how long a hop's repairs may take to
/// arrive.
pub struct Repairing<'a> {
    /// Where each application's topics are replayed: the Kafka of the region where it processes.
    pub kafka: BTreeMap<App, KafkaOptions>,
    pub store: &'a DynamoStore,
    pub run_id: String,
    pub propagation_bound: Duration,
    pub rounds: u32,
}

/// One hop: what was found, what was done, what is left.
#[derive(Debug, Serialize)]
pub struct HopReport {
    pub hop: String,
    #[serde(flatten)]
    pub definition: Hop,
    /// Published upstream in the window.
    pub produced: usize,
    /// Waiting in the upstream's outbox for the relay (not gaps).
    pub unpublished: i64,
    /// The gaps as first found.
    pub found: HopDiff,
    pub replayed: usize,
    pub restored: usize,
    /// The gaps left after repairing (the same as `found` when only reporting).
    pub left: HopDiff,
    /// What each gap left needs.
    pub repairs: Vec<Repair>,
}

impl HopReport {
    fn found_gaps(&self) -> usize {
        self.found.gaps()
    }
}

/// A whole run's result.
#[derive(Debug, Serialize)]
pub struct Reconciliation {
    pub run_id: Option<String>,
    pub window: Window,
    pub found: usize,
    pub repaired: usize,
    pub left: usize,
    pub hops: Vec<HopReport>,
}

impl<'a> Repairing<'a> {
    /// Repairs audited under `run_id`, replayed into each application's Kafka in the region where
    /// it processes (`regions`, from the routing controls).
    pub fn new(
        config: &Config,
        store: &'a DynamoStore,
        run_id: String,
        regions: &BTreeMap<App, String>,
    ) -> Self {
        let kafka = regions
            .iter()
            .map(|(app, region)| {
                let mut kafka = config.kafka.clone();
                kafka.brokers = config.regions[region].kafka.clone();
                (*app, kafka)
            })
            .collect();
        Repairing {
            kafka,
            store,
            run_id,
            propagation_bound: Duration::from_secs(config.runbook.step_timeout_seconds),
            rounds: config.runbook.reconcile_rounds,
        }
    }
}

/// The hops to check: `app`'s own and the two between the applications, or all.
fn chosen_hops(app: Option<App>) -> Vec<&'static Hop> {
    match app {
        Some(app) => hops_of(app).collect(),
        None => hops().iter().collect(),
    }
}

/// Connects to each application's database in the region where it is active (`regions`). One in
/// `may_be_lost` that does not answer (its region lost too) is named in the second list instead,
/// after a short wait; any other that does not answer is an error.
pub async fn active_pools(
    config: &Config,
    regions: &BTreeMap<App, String>,
    may_be_lost: &[App],
) -> Result<(BTreeMap<App, PgPool>, Vec<String>), ReconcileError> {
    let mut pools = BTreeMap::new();
    let mut unreachable = Vec::new();
    for (app, region) in regions {
        let url = config.database_url(*app, region)?;
        let lost = may_be_lost.contains(app);
        let connected = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(if lost { 1 } else { 5 }))
            .connect(url)
            .await;
        match connected {
            Ok(pool) => {
                pools.insert(*app, pool);
            }
            Err(e) if lost => unreachable.push(format!("{app}'s database does not answer ({e})")),
            Err(source) => return Err(ReconcileError::Database { app: *app, source }),
        }
    }
    Ok((pools, unreachable))
}

/// Reconciles `app`'s hops (or all) in each application's active database, once; repairing when
/// `repairing` says where to.
pub async fn run(
    config: &Config,
    app: Option<App>,
    window: Window,
    repairing: Option<&Repairing<'_>>,
) -> Result<Reconciliation, ReconcileError> {
    let chosen = chosen_hops(app);
    let apps: BTreeSet<App> = chosen
        .iter()
        .flat_map(|hop| [hop.upstream.app, hop.downstream.app])
        .collect();
    let regions = active_regions(
        &ArcControls::new(config),
        &config.region_names(),
        &apps.into_iter().collect::<Vec<_>>(),
    )
    .await?;
    let (pools, _) = active_pools(config, &regions, &[]).await?;
    let result = reconcile_hops(&pools, &chosen, window, repairing).await;
    for pool in pools.values() {
        pool.close().await;
    }
    result
}

/// Reconciles `chosen` in flow order; repairing, round after round until no repairable gap is left
/// or the rounds run out. Each hop's repairs are seen downstream before the next hop is checked, so
/// a replay's own output is compared too.
pub async fn reconcile_hops(
    pools: &BTreeMap<App, PgPool>,
    chosen: &[&Hop],
    window: Window,
    repairing: Option<&Repairing<'_>>,
) -> Result<Reconciliation, ReconcileError> {
    let mut reports: Vec<HopReport> = Vec::new();
    let rounds = repairing.map_or(1, |r| r.rounds.max(1));
    for _ in 0..rounds {
        let mut repaired_this_round = 0;
        for (index, hop) in chosen.iter().enumerate() {
            let upstream = &pools[&hop.upstream.app];
            let downstream = &pools[&hop.downstream.app];
            let failed = |source| ReconcileError::Hop {
                hop: hop.name(),
                source,
            };
            let (produced_count, pending, found) = compare(upstream, downstream, hop, window)
                .await
                .map_err(failed)?;
            let (mut replayed, mut restored) = (0, 0);
            if let Some(repairing) = repairing {
                if found.gaps() > 0 {
                    (replayed, restored) =
                        repair(upstream, downstream, hop, &found, repairing).await?;
                    repaired_this_round += replayed + restored;
                }
            }
            let left = if replayed + restored > 0 {
                compare(upstream, downstream, hop, window)
                    .await
                    .map_err(failed)?
                    .2
            } else {
                found.clone()
            };
            let report = HopReport {
                hop: hop.name(),
                definition: **hop,
                produced: produced_count,
                unpublished: pending,
                repairs: keel_reconcile::repairs(hop, &left),
                found,
                replayed,
                restored,
                left,
            };
            match reports.get_mut(index) {
                // A later round: add what it found that earlier rounds had not, and what it
                // repaired.
                Some(earlier) => {
                    earlier.found.absorb(report.found);
                    earlier.replayed += report.replayed;
                    earlier.restored += report.restored;
                    earlier.produced = report.produced;
                    earlier.unpublished = report.unpublished;
                    earlier.left = report.left;
                    earlier.repairs = report.repairs;
                }
                None => reports.push(report),
            }
        }
        if repaired_this_round == 0 {
            break;
        }
    }
    let result = Reconciliation {
        run_id: repairing.map(|r| r.run_id.clone()),
        window,
        found: reports.iter().map(HopReport::found_gaps).sum(),
        repaired: reports.iter().map(|r| r.replayed + r.restored).sum(),
        left: reports.iter().map(|r| r.left.gaps()).sum(),
        hops: reports,
    };
    if let Some(repairing) = repairing {
        repairing
            .store
            .audit_run(
                &repairing.run_id,
                &serde_json::to_value(&result).expect("json"),
            )
            .await?;
    }
    Ok(result)
}

/// One hop's two sides compared: (published in the window, unpublished, the diff).
async fn compare(
    upstream_pool: &PgPool,
    downstream_pool: &PgPool,
    hop: &Hop,
    window: Window,
) -> Result<(usize, i64, HopDiff), sqlx::Error> {
    let (up, down) = (hop.upstream.schema, hop.downstream.schema);
    let mut upstream = produced(
        upstream_pool,
        up,
        hop.topic,
        window.seconds,
        window.settle_seconds,
    )
    .await?;
    let produced_in_window = upstream.len();
    let pending = unpublished(upstream_pool, up, hop.topic).await?;
    let ids: Vec<Uuid> = upstream.iter().map(|(id, _)| *id).collect();
    let downstream = consumed(downstream_pool, down, hop.topic, window.seconds, &ids).await?;
    // Consumed in the window but produced before it (or not yet published again, when replayed):
    // look those up upstream before calling them orphans.
    let known: HashSet<Uuid> = ids.into_iter().collect();
    let unknown: Vec<Uuid> = downstream
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !known.contains(id))
        .collect();
    if !unknown.is_empty() {
        upstream.extend(produced_with_ids(upstream_pool, up, hop.topic, &unknown).await?);
    }
    let upstream_digests: HashMap<Uuid, String> = upstream.iter().cloned().collect();
    let upstream: Vec<Record> = upstream
        .into_iter()
        .map(|(id, digest)| Record { id, digest })
        .collect();
    // Rows consumed before inboxes kept payloads have no digest: compared by id only.
    let downstream: Vec<Record> = downstream
        .into_iter()
        .map(|(id, digest)| Record {
            id,
            digest: digest
                .or_else(|| upstream_digests.get(&id).cloned())
                .unwrap_or_default(),
        })
        .collect();
    Ok((produced_in_window, pending, diff(&upstream, &downstream)))
}

/// Carries out the replays and restores `found` needs, audited first, and waits until the replayed
/// messages are seen downstream. Returns (replayed, restored).
async fn repair(
    upstream: &PgPool,
    downstream: &PgPool,
    hop: &Hop,
    found: &HopDiff,
    repairing: &Repairing<'_>,
) -> Result<(usize, usize), ReconcileError> {
    let failed = |source| ReconcileError::Hop {
        hop: hop.name(),
        source,
    };
    let plan = keel_reconcile::repairs(hop, found);
    let replays: Vec<Uuid> = plan
        .iter()
        .filter(|r| matches!(r, Repair::Replay { .. }))
        .map(Repair::id)
        .collect();
    let restores: Vec<Uuid> = plan
        .iter()
        .filter(|r| matches!(r, Repair::Restore { .. }))
        .map(Repair::id)
        .collect();
    let audited: Vec<AuditedRepair> = replays
        .iter()
        .map(|id| (id, "replay"))
        .chain(restores.iter().map(|id| (id, "restore")))
        .map(|(id, action)| AuditedRepair {
            hop: hop.name(),
            message_id: id.to_string(),
            action,
        })
        .collect();
    if audited.is_empty() {
        return Ok((0, 0));
    }
    repairing
        .store
        .audit_repairs(&repairing.run_id, &audited)
        .await?;

    let mut restored = 0;
    if !restores.is_empty() {
        let kept = consumed_payloads(downstream, hop.downstream.schema, hop.topic, &restores)
            .await
            .map_err(failed)?;
        let messages: Vec<Outgoing> = kept
            .into_iter()
            .filter_map(|(message_id, payload)| {
                // The key is read from the JSON; the text itself is restored byte for byte, so the
                // restored row's digest is the one the consumer holds.
                let json: serde_json::Value = serde_json::from_str(&payload).ok()?;
                Some(Outgoing {
                    message_id,
                    topic: hop.topic.to_owned(),
                    key: keel_messages::key_of(hop.topic, &json)?,
                    payload,
                    traceparent: None,
                })
            })
            .collect();
        restored = restore(upstream, hop.upstream.schema, &messages)
            .await
            .map_err(failed)? as usize;
    }
    if replays.is_empty() {
        return Ok((0, restored));
    }
    let messages = stored_messages(upstream, hop.upstream.schema, hop.topic, &replays)
        .await
        .map_err(failed)?;
    let kafka = repairing.kafka.get(&hop.downstream.app).ok_or_else(|| {
        ReconcileError::NowhereToReplay {
            hop: hop.name(),
            app: hop.downstream.app,
        }
    })?;
    let queued = keel_streaming::republish(kafka, &messages)
        .await
        .map_err(|e| ReconcileError::Replay {
            hop: hop.name(),
            brokers: kafka.brokers.clone(),
            detail: e.to_string(),
        })?;
    // The replay has propagated when the downstream's inbox holds every replayed id.
    let deadline = Instant::now() + repairing.propagation_bound;
    loop {
        let seen = consumed_ids(downstream, hop.downstream.schema, hop.topic, &replays)
            .await
            .map_err(failed)?;
        if seen.len() == replays.len() {
            return Ok((queued, restored));
        }
        if Instant::now() >= deadline {
            return Err(ReconcileError::NotSeenDownstream {
                hop: hop.name(),
                missing: replays.len() - seen.len(),
                replayed: replays.len(),
                bound: repairing.propagation_bound,
                app: hop.downstream.app,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl fmt::Display for Reconciliation {
    /// The table `keelctl reconcile` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<50} {:>8} {:>6} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>5}",
            "hop",
            "produced",
            "unpub",
            "matched",
            "missing",
            "differing",
            "orphaned",
            "replayed",
            "restored",
            "left"
        )?;
        for report in &self.hops {
            writeln!(
                f,
                "{:<50} {:>8} {:>6} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>5}",
                report.hop,
                report.produced,
                report.unpublished,
                report.left.matched,
                report.found.missing.len(),
                report.found.differing.len(),
                report.found.orphaned.len(),
                report.replayed,
                report.restored,
                report.left.gaps()
            )?;
            for repair in &report.repairs {
                match repair {
                    Repair::Replay { id } => writeln!(f, "  {id}: missing downstream; replay it")?,
                    Repair::Restore { id } => {
                        writeln!(f, "  {id}: only downstream has it; restore it upstream")?
                    }
                    Repair::Investigate { id, why } => writeln!(f, "  {id}: {why}; investigate")?,
                }
            }
        }
        write!(
            f,
            "{} gap(s) found, {} repaired, {} left, over the last {:.0} s (the newest {:.0} s left out as in flight){}",
            self.found,
            self.repaired,
            self.left,
            self.window.seconds,
            self.window.settle_seconds,
            self.run_id
                .as_ref()
                .map(|id| format!("; audited as run {id}"))
                .unwrap_or_default()
        )
    }
}

impl Reconciliation {
    /// The run in counts, as the runbook's journal keeps it (the ids are in the audit trail).
    pub fn tally(&self, skipped: Vec<String>) -> Reconciled {
        let counts = |diff: &HopDiff| GapCounts {
            missing: diff.missing.len(),
            differing: diff.differing.len(),
            orphaned: diff.orphaned.len(),
        };
        Reconciled {
            run_id: self.run_id.clone(),
            found: self.found,
            repaired: self.repaired,
            left: self.left,
            hops: self
                .hops
                .iter()
                .map(|hop| HopTally {
                    hop: hop.hop.clone(),
                    found: counts(&hop.found),
                    replayed: hop.replayed,
                    restored: hop.restored,
                    left: counts(&hop.left),
                })
                .collect(),
            skipped,
        }
    }
}

/// `keelctl reconcile --watch`: reconciles continuously (reporting only) every `interval` until a
/// signal, or `rounds` times, and exports what it finds on `/metrics` at `listen`:
/// `keel_reconcile_gaps{hop,kind}`, `keel_reconcile_unpublished{hop}`,
/// `keel_reconcile_runs_total{outcome}` and `keel_reconcile_last_run_seconds`.
///
/// The first round covers the window; after that each round reads only what is new on each hop
/// (what the upstream published since, what the downstream consumed since) and the gaps still
/// open, so it costs in proportion to the traffic, not to the window, and can run beside the
/// pipeline at full rate.
/// Each primary's standbys and how far behind each is, as gauges: the replication lag the alert
/// rules hold against the RPO budget, and a primary left with no standby.
async fn export_replication(databases: &dyn keel_operations::ports::Databases, regions: &[String]) {
    use keel_operations::ports::Replication;
    for app in App::ALL {
        for region in regions {
            let Ok(Replication::Primary { standbys }) = databases.replication(app, region).await
            else {
                continue;
            };
            metrics::gauge!("keel_replication_standbys", "app" => app.name(), "region" => region.clone())
                .set(standbys.len() as f64);
            for standby in standbys {
                let labels = [
                    ("app", app.name().to_owned()),
                    ("primary", region.clone()),
                    ("standby", standby.name.clone()),
                ];
                // Where the engine tells neither (Aurora's API), the lag is not known, not 0: its
                // own metric (AuroraGlobalDBRPOLag) stands in.
                if standby.behind_bytes.is_none() && standby.replay_lag_seconds.is_none() {
                    continue;
                }
                if let Some(bytes) = standby.behind_bytes {
                    metrics::gauge!("keel_replication_lag_bytes", &labels).set(bytes as f64);
                }
                // Postgres gives no replay lag while nothing is being replayed: caught up.
                metrics::gauge!("keel_replication_lag_seconds", &labels)
                    .set(standby.replay_lag_seconds.unwrap_or(0.0));
            }
        }
    }
}

pub async fn watch(
    config: &Config,
    app: Option<App>,
    window: Window,
    interval: Duration,
    rounds: Option<u64>,
    listen: &str,
) -> Result<(), ReconcileError> {
    let metrics = keel_platform::ops::install_metrics("reconciler", "global");
    let readiness = keel_platform::ops::Readiness::default();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ReconcileError::Listen {
            listen: listen.to_owned(),
            source,
        })?;
    let shutdown = keel_platform::shutdown::on_signal();
    let server = tokio::spawn(keel_platform::ops::serve(
        listener,
        keel_platform::ops::router(readiness, metrics),
        shutdown.clone(),
    ));
    eprintln!("reconciling every {interval:?}; metrics on http://{listen}/metrics");
    let chosen = chosen_hops(app);
    let mut watched: Vec<WatchedHop> = chosen.iter().map(|hop| WatchedHop::new(hop)).collect();
    let mut connected: Option<Connected> = None;
    let databases = crate::databases(config);
    let mut done = 0u64;
    loop {
        let started = Instant::now();
        match watch_round(config, &chosen, &mut watched, &mut connected, window).await {
            Ok(()) => {
                metrics::counter!("keel_reconcile_runs_total", "outcome" => "ok").increment(1);
                let left: usize = watched.iter().map(|w| w.gaps.gaps()).sum();
                eprintln!(
                    "{left} gap(s) over {} hops ({:.3} s)",
                    watched.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            Err(error) => {
                metrics::counter!("keel_reconcile_runs_total", "outcome" => "failed").increment(1);
                eprintln!("reconciliation failed: {error}");
                if let Some(connected) = connected.take() {
                    connected.close().await;
                }
            }
        }
        metrics::gauge!("keel_reconcile_last_run_seconds").set(started.elapsed().as_secs_f64());
        export_replication(databases.as_ref(), &config.region_names()).await;
        done += 1;
        if rounds.is_some_and(|rounds| done >= rounds) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

/// How long ids matched on both sides are remembered, and how far each downstream read reaches
/// back before the last one: longer than any transaction takes to commit (an inbox row carries its
/// transaction's start time).
const OVERLAP_SECONDS: f64 = 60.0;

/// Most upstream records one round takes in, per hop (the rest come next round).
const ROUND_LIMIT: i64 = 200_000;

/// One hop under continuous reconciliation.
struct WatchedHop {
    hop: &'static Hop,
    tracker: keel_reconcile::HopTracker,
    /// The outbox row id of the last upstream record taken in (None before the first round).
    cursor: Option<i64>,
    /// Downstream consumption read up to here (seconds since the epoch).
    consumed_until: Option<f64>,
    gaps: HopDiff,
}

impl WatchedHop {
    fn new(hop: &'static Hop) -> Self {
        Self {
            hop,
            tracker: keel_reconcile::HopTracker::default(),
            cursor: None,
            consumed_until: None,
            gaps: HopDiff::default(),
        }
    }

    async fn round(
        &mut self,
        upstream: &PgPool,
        downstream: &PgPool,
        window: Window,
    ) -> Result<(), sqlx::Error> {
        use keel_safestore::hop::incremental::{
            consumed_since, consumed_with_ids, now, published_after, window_start,
        };
        let (up, down, topic) = (
            self.hop.upstream.schema,
            self.hop.downstream.schema,
            self.hop.topic,
        );
        let now = now(upstream).await?;
        let cursor = match self.cursor {
            Some(cursor) => cursor,
            None => window_start(upstream, up, topic, window.seconds).await?,
        };
        let published = published_after(upstream, up, topic, cursor, ROUND_LIMIT).await?;
        self.cursor = Some(published.last().map_or(cursor, |p| p.id));
        self.tracker.produced(published.into_iter().map(|p| {
            (
                Record {
                    id: p.message_id,
                    digest: p.digest,
                },
                p.produced_at,
            )
        }));
        let awaited = self.tracker.awaited();
        if !awaited.is_empty() {
            let found = consumed_with_ids(downstream, down, topic, &awaited).await?;
            self.tracker.found_downstream(&found, now);
        }

        let since = self
            .consumed_until
            .map_or(now - window.seconds, |until| until - OVERLAP_SECONDS);
        let consumed = consumed_since(downstream, down, topic, since).await?;
        self.consumed_until = Some(
            consumed
                .iter()
                .map(|(_, at)| *at)
                .fold(self.consumed_until.unwrap_or(since), f64::max),
        );
        let ids: Vec<Uuid> = consumed.iter().map(|(id, _)| *id).collect();
        let unaccounted = self.tracker.unaccounted(&ids);
        if !unaccounted.is_empty() {
            let held: Vec<Uuid> = produced_with_ids(upstream, up, topic, &unaccounted)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            self.tracker.found_upstream(&unaccounted, &held, now);
        }

        let (differing, orphaned) = self.tracker.open();
        if !differing.is_empty() || !orphaned.is_empty() {
            let open: Vec<Uuid> = differing.iter().chain(&orphaned).copied().collect();
            let upstream_now: Vec<Record> = produced_with_ids(upstream, up, topic, &open)
                .await?
                .into_iter()
                .map(|(id, digest)| Record { id, digest })
                .collect();
            let downstream_now = consumed_with_ids(downstream, down, topic, &differing).await?;
            self.tracker.recheck(&upstream_now, &downstream_now, now);
        }
        self.gaps = self.tracker.gaps(now, window.settle_seconds);
        self.tracker.forget(now, 2.0 * OVERLAP_SECONDS);

        let name = self.hop.name();
        for (kind, count) in [
            ("missing", self.gaps.missing.len()),
            ("differing", self.gaps.differing.len()),
            ("orphaned", self.gaps.orphaned.len()),
        ] {
            metrics::gauge!("keel_reconcile_gaps", "hop" => name.clone(), "kind" => kind)
                .set(count as f64);
        }
        let pending = unpublished(upstream, up, topic).await?;
        metrics::gauge!("keel_reconcile_unpublished", "hop" => name.clone()).set(pending as f64);
        metrics::gauge!("keel_reconcile_tracked_ids", "hop" => name)
            .set(self.tracker.held() as f64);
        Ok(())
    }
}

/// Each application's active database, as connected for the regions where they were active.
struct Connected {
    regions: BTreeMap<App, String>,
    pools: BTreeMap<App, PgPool>,
}

impl Connected {
    async fn close(self) {
        for pool in self.pools.values() {
            pool.close().await;
        }
    }
}

/// One round over every watched hop, connecting (again) to each application's active database when
/// the active regions changed.
async fn watch_round(
    config: &Config,
    chosen: &[&'static Hop],
    watched: &mut [WatchedHop],
    connected: &mut Option<Connected>,
    window: Window,
) -> Result<(), ReconcileError> {
    let apps: Vec<App> = chosen
        .iter()
        .flat_map(|hop| [hop.upstream.app, hop.downstream.app])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let regions = active_regions(&ArcControls::new(config), &config.region_names(), &apps).await?;
    if connected
        .as_ref()
        .is_none_or(|known| known.regions != regions)
    {
        if let Some(stale) = connected.take() {
            stale.close().await;
        }
        let (pools, _) = active_pools(config, &regions, &[]).await?;
        *connected = Some(Connected { regions, pools });
    }
    let pools = &connected.as_ref().expect("connected above").pools;
    for watched in watched.iter_mut() {
        let hop = watched.hop;
        watched
            .round(
                &pools[&hop.upstream.app],
                &pools[&hop.downstream.app],
                window,
            )
            .await
            .map_err(|source| ReconcileError::Hop {
                hop: hop.name(),
                source,
            })?;
    }
    Ok(())
}
