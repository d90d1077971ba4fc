//! A service's place in the regions: its routing controls, read through ARC, decide when it may act,
//! and the active regions decide where inter-application topics go.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_arc::{ArcClient, Fence, Reading};
use keel_platform::ops::{Readiness, ROUTING_CONTROLS_CHECK};
use keel_routing::{control_name, App, Gate, RegionConfig};
use keel_streaming::{Destinations, KafkaOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One service's view of the routing controls, shared by its tasks.
#[derive(Clone)]
pub struct Regional {
    pub app: App,
    pub region: String,
    regions: Vec<String>,
    /// This service's two controls, named once: `check` runs on every ingress request.
    traffic_control: Arc<str>,
    processing_control: Arc<str>,
    reading: watch::Receiver<Reading>,
}

impl Regional {
    /// Starts reading the controls (until `shutdown`).
    pub fn start(
        app: App,
        region: &str,
        regions: &BTreeMap<String, RegionConfig>,
        control: &keel_arc::ControlConfig,
        shutdown: CancellationToken,
    ) -> Regional {
        let client = Arc::new(ArcClient::new(control));
        Regional {
            app,
            region: region.to_owned(),
            regions: regions.keys().cloned().collect(),
            traffic_control: control_name(app, Gate::Traffic, region).into(),
            processing_control: control_name(app, Gate::Processing, region).into(),
            reading: keel_arc::watch(client, control, shutdown),
        }
    }

    /// Whether this service's `gate` is open now.
    pub fn check(&self, gate: Gate) -> Result<(), Fence> {
        let control = match gate {
            Gate::Traffic => &self.traffic_control,
            Gate::Processing => &self.processing_control,
        };
        self.reading.borrow().allows(control)
    }

    /// The region where `app`'s `gate` is On, if the controls are fresh and exactly one is.
    pub fn active_region(&self, app: App, gate: Gate) -> Option<String> {
        let reading = self.reading.borrow();
        let states = reading.fresh().ok()?;
        states
            .active_region(app, gate, &self.regions)
            .map(str::to_owned)
    }

    /// Waits until `gate` is open (true) or `shutdown` (false).
    pub async fn opened(&self, gate: Gate, shutdown: &CancellationToken) -> bool {
        let mut reading = self.reading.clone();
        loop {
            if self.check(gate).is_ok() {
                return true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                changed = reading.changed() => if changed.is_err() { return false },
            }
        }
    }

    /// Waits until `gate` closes, and says why.
    pub async fn closed(&self, gate: Gate) -> Fence {
        let mut reading = self.reading.clone();
        loop {
            if let Err(fence) = self.check(gate) {
                return fence;
            }
            if reading.changed().await.is_err() {
                return Fence::Unreadable("the control watcher stopped".to_owned());
            }
        }
    }

    /// Shows the processing gate on `/readyz`: a standby is ready, a service that cannot read its
    /// controls is not.
    fn show(&self, readiness: &Readiness) {
        match self.check(Gate::Processing) {
            Ok(()) => {
                readiness.set_ready(ROUTING_CONTROLS_CHECK);
                readiness.note("processing", "active");
            }
            Err(Fence::Off(control)) => {
                readiness.set_ready(ROUTING_CONTROLS_CHECK);
                readiness.note("processing", format!("standby ({control} is Off)"));
            }
            Err(fence @ Fence::Unreadable(_)) => {
                readiness.set_unready(ROUTING_CONTROLS_CHECK, fence.to_string());
                readiness.note("processing", "fenced");
            }
        }
    }

    /// Runs `session` each time this service's processing gate opens, cancelling its token as soon
    /// as the gate closes (control Off, or controls unreadable past the bound), until `shutdown`.
    /// While a session starts, `/readyz` fails its `session` check; the session passes it with
    /// `readiness.set_ready("session")` once it is up. A session that fails is logged, shown on
    /// `/readyz` and started again after a pause.
    pub async fn run_while_processing<S, Fut>(
        &self,
        readiness: &Readiness,
        shutdown: &CancellationToken,
        mut session: S,
    ) where
        S: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        readiness.register(ROUTING_CONTROLS_CHECK);
        let shown = {
            let this = self.clone();
            let readiness = readiness.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut reading = this.reading.clone();
                loop {
                    this.show(&readiness);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        changed = reading.changed() => if changed.is_err() { return },
                    }
                }
            })
        };
        while self.opened(Gate::Processing, shutdown).await {
            tracing::info!(app = %self.app, region = self.region, "processing gate open; starting");
            readiness.register("session");
            let token = shutdown.child_token();
            let fence = {
                let this = self.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let why = this.closed(Gate::Processing).await;
                    tracing::warn!(%why, "processing gate closed; stopping consumers and relay");
                    token.cancel();
                })
            };
            let outcome = session(token.clone()).await;
            fence.abort();
            token.cancel();
            if shutdown.is_cancelled() {
                break;
            }
            if let Err(error) = outcome {
                tracing::error!(%error, "processing session failed; starting again shortly");
                readiness.set_unready("session", error);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            } else {
                readiness.remove("session");
            }
        }
        shown.abort();
    }
}

/// Routes each topic to the Kafka cluster of the region where its receiving application takes it:
/// within an application, where it processes; from the other application, where it takes traffic.
/// So a rotation's traffic Off stops the other application's messages arriving in the source region
/// (they wait in the producer's outbox until the target takes traffic), while the source's own
/// outboxes still drain into its own Kafka.
impl Destinations for Regional {
    fn cluster_for(&self, topic: &str) -> Option<String> {
        let receiving = App::receiving(topic)?;
        self.active_region(receiving, topic_gate(self.app, receiving))
    }
}

/// The gate that decides where `receiving` takes a topic produced by `producing`.
fn topic_gate(producing: App, receiving: App) -> Gate {
    if producing == receiving {
        Gate::Processing
    } else {
        Gate::Traffic
    }
}

/// Each region's Kafka cluster, with the local tuning.
pub fn clusters(
    regions: &BTreeMap<String, RegionConfig>,
    tuning: &KafkaOptions,
) -> BTreeMap<String, KafkaOptions> {
    regions
        .iter()
        .map(|(name, region)| {
            let mut kafka = tuning.clone();
            kafka.brokers = region.kafka.clone();
            (name.clone(), kafka)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_between_applications_follow_the_receivers_traffic() {
        assert_eq!(
            topic_gate(App::TradeMatching, App::TradeMatching),
            Gate::Processing
        );
        assert_eq!(
            topic_gate(App::Settlement, App::Settlement),
            Gate::Processing
        );
        assert_eq!(
            topic_gate(App::TradeMatching, App::Settlement),
            Gate::Traffic
        );
        assert_eq!(
            topic_gate(App::Settlement, App::TradeMatching),
            Gate::Traffic
        );
    }
}
