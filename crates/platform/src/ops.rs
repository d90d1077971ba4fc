//! `/healthz` (the process is alive), `/readyz` (every readiness check passes) and `/metrics`
//! (Prometheus), served by every service.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Named readiness checks; the service is ready when all of them pass.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<&'static str, Result<(), String>>>>,
    /// Facts shown on `/readyz` that do not make the service unready (such as its processing role).
    notes: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Readiness {
    pub fn set_ready(&self, check: &'static str) {
        self.checks
            .lock()
            .expect("readiness lock")
            .insert(check, Ok(()));
    }
    pub fn set_unready(&self, check: &'static str, why: impl Into<String>) {
        self.checks
            .lock()
            .expect("readiness lock")
            .insert(check, Err(why.into()));
    }
    /// Drops a check (its task is gone on purpose, such as a consumer while the region is standby).
    pub fn remove(&self, check: &'static str) {
        self.checks.lock().expect("readiness lock").remove(check);
    }
    pub fn note(&self, key: &'static str, value: impl Into<String>) {
        self.notes
            .lock()
            .expect("readiness lock")
            .insert(key, value.into());
    }
    pub fn notes(&self) -> BTreeMap<&'static str, String> {
        self.notes.lock().expect("readiness lock").clone()
    }
    /// Not ready until the first `set_ready`.
    pub fn register(&self, check: &'static str) {
        self.set_unready(check, "starting");
    }
    pub fn failing(&self) -> BTreeMap<&'static str, String> {
        let checks = self.checks.lock().expect("readiness lock");
        checks
            .iter()
            .filter_map(|(name, state)| state.clone().err().map(|why| (*name, why)))
            .collect()
    }
}

/// Installs the Prometheus recorder for this process, labelling every metric with the service and
/// region.
pub fn install_metrics(service: &'static str, region: &str) -> PrometheusHandle {
    PrometheusBuilder::new()
        .add_global_label("service", service)
        .add_global_label("region", region)
        .install_recorder()
        .expect("the metrics recorder is installed once per process")
}

#[derive(Clone)]
struct OpsState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

pub fn router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(state): State<OpsState>| async move { state.metrics.render() }),
        )
        .with_state(OpsState { readiness, metrics })
}

async fn ready(State(state): State<OpsState>) -> impl IntoResponse {
    let failing = state.readiness.failing();
    let notes = state.readiness.notes();
    if failing.is_empty() {
        (
            StatusCode::OK,
            Json(serde_json::json!({"ready": true, "notes": notes})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "failing": failing, "notes": notes})),
        )
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
