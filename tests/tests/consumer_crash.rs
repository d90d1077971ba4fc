//! Each consumer is killed with SIGKILL in the middle of a stream of batches and restarted; every leg
//! is still processed exactly once at every stage.

use std::time::Duration;

use keel_system_tests::rand::{rngs::StdRng, Rng, SeedableRng};
use keel_system_tests::{assert_exactly_once, seed, stream_matching_pairs, Stack, StackOptions};

const PAIRS_PER_ROUND: usize = 400;

#[tokio::test]
async fn each_consumer_killed_mid_stream_loses_and_duplicates_nothing() {
    let seed = seed("consumer_crash");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stack = Stack::start("consumer_crash", four_partitions())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);

    let victims = ["ingestion", "matching", "notification"];
    for (round, victim) in victims.into_iter().enumerate() {
        let stream = tokio::spawn(stream_matching_pairs(
            stack.client(),
            im.clone(),
            broker.clone(),
            format!("T-CRASH-{round}"),
            PAIRS_PER_ROUND,
            20,
            Duration::from_millis(40),
        ));
        let kill_after = Duration::from_millis(rng.random_range(200..800));
        let down_for = Duration::from_millis(rng.random_range(100..1000));
        tokio::time::sleep(kill_after).await;
        println!("round {round}: SIGKILL {victim} after {kill_after:?}, down for {down_for:?}");
        stack.kill(victim);
        tokio::time::sleep(down_for).await;
        stack.start_service(victim).unwrap();
        stream.await.unwrap();
    }

    let trades = (PAIRS_PER_ROUND * victims.len()) as i64;
    stack
        .wait_for_count(
            "SELECT count(*) FROM notification.notifications",
            trades * 8,
            Duration::from_secs(180),
        )
        .await
        .unwrap();
    // Let anything still in flight land before checking nothing was counted twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(&stack, trades).await;
}

/// Several partitions per topic, so offsets are stored and restored per partition.
fn four_partitions() -> StackOptions {
    let env = [("KEEL_KAFKA__PARTITIONS", "4")];
    StackOptions {
        extra_env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..StackOptions::default()
    }
}
