use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::Caller;
use crate::store;

#[derive(Deserialize)]
pub struct FeedQuery {
    after: Option<String>,
    limit: Option<String>,
}

const MAX_PAGE: i64 = 1000;

/// `GET /v1/notifications?after=CURSOR&limit=N`: the caller's notifications, oldest first. `next` is
/// the cursor to pass as `after` for the following page (the same one when there is nothing new).
pub async fn feed(
    State(app): State<AppState>,
    caller: Caller,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    // A query that does not parse (a parameter given twice, say) is the caller's mistake: 422 with
    // the error body, as for a bad value, not axum's plain-text 400.
    let Query(query) = query
        .map_err(|rejection| ApiError::invalid("query", "invalid_query", rejection.body_text()))?;
    let after = match query.after.as_deref() {
        None | Some("") => 0,
        Some(raw) => raw.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
            ApiError::invalid(
                "after",
                "invalid_cursor",
                "after must be a cursor returned as next",
            )
        })?,
    };
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::invalid(
                    "limit",
                    "out_of_range",
                    format!("limit must be 1 to {MAX_PAGE}"),
                )
            })?,
    };
    let rows = store::feed(&app.pool, &caller.id, after, limit).await?;
    let next = rows.last().map_or(after, |(seq, _)| *seq);
    let notifications: Vec<Value> = rows.into_iter().map(|(_, body)| body).collect();
    Ok(Json(
        json!({"notifications": notifications, "next": next.to_string()}),
    ))
}
