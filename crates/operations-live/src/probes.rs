//! The service-probes port over HTTP: each service's `/readyz` (keel-platform's `ReadyzBody`), and
//! each region's ingress.

use std::time::Duration;

use async_trait::async_trait;
use keel_operations::ports::{IngressAnswer, ServiceProbes, Telemetry, TelemetryError};
use keel_operations::telemetry::{self, Sample};
use keel_operations::{Health, Processing};
use keel_platform::ops::{ReadyzBody, ROUTING_CONTROLS_CHECK};

use crate::config::Config;

pub struct HttpProbes {
    config: Config,
    http: reqwest::Client,
}

impl HttpProbes {
    pub fn new(config: &Config) -> Self {
        HttpProbes {
            config: config.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("an HTTP client with a timeout builds"),
        }
    }
}

/// A service's health from what its `/readyz` answered.
pub fn health_of(body: ReadyzBody) -> Health {
    if body.ready {
        return Health::Ready(match body.notes.get("processing").map(String::as_str) {
            Some("active") => Processing::Active,
            Some(note) => Processing::Standby(
                note.strip_prefix("standby (")
                    .and_then(|n| n.strip_suffix(')'))
                    .unwrap_or(note)
                    .to_owned(),
            ),
            None => Processing::Standby("no processing gate".to_owned()),
        });
    }
    match body.failing.get(ROUTING_CONTROLS_CHECK) {
        Some(why) => Health::Fenced(why.clone()),
        None => Health::Unready(body.failing),
    }
}

#[async_trait]
impl ServiceProbes for HttpProbes {
    async fn health(&self, region: &str, service: &'static str) -> Health {
        let Some(base) = self.ops_url(region, service) else {
            return Health::Down(format!("not configured (regions.{region}.services)"));
        };
        match self.http.get(format!("{base}/readyz")).send().await {
            Err(error) => Health::Down(error.without_url().to_string()),
            Ok(response) => {
                let status = response.status();
                match response.json::<ReadyzBody>().await {
                    Err(error) => Health::Down(format!(
                        "/readyz answered {status} with a body that is not readiness: {}",
                        error.without_url()
                    )),
                    Ok(body) => health_of(body),
                }
            }
        }
    }

    /// An empty submission: 503 while the traffic gate is closed; once past it, an unauthenticated
    /// probe gets 401.
    async fn ingress(&self, region: &str) -> IngressAnswer {
        let Some(ingress) = self.config.regions.get(region).map(|r| &r.ingress_url) else {
            return IngressAnswer::Refusing(format!("no region {region} in the configuration"));
        };
        match self
            .http
            .post(format!("{ingress}/v1/trade-blocks"))
            .json(&serde_json::json!({}))
            .send()
            .await
        {
            Err(e) => IngressAnswer::Refusing(format!("unreachable ({})", e.without_url())),
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                IngressAnswer::Refusing(r.status().to_string())
            }
            Ok(r) => IngressAnswer::Accepting(r.status().to_string()),
        }
    }
}

impl HttpProbes {
    /// `service`'s ops endpoint in `region` (`regions.<region>.services`).
    fn ops_url(&self, region: &str, service: &str) -> Option<&String> {
        self.config
            .regions
            .get(region)
            .and_then(|r| r.services.get(service))
    }

    async fn scrape(
        &self,
        source_name: String,
        url: String,
    ) -> Result<Vec<Sample>, TelemetryError> {
        let failed = |detail: String| TelemetryError {
            source_name: source_name.clone(),
            detail,
        };
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let text = response
            .text()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        Ok(telemetry::parse(&text))
    }
}

#[async_trait]
impl Telemetry for HttpProbes {
    async fn samples(
        &self,
        region: &str,
        service: &'static str,
    ) -> Result<Vec<Sample>, TelemetryError> {
        let source_name = format!("{service} in {region}");
        let Some(base) = self.ops_url(region, service) else {
            return Err(TelemetryError {
                source_name,
                detail: format!("not configured (regions.{region}.services)"),
            });
        };
        self.scrape(source_name, format!("{base}/metrics")).await
    }

    async fn reconciler(&self) -> Result<Vec<Sample>, TelemetryError> {
        let listen = &self.config.local.reconciler_listen;
        self.scrape(
            "the continuous reconciler".to_owned(),
            format!("http://{listen}/metrics"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> ReadyzBody {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn readiness_bodies_become_health() {
        let active = body(serde_json::json!({"ready": true, "notes": {"processing": "active"}}));
        assert_eq!(health_of(active), Health::Ready(Processing::Active));
        let standby = body(serde_json::json!({
            "ready": true, "notes": {"processing": "standby (x-processing is Off)"}
        }));
        assert_eq!(
            health_of(standby),
            Health::Ready(Processing::Standby("x-processing is Off".into()))
        );
        let fenced = body(serde_json::json!({
            "ready": false, "failing": {ROUTING_CONTROLS_CHECK: "fenced"}
        }));
        assert!(health_of(fenced).is_stopped());
        let starting =
            body(serde_json::json!({"ready": false, "failing": {"session": "starting"}}));
        assert!(matches!(health_of(starting), Health::Unready(_)));
    }
}
