//! A stage scaled out (DESIGN section 4): two matching instances split four partitions between them
//! by configuration; one is killed with SIGKILL mid-stream and started again. Every leg is still
//! processed exactly once at every stage, each instance consumed its own partitions, and one relay
//! published the shared outbox at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_system_tests::rand::{rngs::StdRng, Rng, SeedableRng};
use keel_system_tests::{
    assert_exactly_once, seed, stream_matching_pairs, Stack, StackOptions, EAST,
};

const PAIRS: usize = 600;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn two_instances_of_matching_on_four_partitions_one_killed_lose_and_duplicate_nothing() {
    let seed = seed("scale_out");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stack = Stack::start(
        "scale_out",
        StackOptions {
            extra_env: vec![("KEEL_KAFKA__PARTITIONS".into(), "4".into())],
            instances: BTreeMap::from([("matching", 2)]),
            ..StackOptions::default()
        },
    )
    .await
    .unwrap();
    stack
        .wait_instance_ready_in(EAST, "matching", 1, WAIT)
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let stream = tokio::spawn(stream_matching_pairs(
        stack.client(),
        im,
        broker,
        "T-SCALE".into(),
        PAIRS,
        20,
        Duration::from_millis(40),
    ));
    let kill_after = Duration::from_millis(rng.random_range(300..1500));
    let down_for = Duration::from_millis(rng.random_range(200..1500));
    tokio::time::sleep(kill_after).await;
    println!("SIGKILL matching #1 after {kill_after:?}, down for {down_for:?}");
    stack.kill_instance_in(EAST, "matching", 1);
    tokio::time::sleep(down_for).await;
    stack.start_instance_in(EAST, "matching", 1).unwrap();
    stream.await.unwrap();

    let trades = PAIRS as i64;
    stack
        .wait_for_count(
            "SELECT count(*) FROM notification.notifications",
            trades * 8,
            Duration::from_secs(180),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(&stack, trades).await;

    // Both instances consumed: every partition of tm.trades has a stored position, and each
    // instance's log names the partitions it was assigned.
    assert_eq!(
        stack
            .count("SELECT count(*) FROM matching.consumer_offsets WHERE topic = 'tm.trades' AND next_offset > 0")
            .await,
        4
    );
    for (log, partitions) in [
        ("logs/matching-us-east-1.log", "[0, 2]"),
        ("logs/matching-1-us-east-1.log", "[1, 3]"),
    ] {
        let log = std::fs::read_to_string(stack.dir.join(log)).unwrap();
        let assigned: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("consumer assigned") && line.contains("tm.trades"))
            .collect();
        assert!(!assigned.is_empty(), "no assignment logged in {log}");
        assert!(
            assigned.iter().all(|line| line.contains(partitions)),
            "expected partitions {partitions}: {assigned:?}"
        );
    }
}
