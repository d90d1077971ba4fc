//! The chaos suite's bounded subset (`make chaos` runs many): a few seeded runs of random faults
//! over a two-region stack under load, each checked for every invariant. The seed of each run is
//! printed; `KEEL_SEED` replays the first.

use keel_system_tests::chaos::{self, ChaosOptions};

/// Runs in `make test`; `KEEL_CHAOS_RUNS` asks for more.
const RUNS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_under_load_break_no_invariant() {
    let first = keel_system_tests::seed("chaos");
    let runs = std::env::var("KEEL_CHAOS_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(RUNS);
    let mut failed = Vec::new();
    for (index, seed) in chaos::seeds(first, runs).into_iter().enumerate() {
        let outcome = chaos::run(&format!("chaos_{index}"), seed, &ChaosOptions::default())
            .await
            .unwrap();
        println!("chaos run {index}: {}", outcome.summary());
        if !outcome.ok() {
            failed.push(outcome.explain());
        }
    }
    assert!(
        failed.is_empty(),
        "invariants broken:\n{}",
        failed.join("\n")
    );
}
