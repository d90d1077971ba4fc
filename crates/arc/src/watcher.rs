use std::sync::Arc;
use std::time::Duration;

use keel_routing::ControlStates;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{ArcClient, ControlConfig};

/// The latest reading of the routing controls, as a service sees it.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The last states read, and when.
    pub last: Option<(ControlStates, Instant)>,
    /// Why the latest poll failed, if it did.
    pub error: Option<String>,
    pub fence_after: Duration,
}

/// Why a service must not act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// The control says Off.
    Off(String),
    /// The controls could not be read for longer than the bound.
    Unreadable(String),
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fence::Off(control) => write!(f, "routing control {control} is Off"),
            Fence::Unreadable(why) => write!(f, "fenced: routing controls unreadable ({why})"),
        }
    }
}

impl Reading {
    /// The states, if read recently enough to act on.
    pub fn fresh(&self) -> Result<&ControlStates, Fence> {
        match &self.last {
            Some((states, at)) if at.elapsed() <= self.fence_after => Ok(states),
            Some((_, at)) => Err(Fence::Unreadable(format!(
                "last read {:.1} s ago, bound {:.1} s; {}",
                at.elapsed().as_secs_f64(),
                self.fence_after.as_secs_f64(),
                self.error.as_deref().unwrap_or("no error yet")
            ))),
            None => Err(Fence::Unreadable(
                self.error
                    .clone()
                    .unwrap_or_else(|| "not read yet".to_owned()),
            )),
        }
    }

    /// Whether the control named `control` lets this service act now.
    pub fn allows(&self, control: &str) -> Result<(), Fence> {
        if self.fresh()?.is_on(control) {
            Ok(())
        } else {
            Err(Fence::Off(control.to_owned()))
        }
    }
}

/// Polls every routing control every `poll_interval_ms` until `shutdown`. The receiver changes on
/// every poll, failed or not, so whoever waits on it re-checks freshness at least that often.
pub fn watch(
    client: Arc<ArcClient>,
    config: &ControlConfig,
    shutdown: CancellationToken,
) -> watch::Receiver<Reading> {
    let fence_after = Duration::from_millis(config.fence_after_ms);
    let every = Duration::from_millis(config.poll_interval_ms);
    let (sender, receiver) = watch::channel(Reading {
        last: None,
        error: None,
        fence_after,
    });
    tokio::spawn(async move {
        loop {
            let result = client.states().await;
            metrics::gauge!("keel_controls_readable").set(if result.is_ok() { 1.0 } else { 0.0 });
            sender.send_modify(|reading| match result {
                Ok(states) => {
                    reading.last = Some((states, Instant::now()));
                    reading.error = None;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read routing controls");
                    reading.error = Some(error.to_string());
                }
            });
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    receiver
}
