//! What tests submit: participants, trade blocks, streams of matching pairs, and the seed of a
//! randomized test.

use std::time::Duration;

use keel_generator::Client;

use crate::machine::repo_root;

pub fn participants() -> Vec<keel_generator::Credentials> {
    keel_generator::Credentials::load(&repo_root().join("deploy/local/participants.json"))
        .expect("participants file")
}

/// The UTC date `days` from today, as the API writes dates.
pub fn days_from_today(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

/// A valid block between IM-ALPHA and BR-NORTH (the example of DESIGN section 2), traded today for
/// settlement tomorrow: once MATCHED, its instructions wait in settlement for their date, so nothing
/// of it settles during a test. [`settling_block`] settles at once.
pub fn sample_block(trade_ref: &str) -> serde_json::Value {
    serde_json::json!({
        "trade_ref": trade_ref,
        "im_id": "IM-ALPHA",
        "broker_id": "BR-NORTH",
        "side": "BUY",
        "security": "US0378331005",
        "quantity": 1000,
        "price": "187.2500",
        "currency": "USD",
        "trade_date": days_from_today(0),
        "settlement_date": days_from_today(1),
        "allocations": [
            {"allocation_id": "1", "account": "IM-ALPHA-FUND-001", "quantity": 600},
            {"allocation_id": "2", "account": "IM-ALPHA-FUND-002", "quantity": 400}
        ]
    })
}

/// [`sample_block`] for settlement today: it settles as soon as it matches.
pub fn settling_block(trade_ref: &str) -> serde_json::Value {
    let mut block = sample_block(trade_ref);
    block["settlement_date"] = serde_json::json!(days_from_today(0));
    block
}

/// Submits `pairs` matching trades ([`sample_block`]s) between IM-ALPHA and BR-NORTH as a steady
/// stream: each request carries `per_request` legs of one side, with `pause` between rounds. Panics on
/// any refusal.
pub async fn stream_matching_pairs(
    client: Client,
    im: String,
    broker: String,
    prefix: String,
    pairs: usize,
    per_request: usize,
    pause: Duration,
) {
    stream_pairs(
        client,
        [im, broker],
        prefix,
        pairs,
        per_request,
        pause,
        sample_block,
    )
    .await
}

/// As [`stream_matching_pairs`], with each block made by `block` from its trade ref.
pub async fn stream_pairs(
    client: Client,
    [im, broker]: [String; 2],
    prefix: String,
    pairs: usize,
    per_request: usize,
    pause: Duration,
    block: fn(&str) -> serde_json::Value,
) {
    let blocks: Vec<serde_json::Value> = (0..pairs)
        .map(|i| block(&format!("{prefix}-{i:06}")))
        .collect();
    for chunk in blocks.chunks(per_request) {
        for token in [&im, &broker] {
            submit_until_accepted(&client, token, chunk).await;
        }
        tokio::time::sleep(pause).await;
    }
}

/// Submits a batch as a well-behaved client does: while ingress answers 429 (the pipeline is
/// behind: a broker restarting, a consumer killed, a busy machine), waits its `Retry-After` and
/// sends the same batch again (a leg is recorded once, whatever the retries). Panics on any other
/// refusal, or if it is still refused after two minutes.
pub async fn submit_until_accepted(client: &Client, token: &str, blocks: &[serde_json::Value]) {
    until_accepted(|| client.submit_batch(token, blocks)).await;
}

/// One block, as [`submit_until_accepted`] sends a batch; the receipt.
pub async fn submit_one_until_accepted(
    client: &Client,
    token: &str,
    block: &serde_json::Value,
) -> serde_json::Value {
    until_accepted(|| client.submit(token, block)).await
}

async fn until_accepted<F, Fut>(mut send: F) -> serde_json::Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u16, serde_json::Value)>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = send().await.expect("ingress reachable");
        if status == 429 && tokio::time::Instant::now() < deadline {
            let wait = body["error"]["retry_after_seconds"].as_u64().unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        assert_eq!(status, 202, "{body}");
        return body;
    }
}

/// The seed for a randomized test: `KEEL_SEED` to replay one, otherwise fresh. Printed either way.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("KEEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("{test}: seed {seed} (replay with KEEL_SEED={seed})");
    seed
}
