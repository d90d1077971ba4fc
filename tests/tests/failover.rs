//! The failover suite (DESIGN section 10): `keelctl rotate` and `keelctl failover` against a real
//! two-region stack with replicated databases, under generator load. Each test is seeded (the seed
//! is printed; `KEEL_SEED` replays it) and prints the RTO and RPO it measured.
//!
//! After every move the invariants are checked in the databases where the applications are now
//! active: every acknowledged leg is recorded (or, in the asynchronous failover, the loss is
//! counted and printed), every hop's two sides agree by id and content (nothing lost, nothing
//! duplicated, nothing from nothing), no notification is duplicated, and the ledger verifies.

use std::time::{Duration, Instant};

use keel_generator::DriverOptions;
use keel_safestore::quote_ident;
use keel_system_tests::load::Load;
use keel_system_tests::{connect, count_in, wait_replayed, App, Stack, StackOptions, EAST, WEST};
use rand::{Rng, SeedableRng};
use sqlx::PgPool;

const RUNBOOK_BOUND: Duration = Duration::from_secs(240);
const SUBMISSIONS: &str = "SELECT count(*) FROM ingress.submissions";

/// The generator at `rate` legs/s against both regions' ingresses, following whichever takes
/// traffic, retrying while none does.
fn start_load(stack: &Stack, seed: u64, rate: f64, prefix: &str) -> Load {
    let options = DriverOptions {
        batch: 5,
        ..DriverOptions::at_rate(rate, seed, prefix)
    };
    Load::start(stack, options, Duration::from_secs(180))
}

/// Runs `keelctl VERB --app APP --to TO --yes --json`, prints its figures and returns its report.
async fn move_app(stack: &Stack, verb: &str, app: App, to: &str) -> serde_json::Value {
    let out = stack
        .keelctl_async(
            &["--json", verb, "--app", app.name(), "--to", to, "--yes"],
            RUNBOOK_BOUND,
        )
        .await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "keelctl {verb} printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(out.status.success(), "keelctl {verb} failed: {report:#}");
    print_figures(&report);
    report
}

/// Runs `keelctl failover --region LOST --yes --json`; returns trade matching's and settlement's
/// reports.
async fn evacuate(stack: &Stack, lost: &str) -> (serde_json::Value, serde_json::Value) {
    let out = stack
        .keelctl_async(
            &["--json", "failover", "--region", lost, "--yes"],
            RUNBOOK_BOUND,
        )
        .await;
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "keelctl failover --region printed no report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "keelctl failover --region failed: {answer:#}"
    );
    let report_of = |app: App| {
        answer["reports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["app"] == app.name())
            .unwrap_or_else(|| panic!("no report for {app}: {answer:#}"))
            .clone()
    };
    let (tm, st) = (report_of(App::TradeMatching), report_of(App::Settlement));
    print_figures(&tm);
    print_figures(&st);
    println!(
        "FIGURES regional failover out of {lost}: serving after the command (ms) {}",
        answer["serving_after_ms"]
    );
    (tm, st)
}

fn print_figures(report: &serde_json::Value) {
    let hops: Vec<String> = report["hops"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            format!(
                "{} found {}/{}/{} replayed {} restored {}",
                h["hop"].as_str().unwrap_or(""),
                h["found"]["missing"],
                h["found"]["differing"],
                h["found"]["orphaned"],
                h["replayed"],
                h["restored"]
            )
        })
        .collect();
    let steps: Vec<String> = report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| format!("{} {}", s["step"].as_str().unwrap_or(""), s["took_ms"]))
        .collect();
    println!(
        "FIGURES {} {} {} -> {}: RTO {} ms; RPO {} ({}); steps ms: {}; hops: {}",
        report["mode"].as_str().unwrap_or(""),
        report["app"].as_str().unwrap_or(""),
        report["from"].as_str().unwrap_or(""),
        report["to"].as_str().unwrap_or(""),
        report["rto_ms"],
        report["rpo"]["acknowledged_missing"],
        report["rpo"]["how"].as_str().unwrap_or(""),
        steps.join(", "),
        hops.join("; ")
    );
}

fn database(stack: &Stack, app: App, region: &str) -> String {
    stack.regions[region].databases[&app].clone()
}

/// Waits until `keelctl reconcile` finds every hop's two sides in agreement (the last messages in
/// flight arrive), then checks the ledger and the notifications. Returns the recorded legs.
async fn check_invariants(stack: &Stack, tm_region: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = stack
            .keelctl_async(
                &["--json", "reconcile", "--settle-seconds", "0"],
                Duration::from_secs(60),
            )
            .await;
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hops still disagree after 90 s: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ledger = stack
        .keelctl_async(&["ledger", "verify"], Duration::from_secs(60))
        .await;
    assert!(
        ledger.status.success(),
        "{}",
        String::from_utf8_lossy(&ledger.stdout)
    );
    let tm = connect(&database(stack, App::TradeMatching, tm_region))
        .await
        .unwrap();
    assert_eq!(
        count_in(
            &tm,
            "SELECT count(*) - count(DISTINCT (trade_id, body->>'history_seq', recipient)) FROM notification.notifications"
        )
        .await,
        0,
        "duplicate notifications"
    );
    for table in ["ingestion", "matching", "notification"] {
        assert_eq!(
            count_in(
                &tm,
                &format!("SELECT count(*) FROM {}.dead_letters", quote_ident(table))
            )
            .await,
            0,
            "{table} dead letters"
        );
    }
    let recorded = count_in(&tm, SUBMISSIONS).await;
    tm.close().await;
    recorded
}

async fn wait_for_legs(db: &PgPool, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_in(db, SUBMISSIONS).await < at_least {
        assert!(
            Instant::now() < deadline,
            "fewer than {at_least} legs after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_rotations_there_and_back_under_load_lose_and_duplicate_nothing() {
    let seed = keel_system_tests::seed("planned_rotations");
    let options = StackOptions {
        replicated: true,
        ..StackOptions::two_regions()
    };
    let stack = Stack::start("planned_rotations", options).await.unwrap();
    let load = start_load(&stack, seed, 20.0, &format!("ROT{seed}"));
    let east = connect(&database(&stack, App::TradeMatching, EAST))
        .await
        .unwrap();
    wait_for_legs(&east, 40).await;
    east.close().await;

    // The plan, without changing anything.
    let dry = stack
        .keelctl_async(
            &[
                "rotate",
                "--app",
                "trade-matching",
                "--to",
                WEST,
                "--dry-run",
            ],
            Duration::from_secs(30),
        )
        .await;
    assert!(dry.status.success());
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(plan.contains("traffic Off in the source"), "{plan}");

    let mut rto_ms = Vec::new();
    let mut tm_region = EAST;
    for (app, to) in [
        (App::TradeMatching, WEST),
        (App::Settlement, WEST),
        (App::TradeMatching, EAST),
        (App::Settlement, EAST),
    ] {
        let report = move_app(&stack, "rotate", app, to).await;
        assert_eq!(report["rpo"]["acknowledged_missing"], 0, "{report:#}");
        rto_ms.push(report["rto_ms"].as_u64().expect("an RTO"));
        // Load goes on in the new region before the next move.
        if app == App::TradeMatching {
            tm_region = to;
        }
        let tm = connect(&database(&stack, App::TradeMatching, tm_region))
            .await
            .unwrap();
        let now = count_in(&tm, SUBMISSIONS).await;
        wait_for_legs(&tm, now + 20).await;
        tm.close().await;
    }
    let report = load.finish().await.unwrap();
    assert_eq!(report.legs_failed, 0);
    let recorded = check_invariants(&stack, EAST).await;
    assert_eq!(
        recorded, report.legs_accepted as i64,
        "every acknowledged leg is recorded once"
    );
    println!(
        "FIGURES planned rotations (TM west, ST west, TM east, ST east): RTO ms {rto_ms:?}; RPO 0 of {recorded} acknowledged legs"
    );
}

/// Unplanned failover of both applications out of a region killed outright, with records deleted
/// from what the target holds; reconcile and replay recover them. `synchronous`: ingress's
/// acknowledgements wait for the standby, so none may be lost.
async fn unplanned_failover(name: &str, synchronous: bool) {
    let seed = keel_system_tests::seed(name);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let options = StackOptions::replicated_two_regions(synchronous);
    let mut stack = Stack::start(name, options).await.unwrap();
    let load = start_load(&stack, seed, 20.0, &format!("DR{seed}"));
    let (east_tm, west_tm) = (
        connect(&database(&stack, App::TradeMatching, EAST))
            .await
            .unwrap(),
        connect(&database(&stack, App::TradeMatching, WEST))
            .await
            .unwrap(),
    );
    let (east_st, west_st) = (
        connect(&database(&stack, App::Settlement, EAST))
            .await
            .unwrap(),
        connect(&database(&stack, App::Settlement, WEST))
            .await
            .unwrap(),
    );
    wait_for_legs(&east_tm, 80).await;
    let _ = stack
        .wait_for_st_count(
            "SELECT count(*) FROM settlement.inbox",
            10,
            Duration::from_secs(60),
        )
        .await;

    // Damage: consumed records deleted, seeded, and replicated to the target before the region
    // dies, so the target's stores lack them.
    let mut deleted = Vec::new();
    for (db, schema, topic) in [
        (&east_tm, "ingestion", "tm.submissions"),
        (&east_tm, "matching", "tm.trades"),
        (&east_tm, "notification", "tm.events"),
        (&east_st, "settlement", "st.instructions"),
    ] {
        let n: i64 = rng.random_range(1..=3);
        let schema = quote_ident(schema);
        let gone = sqlx::query(&format!(
            "DELETE FROM {schema}.inbox WHERE message_id IN
               (SELECT message_id FROM {schema}.inbox WHERE topic = $3
                ORDER BY md5(message_id::text || $1) LIMIT $2)"
        ))
        .bind(seed.to_string())
        .bind(n)
        .bind(topic)
        .execute(db)
        .await
        .unwrap()
        .rows_affected();
        deleted.push((topic, gone));
    }
    wait_replayed(&east_tm, &west_tm, Duration::from_secs(30))
        .await
        .unwrap();
    wait_replayed(&east_st, &west_st, Duration::from_secs(30))
        .await
        .unwrap();
    println!("damage (seed {seed}): deleted inbox records per topic {deleted:?}");
    east_tm.close().await;
    east_st.close().await;

    // The region dies while the generator keeps submitting.
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_000))).await;
    // What the generator was told was accepted is known only to it: the loss is counted at the
    // end from its report. This is what the standby held when the region died.
    let replicated_at_loss = count_in(&west_tm, SUBMISSIONS).await;
    stack.kill_region(EAST);
    let started = Instant::now();
    let (tm_report, st_report) = if synchronous {
        // One application at a time, settlement's run interrupted and resumed.
        let tm_report = move_app(&stack, "failover", App::TradeMatching, WEST).await;
        interrupted_failover_resumes(&mut stack).await;
        (
            tm_report,
            move_app(&stack, "failover", App::Settlement, WEST).await,
        )
    } else {
        // The whole region with one command: both applications at once.
        evacuate(&stack, EAST).await
    };
    if synchronous {
        // The resumed run reports the whole run, the failed preflight included.
        let steps = st_report["steps"].as_array().unwrap();
        assert_eq!(steps[0]["state"], "failed");
        assert_eq!(steps[1]["step"], "preflight");
        assert_eq!(steps[1]["state"], "done");
    }
    println!(
        "both applications serving in {WEST} {:.1} s after the first failover command",
        started.elapsed().as_secs_f64()
    );

    // Reconcile and replay found and repaired at least what was deleted.
    let repaired = |report: &serde_json::Value, topic: &str| -> u64 {
        report["hops"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| {
                h["hop"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with(&format!("({topic})"))
            })
            .map(|h| h["replayed"].as_u64().unwrap_or(0))
            .sum()
    };
    for (topic, gone) in &deleted {
        let replayed = repaired(&tm_report, topic) + repaired(&st_report, topic);
        assert!(
            replayed >= *gone,
            "{topic}: {gone} deleted but {replayed} replayed; TM {tm_report:#} ST {st_report:#}"
        );
    }

    let west_now = count_in(&west_tm, SUBMISSIONS).await;
    wait_for_legs(&west_tm, west_now + 20).await;
    let report = load.finish().await.unwrap();
    let recorded = check_invariants(&stack, WEST).await;
    let lost = report.legs_accepted as i64 - recorded;
    println!(
        "FIGURES unplanned {} replication: RPO {lost} acknowledged leg(s) lost of {} acknowledged ({} in {WEST}'s standby when {EAST} died); TM RTO {} ms, ST RTO {} ms from each command",
        if synchronous { "synchronous" } else { "asynchronous" },
        report.legs_accepted,
        replicated_at_loss,
        tm_report["rto_ms"],
        st_report["rto_ms"]
    );
    assert!(
        lost >= 0,
        "more legs recorded than acknowledged ({} failed, so never answered)",
        report.legs_failed
    );
    if synchronous {
        assert_eq!(lost, 0, "synchronous replication lost acknowledged legs");
    }

    // The lost region comes back: its databases are rebuilt as standbys of the new primaries.
    for app in [App::TradeMatching, App::Settlement] {
        let out = stack
            .keelctl_async(
                &["reprotect", "--app", app.name()],
                Duration::from_secs(120),
            )
            .await;
        assert!(
            out.status.success(),
            "reprotect {app}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let streaming = count_in(
        &west_tm,
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
    )
    .await;
    assert_eq!(streaming, 1, "trade matching's new standby streams");
    west_tm.close().await;
    west_st.close().await;
}

/// A settlement failover whose target service is down stops at its preflight and keeps its lock;
/// another command for settlement is refused naming the run; once the service is back, the same
/// command resumes the run (the caller then runs it to the end).
async fn interrupted_failover_resumes(stack: &mut Stack) {
    stack.kill_in(WEST, "settlement");
    let args = [
        "--json",
        "failover",
        "--app",
        "settlement",
        "--to",
        WEST,
        "--yes",
    ];
    let stopped = stack.keelctl_async(&args, RUNBOOK_BOUND).await;
    assert_eq!(stopped.status.code(), Some(1), "the preflight must fail");
    let report: serde_json::Value = serde_json::from_slice(&stopped.stdout).unwrap();
    let run_id = report["run_id"].as_str().unwrap().to_owned();
    assert_eq!(report["steps"][0]["state"], "failed", "{report:#}");
    assert!(
        report["steps"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("settlement in us-west-2"),
        "{report:#}"
    );
    let other = stack
        .keelctl_async(
            &["rotate", "--app", "settlement", "--to", WEST, "--yes"],
            RUNBOOK_BOUND,
        )
        .await;
    assert_eq!(
        other.status.code(),
        Some(2),
        "a different run must be refused"
    );
    stack.start_service_in(WEST, "settlement").unwrap();
    stack
        .wait_ready_in(WEST, "settlement", Duration::from_secs(60))
        .await
        .unwrap();
    let dry = stack
        .keelctl_async(
            &["failover", "--app", "settlement", "--to", WEST, "--dry-run"],
            RUNBOOK_BOUND,
        )
        .await;
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(plan.contains(&format!("resumes run {run_id}")), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplanned_failover_asynchronous_recovers_deleted_records_and_counts_its_loss() {
    unplanned_failover("failover_async", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplanned_failover_synchronous_loses_no_acknowledged_leg() {
    unplanned_failover("failover_sync", true).await;
}
