//! Bad input gets a 4xx naming the field; nothing of it reaches a topic; no service crashes.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keel_system_tests::{sample_block, service_names, Stack, StackOptions};
use serde_json::{json, Value};

fn field_codes(body: &Value) -> Vec<(String, String)> {
    body["error"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| {
                    (
                        f["field"].as_str().unwrap().to_owned(),
                        f["code"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn with(field: &str, value: Value) -> Value {
    let mut block = sample_block("T-BAD");
    block[field] = value;
    block
}

#[tokio::test]
async fn bad_input_is_refused_with_a_field_level_error_and_reaches_no_topic() {
    let mut stack = Stack::start("bad_input", StackOptions::default())
        .await
        .unwrap();
    let client = stack.client();
    let im = stack.token("im-alpha").await;
    let stranger = stack.token("br-south").await;

    let mut no_allocations = sample_block("T-BAD");
    no_allocations
        .as_object_mut()
        .unwrap()
        .remove("allocations");
    let allocated_to = |account: &str| {
        let mut block = sample_block("T-BAD");
        block["allocations"][1]["account"] = json!(account);
        block
    };
    let mut missing_price = sample_block("T-BAD");
    missing_price.as_object_mut().unwrap().remove("price");
    let cases: Vec<(&str, &String, Value, &str, &str)> = vec![
        ("missing field", &im, missing_price, "price", "missing"),
        (
            "bad ISIN check digit",
            &im,
            with("security", json!("US0378331006")),
            "security",
            "invalid_isin_check_digit",
        ),
        (
            "float price",
            &im,
            with("price", json!(187.25)),
            "price",
            "not_a_decimal_string",
        ),
        (
            "negative price",
            &im,
            with("price", json!("-187.25")),
            "price",
            "not_positive",
        ),
        (
            "zero quantity",
            &im,
            with("quantity", json!(0)),
            "quantity",
            "not_positive",
        ),
        (
            "allocations not summing",
            &im,
            with("quantity", json!(1001)),
            "allocations",
            "quantity_mismatch",
        ),
        (
            "IM without allocations",
            &im,
            no_allocations,
            "allocations",
            "required",
        ),
        (
            "sender not a party",
            &stranger,
            sample_block("T-BAD"),
            "sender",
            "sender_not_party",
        ),
        (
            "unknown counterparty",
            &im,
            with("broker_id", json!("BR-NOBODY")),
            "broker_id",
            "unknown_participant",
        ),
        // Reference data, checked at the door rather than failing at settlement.
        (
            "unknown security",
            &im,
            with("security", json!("US88160R1022")),
            "security",
            "unknown_security",
        ),
        (
            "unknown account",
            &im,
            allocated_to("IM-ALPHA-FUND-404"),
            "allocations[1].account",
            "unknown_account",
        ),
        (
            "another IM's fund",
            &im,
            allocated_to("IM-BETA-FUND-001"),
            "allocations[1].account",
            "foreign_account",
        ),
    ];
    for (name, token, block, field, code) in cases {
        let (status, body) = client.submit(token, &block).await.unwrap();
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed", "{name}");
        assert!(
            field_codes(&body).contains(&(field.to_owned(), code.to_owned())),
            "{name}: {body}"
        );
    }

    let (status, body) = client
        .post_raw("/v1/trade-blocks", &im, "{\"trade_ref\": ")
        .await
        .unwrap();
    assert_eq!(status, 400, "malformed JSON: {body}");
    assert_eq!(body["error"]["code"], "malformed_json");

    let over_limit: Vec<Value> = (0..1001)
        .map(|i| sample_block(&format!("T-BATCH-{i}")))
        .collect();
    let (status, body) = client.submit_batch(&im, &over_limit).await.unwrap();
    assert_eq!(status, 422, "batch over the limit: {body}");
    assert!(
        field_codes(&body).contains(&("trade_blocks".to_owned(), "too_many".to_owned())),
        "{body}"
    );

    let mut one_bad = vec![sample_block("T-BATCH-OK"), with("quantity", json!(0))];
    one_bad[1]["trade_ref"] = json!("T-BATCH-BAD");
    let (status, body) = client.submit_batch(&im, &one_bad).await.unwrap();
    assert_eq!(status, 422, "a batch with one bad block: {body}");
    assert!(
        field_codes(&body).contains(&(
            "trade_blocks[1].quantity".to_owned(),
            "not_positive".to_owned()
        )),
        "{body}"
    );

    // Authentication: unknown client, wrong secret, no token, a forged token, an expired token.
    let (status, body) = client.request_token("nobody", "nothing").await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _) = client
        .request_token("im-alpha", "wrong-secret")
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (status, body) = client.submit("", &sample_block("T-BAD")).await.unwrap();
    assert_eq!(status, 401, "no token: {body}");
    let (status, _) = client
        .submit("not.a.token", &sample_block("T-BAD"))
        .await
        .unwrap();
    assert_eq!(status, 401);
    let now = chrono::Utc::now().timestamp();
    let sign = |secret: &str, exp: i64| {
        let claims =
            json!({"sub": "IM-ALPHA", "role": "im", "iat": exp - 60, "exp": exp, "iss": "keel"});
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let (status, body) = client
        .submit(
            &sign("keel-local-development-token-secret", now - 5),
            &sample_block("T-BAD"),
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "expired token: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    let (status, _) = client
        .submit(
            &sign("some-other-secret", now + 600),
            &sample_block("T-BAD"),
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "token signed with another key");
    let forged_sub = {
        let claims =
            json!({"sub": "IM-NOBODY", "role": "im", "iat": now, "exp": now + 600, "iss": "keel"});
        let key = EncodingKey::from_secret(b"keel-local-development-token-secret");
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    let (status, _) = client
        .submit(&forged_sub, &sample_block("T-BAD"))
        .await
        .unwrap();
    assert_eq!(status, 401, "a token for an unknown participant");

    // Nothing above reached a topic: the only way there is the outbox, and it is empty. One valid leg
    // afterwards is the only message ingestion ever sees.
    assert_eq!(stack.count("SELECT count(*) FROM ingress.outbox").await, 0);
    let (status, _) = client.submit(&im, &sample_block("T-GOOD")).await.unwrap();
    assert_eq!(status, 202);
    stack
        .wait_for_count(
            "SELECT count(*) FROM ingestion.inbox",
            1,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    stack
        .wait_for_count(
            "SELECT count(*) FROM matching.trades",
            1,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        stack
            .count("SELECT count(*) FROM ingress.submissions")
            .await,
        1
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM ingestion.dead_letters")
            .await,
        0
    );
    for service in service_names() {
        assert!(stack.is_running(service), "{service} crashed");
        stack
            .wait_ready(service, Duration::from_secs(5))
            .await
            .unwrap();
    }
}
