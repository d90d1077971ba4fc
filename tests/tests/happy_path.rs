//! Both legs give one MATCHED trade; differing legs give MISMATCHED naming each field; a lone leg is
//! UNMATCHED, then EXPIRED. Each party hears of each status change once.

use std::time::Duration;

use keel_system_tests::{sample_block, Stack, StackOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

async fn notifications_for(stack: &Stack, token: &str, trade_id: &str) -> Vec<Value> {
    let (code, body) = stack
        .client()
        .get("/v1/notifications?limit=1000", token)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["trade_id"] == trade_id)
        .cloned()
        .collect()
}

/// Notification is asynchronous: waits until `count` notifications of the trade exist.
async fn wait_for_notifications(stack: &Stack, trade_id: &str, count: i64) {
    let sql =
        format!("SELECT count(*) FROM notification.notifications WHERE trade_id = '{trade_id}'");
    stack.wait_for_count(&sql, count, WAIT).await.unwrap();
}

fn statuses(notifications: &[Value]) -> Vec<&str> {
    notifications
        .iter()
        .map(|n| n["status"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn two_matching_legs_give_one_matched_trade_and_one_notification_each() {
    let stack = Stack::start("matched", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let block = sample_block("T-MATCH-1");
    let (code, first) = stack.client().submit(&im, &block).await.unwrap();
    assert_eq!(code, 202, "{first}");
    assert_eq!(first["status"], "RECEIVED");
    let (code, second) = stack.client().submit(&broker, &block).await.unwrap();
    assert_eq!(code, 202, "{second}");
    assert_eq!(
        first["trade_id"], second["trade_id"],
        "both legs belong to one trade"
    );
    assert_ne!(first["leg_id"], second["leg_id"]);

    let trade_id = first["trade_id"].as_str().unwrap();
    let trade = stack.wait_for_trade_status(&im, trade_id, "MATCHED").await;
    assert_eq!(trade["legs"].as_array().unwrap().len(), 2);
    let history: Vec<&str> = trade["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["RECEIVED", "UNMATCHED", "RECEIVED", "MATCHED"]);

    // Notification is asynchronous: wait until both parties have all four, then check none repeats.
    wait_for_notifications(&stack, trade_id, 8).await;
    for token in [&im, &broker] {
        let seen = notifications_for(&stack, token, trade_id).await;
        assert_eq!(
            statuses(&seen),
            ["RECEIVED", "UNMATCHED", "RECEIVED", "MATCHED"]
        );
        assert_eq!(seen.iter().filter(|n| n["status"] == "MATCHED").count(), 1);
    }
}

#[tokio::test]
async fn differing_legs_are_mismatched_naming_every_field() {
    let stack = Stack::start("mismatched", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let block = sample_block("T-MISMATCH-1");
    let mut theirs = block.clone();
    theirs["price"] = json!("187.3000");
    theirs["quantity"] = json!(900);
    theirs["settlement_date"] = json!(keel_system_tests::days_from_today(2));
    theirs.as_object_mut().unwrap().remove("allocations");
    let (_, receipt) = stack.client().submit(&im, &block).await.unwrap();
    let (code, _) = stack.client().submit(&broker, &theirs).await.unwrap();
    assert_eq!(code, 202);

    let trade_id = receipt["trade_id"].as_str().unwrap();
    let trade = stack
        .wait_for_trade_status(&broker, trade_id, "MISMATCHED")
        .await;
    let last = trade["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["differing_fields"],
        json!(["quantity", "price", "settlement_date"])
    );

    wait_for_notifications(&stack, trade_id, 8).await;
    let seen = notifications_for(&stack, &im, trade_id).await;
    let mismatch = seen
        .iter()
        .find(|n| n["status"] == "MISMATCHED")
        .expect("a MISMATCHED notification");
    assert_eq!(
        mismatch["differing_fields"],
        json!(["quantity", "price", "settlement_date"])
    );
}

#[tokio::test]
async fn a_lone_leg_is_unmatched_then_expires_after_the_window() {
    let stack = Stack::start(
        "expired",
        StackOptions {
            match_window_seconds: 2,
            ..StackOptions::default()
        },
    )
    .await
    .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let (_, receipt) = stack
        .client()
        .submit(&im, &sample_block("T-LONE-1"))
        .await
        .unwrap();
    let trade_id = receipt["trade_id"].as_str().unwrap();
    stack
        .wait_for_trade_status(&im, trade_id, "UNMATCHED")
        .await;
    let trade = stack.wait_for_trade_status(&im, trade_id, "EXPIRED").await;

    let history = trade["history"].as_array().unwrap();
    let unmatched_at: chrono::DateTime<chrono::Utc> =
        history[1]["at"].as_str().unwrap().parse().unwrap();
    let expired_at: chrono::DateTime<chrono::Utc> =
        history[2]["at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        (expired_at - unmatched_at).num_milliseconds(),
        2000,
        "measured from the leg's own receipt"
    );

    // The counterparty heard of it too, and a late leg is refused to its sender only.
    wait_for_notifications(&stack, trade_id, 6).await;
    assert_eq!(
        statuses(&notifications_for(&stack, &broker, trade_id).await),
        ["RECEIVED", "UNMATCHED", "EXPIRED"]
    );
    stack
        .client()
        .submit(&broker, &sample_block("T-LONE-1"))
        .await
        .unwrap();
    stack
        .wait_for_count(
            &format!("SELECT count(*) FROM notification.notifications WHERE trade_id = '{trade_id}' AND status = 'REJECTED'"),
            1,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        statuses(&notifications_for(&stack, &im, trade_id).await),
        ["RECEIVED", "UNMATCHED", "EXPIRED"]
    );
}
