//! The rest of the participants' API: ownership, cancel, the feed's cursor, signed webhooks with
//! retries, and the served OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use keel_system_tests::{repo_root, sample_block, Stack, StackOptions};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::Mutex;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn participants_see_only_their_trades_and_can_cancel_until_final() {
    let stack = Stack::start("api_cancel", StackOptions::default())
        .await
        .unwrap();
    let client = stack.client();
    let (im, broker, other) = (
        stack.token("im-alpha").await,
        stack.token("br-north").await,
        stack.token("im-beta").await,
    );
    let block = sample_block("T-CANCEL-1");
    let (_, receipt) = client.submit(&im, &block).await.unwrap();
    client.submit(&broker, &block).await.unwrap();
    let trade_id = receipt["trade_id"].as_str().unwrap();
    stack
        .wait_for_trade_status(&broker, trade_id, "MATCHED")
        .await;

    let path = format!("/v1/trades/{trade_id}");
    assert_eq!(
        client.get(&path, &other).await.unwrap().0,
        404,
        "another participant's trade does not exist for it"
    );
    assert_eq!(client.delete(&path, &other).await.unwrap().0, 404);
    assert_eq!(
        client.get("/v1/trades/not-a-uuid", &im).await.unwrap().0,
        404
    );

    let (status, body) = client.delete(&path, &broker).await.unwrap();
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("CANCEL_REQUESTED"))
    );
    stack
        .wait_for_trade_status(&im, trade_id, "CANCELLED")
        .await;
    let (status, body) = client.delete(&path, &im).await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "trade_final");

    // The other IM's feed holds nothing of this trade.
    let (_, feed) = client.get("/v1/notifications", &other).await.unwrap();
    assert_eq!(feed["notifications"], json!([]));
}

#[tokio::test]
async fn participants_read_their_own_reference_data_and_nobody_elses() {
    let stack = Stack::start("api_reference", StackOptions::default())
        .await
        .unwrap();
    let client = stack.client();
    let accounts = |body: &Value| -> Vec<String> {
        body["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["account"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, im) = client
        .get("/v1/reference-data", &stack.token("im-alpha").await)
        .await
        .unwrap();
    assert_eq!(status, 200, "{im}");
    assert_eq!(im["participant_id"], "IM-ALPHA");
    let funds = accounts(&im);
    assert!(funds.contains(&"IM-ALPHA-FUND-001".to_owned()), "{im}");
    assert!(
        funds.iter().all(|a| a.starts_with("IM-ALPHA-")),
        "an IM sees only its own funds: {funds:?}"
    );
    assert!(im.get("commission").is_none(), "an IM has no commission");
    assert!(
        im["securities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["isin"] == "US0378331005"),
        "{im}"
    );

    let (_, broker) = client
        .get("/v1/reference-data", &stack.token("br-north").await)
        .await
        .unwrap();
    assert_eq!(
        accounts(&broker),
        ["BR-NORTH-SETTLE", "BR-NORTH-FEES"],
        "{broker}"
    );
    assert_eq!(broker["commission"]["commission_bps"], "5");
    assert_eq!(client.get("/v1/reference-data", "").await.unwrap().0, 401);
}

#[tokio::test]
async fn the_feed_pages_with_its_cursor() {
    let stack = Stack::start("api_feed", StackOptions::default())
        .await
        .unwrap();
    let client = stack.client();
    let im = stack.token("im-alpha").await;
    for i in 0..3 {
        client
            .submit(&im, &sample_block(&format!("T-FEED-{i}")))
            .await
            .unwrap();
    }
    // Each lone leg gives RECEIVED and UNMATCHED to each party.
    stack
        .wait_for_count(
            "SELECT count(*) FROM notification.notifications WHERE recipient = 'IM-ALPHA'",
            6,
            WAIT,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = client
            .get(&format!("/v1/notifications?limit=4&after={cursor}"), &im)
            .await
            .unwrap();
        assert_eq!(status, 200, "{page}");
        let items = page["notifications"].as_array().unwrap().clone();
        if items.is_empty() {
            assert_eq!(
                page["next"].as_str().unwrap(),
                cursor,
                "an empty page keeps the cursor"
            );
            break;
        }
        assert!(items.len() <= 4);
        seen.extend(items);
        cursor = page["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen.len(), 6);
    let ids: std::collections::HashSet<_> =
        seen.iter().map(|n| n["notification_id"].clone()).collect();
    assert_eq!(ids.len(), 6, "no notification twice across pages");
    let (status, body) = client.get("/v1/notifications?after=-3", &im).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "after");
}

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

#[tokio::test]
async fn webhooks_are_signed_and_retried_until_delivered() {
    let stack = Stack::start("api_webhook", StackOptions::default())
        .await
        .unwrap();
    let client = stack.client();
    let im = stack.token("im-alpha").await;

    // A receiver on loopback that refuses its first delivery, to make Keel retry.
    let received: Received = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let (received, calls) = (received.clone(), calls.clone());
        axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: String| {
                let (received, calls) = (received.clone(), calls.clone());
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    received.lock().await.push((headers, body));
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, body) = client
        .put_json("/v1/webhook", &im, &json!({"url": "ftp://nowhere"}))
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    let (status, registered) = client
        .put_json("/v1/webhook", &im, &json!({"url": url}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{registered}");
    let secret = registered["secret"].as_str().unwrap().to_owned();

    client.submit(&im, &sample_block("T-HOOK-1")).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while received.lock().await.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhooks not delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries = received.lock().await.clone();
    let mut statuses = Vec::new();
    for (headers, body) in &deliveries {
        let signature = headers["keel-signature"].to_str().unwrap();
        let (t, v1) = signature.split_once(",v1=").unwrap();
        let timestamp = t.strip_prefix("t=").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.{body}").as_bytes());
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            v1,
            "signature verifies with the secret"
        );
        let notification: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            headers["keel-notification-id"].to_str().unwrap(),
            notification["notification_id"].as_str().unwrap()
        );
        statuses.push(notification["status"].as_str().unwrap().to_owned());
    }
    statuses.sort();
    assert_eq!(statuses, ["RECEIVED", "UNMATCHED"]);
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the refused delivery was retried"
    );
    stack
        .wait_for_count(
            "SELECT count(*) FROM notification.webhook_deliveries WHERE delivered_at IS NOT NULL",
            2,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        stack
            .count("SELECT max(attempts)::bigint FROM notification.webhook_deliveries")
            .await,
        2
    );
    server.abort();
}

#[tokio::test]
async fn the_served_openapi_document_is_the_checked_in_one() {
    let stack = Stack::start("api_openapi", StackOptions::default())
        .await
        .unwrap();
    let served = reqwest::get(format!("{}/openapi.yaml", stack.ingress_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let checked_in =
        std::fs::read_to_string(repo_root().join("services/ingress/openapi.yaml")).unwrap();
    assert_eq!(served, checked_in);
    for path in [
        "/oauth2/token:",
        "/v1/trade-blocks:",
        "/v1/trade-blocks/batch:",
        "/v1/trades/{trade_id}:",
        "/v1/notifications:",
        "/v1/accounts/{account}/positions:",
        "/v1/reference-data:",
    ] {
        assert!(served.contains(path), "{path} documented");
    }
}
