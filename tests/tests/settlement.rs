//! The settlement application end to end: delivery versus payment with commission, failures for lack
//! of cash or securities, duplicates, a crash mid-stream, and cancels before and after settlement.

use std::time::Duration;

use keel_system_tests::rand::{rngs::StdRng, Rng, SeedableRng};
use keel_system_tests::{
    sample_block, seed, settling_block, stream_pairs, submit_one_until_accepted, unpublished_sql,
    Stack, StackOptions,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn dec(raw: &str) -> Decimal {
    raw.parse().unwrap()
}

/// The account's positions as its owner reads them through the API, by asset code.
async fn positions(stack: &Stack, token: &str, account: &str) -> Vec<(String, Decimal)> {
    let (code, body) = stack
        .client()
        .get(&format!("/v1/accounts/{account}/positions"), token)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    body["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["asset"].as_str().unwrap().to_owned(),
                dec(p["amount"].as_str().unwrap()),
            )
        })
        .collect()
}

async fn position(stack: &Stack, token: &str, account: &str, asset: &str) -> Decimal {
    positions(stack, token, account)
        .await
        .into_iter()
        .find(|(code, _)| code == asset)
        .map(|(_, amount)| amount)
        .unwrap_or_default()
}

fn assert_ledger_verifies(stack: &Stack) {
    let output = stack.keelctl(&["ledger", "verify"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "keelctl ledger verify failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ledger verified"), "{stdout}");
}

async fn submit_pair(stack: &Stack, im: &str, broker: &str, block: &Value) -> String {
    let mut theirs = block.clone();
    theirs.as_object_mut().unwrap().remove("allocations");
    // As any client: a 429 while the pipeline is behind is waited out, not a failure.
    let client = stack.client();
    let receipt = submit_one_until_accepted(&client, im, block).await;
    submit_one_until_accepted(&client, broker, &theirs).await;
    receipt["trade_id"].as_str().unwrap().to_owned()
}

async fn request_cancel(stack: &Stack, token: &str, trade_id: &str) {
    let (code, body) = stack
        .client()
        .delete(&format!("/v1/trades/{trade_id}"), token)
        .await
        .unwrap();
    assert_eq!(code, 202, "{body}");
}

#[tokio::test]
async fn a_trade_settles_with_the_right_positions_and_fees() {
    let stack = Stack::start("settle", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let apple = "US0378331005";

    let trade_id = submit_pair(&stack, &im, &broker, &settling_block("T-SETTLE-1")).await;
    let trade = stack
        .wait_for_trade_status(&broker, &trade_id, "SETTLED")
        .await;
    let last = trade["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "2 allocations settled");

    // BUY 1,000 at 187.25 through BR-NORTH (5 bps): 600 to FUND-001, 400 to FUND-002.
    // 600 x 187.25 = 112,350.00, commission 56.175 -> 56.18; 400 x 187.25 = 74,900.00, commission 37.45.
    let cases = [
        (&im, "IM-ALPHA-FUND-001", "USD", "9999887593.82"),
        (&im, "IM-ALPHA-FUND-001", apple, "10000600"),
        (&im, "IM-ALPHA-FUND-002", "USD", "9999925062.55"),
        (&im, "IM-ALPHA-FUND-002", apple, "10000400"),
        (&broker, "BR-NORTH-SETTLE", "USD", "100000187250.00"),
        (&broker, "BR-NORTH-SETTLE", apple, "199999000"),
        (&broker, "BR-NORTH-FEES", "USD", "93.63"),
    ];
    for (token, account, asset, expected) in cases {
        assert_eq!(
            position(&stack, token, account, asset).await,
            dec(expected),
            "{account} {asset}"
        );
    }

    // Ownership: a broker cannot read an IM's fund, nor an IM a broker's account or another IM's.
    let client = stack.client();
    let other_im = stack.token("im-beta").await;
    for (token, account) in [
        (&broker, "IM-ALPHA-FUND-001"),
        (&im, "BR-NORTH-FEES"),
        (&other_im, "IM-ALPHA-FUND-001"),
        (&im, "NO-SUCH-ACCOUNT"),
    ] {
        let path = format!("/v1/accounts/{account}/positions");
        let (code, body) = client.get(&path, token).await.unwrap();
        assert_eq!(code, 404, "{account}: {body}");
    }

    // Both parties hear SETTLED once.
    stack
        .wait_for_count(
            &format!("SELECT count(*) FROM notification.notifications WHERE trade_id = '{trade_id}' AND status = 'SETTLED'"),
            2,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        stack
            .st_count("SELECT count(*) FROM settlement.postings")
            .await,
        12,
        "two instructions, six postings each"
    );
    assert_ledger_verifies(&stack);

    // A ledger that does not add up is caught, named, and fails the command.
    sqlx::query(
        "UPDATE settlement.positions SET amount = amount + 0.01
         WHERE account_id = 'BR-NORTH-FEES' AND asset_code = 'USD'",
    )
    .execute(&stack.st_db)
    .await
    .unwrap();
    let output = stack.keelctl(&["ledger", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "position of BR-NORTH-FEES in cash USD is 93.64, but its opening balance and postings sum to 93.63"
        ),
        "{stderr}"
    );
    let output = stack.keelctl(&["--json", "ledger", "verify"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(report["violation"]
        .as_str()
        .unwrap()
        .contains("BR-NORTH-FEES"));
}

#[tokio::test]
async fn settlement_fails_for_insufficient_cash_and_for_insufficient_securities() {
    let stack = Stack::start("settle_fail", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    for (side, expected) in [
        (
            "BUY",
            "insufficient cash in IM-ALPHA-FUND-999: needs 18734.36 USD, has 0",
        ),
        (
            "SELL",
            "insufficient securities in IM-ALPHA-FUND-999: needs 100 US0378331005, has 0",
        ),
    ] {
        let mut block = settling_block(&format!("T-FAIL-{side}"));
        block["side"] = json!(side);
        block["quantity"] = json!(100);
        block["allocations"] =
            json!([{"allocation_id": "1", "account": "IM-ALPHA-FUND-999", "quantity": 100}]);
        let trade_id = submit_pair(&stack, &im, &broker, &block).await;
        let trade = stack
            .wait_for_trade_status(&im, &trade_id, "SETTLEMENT_FAILED")
            .await;
        let reason = trade["history"].as_array().unwrap().last().unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            reason,
            format!("allocation 1: {expected}; 0 of 1 allocations settled")
        );
        stack
            .wait_for_count(
                &format!("SELECT count(*) FROM notification.notifications WHERE trade_id = '{trade_id}' AND status = 'SETTLEMENT_FAILED'"),
                2,
                WAIT,
            )
            .await
            .unwrap();
    }
    assert!(positions(&stack, &im, "IM-ALPHA-FUND-999").await.is_empty());
    assert_eq!(
        stack
            .st_count("SELECT count(*) FROM settlement.postings")
            .await,
        0
    );
    assert_eq!(
        stack
            .st_count("SELECT count(*) FROM settlement.instructions WHERE status = 'FAILED'")
            .await,
        2
    );
    assert_ledger_verifies(&stack);
}

#[tokio::test]
async fn a_duplicate_instruction_changes_nothing() {
    let stack = Stack::start("settle_dup", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let trade_id = submit_pair(&stack, &im, &broker, &settling_block("T-DUP-1")).await;
    stack.wait_for_trade_status(&im, &trade_id, "SETTLED").await;
    let before = positions(&stack, &im, "IM-ALPHA-FUND-001").await;
    let postings = stack
        .st_count("SELECT count(*) FROM settlement.postings")
        .await;

    // Publish the trade's instruction (both allocations) again, exactly as matching did.
    let sent: Vec<(String, String)> =
        sqlx::query_as("SELECT key, payload FROM matching.outbox WHERE topic = 'st.instructions'")
            .fetch_all(&stack.db)
            .await
            .unwrap();
    assert_eq!(sent.len(), 1, "one instruction message per trade");
    let instruction: Value = serde_json::from_str(&sent[0].1).unwrap();
    assert_eq!(instruction["allocations"].as_array().map(Vec::len), Some(2));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka_brokers)
        .create()
        .unwrap();
    for (key, payload) in &sent {
        producer
            .send(
                FutureRecord::to("st.instructions")
                    .key(key)
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // Settlement has consumed it once its stored position passes both messages.
    stack
        .wait_for_st_count(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM settlement.consumer_offsets WHERE topic = 'st.instructions'",
            2,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        stack
            .st_count("SELECT count(*) FROM settlement.postings")
            .await,
        postings
    );
    assert_eq!(positions(&stack, &im, "IM-ALPHA-FUND-001").await, before);
    assert_eq!(
        stack
            .st_count("SELECT count(*) FROM settlement.outbox")
            .await,
        1,
        "one result for the trade, none for the duplicate"
    );
    assert_eq!(
        stack
            .count(&format!("SELECT count(*) FROM matching.status_history WHERE trade_id = '{trade_id}' AND status = 'SETTLED'"))
            .await,
        1
    );
    assert_ledger_verifies(&stack);
}

#[tokio::test]
async fn settlement_killed_mid_stream_settles_every_instruction_exactly_once() {
    const PAIRS: usize = 400;
    let seed = seed("settlement_crash");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stack = Stack::start("settle_crash", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let stream = tokio::spawn(stream_pairs(
        stack.client(),
        [im.clone(), broker.clone()],
        "T-SCRASH".into(),
        PAIRS,
        10,
        Duration::from_millis(50),
        settling_block,
    ));
    for round in 0..2 {
        let kill_after = Duration::from_millis(rng.random_range(300..1200));
        let down_for = Duration::from_millis(rng.random_range(100..1000));
        tokio::time::sleep(kill_after).await;
        println!("round {round}: SIGKILL settlement after {kill_after:?}, down for {down_for:?}");
        stack.kill("settlement");
        tokio::time::sleep(down_for).await;
        stack.start_service("settlement").unwrap();
        stack.wait_ready("settlement", WAIT).await.unwrap();
    }
    stream.await.unwrap();

    let trades = PAIRS as i64;
    stack
        .wait_for_count(
            "SELECT count(*) FROM matching.trades WHERE status = 'SETTLED'",
            trades,
            Duration::from_secs(180),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let instructions = trades * 2;
    for (sql, expected) in [
        ("SELECT count(*) FROM settlement.inbox", trades),
        ("SELECT count(*) FROM settlement.instructions WHERE status = 'SETTLED'", instructions),
        ("SELECT count(*) FROM settlement.instructions", instructions),
        ("SELECT count(*) FROM settlement.postings", instructions * 6),
        (
            "SELECT count(*) FROM (SELECT instruction_id FROM settlement.postings GROUP BY instruction_id HAVING count(*) <> 6) odd",
            0,
        ),
        ("SELECT count(*) FROM settlement.outbox", trades),
        ("SELECT count(*) FROM settlement.dead_letters", 0),
    ] {
        assert_eq!(stack.st_count(sql).await, expected, "{sql}");
    }
    for (sql, expected) in [
        (
            "SELECT count(*) FROM matching.status_history WHERE status = 'SETTLED'",
            trades,
        ),
        ("SELECT count(*) FROM matching.inbox", trades * 2 + trades),
    ] {
        assert_eq!(stack.count(sql).await, expected, "{sql}");
    }
    stack
        .wait_for_count(
            "SELECT count(*) FROM notification.notifications WHERE status = 'SETTLED'",
            trades * 2,
            WAIT,
        )
        .await
        .unwrap();
    // Every allocation moved its shares exactly once.
    assert_eq!(
        position(&stack, &im, "IM-ALPHA-FUND-001", "US0378331005").await,
        Decimal::from(10_000_000 + 600 * PAIRS as i64)
    );
    assert_ledger_verifies(&stack);
}

#[tokio::test]
async fn a_matched_trade_cancelled_before_settlement_settles_nothing() {
    let mut stack = Stack::start("settle_cancel", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let opening = positions(&stack, &im, "IM-ALPHA-FUND-001").await;

    // Settles tomorrow: its instructions wait in settlement, and the cancel withdraws them.
    let trade_id = submit_pair(&stack, &im, &broker, &sample_block("T-SCANCEL-1")).await;
    stack.wait_for_trade_status(&im, &trade_id, "MATCHED").await;
    stack
        .wait_for_st_count(
            "SELECT count(*) FROM settlement.instructions WHERE status = 'PENDING'",
            2,
            WAIT,
        )
        .await
        .unwrap();
    request_cancel(&stack, &broker, &trade_id).await;
    stack
        .wait_for_trade_status(&im, &trade_id, "CANCELLED")
        .await;
    assert_eq!(
        stack
            .st_count("SELECT count(*) FROM settlement.instructions WHERE status = 'CANCELLED'")
            .await,
        2
    );
    // Even once their date comes, the settlement cycle leaves cancelled instructions alone.
    sqlx::query("UPDATE settlement.instructions SET settlement_date = current_date - 1")
        .execute(&stack.st_db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stack
            .st_count("SELECT count(*) FROM settlement.postings")
            .await,
        0
    );
    assert_eq!(positions(&stack, &im, "IM-ALPHA-FUND-001").await, opening);

    // A cancel that reaches settlement after it settled is refused, and only its requester hears.
    // Settlement and matching are held down so the cancel and the results race as they can in life.
    stack.kill("settlement");
    let late = submit_pair(&stack, &im, &broker, &settling_block("T-SCANCEL-2")).await;
    stack.wait_for_trade_status(&im, &late, "MATCHED").await;
    // Matching's relay publishes the instructions just after the MATCHED commit; held down before
    // that, it would keep them from settlement.
    stack
        .wait_for_count(&unpublished_sql("matching", "st.instructions"), 0, WAIT)
        .await
        .unwrap();
    stack.kill("matching");
    stack.start_service("settlement").unwrap();
    stack
        .wait_for_st_count(
            &format!("SELECT count(*) FROM settlement.instructions WHERE trade_id = '{late}' AND status = 'SETTLED'"),
            2,
            WAIT,
        )
        .await
        .unwrap();
    request_cancel(&stack, &im, &late).await;
    stack.start_service("matching").unwrap();
    stack.wait_for_trade_status(&broker, &late, "SETTLED").await;
    let rejected = format!(
        "SELECT count(*) FROM notification.notifications WHERE trade_id = '{late}' AND status = 'REJECTED'"
    );
    stack.wait_for_count(&rejected, 1, WAIT).await.unwrap();
    assert_eq!(
        stack
            .count(&format!("{rejected} AND recipient = 'IM-ALPHA'"))
            .await,
        1
    );
    assert_ledger_verifies(&stack);
}
