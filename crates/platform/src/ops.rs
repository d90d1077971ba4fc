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

/// The readiness check a service fails while it cannot read its routing controls (fenced).
pub const ROUTING_CONTROLS_CHECK: &str = "routing-controls";

/// What `/readyz` answers (200 when ready, 503 when not): the shape `keelctl` and the console read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadyzBody {
    pub ready: bool,
    /// The checks that do not pass, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failing: BTreeMap<String, String>,
    /// Facts that do not make the service unready, such as `processing`: "active" or "standby (...)".
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

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

/// Where every process answers that it lives, whether it is ready, and its metrics.
pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";

pub fn router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route(READY_PATH, get(ready))
        .route(
            METRICS_PATH,
            get(|State(state): State<OpsState>| async move { state.metrics.render() }),
        )
        .with_state(OpsState { readiness, metrics })
}

async fn ready(State(state): State<OpsState>) -> impl IntoResponse {
    let owned = |map: BTreeMap<&'static str, String>| {
        map.into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect::<BTreeMap<_, _>>()
    };
    let failing = owned(state.readiness.failing());
    let body = ReadyzBody {
        ready: failing.is_empty(),
        failing,
        notes: owned(state.readiness.notes()),
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_keeps_its_wire_shape_and_reads_back() {
        let ready = ReadyzBody {
            ready: true,
            failing: BTreeMap::new(),
            notes: BTreeMap::from([("processing".to_owned(), "active".to_owned())]),
        };
        let json = serde_json::to_value(&ready).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ready": true, "notes": {"processing": "active"}})
        );
        let unready: ReadyzBody = serde_json::from_value(serde_json::json!(
            {"ready": false, "failing": {ROUTING_CONTROLS_CHECK: "fenced"}, "notes": {}}
        ))
        .unwrap();
        assert_eq!(unready.failing[ROUTING_CONTROLS_CHECK], "fenced");
        assert_eq!(serde_json::from_value::<ReadyzBody>(json).unwrap(), ready);
    }
}
