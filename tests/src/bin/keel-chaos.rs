//! `make chaos`: chaos runs one after another, each a fresh two-region stack under generator load
//! with its own seeded schedule of faults, healed, settled and checked (keel_system_tests::chaos).
//! Prints each run as it ends, then a table of runs, faults by class and anomalies by kind, and
//! the seed of every run that broke an invariant. Exit 1 if any did.
//!
//! `KEEL_SEED` (or `SEED`) replays: the first run uses it, later ones seeds drawn from it.
//! `RUNS` (default 1), `KEEL_CHAOS_WINDOW_SECONDS` (30), `KEEL_CHAOS_FAULTS` (8),
//! `KEEL_CHAOS_RATE` legs/s (100).

use std::collections::BTreeMap;
use std::time::Duration;

use keel_chaos::FaultClass;
use keel_system_tests::chaos::{self, ChaosOptions};

fn var<T: std::str::FromStr>(names: &[&str], default: T) -> T {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let first: u64 = var(&["KEEL_SEED", "SEED"], rand::random());
    let runs: usize = var(&["RUNS", "KEEL_CHAOS_RUNS"], 1);
    let options = ChaosOptions {
        window: Duration::from_secs(var(&["KEEL_CHAOS_WINDOW_SECONDS"], 30)),
        faults: var(&["KEEL_CHAOS_FAULTS"], 8),
        rate: var(&["KEEL_CHAOS_RATE"], 100.0),
        release: true,
        ..ChaosOptions::default()
    };
    println!("keel-chaos: {runs} run(s) from seed {first}: {options:?}");
    let mut faults: BTreeMap<FaultClass, usize> = BTreeMap::new();
    let mut anomalies: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    let (mut legs, mut trades) = (0, 0);
    for (index, seed) in chaos::seeds(first, runs).into_iter().enumerate() {
        let outcome = match chaos::run(&format!("chaos_{index}"), seed, &options).await {
            Ok(outcome) => outcome,
            Err(error) => {
                println!("run {index} (seed {seed}) could not run: {error:#}");
                failed.push((seed, format!("could not run: {error:#}")));
                continue;
            }
        };
        for applied in &outcome.applied {
            *faults.entry(applied.fault.class()).or_default() += 1;
        }
        for anomaly in &outcome.anomalies {
            let kind = serde_json::to_value(anomaly)?["anomaly"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            *anomalies.entry(kind).or_default() += 1;
        }
        for exited in &outcome.exited_by_themselves {
            *anomalies.entry(format!("exited: {exited}")).or_default() += 1;
        }
        legs += outcome.legs_acknowledged;
        trades += outcome.trades;
        println!("run {index}: {}", outcome.summary());
        if !outcome.ok() {
            println!("{}", outcome.explain());
            failed.push((seed, format!("{} anomalies", outcome.anomalies.len())));
        }
    }

    println!("\n| runs | failed | legs acknowledged | trades |\n|---|---|---|---|");
    println!("| {runs} | {} | {legs} | {trades} |", failed.len());
    println!("\n| fault class | injected |\n|---|---|");
    for class in FaultClass::ALL {
        println!(
            "| {} | {} |",
            class.name(),
            faults.get(&class).copied().unwrap_or(0)
        );
    }
    println!("\n| anomaly | found |\n|---|---|");
    if anomalies.is_empty() {
        println!("| none | 0 |");
    }
    for (kind, count) in &anomalies {
        println!("| {kind} | {count} |");
    }
    for (seed, why) in &failed {
        println!("failed: seed {seed} ({why}); replay with make chaos SEED={seed}");
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
