use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use keel_domain::{batch_items, FieldError, LegId, LegRole, TradeBlock};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::{Caller, Role, Submitter};
use crate::group_commit::{AcceptedLeg, Idempotency, Request};

/// `POST /v1/trade-blocks`
pub async fn one(
    State(app): State<AppState>,
    Submitter(caller): Submitter,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let started = Instant::now();
    let raw = parse_json(&body)?;
    let leg = accept(&app, &caller, &raw, "").map_err(ApiError::Invalid)?;
    let response = leg.receipt();
    let digest = leg.digest.clone();
    commit(
        &app,
        &caller,
        &headers,
        vec![leg],
        &digest,
        response,
        started,
    )
    .await
}

/// `POST /v1/trade-blocks/batch`: all or nothing. Body: an array of blocks, or `{"trade_blocks": [...]}`.
pub async fn batch(
    State(app): State<AppState>,
    Submitter(caller): Submitter,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let started = Instant::now();
    let raw = parse_json(&body)?;
    let items = batch_items(&raw, app.max_batch).map_err(|e| ApiError::Invalid(vec![e]))?;
    let mut legs = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut receipts = Vec::with_capacity(items.len());
    let mut seen: HashMap<LegId, (usize, String)> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let prefix = format!("trade_blocks[{index}].");
        match accept(&app, &caller, item, &prefix) {
            Ok(leg) => match seen
                .get(&leg.leg_id)
                .inspect(|_| receipts.push(leg.receipt()))
            {
                Some((first, digest)) if *digest != leg.digest => errors.push(FieldError {
                    field: format!("trade_blocks[{index}]"),
                    code: "conflicting_duplicate".into(),
                    message: format!(
                        "same leg and version as trade_blocks[{first}] with different content"
                    ),
                }),
                Some(_) => {} // the same leg twice: accepted once
                None => {
                    receipts.push(leg.receipt());
                    seen.insert(leg.leg_id, (index, leg.digest.clone()));
                    legs.push(leg);
                }
            },
            Err(fields) => errors.extend(fields),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let response = json!({ "results": receipts });
    let batch_digest = hex::encode(Sha256::digest(
        legs.iter()
            .map(|l| l.digest.as_str())
            .collect::<Vec<_>>()
            .join(","),
    ));
    commit(
        &app,
        &caller,
        &headers,
        legs,
        &batch_digest,
        response,
        started,
    )
    .await
}

/// Records accepted legs durably in the next group commit (honouring an Idempotency-Key over
/// `digest`), wakes the relay and answers 202 with `response`, or the answer a replayed key was
/// first given. Refused with 429 while the pipeline is too far behind.
async fn commit(
    app: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    legs: Vec<AcceptedLeg>,
    digest: &str,
    response: Value,
    started: Instant,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let idempotency = idempotency(headers, digest)?;
    app.admission
        .check()
        .map_err(|reason| ApiError::Overloaded {
            reason,
            retry_after_seconds: app.admission.retry_after_seconds,
        })?;
    let answer = app
        .committer
        .commit(Request {
            sender: caller.id.clone(),
            legs,
            idempotency,
            response,
        })
        .await?;
    app.relay_wake.notify_one();
    metrics::histogram!("keel_ingress_ack_seconds").record(started.elapsed().as_secs_f64());
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

fn idempotency(headers: &HeaderMap, digest: &str) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(Idempotency {
            key: key.to_owned(),
            digest: digest.to_owned(),
        })),
        _ => Err(ApiError::invalid(
            "Idempotency-Key",
            "invalid",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// Validates one block from `caller`: every field, the caller's place in it and the counterparty.
fn accept(
    app: &AppState,
    caller: &Caller,
    raw: &Value,
    prefix: &str,
) -> Result<AcceptedLeg, Vec<FieldError>> {
    let prefixed = |errors: Vec<FieldError>| {
        errors
            .into_iter()
            .map(|e| FieldError {
                field: format!("{prefix}{}", e.field),
                ..e
            })
            .collect::<Vec<_>>()
    };
    let block = TradeBlock::parse(raw, &caller.id).map_err(|e| prefixed(e.0))?;
    let (expected, counterparty, counterparty_field, counterparty_role) =
        match block.role_of(&caller.id) {
            LegRole::Im => (Role::Im, &block.broker_id, "broker_id", Role::Broker),
            LegRole::Broker => (Role::Broker, &block.im_id, "im_id", Role::Im),
        };
    let mut errors = Vec::new();
    if caller.role != expected {
        errors.push(FieldError {
            field: "sender".into(),
            code: "role_mismatch".into(),
            message: format!(
                "{} is registered as {:?}, not as this block's {:?}",
                caller.id, caller.role, expected
            )
            .to_lowercase(),
        });
    }
    if app.participants.current().role(counterparty) != Some(counterparty_role) {
        errors.push(FieldError {
            field: counterparty_field.into(),
            code: "unknown_participant".into(),
            message: format!("{counterparty} is not a registered {counterparty_role:?}")
                .to_lowercase(),
        });
    }
    if errors.is_empty() {
        errors = app.reference.screen(&block);
    }
    if !errors.is_empty() {
        return Err(prefixed(errors));
    }
    let canonical = serde_json::to_value(&block).expect("a trade block serializes");
    let digest = hex::encode(Sha256::digest(canonical.to_string()));
    Ok(AcceptedLeg {
        leg_id: block.leg_id(&caller.id),
        trade_id: block.match_key().trade_id(),
        block,
        canonical,
        digest,
    })
}
