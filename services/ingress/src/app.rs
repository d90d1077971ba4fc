use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use keel_safestore::PgPool;
use tokio::sync::Notify;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Participants, TokenIssuer};
use crate::config::Config;
use crate::routes;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The settlement application's database, for positions; connected lazily so trade matching
    /// serves while settlement's database is away.
    pub ledger: PgPool,
    pub participants: Arc<Participants>,
    pub tokens: Arc<TokenIssuer>,
    /// Wakes the outbox relay after a commit, so accepted legs leave at once.
    pub relay_wake: Arc<Notify>,
    pub max_batch: usize,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        ledger: PgPool,
        participants: Participants,
        tokens: TokenIssuer,
        relay_wake: Arc<Notify>,
        config: &Config,
    ) -> Self {
        Self {
            pool,
            ledger,
            participants: Arc::new(participants),
            tokens: Arc::new(tokens),
            relay_wake,
            max_batch: config.max_batch,
        }
    }
}

pub const OPENAPI: &str = include_str!("../openapi.yaml");

pub fn router(state: AppState, config: &Config) -> Router {
    Router::new()
        .route("/oauth2/token", post(routes::token::issue))
        .route("/v1/trade-blocks", post(routes::submit::one))
        .route("/v1/trade-blocks/batch", post(routes::submit::batch))
        .route(
            "/v1/trades/{trade_id}",
            get(routes::trades::get_trade).delete(routes::trades::cancel),
        )
        .route("/v1/notifications", get(routes::notifications::feed))
        .route(
            "/v1/accounts/{account}/positions",
            get(routes::positions::positions),
        )
        .route(
            "/v1/webhook",
            put(routes::webhook::register)
                .get(routes::webhook::show)
                .delete(routes::webhook::remove),
        )
        .route(
            "/openapi.yaml",
            get(|| async { ([("content-type", "application/yaml")], OPENAPI) }),
        )
        .fallback(|| async { crate::api_error::ApiError::NotFound })
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(config.request_timeout_ms),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
