use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::{Caller, Submitter};
use crate::store;

/// `PUT /v1/webhook` `{"url"}`: registers (or replaces) the caller's webhook and returns a new signing
/// secret, shown only here.
pub async fn register(
    State(app): State<AppState>,
    Submitter(caller): Submitter,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let url = raw
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("url", "missing", "url is required"))?;
    if url.len() > 2048 {
        return Err(ApiError::invalid(
            "url",
            "too_long",
            "url is longer than 2048 characters",
        ));
    }
    if let Err(refusal) = app.webhook_policy.check_url(url) {
        return Err(ApiError::invalid(
            "url",
            "url_not_allowed",
            refusal.to_string(),
        ));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    store::set_webhook(&app.pool, &caller.id, url, &app.webhook_key.seal(&secret)).await?;
    Ok(Json(json!({"url": url, "secret": secret})))
}

pub async fn show(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let url = store::webhook(&app.pool, &caller.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(json!({"url": url})))
}

pub async fn remove(
    State(app): State<AppState>,
    Submitter(caller): Submitter,
) -> Result<StatusCode, ApiError> {
    if store::remove_webhook(&app.pool, &caller.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
