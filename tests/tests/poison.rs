//! A poison message goes to the dead-letter table and topic and the stream goes on; a run of them
//! beyond the limit stops the consumer, which says why instead of skipping everything.

use std::time::Duration;

use keel_system_tests::{published_sql, sample_block, Stack, StackOptions};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const WAIT: Duration = Duration::from_secs(30);

async fn produce_garbage(stack: &Stack, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka_brokers)
        .create()
        .unwrap();
    for i in 0..count {
        let payload = format!("not json {i}");
        producer
            .send(
                FutureRecord::to("tm.submissions")
                    .key("IM-ALPHA|BR-NORTH|X")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

#[tokio::test]
async fn poison_is_set_aside_then_too_much_poison_stops_the_consumer() {
    let mut stack = Stack::start("poison", StackOptions::default())
        .await
        .unwrap();
    let im = stack.token("im-alpha").await;

    produce_garbage(&stack, 1).await;
    stack
        .client()
        .submit(&im, &sample_block("T-AFTER-POISON"))
        .await
        .unwrap();
    stack
        .wait_for_count("SELECT count(*) FROM matching.trades", 1, WAIT)
        .await
        .unwrap();
    assert_eq!(
        stack
            .count("SELECT count(*) FROM ingestion.dead_letters")
            .await,
        1
    );
    let error: String = sqlx::query_scalar("SELECT error FROM ingestion.dead_letters")
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert!(error.contains("undecodable"), "{error}");
    stack
        .wait_for_count(&published_sql("ingestion", "tm.dead-letters"), 1, WAIT)
        .await
        .unwrap();

    // Eleven in a row is past the default limit of ten: the consumer stops and /readyz says why.
    produce_garbage(&stack, 11).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let (status, body) = stack.readiness("ingestion").await.unwrap();
        if status == 503 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingestion stayed ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        body.contains("KEEL-E001") && body.contains("in a row"),
        "{body}"
    );
    assert!(
        stack.is_running("ingestion"),
        "it stops consuming, not running: the alarm stays visible"
    );
    // At most the ten within the limit were set aside (those in batches committed before the limit
    // broke); the one that broke it, and all after, wait in the topic for an operator.
    let set_aside = stack
        .count("SELECT count(*) FROM ingestion.dead_letters")
        .await;
    assert!((1..=11).contains(&set_aside), "{set_aside} dead letters");
    stack
        .client()
        .submit(&im, &sample_block("T-STUCK"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.count("SELECT count(*) FROM matching.trades").await,
        1,
        "nothing is skipped past the poison"
    );
}
