//! The drills under load (DESIGN section 10): on release stacks with two regions and streaming
//! standbys, the generator at `KEEL_BENCH_DRILL_RATE` legs/s (by default 375, half the two-region
//! sustained rate measured in the replication section) against both ingresses, following the
//! active one:
//!
//! - planned rotations there and back, trade matching then settlement, each timed by keelctl's own
//!   report (RTO: the time the application took no traffic) and checked for loss (RPO: legs
//!   acknowledged that the stores do not hold);
//! - the loss of us-east-1 (every process SIGKILLed) and `keelctl failover --region us-east-1`,
//!   asynchronous and synchronous: how long after the command each application served again, and
//!   the acknowledged legs lost (counted from the generator's own acknowledgements; in
//!   asynchronous mode also the standby's age when the region died, as keelctl reports it).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::{Duration, Instant};

use keel_generator::{DriverOptions, Report};
use keel_system_tests::load::Load;
use keel_system_tests::{connect, App, Stack, StackOptions, EAST, WEST};
use serde_json::Value;

use crate::env_or;

const RUNBOOK_BOUND: Duration = Duration::from_secs(300);
const WARM_UP: Duration = Duration::from_secs(10);

fn start_load(stack: &Stack, rate: f64, prefix: &str) -> Load {
    Load::start(
        stack,
        DriverOptions::at_rate(rate, 11, prefix),
        Duration::from_secs(240),
    )
}

/// Acknowledged legs the trade-matching database in `region` does not hold.
async fn lost(stack: &Stack, region: &str, report: &Report) -> anyhow::Result<usize> {
    let tm = connect(&stack.regions[region].databases[&App::TradeMatching]).await?;
    let recorded: BTreeSet<String> =
        sqlx::query_scalar("SELECT leg_id::text FROM ingress.submissions")
            .fetch_all(&tm)
            .await?
            .into_iter()
            .collect();
    tm.close().await;
    Ok(report
        .acknowledged
        .iter()
        .filter(|a| !recorded.contains(&a.leg_id))
        .count())
}

async fn keelctl_json(stack: &Stack, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = stack.keelctl_async(&all, RUNBOOK_BOUND).await;
    let report: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("keelctl {args:?} printed no JSON ({e})"))?;
    anyhow::ensure!(out.status.success(), "keelctl {args:?} failed: {report}");
    Ok(report)
}

fn stack_options(synchronous: bool) -> StackOptions {
    StackOptions {
        release: true,
        ..StackOptions::replicated_two_regions(synchronous)
    }
}

pub async fn section() -> anyhow::Result<String> {
    let rate: f64 = env_or("KEEL_BENCH_DRILL_RATE", "375")?;
    let mut out = String::new();
    writeln!(out)?;
    writeln!(out, "Drills under load: {rate:.0} legs/s offered against both regions' ingresses, release build, two regions with streaming standbys.")?;
    writeln!(out)?;
    writeln!(
        out,
        "| drill | replication | application | RTO ms | serving after the command ms | acknowledged legs lost (RPO) | legs acknowledged |"
    )?;
    writeln!(out, "|---|---|---|---:|---:|---:|---:|")?;

    // Planned rotations there and back.
    let stack = Stack::start("bench_drill_rotate", stack_options(false)).await?;
    let load = start_load(&stack, rate, "DRILLR");
    tokio::time::sleep(WARM_UP).await;
    let mut rotations = Vec::new();
    for (app, to) in [
        (App::TradeMatching, WEST),
        (App::Settlement, WEST),
        (App::TradeMatching, EAST),
        (App::Settlement, EAST),
    ] {
        let commanded = Instant::now();
        let report = keelctl_json(
            &stack,
            &["rotate", "--app", app.name(), "--to", to, "--yes"],
        )
        .await?;
        rotations.push((app, to, report, commanded.elapsed()));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let report = load.finish().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let lost_legs = lost(&stack, EAST, &report).await?;
    for (app, to, run, took) in &rotations {
        writeln!(
            out,
            "| planned rotation to {to} | asynchronous | {app} | {} | {} | {lost_legs} (whole drill) | {} |",
            run["rto_ms"],
            took.as_millis(),
            report.legs_accepted
        )?;
    }
    drop(stack);
    let mut steps = step_timings(
        "Each planned rotation's steps, ms (the RTO runs from traffic-off to traffic-on):",
        rotations
            .iter()
            .map(|(app, to, run, _)| (format!("{app} to {to}"), run)),
    )?;

    // The loss of us-east-1, one command for every application.
    for synchronous in [false, true] {
        let mode = if synchronous {
            "synchronous"
        } else {
            "asynchronous"
        };
        let mut stack = Stack::start(
            &format!("bench_drill_dr_{mode}"),
            stack_options(synchronous),
        )
        .await?;
        let load = start_load(&stack, rate, if synchronous { "DRILLS" } else { "DRILLA" });
        tokio::time::sleep(WARM_UP).await;
        stack.kill_region(EAST);
        let answer = keelctl_json(&stack, &["failover", "--region", EAST, "--yes"]).await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let report = load.finish().await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let lost_legs = lost(&stack, WEST, &report).await?;
        steps += &step_timings(
            &format!("Each application's steps after us-east-1 was lost ({mode}), ms (the RTO runs from the command):"),
            answer["reports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|run| (run["app"].as_str().unwrap_or("?").to_owned(), run)),
        )?;
        for run in answer["reports"].as_array().into_iter().flatten() {
            let app = run["app"].as_str().unwrap_or("?");
            writeln!(
                out,
                "| region us-east-1 lost, `failover --region` | {mode} | {app} | {} | {} | {lost_legs} (whole drill; {}) | {} |",
                run["rto_ms"],
                answer["serving_after_ms"][app],
                run["rpo"]["how"].as_str().unwrap_or(""),
                report.legs_accepted
            )?;
        }
    }
    out += &steps;
    Ok(out)
}

/// Where each run's time went: every step's duration, as its journal recorded it.
fn step_timings<'a>(
    title: &str,
    runs: impl Iterator<Item = (String, &'a Value)>,
) -> anyhow::Result<String> {
    let steps = |run: &Value| -> Vec<(String, String)> {
        run["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|step| {
                let name = step["step"].as_str().unwrap_or("?").to_owned();
                let took = step["took_ms"]
                    .as_u64()
                    .map_or("-".to_owned(), |ms| ms.to_string());
                (name, took)
            })
            .collect()
    };
    let mut out = String::new();
    let mut header = None;
    for (label, run) in runs {
        let (names, took): (Vec<String>, Vec<String>) = steps(run).into_iter().unzip();
        if header.is_none() {
            writeln!(out, "\n{title}\n")?;
            writeln!(out, "| run | {} |", names.join(" | "))?;
            writeln!(out, "|---|{}", "---:|".repeat(names.len()))?;
            header = Some(names);
        }
        writeln!(out, "| {label} | {} |", took.join(" | "))?;
    }
    Ok(out)
}
