//! `keelctl rotate` and `keelctl failover` (DESIGN section 6): one runbook, two modes. The plan and
//! the journal are keel-rotation's (pure); this module takes the runbook lock, keeps the journal in
//! the runbook store after every change, carries each step out through [`steps`], shows progress
//! as it goes, and ends with the report: RTO, RPO, and every hop's gaps found and repaired.
//!
//! A run that stops (a step failed its check, or keelctl was killed) keeps its lock and journal;
//! the same command resumes it at the step it stopped in.

pub mod databases;
pub mod steps;
pub mod store;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use keel_arc::ArcClient;
use keel_rotation::{plan, Journal, Mode, Next, StepState};
use keel_routing::{App, Gate};
use serde_json::json;

use self::databases::Databases;
use self::steps::Steps;
use self::store::RunbookStore;
use crate::Config;

pub struct RunArgs {
    pub app: App,
    pub mode: Mode,
    pub to: String,
    /// The region the application moves from; by default the one where it processes now.
    pub from: Option<String>,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

/// Progress goes to stderr, so `--json` leaves stdout to the report.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!($($arg)*) };
}

pub async fn run(config: &Config, args: RunArgs) -> ExitCode {
    match execute(config, &args).await {
        Ok(code) => code,
        Err(error) => {
            if args.json {
                println!("{}", json!({"ok": false, "error": error}));
            }
            progress!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// The application's current run, if one holds its lock, or a new one.
async fn open_run(
    config: &Config,
    store: &RunbookStore,
    args: &RunArgs,
) -> Result<(Journal, u64, bool), String> {
    let regions: Vec<String> = config.regions.keys().cloned().collect();
    if let Some(run_id) = store
        .lock_holder(args.app)
        .await
        .map_err(|e| e.to_string())?
    {
        let (journal, version) = store
            .load(&run_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "{}'s lock is held by run {run_id}, which has no journal",
                    args.app
                )
            })?;
        journal
            .check_resumes(args.app, args.mode, &args.to)
            .map_err(|e| format!("{e}; finish that run first (runbooks/rotation.md)"))?;
        return Ok((journal, version, true));
    }
    let from = match &args.from {
        Some(from) => from.clone(),
        None => {
            let states = ArcClient::new(&config.control)
                .states()
                .await
                .map_err(|e| format!("cannot read the routing controls: {e}"))?;
            match states.active_region(args.app, Gate::Processing, &regions) {
                Some(region) => region.to_owned(),
                // After a failed or interrupted failover nothing may process: the source is the
                // one other region, when there is just one.
                None => {
                    let others: Vec<&String> = regions.iter().filter(|r| **r != args.to).collect();
                    match others.as_slice() {
                        [only] => (*only).clone(),
                        _ => {
                            return Err(format!(
                                "{} processes in no region; say which it moves from with --from",
                                args.app
                            ))
                        }
                    }
                }
            }
        }
    };
    let plan = plan(args.app, args.mode, &from, &args.to, &regions).map_err(|e| e.to_string())?;
    let run_id = format!(
        "{}-{}-{}-{:04x}",
        args.app,
        match args.mode {
            Mode::Planned => "rotate",
            Mode::Unplanned => "failover",
        },
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand_suffix()
    );
    Ok((Journal::new(&run_id, plan, now_ms()), 0, false))
}

fn rand_suffix() -> u16 {
    // Two runs started in the same second by two operators still get different ids.
    (std::process::id() as u16) ^ (chrono::Utc::now().timestamp_subsec_nanos() as u16)
}

async fn execute(config: &Config, args: &RunArgs) -> Result<ExitCode, String> {
    let store = RunbookStore::new(&config.runbook);
    store.ensure_table().await.map_err(|e| e.to_string())?;
    let (mut journal, mut version, resumed) = open_run(config, &store, args).await?;
    let plan = journal.plan.clone();
    let total = plan.steps.len();
    let verb = match plan.mode {
        Mode::Planned => "planned rotation",
        Mode::Unplanned => "unplanned failover",
    };

    if args.dry_run {
        if args.json {
            let steps: Vec<_> = plan
                .steps
                .iter()
                .map(|s| json!({"step": s, "checks": s.describe()}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "dry_run": true, "run_id": journal.run_id, "resumes": resumed,
                    "app": plan.app, "mode": plan.mode, "from": plan.from, "to": plan.to,
                    "steps": steps,
                }))
                .expect("json")
            );
        } else {
            println!(
                "{verb} of {} from {} to {} ({}); nothing is changed:",
                plan.app,
                plan.from,
                plan.to,
                if resumed {
                    format!("resumes run {}", journal.run_id)
                } else {
                    "a new run".to_owned()
                }
            );
            for (index, step) in plan.steps.iter().enumerate() {
                println!("  {:>2}. {}", index + 1, step.describe());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }

    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(
                "this changes routing controls and databases: confirm with --yes".to_owned(),
            );
        }
        eprint!(
            "{} {verb} of {} from {} to {}? [y/N] ",
            if resumed { "Resume the" } else { "Start a" },
            plan.app,
            plan.from,
            plan.to
        );
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err("not confirmed; nothing changed".to_owned());
        }
    }

    let holder = format!(
        "keelctl pid {} on {}",
        std::process::id(),
        std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".to_owned())
    );
    store
        .lock(plan.app, &journal.run_id, &holder)
        .await
        .map_err(|e| e.to_string())?;
    if version == 0 {
        version = store
            .save(&journal, version)
            .await
            .map_err(|e| e.to_string())?;
    }
    progress!(
        "{} run {}: {verb} of {} from {} to {}",
        if resumed { "resuming" } else { "started" },
        journal.run_id,
        plan.app,
        plan.from,
        plan.to
    );

    let steps = Steps {
        config,
        store: &store,
        arc: ArcClient::new(&config.control),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client"),
        databases: Databases::new(config),
        bound: Duration::from_secs(config.runbook.step_timeout_seconds),
    };
    while let Next::Run { index, step, again } = journal.next() {
        progress!(
            "[{}/{total}] {}{}",
            index + 1,
            step.describe(),
            if again {
                " (again: the run stopped in it)"
            } else {
                ""
            }
        );
        let record = |journal: &mut Journal, state, detail: &str| {
            journal
                .record(step, state, now_ms(), detail)
                .expect("only the next step is recorded")
        };
        record(&mut journal, StepState::Started, "");
        version = store
            .save(&journal, version)
            .await
            .map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let outcome = steps.run(step, &mut journal).await;
        let took = started.elapsed().as_secs_f64();
        match outcome {
            Ok(detail) => {
                record(&mut journal, StepState::Done, &detail);
                version = store
                    .save(&journal, version)
                    .await
                    .map_err(|e| e.to_string())?;
                progress!("      done in {took:.1} s: {detail}");
            }
            Err(why) => {
                record(&mut journal, StepState::Failed, &why);
                store
                    .save(&journal, version)
                    .await
                    .map_err(|e| e.to_string())?;
                progress!("      FAILED after {took:.1} s: {why}");
                progress!(
                    "run {} stopped at step {} and keeps the lock; once the cause is fixed, run the same command to resume (runbooks/{}.md)",
                    journal.run_id,
                    index + 1,
                    match plan.mode {
                        Mode::Planned => "rotation",
                        Mode::Unplanned => "disaster-recovery",
                    }
                );
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report(&journal, false)).expect("json")
                    );
                }
                return Ok(ExitCode::from(1));
            }
        }
    }
    store
        .unlock(plan.app, &journal.run_id)
        .await
        .map_err(|e| e.to_string())?;
    let report = report(&journal, true);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's report, from its journal alone (so a resumed run reports the whole run).
fn report(journal: &Journal, finished: bool) -> serde_json::Value {
    let plan = &journal.plan;
    let mut steps = Vec::new();
    let mut started_at = None;
    for record in &journal.records {
        match record.state {
            StepState::Started => started_at = Some(record.at_ms),
            state => steps.push(json!({
                "step": record.step,
                "state": state,
                "took_ms": started_at.map(|s| record.at_ms.saturating_sub(s)),
                "detail": record.detail,
            })),
        }
    }
    let reconcile = journal.facts.get("reconcile");
    let hops: Vec<serde_json::Value> = reconcile
        .and_then(|r| r["hops"].as_array())
        .map(|hops| {
            hops.iter()
                .map(|h| {
                    json!({
                        "hop": h["hop"],
                        "found": {
                            "missing": h["found"]["missing"].as_array().map_or(0, Vec::len),
                            "differing": h["found"]["differing"].as_array().map_or(0, Vec::len),
                            "orphaned": h["found"]["orphaned"].as_array().map_or(0, Vec::len),
                        },
                        "replayed": h["replayed"],
                        "restored": h["restored"],
                        "left": {
                            "missing": h["left"]["missing"].as_array().map_or(0, Vec::len),
                            "differing": h["left"]["differing"].as_array().map_or(0, Vec::len),
                            "orphaned": h["left"]["orphaned"].as_array().map_or(0, Vec::len),
                        },
                        "repairs_left": h["repairs"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "ok": finished,
        "run_id": journal.run_id,
        "app": plan.app,
        "mode": plan.mode,
        "from": plan.from,
        "to": plan.to,
        "rto_ms": journal.rto_ms(),
        "rto_measured_from": match plan.mode {
            Mode::Planned => "the source's traffic going Off",
            Mode::Unplanned => "the failover command (the source was lost before it)",
        },
        "rpo": journal.facts.get("rpo"),
        "hops": hops,
        "steps": steps,
    })
}

fn print_report(report: &serde_json::Value) {
    println!(
        "\n{} {} of {} from {} to {}: done",
        report["run_id"].as_str().unwrap_or(""),
        report["mode"].as_str().unwrap_or(""),
        report["app"].as_str().unwrap_or(""),
        report["from"].as_str().unwrap_or(""),
        report["to"].as_str().unwrap_or("")
    );
    match report["rto_ms"].as_u64() {
        Some(ms) => println!(
            "RTO: {:.1} s without traffic (from {})",
            Duration::from_millis(ms).as_secs_f64(),
            report["rto_measured_from"].as_str().unwrap_or("")
        ),
        None => println!("RTO: not measured"),
    }
    let rpo = &report["rpo"];
    match rpo["acknowledged_missing"].as_i64() {
        Some(n) => println!(
            "RPO: {n} acknowledged record(s) missing ({})",
            rpo["how"].as_str().unwrap_or("")
        ),
        None => println!(
            "RPO: unknown ({})",
            rpo["how"].as_str().unwrap_or("not measured")
        ),
    }
    println!(
        "\n{:<50} {:>16} {:>9} {:>9} {:>16}",
        "hop", "found m/d/o", "replayed", "restored", "left m/d/o"
    );
    for hop in report["hops"].as_array().into_iter().flatten() {
        let mdo = |v: &serde_json::Value| {
            format!("{}/{}/{}", v["missing"], v["differing"], v["orphaned"])
        };
        println!(
            "{:<50} {:>16} {:>9} {:>9} {:>16}",
            hop["hop"].as_str().unwrap_or(""),
            mdo(&hop["found"]),
            hop["replayed"],
            hop["restored"],
            mdo(&hop["left"])
        );
    }
    println!("\nsteps:");
    for step in report["steps"].as_array().into_iter().flatten() {
        println!(
            "  {:<16} {:>7} ms  {}",
            step["step"].as_str().unwrap_or(""),
            step["took_ms"],
            step["detail"].as_str().unwrap_or("")
        );
    }
}

/// `keelctl reprotect`: rebuilds `app`'s database in `region` (by default the region it does not
/// process in) as a standby of the primary where it processes.
pub async fn reprotect(
    config: &Config,
    app: App,
    region: Option<String>,
    json_out: bool,
) -> ExitCode {
    let outcome = async {
        let regions: Vec<String> = config.regions.keys().cloned().collect();
        let states = ArcClient::new(&config.control)
            .states()
            .await
            .map_err(|e| format!("cannot read the routing controls: {e}"))?;
        let active = states
            .active_region(app, Gate::Processing, &regions)
            .ok_or_else(|| format!("{app} processes in no region: finish its failover first"))?
            .to_owned();
        let region = match region {
            Some(region) => region,
            None => regions
                .iter()
                .find(|r| **r != active)
                .cloned()
                .ok_or("there is no other region")?,
        };
        if region == active {
            return Err(format!(
                "{app} processes in {region}: its database there is the primary"
            ));
        }
        if !config.regions.contains_key(&region) {
            return Err(format!("unknown region {region}"));
        }
        // The lock keeps a rotation from starting while the standby is rebuilt.
        let store = RunbookStore::new(&config.runbook);
        store.ensure_table().await.map_err(|e| e.to_string())?;
        let run_id = format!(
            "{app}-reprotect-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        );
        store
            .lock(app, &run_id, "keelctl reprotect")
            .await
            .map_err(|e| e.to_string())?;
        progress!("rebuilding {app}'s database in {region} as a standby of {active} ...");
        let databases = Databases::new(config);
        let outcome = steps::reprotect(
            &databases,
            app,
            &region,
            &active,
            Duration::from_secs(config.runbook.step_timeout_seconds),
        )
        .await;
        store
            .unlock(app, &run_id)
            .await
            .map_err(|e| e.to_string())?;
        outcome
    }
    .await;
    match outcome {
        Ok(detail) => {
            if json_out {
                println!("{}", json!({"ok": true, "detail": detail}));
            } else {
                println!("{detail}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json_out {
                println!("{}", json!({"ok": false, "error": error}));
            }
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}
