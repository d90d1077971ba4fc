use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::Caller;

/// `GET /v1/accounts/{account}/positions`: an account's positions, for its owner only. Anyone else's
/// account does not exist for the caller (404), as with trades.
pub async fn positions(
    State(app): State<AppState>,
    caller: Caller,
    Path(account): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let found: Option<(String, String, bool)> = sqlx::query_as(
        "SELECT owner, kind, allow_negative FROM settlement.accounts WHERE account_id = $1",
    )
    .bind(&account)
    .fetch_optional(&app.ledger)
    .await
    .map_err(ApiError::LedgerUnavailable)?;
    let Some((owner, kind, allow_negative)) =
        found.filter(|(owner, ..)| *owner == caller.id.as_str())
    else {
        return Err(ApiError::NotFound);
    };
    let rows: Vec<(String, String, Decimal, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT asset_kind, asset_code, amount, updated_at FROM settlement.positions
         WHERE account_id = $1 ORDER BY asset_kind, asset_code",
    )
    .bind(&account)
    .fetch_all(&app.ledger)
    .await
    .map_err(ApiError::LedgerUnavailable)?;
    let positions: Vec<Value> = rows
        .into_iter()
        .map(|(kind, code, amount, updated_at)| {
            json!({"asset_kind": kind, "asset": code, "amount": amount.to_string(), "updated_at": updated_at})
        })
        .collect();
    Ok(Json(json!({
        "account": account,
        "owner": owner,
        "kind": kind,
        "allow_negative": allow_negative,
        "positions": positions,
        "as_of": Utc::now(),
    })))
}
