//! The broker is restarted in the middle of a stream; the pipeline resumes and completes with nothing
//! lost or duplicated. The relays publish with the idempotent producer, as in production, across the
//! restart; the consumers' advisory offset commits reach the broker again afterwards, and the broker
//! logs no panic.

use std::time::Duration;

use keel_system_tests::rand::{rngs::StdRng, Rng, SeedableRng};
use keel_system_tests::{assert_exactly_once, seed, stream_matching_pairs, Stack, StackOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

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
    // While the broker is down, accepted submissions wait in ingress's outbox; once they have waited
    // longer than the latency budget, ingress answers 429 and the stream waits and retries.
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

    // The advisory commits: the broker comes to hold the position each consumer stored in
    // Postgres (a commit lost in the restart is made again within seconds).
    let stored: i64 = stack
        .count("SELECT next_offset FROM matching.consumer_offsets WHERE topic = 'tm.trades' AND partition = 0")
        .await;
    let mut committed = Offset::Invalid;
    for _ in 0..20 {
        let brokers = stack.kafka_brokers.clone();
        committed = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "matching")
                .create()
                .unwrap();
            let mut partitions = TopicPartitionList::new();
            partitions.add_partition("tm.trades", 0);
            let committed = consumer
                .committed_offsets(partitions, Duration::from_secs(10))
                .unwrap();
            committed.find_partition("tm.trades", 0).unwrap().offset()
        })
        .await
        .unwrap();
        if committed == Offset::Offset(stored) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        committed,
        Offset::Offset(stored),
        "matching's advisory commit of tm.trades, 10 s after the stream"
    );
    let log = std::fs::read_to_string(stack.dir.join("logs/nisshi-us-east-1.log")).unwrap();
    assert!(
        !log.contains("panicked"),
        "the broker panicked: see {}",
        stack.dir.display()
    );
}
