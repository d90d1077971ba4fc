use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use keel_routing::{App, Gate, RegionConfig};
use keel_safestore::PgPool;
use keel_service_kit::Regional;
use tokio::sync::Notify;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::admission::Admission;
use crate::api_error::ApiError;
use crate::auth::{ParticipantsHandle, TokenIssuer};
use crate::config::Config;
use crate::group_commit::{GroupCommitter, GroupOptions};
use crate::routes;
use crate::store::Durability;
use keel_ledger::ReferenceData;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The settlement application's database, for positions; connected lazily so trade matching
    /// serves while settlement's database is away.
    pub ledger: PgPool,
    pub participants: ParticipantsHandle,
    /// What every block is screened against at the door, and what participants read of it.
    pub reference: Arc<ReferenceData>,
    pub tokens: Arc<TokenIssuer>,
    /// Seals the webhook signing secrets it stores.
    pub webhook_key: keel_security::SealingKey,
    /// Which webhook URLs may be registered.
    pub webhook_policy: keel_security::egress::EgressPolicy,
    /// Wakes the outbox relay after a commit, so accepted legs leave at once.
    pub relay_wake: Arc<Notify>,
    pub max_batch: usize,
    pub durability: Durability,
    /// Records submissions, many requests per transaction.
    pub committer: GroupCommitter,
    /// Whether the pipeline takes more submissions now.
    pub admission: Admission,
    /// The routing controls: `traffic` gates every `/v1` call.
    pub regional: Regional,
    pub regions: Arc<BTreeMap<String, RegionConfig>>,
}

/// Who the participants are and what the door checks them and their blocks with.
pub struct Door {
    pub participants: ParticipantsHandle,
    pub reference: ReferenceData,
    pub tokens: TokenIssuer,
    pub webhook_key: keel_security::SealingKey,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        ledger: PgPool,
        door: Door,
        relay_wake: Arc<Notify>,
        regional: Regional,
        config: &Config,
    ) -> Self {
        let durability = if config.replication.synchronous {
            Durability::Replicated
        } else {
            Durability::Local
        };
        let committer = GroupCommitter::start(
            pool.clone(),
            durability,
            GroupOptions {
                committers: config.commit_workers,
                max_legs: config.max_commit_legs,
            },
        );
        Self {
            pool,
            ledger,
            participants: door.participants,
            reference: Arc::new(door.reference),
            tokens: Arc::new(door.tokens),
            webhook_key: door.webhook_key,
            webhook_policy: config.webhooks,
            relay_wake,
            max_batch: config.max_batch,
            durability,
            committer,
            admission: Admission::open(),
            regional,
            regions: Arc::new(config.regions.clone()),
        }
    }
}

impl AppState {
    /// Refuses submissions while `admission` says the pipeline is too far behind.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }
}

pub const OPENAPI: &str = include_str!("../openapi.yaml");

/// Lets a `/v1` call through only while this region takes trade matching's traffic; otherwise
/// answers 503 with the region that does, so clients can follow.
async fn traffic_gate(State(app): State<AppState>, request: Request, next: Next) -> Response {
    match app.regional.check(Gate::Traffic) {
        Ok(()) => next.run(request).await,
        Err(fence) => {
            let active = app
                .regional
                .active_region(App::TradeMatching, Gate::Traffic);
            let active_url = active
                .as_ref()
                .and_then(|region| app.regions.get(region))
                .map(|region| region.ingress_url.clone());
            axum::response::IntoResponse::into_response(ApiError::RegionNotActive {
                region: app.regional.region.clone(),
                why: fence.to_string(),
                active_region: active,
                active_url,
            })
        }
    }
}

/// Every answer, by status code (the 5xx and 429 rates the alert rules watch).
async fn count_responses(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    metrics::counter!("keel_http_responses_total", "status" => response.status().as_u16().to_string())
        .increment(1);
    response
}

pub fn router(state: AppState, config: &Config) -> Router {
    let api = Router::new()
        .route("/v1/trade-blocks", post(routes::submit::one))
        .route("/v1/trade-blocks/batch", post(routes::submit::batch))
        .route(
            "/v1/trades/{trade_id}",
            get(routes::trades::get_trade).delete(routes::trades::cancel),
        )
        .route("/v1/notifications", get(routes::notifications::feed))
        .route("/v1/reference-data", get(routes::reference::mine))
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
        .route_layer(middleware::from_fn_with_state(state.clone(), traffic_gate));
    Router::new()
        .route("/oauth2/token", post(routes::token::issue))
        .merge(api)
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
        .layer(middleware::from_fn(count_responses))
        .with_state(state)
}
