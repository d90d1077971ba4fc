//! The broker is restarted in the middle of a stream; the pipeline resumes and completes with nothing
//! lost or duplicated. It runs the producer as the local stack does (not idempotent, one request in
//! flight): tansu 0.6 panics in its idempotent-produce check after a restart (docs/decisions.md).

use std::time::Duration;

use keel_system_tests::rand::{rngs::StdRng, Rng, SeedableRng};
use keel_system_tests::{assert_exactly_once, seed, stream_matching_pairs, Stack, StackOptions};

const PAIRS: usize = 600;

#[tokio::test]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let seed = seed("broker_restart");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stack = Stack::start("broker_restart", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);

    let stream = tokio::spawn(stream_matching_pairs(
        stack.client(),
        im,
        broker,
        "T-BROKER".into(),
        PAIRS,
        20,
        Duration::from_millis(40),
    ));
    let restart_after = Duration::from_millis(rng.random_range(300..1000));
    let down_for = Duration::from_millis(rng.random_range(500..2000));
    tokio::time::sleep(restart_after).await;
    println!("restarting the broker after {restart_after:?}, down for {down_for:?}");
    stack.restart_broker(down_for).await.unwrap();
    // Ingress keeps accepting while the broker is down: submissions wait in its outbox.
    stream.await.unwrap();

    stack
        .wait_for_count(
            "SELECT count(*) FROM notification.notifications",
            PAIRS as i64 * 8,
            Duration::from_secs(180),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(&stack, PAIRS as i64).await;
}
