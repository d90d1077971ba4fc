use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keel_domain::{TradeId, TradeStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::{Caller, Submitter};
use crate::store::{self, TradeView};

/// Loads a trade the caller is a party to; any other trade does not exist for them.
async fn own_trade(
    app: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<(TradeId, TradeView), ApiError> {
    let trade_id = Uuid::parse_str(raw_id)
        .map(TradeId)
        .map_err(|_| ApiError::NotFound)?;
    match store::load_trade(&app.pool, trade_id).await? {
        Some(view) if view.is_party(&caller.id) => Ok((trade_id, view)),
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /v1/trades/{trade_id}`
pub async fn get_trade(
    State(app): State<AppState>,
    caller: Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (trade_id, view) = own_trade(&app, &caller, &raw_id).await?;
    let legs: Vec<Value> = view
        .legs
        .iter()
        .map(|leg| {
            let role = if leg.sender == leg.im_id {
                "im"
            } else {
                "broker"
            };
            json!({
                "leg_id": leg.leg_id,
                "sender": leg.sender,
                "role": role,
                "version": leg.version,
                "received_at": leg.received_at,
                "block": leg.block.0,
            })
        })
        .collect();
    // Until matching has seen it, a trade is what ingress acknowledged: RECEIVED.
    let (status, history) = if view.history.is_empty() {
        let first = view.legs.iter().map(|l| l.received_at).min();
        (
            TradeStatus::Received.as_str().to_owned(),
            vec![json!({"status": "RECEIVED", "at": first})],
        )
    } else {
        let history = view
            .history
            .iter()
            .map(|h| {
                let mut entry = json!({"status": h.status, "at": h.at});
                if let Some(reason) = &h.reason {
                    entry["reason"] = json!(reason);
                }
                if let Some(fields) = h.entry.0.get("differing_fields") {
                    entry["differing_fields"] = fields.clone();
                }
                entry
            })
            .collect();
        (
            view.status.clone().unwrap_or_else(|| "RECEIVED".to_owned()),
            history,
        )
    };
    Ok(Json(
        json!({"trade_id": trade_id, "status": status, "legs": legs, "history": history}),
    ))
}

/// `DELETE /v1/trades/{trade_id}`: asks matching to cancel; refused at once if the trade is final.
pub async fn cancel(
    State(app): State<AppState>,
    Submitter(caller): Submitter,
    Path(raw_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (trade_id, view) = own_trade(&app, &caller, &raw_id).await?;
    if let Some(status) = view.current_status().filter(|s| s.is_final()) {
        return Err(ApiError::Conflict {
            code: "trade_final",
            message: format!("trade is {status} and can no longer be cancelled"),
        });
    }
    let match_key = view.match_key().ok_or(ApiError::NotFound)?;
    store::request_cancel(&app.pool, app.durability, trade_id, match_key, &caller.id).await?;
    app.relay_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"trade_id": trade_id, "status": "CANCEL_REQUESTED"})),
    ))
}
