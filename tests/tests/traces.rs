//! One trace per trade (DESIGN section 9): with traces exported (OTLP/HTTP, JSON, to a receiver
//! inside this test), both legs of a trade and everything that follows them (the relays, ingestion,
//! matching, settlement, matching again, notification) are spans of one trace whose id is the trade
//! id, forming one tree under the trade's root.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use keel_system_tests::{free_port, settling_block, Stack, StackOptions};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
}

type Received = Arc<Mutex<Vec<Span>>>;

/// The OTLP/HTTP JSON export request's spans, with the service that sent them.
async fn receive(State(received): State<Received>, Json(request): Json<Value>) -> Json<Value> {
    let mut spans = received.lock().unwrap();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |field: &str| span[field].as_str().unwrap_or_default().to_lowercase();
                spans.push(Span {
                    service: service.clone(),
                    name: text("name"),
                    trace: text("traceId"),
                    id: text("spanId"),
                    parent: text("parentSpanId"),
                });
            }
        }
    }
    Json(serde_json::json!({}))
}

async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}"), received)
}

/// The services a settled trade passes through.
const SERVICES: [&str; 5] = [
    "ingress",
    "ingestion",
    "matching",
    "settlement",
    "notification",
];

#[tokio::test]
async fn every_trade_is_one_trace_across_every_service() {
    let (endpoint, received) = receiver().await;
    let options = StackOptions {
        extra_env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/json".into()),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
        ],
        ..StackOptions::default()
    };
    let stack = Stack::start("traces", options).await.unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    let mut trades = Vec::new();
    for i in 0..3 {
        let block = settling_block(&format!("TRACE-{i}"));
        let mut theirs = block.clone();
        theirs.as_object_mut().unwrap().remove("allocations");
        let (code, receipt) = stack.client().submit(&im, &block).await.unwrap();
        assert_eq!(code, 202, "{receipt}");
        let (code, body) = stack.client().submit(&broker, &theirs).await.unwrap();
        assert_eq!(code, 202, "{body}");
        trades.push(Uuid::parse_str(receipt["trade_id"].as_str().unwrap()).unwrap());
    }
    for trade in &trades {
        stack
            .wait_for_trade_status(&broker, &trade.to_string(), "SETTLED")
            .await;
    }

    // Every service's spans of every trade arrive (the exporters send in batches).
    let trace_of = |trade: &Uuid| trade.simple().to_string();
    let started = Instant::now();
    loop {
        let spans = received.lock().unwrap().clone();
        let complete = trades.iter().all(|trade| {
            let services: BTreeSet<&str> = spans
                .iter()
                .filter(|s| s.trace == trace_of(trade) && s.name == "consume")
                .map(|s| s.service.as_str())
                .collect();
            ["ingestion", "matching", "settlement", "notification"]
                .iter()
                .all(|service| services.contains(service))
        });
        if complete {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not every service's spans arrived: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Spans still in flight land in the next batch.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let spans = received.lock().unwrap().clone();
    for trade in &trades {
        let trace = trace_of(trade);
        let root = keel_platform::trace::trade_root_span_id(*trade);
        let mine: Vec<&Span> = spans.iter().filter(|s| s.trace == trace).collect();
        let ids: BTreeSet<&str> = mine.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), mine.len(), "span ids repeat in {trace}");

        // One tree: every span's parent is a span of the trace, or the trade's root.
        for span in &mine {
            assert!(
                span.parent == root || ids.contains(span.parent.as_str()),
                "{span:?} hangs outside trade {trade}'s tree"
            );
        }
        let services: BTreeSet<&str> = mine.iter().map(|s| s.service.as_str()).collect();
        for service in SERVICES {
            assert!(
                services.contains(service),
                "{trade}: no span from {service}: {mine:#?}"
            );
        }
        let names: BTreeMap<&str, usize> = mine.iter().fold(BTreeMap::new(), |mut n, s| {
            *n.entry(s.name.as_str()).or_default() += 1;
            n
        });
        assert_eq!(names.get("accept leg"), Some(&2), "both legs: {names:?}");
        assert!(
            names.get("publish").copied().unwrap_or(0) >= 4,
            "the relays: {names:?}"
        );
        // Each leg's span leads, through its relay, to ingestion's; and the trade's path goes on
        // from a leg all the way to notification. (Both legs of a trade consumed in one batch
        // continue as one: what the batch sends about the trade continues one of them.)
        let reaches = |from: &Span, service: &str| {
            let mut stack = vec![from.id.clone()];
            while let Some(id) = stack.pop() {
                for child in mine.iter().filter(|s| s.parent == id) {
                    if child.service == service {
                        return true;
                    }
                    stack.push(child.id.clone());
                }
            }
            false
        };
        let legs: Vec<&&Span> = mine.iter().filter(|s| s.name == "accept leg").collect();
        for leg in &legs {
            assert!(
                reaches(leg, "ingestion"),
                "{trade}: leg span {} leads nowhere",
                leg.id
            );
        }
        assert!(
            legs.iter()
                .any(|leg| reaches(leg, "settlement") && reaches(leg, "notification")),
            "{trade}: no path from a leg through settlement to notification: {mine:#?}"
        );
        println!(
            "trade {trade}: trace {trace}, {} spans from {:?}",
            mine.len(),
            services
        );
    }
}
