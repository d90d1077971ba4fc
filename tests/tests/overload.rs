//! Overload is refused, not queued (DESIGN section 3): far more is offered than the stack can take,
//! for a bounded time. Some submissions get 429 with `Retry-After` and a JSON error; every leg that
//! got a 202 reaches exactly one final status (SETTLED, or EXPIRED for a leg whose counterpart was
//! refused), nothing is duplicated, the ledger verifies, and once the offer stops a new pair settles
//! promptly, with no restart and no wiping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_system_tests::{settling_block, Stack, StackOptions};
use serde_json::Value;

const CLIENTS: usize = 12;
const PER_REQUEST: usize = 100;
const OFFER_FOR: Duration = Duration::from_secs(8);
/// A lone leg (its counterpart refused) expires after this.
const MATCH_WINDOW_SECONDS: i64 = 15;

#[tokio::test]
async fn overload_gets_429_and_loses_or_delays_nothing_accepted() {
    let stack = Stack::start(
        "overload",
        StackOptions {
            match_window_seconds: MATCH_WINDOW_SECONDS,
            extra_env: vec![
                ("KEEL_ADMISSION__MAX_BACKLOG".into(), "400".into()),
                ("KEEL_ADMISSION__CHECK_INTERVAL_MS".into(), "100".into()),
            ],
            ..StackOptions::default()
        },
    )
    .await
    .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);

    // Each client sends batches of matching pairs as fast as answers come, IM side then broker
    // side, and gives up on whatever is refused.
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for client_index in 0..CLIENTS {
        let (client, im, broker) = (stack.client(), im.clone(), broker.clone());
        let (accepted, refused) = (accepted.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let mut round = 0;
            let mut answers_429: Vec<(Option<String>, Value)> = Vec::new();
            while started.elapsed() < OFFER_FOR {
                let blocks: Vec<Value> = (0..PER_REQUEST)
                    .map(|i| settling_block(&format!("T-OVER-{client_index}-{round}-{i:03}")))
                    .collect();
                for token in [&im, &broker] {
                    let response = client
                        .http()
                        .post(client.url("/v1/trade-blocks/batch"))
                        .bearer_auth(token)
                        .json(&blocks)
                        .send()
                        .await
                        .expect("ingress reachable");
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body: Value = response.json().await.unwrap();
                    match status {
                        202 => accepted.fetch_add(PER_REQUEST as u64, Ordering::Relaxed),
                        429 => {
                            answers_429.push((retry_after, body));
                            refused.fetch_add(PER_REQUEST as u64, Ordering::Relaxed)
                        }
                        other => panic!("unexpected answer {other}: {body}"),
                    };
                }
                round += 1;
            }
            answers_429
        }));
    }
    let mut refusals = Vec::new();
    for client in clients {
        refusals.extend(client.await.unwrap());
    }
    let offered_for = started.elapsed();
    let (accepted, refused) = (
        accepted.load(Ordering::Relaxed) as i64,
        refused.load(Ordering::Relaxed),
    );
    println!("offered for {offered_for:?}: {accepted} legs accepted, {refused} refused with 429");
    assert!(refused > 0, "the offer never overloaded the stack");
    assert!(accepted > 0, "nothing was accepted");
    let (retry_after, body) = &refusals[0];
    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(" behind"),
        "{body}"
    );

    // Every accepted leg ends once: both legs in, SETTLED; one leg in, EXPIRED after its window.
    assert_eq!(
        stack
            .count("SELECT count(*) FROM ingress.submissions")
            .await,
        accepted
    );
    let finals = "SELECT count(*) FROM matching.trades WHERE status IN ('SETTLED', 'EXPIRED')";
    let trades = "SELECT count(DISTINCT trade_id) FROM ingress.submissions";
    let trades = stack.count(trades).await;
    stack
        .wait_for_count(finals, trades, Duration::from_secs(240))
        .await
        .unwrap();
    for (sql, expected) in [
        ("SELECT count(*) FROM ingestion.inbox", accepted),
        ("SELECT count(*) FROM matching.inbox WHERE topic = 'tm.trades'", accepted),
        (
            "SELECT count(*) FROM (SELECT trade_id FROM matching.status_history
               WHERE status IN ('SETTLED', 'EXPIRED', 'SETTLEMENT_FAILED') GROUP BY trade_id HAVING count(*) <> 1) twice",
            0,
        ),
        (
            "SELECT count(*) FROM (SELECT trade_id, seq FROM matching.status_history GROUP BY trade_id, seq HAVING count(*) > 1) d",
            0,
        ),
        (
            "SELECT count(*) FROM (SELECT notification_id FROM notification.notifications GROUP BY notification_id HAVING count(*) > 1) d",
            0,
        ),
    ] {
        assert_eq!(stack.count(sql).await, expected, "{sql}");
    }
    let settled = stack
        .count("SELECT count(*) FROM matching.trades WHERE status = 'SETTLED'")
        .await;
    assert_eq!(
        stack
            .st_count("SELECT count(*) FROM settlement.instructions WHERE status = 'SETTLED'")
            .await,
        settled * 2,
        "two allocations settled per settled trade"
    );
    let verify = stack.keelctl(&["ledger", "verify"]);
    assert!(verify.status.success(), "{verify:?}");

    // Recovered: a new pair is accepted and settles promptly.
    let block = settling_block("T-OVER-AFTER");
    let begun = Instant::now();
    let client = stack.client();
    let mut trade_id = String::new();
    for token in [&im, &broker] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = client.submit(token, &block).await.unwrap();
            if status == 202 {
                trade_id = body["trade_id"].as_str().unwrap().to_owned();
                break;
            }
            assert_eq!(status, 429, "{body}");
            assert!(
                Instant::now() < deadline,
                "still refusing after 30 s: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stack.wait_for_trade_status(&im, &trade_id, "SETTLED").await;
    println!(
        "a new pair settled {:?} after the offer stopped",
        begun.elapsed()
    );
    assert!(
        begun.elapsed() < Duration::from_secs(20),
        "a new pair took {:?} to settle after the overload",
        begun.elapsed()
    );
}
