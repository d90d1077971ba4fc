//! The generator binary submits through the API at its rate with its mix, and SIGTERM stops it
//! cleanly.

use std::process::Command;
use std::time::{Duration, Instant};

use keel_system_tests::{bin_dir, repo_root, Stack, StackOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[tokio::test]
async fn the_generator_submits_its_mix_and_stops_cleanly_on_sigterm() {
    let stack = Stack::start("generator", StackOptions::default())
        .await
        .unwrap();
    let mut generator = Command::new(bin_dir(false).join("keel-generator"))
        .current_dir(repo_root())
        .args([
            "--ingress",
            &stack.ingress_url,
            "--rate",
            "40",
            "--seed",
            "11",
        ])
        .args([
            "--mix",
            "matching=0.5,mismatching=0.2,unmatched=0.1,invalid=0.2",
        ])
        .spawn()
        .unwrap();
    // Stop it once it has been heard from (its start-up time varies with the machine's load), then
    // check it kept to its rate meanwhile.
    let started = Instant::now();
    stack
        .wait_for_at_least(
            "SELECT count(*) FROM ingress.submissions",
            60,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    kill(Pid::from_raw(generator.id() as i32), Signal::SIGTERM).unwrap();
    let ran_for = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = generator.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the generator did not stop within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");

    // About 40 legs/s (the invalid ones were refused and never recorded), never more than its rate
    // allows over the time it ran, with one tick's flush to spare.
    let accepted = stack
        .count("SELECT count(*) FROM ingress.submissions")
        .await;
    let most = (40.0 * ran_for.as_secs_f64()).ceil() as i64 + 10;
    assert!(
        (60..=most).contains(&accepted),
        "{accepted} legs accepted in {ran_for:?}"
    );
    stack
        .wait_for_count(
            "SELECT count(*) FROM ingestion.inbox",
            accepted,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        stack
            .count("SELECT count(*) FROM matching.trades WHERE status = 'REJECTED'")
            .await,
        0
    );
    // Generated trades settle the same day, so a matched trade may already be SETTLED (or
    // SETTLEMENT_FAILED, for the failing share) when this looks.
    let statuses = stack
        .count(
            "SELECT count(DISTINCT CASE WHEN status IN ('SETTLED', 'SETTLEMENT_FAILED') THEN 'MATCHED' ELSE status END)
             FROM matching.trades WHERE status IN ('MATCHED', 'SETTLED', 'SETTLEMENT_FAILED', 'MISMATCHED', 'UNMATCHED')",
        )
        .await;
    assert_eq!(
        statuses, 3,
        "matching, mismatching and lone legs were all generated"
    );
}
