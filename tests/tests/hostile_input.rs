//! No input makes the API answer 5xx, and none stops a service: generated requests (proptest
//! strategies, seeded and printed; `KEEL_SEED` replays) at every route: arbitrary JSON, a valid block
//! with one field replaced by arbitrary JSON, arbitrary bytes, arbitrary paths, queries, form bodies
//! and headers. Each answer must be below 500; afterwards every service is still ready.

use std::time::Duration;

use keel_system_tests::{sample_block, service_names, Stack, StackOptions};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::Method;
use serde_json::Value;

/// Cases per strategy.
const CASES: usize = 150;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,24}".prop_map(Value::from),
        // Near-valid strings: decimals, dates, ISINs, ids.
        prop_oneof![
            Just("187.2500"),
            Just("-0"),
            Just("1e400"),
            Just("2026-02-30"),
            Just("US0378331005"),
            Just("IM-BETA-FUND-001"),
            Just("\u{0000}"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 13] = [
    "trade_ref",
    "im_id",
    "broker_id",
    "side",
    "security",
    "quantity",
    "price",
    "currency",
    "trade_date",
    "settlement_date",
    "version",
    "allocations",
    "extra",
];

/// A valid block with one field (or one allocation's field) replaced by arbitrary JSON.
fn mutated_block() -> impl Strategy<Value = Value> {
    (0..FIELDS.len(), json_value(), any::<bool>()).prop_map(|(field, value, in_allocation)| {
        let mut block = sample_block("T-HOSTILE");
        if in_allocation {
            block["allocations"][0][["allocation_id", "account", "quantity", "x"][field % 4]] =
                value;
        } else {
            block[FIELDS[field]] = value;
        }
        block
    })
}

fn draw<S: Strategy>(runner: &mut TestRunner, strategy: &S) -> S::Value {
    strategy
        .new_tree(runner)
        .expect("the strategy generates")
        .current()
}

#[tokio::test]
async fn no_input_makes_the_api_answer_5xx_or_stops_a_service() {
    let seed = keel_system_tests::seed("hostile_input");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let stack = Stack::start("hostile_input", StackOptions::default())
        .await
        .unwrap();
    let token = stack.token("im-alpha").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut sent = 0usize;
    let mut check = |method: &Method, path: &str, status: u16, body: &str| {
        sent += 1;
        assert!(
            status < 500,
            "{method} {path} answered {status} (seed {seed}): {body}"
        );
    };

    let send = |method: Method, path: String, body: Vec<u8>, content_type: &'static str| {
        let http = http.clone();
        let url = format!("{}{path}", stack.ingress_url);
        let token = token.clone();
        async move {
            let response = http
                .request(method.clone(), &url)
                .bearer_auth(&token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
            let status = response.status().as_u16();
            (
                method,
                path,
                status,
                response.text().await.unwrap_or_default(),
            )
        }
    };

    let json_routes = [
        (Method::POST, "/v1/trade-blocks"),
        (Method::POST, "/v1/trade-blocks/batch"),
        (Method::PUT, "/v1/webhook"),
    ];
    for _ in 0..CASES {
        let block = draw(&mut runner, &mutated_block());
        let anything = draw(&mut runner, &json_value());
        let raw = draw(&mut runner, &prop::collection::vec(any::<u8>(), 0..256));
        for (method, path) in &json_routes {
            let bodies = [
                serde_json::to_vec(&block).unwrap(),
                serde_json::to_vec(&Value::Array(vec![block.clone(), anything.clone()])).unwrap(),
                serde_json::to_vec(&anything).unwrap(),
                raw.clone(),
            ];
            for body in bodies {
                let (m, p, status, text) =
                    send(method.clone(), (*path).to_owned(), body, "application/json").await;
                check(&m, &p, status, &text);
            }
        }
        // Paths, queries and form bodies.
        let word = draw(&mut runner, &"\\PC{0,40}");
        let encoded: String = url::form_urlencoded::byte_serialize(word.as_bytes()).collect();
        for (method, path) in [
            (Method::GET, format!("/v1/trades/{encoded}")),
            (Method::DELETE, format!("/v1/trades/{encoded}")),
            (Method::GET, format!("/v1/notifications?after={encoded}")),
            (
                Method::GET,
                format!("/v1/notifications?limit={encoded}&after=0"),
            ),
            (Method::GET, format!("/v1/accounts/{encoded}/positions")),
        ] {
            let (m, p, status, text) = send(method, path, Vec::new(), "application/json").await;
            check(&m, &p, status, &text);
        }
        let (m, p, status, text) = send(
            Method::POST,
            "/oauth2/token".to_owned(),
            word.into_bytes(),
            "application/x-www-form-urlencoded",
        )
        .await;
        check(&m, &p, status, &text);
    }
    println!("hostile_input: {sent} requests (seed {seed}), none answered 5xx");

    for service in service_names() {
        stack
            .wait_ready_in(keel_system_tests::EAST, service, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{service} is not ready after the hostile input: {e}"));
    }
}
