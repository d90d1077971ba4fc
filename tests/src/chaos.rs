//! One chaos run against a real two-region stack (DESIGN section 10): generator load, a seeded
//! random schedule of faults (keel-chaos) injected into the real processes, then heal, settle as a
//! runbook would (resume interrupted rotations, reconcile and replay), and check the invariants over
//! the stores and what the generator was told.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use keel_chaos::checker::{check, Anomaly, Entry, History};
use keel_chaos::{Fault, Path, Schedule, Scheduled, Space, Target};
use keel_generator::{DriverOptions, Report};
use keel_routing::App;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};

use crate::fixtures::participants;
use crate::load::Load;
use crate::network::{Condition, Imposition, LinkId, Peer};
use crate::options::{service_names, StackOptions};
use crate::queries::connect;
use crate::stack::Stack;

/// How one run is shaped.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Faults land within this window after the load starts.
    pub window: Duration,
    pub faults: usize,
    /// Legs per second the generator offers.
    pub rate: f64,
    /// A lone leg waits this long for its counterpart, so that every trade ends within the run.
    pub match_window_seconds: i64,
    /// The most a run waits, once healed, for every trade to end.
    pub settle_bound: Duration,
    pub release: bool,
    /// Ingress acknowledges only once the other region's standby has the submission, so that a
    /// failover loses no acknowledged leg and the checker can hold every run to RPO 0.
    pub synchronous: bool,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            faults: 6,
            rate: 30.0,
            match_window_seconds: 15,
            settle_bound: Duration::from_secs(180),
            release: false,
            synchronous: true,
        }
    }
}

/// What a fault did, as it was applied.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub at_ms: u64,
    pub fault: Fault,
    /// What happened, or why it could not land (the target was already down, say).
    pub outcome: String,
}

/// One run's result.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub seed: u64,
    pub schedule: Schedule,
    pub applied: Vec<Applied>,
    pub legs_acknowledged: usize,
    pub trades: usize,
    /// Processes that exited by themselves during the run (found dead at healing).
    pub exited_by_themselves: Vec<String>,
    pub anomalies: Vec<Anomaly>,
    pub took_ms: u128,
}

impl RunOutcome {
    /// One line: the seed and what the run did and found.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} faults, {} legs acknowledged, {} trades, {} anomalies, {} s",
            self.seed,
            self.applied.len(),
            self.legs_acknowledged,
            self.trades,
            self.anomalies.len(),
            self.took_ms / 1000
        )
    }

    pub fn ok(&self) -> bool {
        self.anomalies.is_empty() && self.exited_by_themselves.is_empty()
    }

    /// The seed, the schedule and the offending ids, for a person replaying the run.
    pub fn explain(&self) -> String {
        let mut text = format!("{}", self.schedule);
        for applied in &self.applied {
            text.push_str(&format!(
                "  applied at {:>6} ms: {} -> {}\n",
                applied.at_ms, applied.fault, applied.outcome
            ));
        }
        for exited in &self.exited_by_themselves {
            text.push_str(&format!("  exited by itself: {exited}\n"));
        }
        for anomaly in self.anomalies.iter().take(50) {
            text.push_str(&format!("  ANOMALY {anomaly}\n"));
        }
        if self.anomalies.len() > 50 {
            text.push_str(&format!("  … and {} more\n", self.anomalies.len() - 50));
        }
        text.push_str(&format!(
            "replay with KEEL_SEED={} (make chaos SEED={})\n",
            self.seed, self.seed
        ));
        text
    }
}

/// Something undone at a later moment: a process brought back, a rotation's keelctl killed.
#[derive(Debug)]
enum Heal {
    StartService {
        region: String,
        name: &'static str,
    },
    StartBroker {
        region: String,
    },
    StartDatabase {
        app: App,
        region: String,
    },
    StartArc {
        index: usize,
    },
    StartRunbookStore,
    Continue {
        pid: u32,
    },
    /// A fault's hold on links lifted (others may still hold them).
    Lift {
        imposition: Imposition,
    },
    KillKeelctl {
        run: usize,
    },
}

/// A rotation or failover started by the schedule.
struct Rotation {
    app: App,
    /// `rotate` or `failover`.
    verb: &'static str,
    to: String,
    child: Option<tokio::process::Child>,
    killed: bool,
}

/// Runs one chaos run named `name` from `seed`.
pub async fn run(name: &str, seed: u64, options: &ChaosOptions) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let stack_options = StackOptions {
        arc_endpoints: 3,
        network: true,
        own_runbook_store: true,
        match_window_seconds: options.match_window_seconds,
        release: options.release,
        ..StackOptions::replicated_two_regions(options.synchronous)
    };
    let regions: Vec<String> = stack_options
        .regions
        .iter()
        .map(|r| r.to_string())
        .collect();
    let space = Space {
        regions: regions.clone(),
        services: service_names().collect(),
        arc_endpoints: stack_options.arc_endpoints,
        network: stack_options.network,
        runbook_store: stack_options.own_runbook_store,
    };
    let schedule = Schedule::generate(
        seed,
        &space,
        options.window.as_millis() as u64,
        options.faults,
    );
    println!("chaos {name}: seed {seed}\n{schedule}");

    let mut stack = Stack::start(name, stack_options).await?;
    let load = Load::start(
        &stack,
        DriverOptions {
            batch: 10,
            ..DriverOptions::at_rate(options.rate, seed, &format!("CH{seed}"))
        },
        Duration::from_secs(240),
    );

    // The schedule, with what each fault undoes later, in time order.
    let load_started = Instant::now();
    let mut pending: Vec<(u64, Heal)> = Vec::new();
    let mut rotations: Vec<Rotation> = Vec::new();
    let mut applied = Vec::new();
    let mut faults = schedule.faults.iter().peekable();
    loop {
        let next_fault = faults.peek().map(|s| s.at_ms);
        let next_heal = pending.iter().map(|(at, _)| *at).min();
        let Some(at_ms) = [next_fault, next_heal].into_iter().flatten().min() else {
            break;
        };
        let now_ms = load_started.elapsed().as_millis() as u64;
        if at_ms > now_ms {
            tokio::time::sleep(Duration::from_millis(at_ms - now_ms)).await;
        }
        if next_heal == Some(at_ms) {
            let index = pending
                .iter()
                .position(|(at, _)| *at == at_ms)
                .expect("a pending heal");
            let (_, heal) = pending.remove(index);
            heal_one(&mut stack, &mut rotations, heal).await;
            continue;
        }
        let Scheduled { at_ms, fault } = faults.next().expect("a fault").clone();
        let outcome = inject(
            &mut stack,
            &regions,
            &fault,
            at_ms,
            &mut pending,
            &mut rotations,
        )
        .await;
        println!("chaos {name}: {at_ms:>6} ms {fault}: {outcome}");
        applied.push(Applied {
            at_ms,
            fault,
            outcome,
        });
    }

    // Heal: whatever is still down comes back, and every rotation finishes or refuses cleanly.
    for (_, heal) in std::mem::take(&mut pending) {
        heal_one(&mut stack, &mut rotations, heal).await;
    }
    if let Some(network) = &stack.network {
        network.heal();
    }
    let exited_by_themselves = restart_the_dead(&mut stack, &regions);
    let mut rotation_problems = Vec::new();
    // Trade matching's runs first, as an operator (and `failover --region`) would: a settlement
    // run refuses to start while trade matching's is half done, and the reverse order gave up
    // on settlement before trade matching's resumed (seed 9517952649667004572).
    rotations.sort_by_key(|rotation| rotation.app);
    for rotation in &mut rotations {
        if let Some(problem) = finish_rotation(&stack, rotation).await {
            rotation_problems.push(problem);
        }
    }
    // A failover left the old primary out of replication: rebuilt as a standby, as after a DR.
    for rotation in rotations.iter().filter(|r| r.verb == "failover") {
        let out = stack
            .keelctl_async(
                &["reprotect", "--app", rotation.app.name()],
                Duration::from_secs(240),
            )
            .await;
        if !out.status.success() {
            rotation_problems.push(format!(
                "re-protecting {} after its failover: {}",
                rotation.app,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    for region in &regions {
        for service in service_names() {
            stack
                .wait_ready_in(region, service, Duration::from_secs(120))
                .await?;
        }
    }

    // Settle: the load stops, every trade ends, reconciliation replays what a fault lost in flight.
    let report: Report = load.finish().await?;
    let _ = stack
        .keelctl_async(
            &["reconcile", "--repair", "--settle-seconds", "0"],
            Duration::from_secs(180),
        )
        .await;
    let tm_region = database_region(&stack, &regions, App::TradeMatching, true)
        .await
        .ok_or_else(|| anyhow::anyhow!("trade matching has no primary after healing"))?;
    let tm = connect(&stack.regions[tm_region.as_str()].databases[&App::TradeMatching]).await?;
    let deadline = Instant::now() + options.settle_bound;
    let mut cancelled = BTreeSet::new();
    loop {
        // A MISMATCHED trade waits for its parties to amend or cancel it; here the IM cancels it,
        // as a participant would, so that it ends too.
        let resting: Vec<(String, String)> = sqlx::query_as(
            "SELECT trade_id::text, im_id FROM matching.trades WHERE status = 'MISMATCHED'",
        )
        .fetch_all(&tm)
        .await?;
        for (trade_id, im) in resting {
            if cancelled.insert(trade_id.clone()) {
                cancel(&stack, &tm_region, &trade_id, &im).await;
            }
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM matching.trades
             WHERE status IS NULL OR status NOT IN ('SETTLED', 'SETTLEMENT_FAILED', 'CANCELLED', 'EXPIRED')",
        )
        .fetch_one(&tm)
        .await?;
        // The last statuses' notifications are still on their way for a moment after the trades
        // end: the checker reads once they are all in, or once the bound has passed.
        let untold: i64 = sqlx::query_scalar(
            "SELECT count(*)
             FROM matching.status_history h,
                  jsonb_array_elements_text(h.entry->'recipients') AS recipient
             WHERE NOT EXISTS (
                 SELECT 1 FROM notification.notifications n
                 WHERE n.trade_id = h.trade_id AND n.recipient = recipient
                   AND (n.body->>'history_seq')::bigint = h.seq)",
        )
        .fetch_one(&tm)
        .await?;
        if (open == 0 && untold == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let mut history = gather(&tm, &report).await?;
    tm.close().await;
    history.ledger_problems = {
        let out = stack
            .keelctl_async(&["ledger", "verify"], Duration::from_secs(120))
            .await;
        if out.status.success() {
            Vec::new()
        } else {
            vec![String::from_utf8_lossy(&out.stdout).trim().to_owned()]
        }
    };
    history.reconciliation_gaps = {
        let out = stack
            .keelctl_async(
                &["--json", "reconcile", "--settle-seconds", "0"],
                Duration::from_secs(120),
            )
            .await;
        if out.status.success() {
            Vec::new()
        } else {
            vec![String::from_utf8_lossy(&out.stdout).trim().to_owned()]
        }
    };
    history.runbook_problems = rotation_problems;
    let anomalies = check(&history);
    let trades = history.trades.len();
    Ok(RunOutcome {
        seed,
        schedule,
        applied,
        legs_acknowledged: history.acknowledged.len(),
        trades,
        exited_by_themselves,
        anomalies,
        took_ms: started.elapsed().as_millis(),
    })
}

/// Applies `fault` now; returns what it did.
async fn inject(
    stack: &mut Stack,
    regions: &[String],
    fault: &Fault,
    at_ms: u64,
    pending: &mut Vec<(u64, Heal)>,
    rotations: &mut Vec<Rotation>,
) -> String {
    match fault {
        Fault::Kill { target, down_ms } => {
            let back = at_ms + down_ms;
            match target {
                Target::Service { region, name } => {
                    if !stack.regions[region.as_str()].services.contains_key(name) {
                        return "already down".to_owned();
                    }
                    stack.kill_in(region, name);
                    pending.push((
                        back,
                        Heal::StartService {
                            region: region.clone(),
                            name,
                        },
                    ));
                }
                Target::Broker { region } => {
                    if !stack.kill_broker_in(region) {
                        return "already down".to_owned();
                    }
                    pending.push((
                        back,
                        Heal::StartBroker {
                            region: region.clone(),
                        },
                    ));
                }
                Target::Primary { app } | Target::Standby { app } => {
                    let want_primary = matches!(target, Target::Primary { .. });
                    let Some(region) = database_region(stack, regions, *app, want_primary).await
                    else {
                        return "no such database up now".to_owned();
                    };
                    if let Err(error) = stack.kill_database(*app, &region) {
                        return format!("could not kill: {error}");
                    }
                    pending.push((
                        back,
                        Heal::StartDatabase {
                            app: *app,
                            region: region.clone(),
                        },
                    ));
                    return format!("killed {app}'s database in {region}");
                }
                Target::ArcEndpoint { index } => {
                    if !stack.arc.contains_key(index) {
                        return "already down".to_owned();
                    }
                    stack.kill_arc(*index);
                    pending.push((back, Heal::StartArc { index: *index }));
                }
                Target::RunbookStore => {
                    if !stack.kill_runbook_store() {
                        return "already down".to_owned();
                    }
                    pending.push((back, Heal::StartRunbookStore));
                }
            }
            "killed".to_owned()
        }
        Fault::Pause { target, paused_ms } => {
            let Target::Service { region, name } = target else {
                return "only services are paused".to_owned();
            };
            let what = format!("{name} {region}");
            let Some(pid) = stack
                .processes()
                .into_iter()
                .find(|(n, _)| *n == what)
                .map(|(_, pid)| pid)
            else {
                return "not running".to_owned();
            };
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
            pending.push((at_ms + paused_ms, Heal::Continue { pid }));
            "stopped".to_owned()
        }
        Fault::Isolate {
            region,
            for_ms,
            reset,
        } => {
            let condition = if *reset {
                Condition::Cut
            } else {
                Condition::Dropped
            };
            break_links(
                stack,
                |link| link.crosses_the_border_of(region),
                condition,
                at_ms + for_ms,
                pending,
            )
        }
        Fault::Slow {
            path,
            latency_ms,
            for_ms,
        } => {
            let which = |link: &LinkId| match path {
                Path::Database { region, app } => {
                    link.from == *region && link.to == Peer::Database(*app, region.clone())
                }
                Path::Broker { region } => {
                    link.from == *region && link.to == Peer::Broker(region.clone())
                }
                Path::BetweenRegions => link.between_regions() && !matches!(link.to, Peer::Arc(_)),
            };
            break_links(
                stack,
                which,
                Condition::Slow(Duration::from_millis(*latency_ms)),
                at_ms + for_ms,
                pending,
            )
        }
        Fault::Rotate { app } | Fault::Failover { app } | Fault::KillKeelctl { app, .. } => {
            let Some(from) = database_region(stack, regions, *app, true).await else {
                return "no primary to rotate from".to_owned();
            };
            let to = regions
                .iter()
                .find(|r| **r != from)
                .expect("two regions")
                .clone();
            let verb = if matches!(fault, Fault::Failover { .. }) {
                "failover"
            } else {
                "rotate"
            };
            let child =
                stack.spawn_keelctl_async(&[verb, "--app", app.name(), "--to", &to, "--yes"]);
            rotations.push(Rotation {
                app: *app,
                verb,
                to: to.clone(),
                child: Some(child),
                killed: false,
            });
            if let Fault::KillKeelctl { after_ms, .. } = fault {
                pending.push((
                    at_ms + after_ms,
                    Heal::KillKeelctl {
                        run: rotations.len() - 1,
                    },
                ));
            }
            format!("{verb} {app} from {from} to {to}")
        }
    }
}

async fn heal_one(stack: &mut Stack, rotations: &mut [Rotation], heal: Heal) {
    let result = match &heal {
        Heal::StartService { region, name } => stack.start_service_in(region, name),
        Heal::StartBroker { region } => stack.start_broker_in(region).await,
        Heal::StartDatabase { app, region } => stack.restart_database(*app, region),
        Heal::StartArc { index } => stack.start_arc(*index).await,
        // It replays its recording before it answers (blocking, as pg_ctl does for a database).
        Heal::StartRunbookStore => stack.start_runbook_store(),
        Heal::Continue { pid, .. } => {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGCONT);
            Ok(())
        }
        Heal::Lift { imposition } => {
            if let Some(network) = &stack.network {
                network.lift(imposition);
            }
            Ok(())
        }
        Heal::KillKeelctl { run } => {
            let rotation = &mut rotations[*run];
            if let Some(child) = rotation.child.as_mut() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            rotation.killed = true;
            Ok(())
        }
    };
    if let Err(error) = result {
        println!("chaos: healing {heal:?} failed: {error:#}");
    }
}

/// Sets the links `which` picks to `condition` until `until_ms`; says how many.
fn break_links(
    stack: &Stack,
    which: impl Fn(&LinkId) -> bool,
    condition: Condition,
    until_ms: u64,
    pending: &mut Vec<(u64, Heal)>,
) -> String {
    let Some(network) = &stack.network else {
        return "the stack has no chaos network".to_owned();
    };
    let imposition = network.impose(which, condition);
    let count = imposition.links.len();
    pending.push((until_ms, Heal::Lift { imposition }));
    format!("{count} links {condition:?}")
}

/// Services and brokers found dead that no fault killed: started again, and named.
fn restart_the_dead(stack: &mut Stack, regions: &[String]) -> Vec<String> {
    let mut dead = Vec::new();
    for region in regions {
        let exited: Vec<&'static str> = stack
            .regions
            .get_mut(region.as_str())
            .expect("region")
            .services
            .iter_mut()
            .filter_map(|(name, child)| (!matches!(child.try_wait(), Ok(None))).then_some(*name))
            .collect();
        for name in exited {
            dead.push(format!("{name} in {region}"));
            stack.kill_in(region, name);
            let _ = stack.start_service_in(region, name);
        }
        for name in service_names() {
            if !stack.regions[region.as_str()].services.contains_key(name) {
                let _ = stack.start_service_in(region, name);
            }
        }
    }
    dead
}

/// Waits for a rotation's keelctl; a run that stopped (or whose keelctl was killed) is resumed by
/// running the same command again, as an operator would. A problem is returned when it neither
/// finishes nor refuses cleanly.
async fn finish_rotation(stack: &Stack, rotation: &mut Rotation) -> Option<String> {
    let first = match rotation.child.take() {
        Some(mut child) => {
            match tokio::time::timeout(Duration::from_secs(240), child.wait()).await {
                Ok(Ok(status)) if !rotation.killed => status.code(),
                _ => {
                    let _ = child.start_kill();
                    None
                }
            }
        }
        None => None,
    };
    if first == Some(0) {
        println!(
            "chaos: rotation of {} to {} finished",
            rotation.app, rotation.to
        );
        return None;
    }
    println!(
        "chaos: rotation of {} to {} {}; running it again",
        rotation.app,
        rotation.to,
        if rotation.killed {
            "had its keelctl killed"
        } else {
            "stopped"
        }
    );
    let args = [
        "--json",
        rotation.verb,
        "--app",
        rotation.app.name(),
        "--to",
        &rotation.to,
        "--yes",
    ];
    let mut last = String::new();
    for _ in 0..3 {
        let out = stack.keelctl_async(&args, Duration::from_secs(240)).await;
        match out.status.code() {
            Some(0) => {
                println!(
                    "chaos: rotation of {} to {} resumed and finished",
                    rotation.app, rotation.to
                );
                return None;
            }
            // Refused: the run had finished (the application is already there), or another run
            // holds a lock; either way nothing half-done is left if no lock is held.
            Some(2) if rotation.killed => {
                let locks = stack
                    .keelctl_async(&["--json", "status"], Duration::from_secs(60))
                    .await;
                let status = String::from_utf8_lossy(&locks.stdout);
                if !status.contains(&format!("{}-{}-", rotation.app.name(), rotation.verb)) {
                    println!(
                        "chaos: rotation of {} to {} refused cleanly: it had finished",
                        rotation.app, rotation.to
                    );
                    return None;
                }
                last = format!("refused, with its lock still held: {status}");
            }
            code => last = format!("exit {code:?}: {}", String::from_utf8_lossy(&out.stdout)),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Some(format!(
        "rotation of {} to {} neither finished nor refused cleanly: {last}",
        rotation.app, rotation.to
    ))
}

/// The region where `app`'s database is the primary (or, with `primary` false, a standby) now.
async fn database_region(
    stack: &Stack,
    regions: &[String],
    app: App,
    primary: bool,
) -> Option<String> {
    for region in regions {
        let url = &stack.regions[region.as_str()].databases[&app];
        // One attempt: a pool would retry a database that is down for its whole acquire timeout,
        // and every fault and heal of the schedule would wait behind it.
        let Ok(Ok(mut connection)) =
            tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(url)).await
        else {
            continue;
        };
        let standby: Result<bool, _> = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut connection)
            .await;
        let _ = connection.close().await;
        if standby.is_ok_and(|standby| standby != primary) {
            return Some(region.clone());
        }
    }
    None
}

/// `DELETE /v1/trades/{trade_id}` as the IM `im`, at the region that takes the traffic.
async fn cancel(stack: &Stack, region: &str, trade_id: &str, im: &str) {
    let Some(credentials) = participants().into_iter().find(|p| p.participant_id == im) else {
        return;
    };
    let client = stack.client_in(region);
    let Ok(token) = client.token(&credentials).await else {
        return;
    };
    if let Ok((status, body)) = client
        .delete(&format!("/v1/trades/{trade_id}"), &token)
        .await
    {
        if status != 202 {
            println!("chaos: cancelling {trade_id}: {status} {body}");
        }
    }
}

/// What the stores hold and what the generator was told.
async fn gather(tm: &sqlx::PgPool, report: &Report) -> anyhow::Result<History> {
    let mut history = History {
        attempted: report.attempted.iter().cloned().collect::<BTreeSet<_>>(),
        acknowledged: report
            .acknowledged
            .iter()
            .map(|a| (a.leg_id.clone(), a.trade_id.clone()))
            .collect(),
        ..History::default()
    };
    for row in sqlx::query("SELECT leg_id::text, sender, trade_ref FROM ingress.submissions")
        .fetch_all(tm)
        .await?
    {
        history
            .recorded
            .insert(row.get(0), (row.get(1), row.get(2)));
    }
    let mut trades: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for row in sqlx::query(
        "SELECT trade_id::text, seq::bigint, status,
                coalesce(ARRAY(SELECT jsonb_array_elements_text(entry->'recipients')), '{}')
         FROM matching.status_history ORDER BY trade_id, seq",
    )
    .fetch_all(tm)
    .await?
    {
        trades.entry(row.get(0)).or_default().push(Entry {
            seq: row.get(1),
            status: row.get(2),
            recipients: row.get(3),
        });
    }
    history.trades = trades;
    for row in sqlx::query(
        "SELECT recipient, trade_id::text, (body->>'history_seq')::bigint FROM notification.notifications",
    )
    .fetch_all(tm)
    .await?
    {
        history
            .notifications
            .push((row.get(0), row.get(1), row.get(2)));
    }
    Ok(history)
}

/// Seeds for `runs` runs from one: each run's seed is printed and replays that run alone.
pub fn seeds(first: u64, runs: usize) -> Vec<u64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(first);
    std::iter::once(first)
        .chain(std::iter::repeat_with(move || rng.random()))
        .take(runs)
        .collect()
}
