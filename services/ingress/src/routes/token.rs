use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::Refusal;

/// `POST /oauth2/token`: client credentials in the form body or in HTTP Basic.
pub async fn issue(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let oauth = |status, code, description: &str| ApiError::OAuth {
        status,
        code,
        description: description.to_owned(),
    };

    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            ))
        }
        None => {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            ))
        }
    }
    let basic = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    let (client_id, client_secret) = match (basic, field("client_id"), field("client_secret")) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        _ => {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_id and client_secret are required",
            ))
        }
    };
    let requested = field("scope");
    let participants = app.participants.current();
    // argon2 is meant to be slow: off the async workers.
    let grant = tokio::task::spawn_blocking(move || {
        participants.authenticate(
            &client_id,
            &client_secret,
            requested.as_deref(),
            chrono::Utc::now(),
        )
    })
    .await
    .expect("checking credentials does not panic");
    let grant = match grant {
        Ok(grant) => grant,
        Err(Refusal::InvalidClient) => {
            return Err(oauth(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown, revoked or expired client, or wrong secret",
            ))
        }
        Err(Refusal::InvalidScope(why)) => {
            return Err(oauth(StatusCode::BAD_REQUEST, "invalid_scope", &why))
        }
    };
    let (access_token, scope) = app.tokens.issue(&grant);
    Ok(Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": app.tokens.ttl_seconds(),
        "scope": scope,
    })))
}
