//! Retries are safe: the same leg twice is one leg; an Idempotency-Key replays its first answer and
//! refuses a different body.

use std::time::Duration;

use keel_system_tests::{sample_block, Stack, StackOptions};
use serde_json::json;

#[tokio::test]
async fn the_same_submission_twice_is_one_leg_and_a_reused_key_with_another_body_is_409() {
    let stack = Stack::start("idempotency", StackOptions::default())
        .await
        .unwrap();
    let client = stack.client();
    let im = stack.token("im-alpha").await;
    let block = sample_block("T-IDEM-1");

    let (first_status, first) = client.submit(&im, &block).await.unwrap();
    let (again_status, again) = client.submit(&im, &block).await.unwrap();
    assert_eq!((first_status, again_status), (202, 202));
    assert_eq!(first, again, "a retry gets the original answer");

    // Same leg and version with different content: refused, the first stays.
    let mut changed = block.clone();
    changed["price"] = json!("190.0000");
    let (status, body) = client.submit(&im, &changed).await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "leg_version_conflict");

    // Idempotency-Key: same key and body replays; same key and another body is 409.
    let keyed = sample_block("T-IDEM-2");
    let (status, original) = client
        .post_json("/v1/trade-blocks", &im, &keyed, Some("key-1"))
        .await
        .unwrap();
    assert_eq!(status, 202);
    let (status, replay) = client
        .post_json("/v1/trade-blocks", &im, &keyed, Some("key-1"))
        .await
        .unwrap();
    assert_eq!((status, &replay), (202, &original));
    let (status, body) = client
        .post_json(
            "/v1/trade-blocks",
            &im,
            &sample_block("T-IDEM-3"),
            Some("key-1"),
        )
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");

    // A batch retried whole is accepted once.
    let batch: Vec<_> = (0..5)
        .map(|i| sample_block(&format!("T-IDEM-B{i}")))
        .collect();
    let (status, first_batch) = client.submit_batch(&im, &batch).await.unwrap();
    assert_eq!(status, 202, "{first_batch}");
    let (status, second_batch) = client.submit_batch(&im, &batch).await.unwrap();
    assert_eq!((status, &second_batch), (202, &first_batch));

    // Two legs were accepted singly, five in the batch; each reaches matching once.
    stack
        .wait_for_count(
            "SELECT count(*) FROM matching.trades",
            7,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM ingress.submissions")
            .await,
        7
    );
    assert_eq!(stack.count("SELECT count(*) FROM ingress.outbox").await, 7);
    assert_eq!(stack.count("SELECT count(*) FROM ingestion.inbox").await, 7);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM matching.status_history WHERE status = 'RECEIVED'")
            .await,
        7
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM matching.trades WHERE status <> 'UNMATCHED'")
            .await,
        0
    );
}
