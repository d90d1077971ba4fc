//! The one place where errors become HTTP responses. Every error body is
//! `{"error": {"code", "message", "fields"?: [{"field", "code", "message"}]}}`, except the token
//! endpoint's, which follow RFC 6749 section 5.2.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_domain::FieldError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("{message}")]
    Unauthorized { message: String },
    #[error("OAuth error {code}: {description}")]
    OAuth {
        status: StatusCode,
        code: &'static str,
        description: String,
    },
    /// The token is valid but does not carry the scope the route needs.
    #[error("the access token lacks scope {needed}")]
    InsufficientScope { needed: crate::auth::Scope },
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("settlement ledger: {0}")]
    LedgerUnavailable(sqlx::Error),
    /// A shared (group) commit failed: nothing of the request was recorded.
    #[error("the safe-store could not commit: {detail}")]
    CommitFailed { transient: bool, detail: String },
    /// The pipeline is too far behind to take more now.
    #[error("overloaded: {reason}")]
    Overloaded {
        reason: String,
        retry_after_seconds: u64,
    },
    /// This region does not take trade matching's traffic now.
    #[error("region {region} is not active: {why}")]
    RegionNotActive {
        region: String,
        why: String,
        active_region: Option<String>,
        active_url: Option<String>,
    },
}

impl From<crate::group_commit::CommitError> for ApiError {
    fn from(error: crate::group_commit::CommitError) -> Self {
        use crate::group_commit::CommitError;
        match error {
            CommitError::Conflict { code, message } => ApiError::Conflict { code, message },
            CommitError::Store { transient, detail } => {
                ApiError::CommitFailed { transient, detail }
            }
            CommitError::Closed => ApiError::CommitFailed {
                transient: true,
                detail: "ingress is shutting down".to_owned(),
            },
        }
    }
}

impl ApiError {
    pub fn invalid(field: &str, code: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            |code: &str, message: String| json!({"error": {"code": code, "message": message}});
        match self {
            ApiError::MalformedJson(detail) => (
                StatusCode::BAD_REQUEST,
                Json(body(
                    "malformed_json",
                    format!("request body is not valid JSON: {detail}"),
                )),
            )
                .into_response(),
            ApiError::Invalid(fields) => {
                let message = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut payload = body("validation_failed", message);
                payload["error"]["fields"] = json!(fields);
                (StatusCode::UNPROCESSABLE_ENTITY, Json(payload)).into_response()
            }
            ApiError::Unauthorized { message } => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
                Json(body("unauthorized", message)),
            )
                .into_response(),
            ApiError::InsufficientScope { needed } => (
                StatusCode::FORBIDDEN,
                [(
                    header::WWW_AUTHENTICATE,
                    format!("Bearer error=\"insufficient_scope\", scope=\"{needed}\""),
                )],
                Json(body(
                    "insufficient_scope",
                    format!("this call needs a token with scope {needed}"),
                )),
            )
                .into_response(),
            ApiError::OAuth {
                status,
                code,
                description,
            } => (
                status,
                Json(json!({"error": code, "error_description": description})),
            )
                .into_response(),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                Json(body("not_found", "no such resource".into())),
            )
                .into_response(),
            ApiError::Conflict { code, message } => {
                (StatusCode::CONFLICT, Json(body(code, message))).into_response()
            }
            ApiError::Store(error) => {
                tracing::error!(%error, "store error");
                let status = if keel_safestore::is_transient(&error) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                (
                    status,
                    Json(body(
                        "store_unavailable",
                        "the safe-store could not commit; nothing was accepted, retry".into(),
                    )),
                )
                    .into_response()
            }
            ApiError::CommitFailed { transient, detail } => {
                tracing::error!(detail, "group commit failed");
                let status = if transient {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                (
                    status,
                    Json(body(
                        "store_unavailable",
                        "the safe-store could not commit; nothing was accepted, retry".into(),
                    )),
                )
                    .into_response()
            }
            ApiError::Overloaded {
                reason,
                retry_after_seconds,
            } => {
                let mut payload = body(
                    "overloaded",
                    format!(
                        "Keel is behind and takes no new submissions for now ({reason}); nothing of this request was accepted, retry after {retry_after_seconds} s"
                    ),
                );
                payload["error"]["retry_after_seconds"] = json!(retry_after_seconds);
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(payload)).into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(retry_after_seconds),
                );
                metrics::counter!("keel_ingress_refused_total", "reason" => "overloaded")
                    .increment(1);
                response
            }
            ApiError::RegionNotActive {
                region,
                why,
                active_region,
                active_url,
            } => {
                let mut payload = body(
                    "region_not_active",
                    match &active_url {
                        Some(url) => format!("region {region} does not take trade matching's traffic ({why}); use {url}"),
                        None => format!("region {region} does not take trade matching's traffic ({why}), and no region does now; retry shortly"),
                    },
                );
                payload["error"]["region"] = json!(region);
                payload["error"]["active_region"] = json!(active_region);
                payload["error"]["active_url"] = json!(active_url);
                let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(payload)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                response
            }
            ApiError::LedgerUnavailable(error) => {
                tracing::warn!(%error, "settlement ledger unreadable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(body(
                        "ledger_unavailable",
                        "the settlement ledger cannot be read now; retry".into(),
                    )),
                )
                    .into_response()
            }
        }
    }
}
