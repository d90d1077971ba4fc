use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
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
    let found = sqlx::query!(
        "SELECT owner, kind, allow_negative FROM settlement.accounts WHERE account_id = $1",
        account
    )
    .fetch_optional(&app.ledger)
    .await
    .map_err(ApiError::LedgerUnavailable)?;
    let Some(found) = found.filter(|found| found.owner == caller.id.as_str()) else {
        return Err(ApiError::NotFound);
    };
    let rows = sqlx::query!(
        "SELECT asset_kind, asset_code, amount, updated_at FROM settlement.positions
         WHERE account_id = $1 ORDER BY asset_kind, asset_code",
        account
    )
    .fetch_all(&app.ledger)
    .await
    .map_err(ApiError::LedgerUnavailable)?;
    let positions: Vec<Value> = rows
        .into_iter()
        .map(|row| {
            json!({"asset_kind": row.asset_kind, "asset": row.asset_code,
                   "amount": row.amount.to_string(), "updated_at": row.updated_at})
        })
        .collect();
    Ok(Json(json!({
        "account": account,
        "owner": found.owner,
        "kind": found.kind,
        "allow_negative": found.allow_negative,
        "positions": positions,
        "as_of": Utc::now(),
    })))
}
