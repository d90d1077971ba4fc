use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::Caller;

/// `GET /v1/reference-data`: what the door screens blocks against, as far as it is the caller's:
/// the securities anyone may trade, the caller's own accounts and, for a broker, its commission
/// and settlement accounts. Nobody reads another participant's accounts or terms.
pub async fn mine(State(app): State<AppState>, caller: Caller) -> Json<Value> {
    let reference = &app.reference;
    let securities: Vec<Value> = reference
        .securities()
        .iter()
        .map(|s| json!({"isin": s.isin, "name": s.name}))
        .collect();
    let accounts: Vec<Value> = reference
        .accounts_of(&caller.id)
        .map(|a| json!({"account": a.account, "kind": a.kind, "allow_negative": a.allow_negative}))
        .collect();
    let mut body = json!({
        "participant_id": caller.id,
        "role": caller.role,
        "securities": securities,
        "accounts": accounts,
    });
    if let Some(broker) = reference.broker(&caller.id) {
        body["commission"] = json!({
            "commission_bps": broker.commission_bps.to_string(),
            "settlement_account": broker.settlement_account,
            "fee_account": broker.fee_account,
        });
    }
    Json(body)
}
