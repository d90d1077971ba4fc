//! The console's shared state: the operations library over the real systems (as keelctl has it),
//! the operator registry, the sign-in sessions and the run the console started.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_operations::ports::{AuditTrail, SystemClock, Telemetry};
use keel_operations::telemetry::StageCount;
use keel_operations::{Auditor, Channel, Ports, Registry, Runbook};
use keel_operations_live::{Config, DynamoStore, HttpProbes};

use crate::config::ConsoleConfig;
use crate::runs::RunBoard;
use crate::sessions::Sessions;

#[derive(Clone)]
pub struct AppState {
    pub regions: Arc<Vec<String>>,
    pub ports: Ports,
    pub runbook: Arc<Runbook>,
    pub trail: Arc<dyn AuditTrail>,
    pub registry: Arc<Registry>,
    pub sessions: Arc<Sessions>,
    pub runs: RunBoard,
    pub refresh: Duration,
    pub telemetry: Arc<dyn Telemetry>,
    /// The last reading of the stages' counts, for their rates.
    pub last_counts: Arc<Mutex<Option<Reading>>>,
}

/// The stages' counts, and when they were read.
pub type Reading = (Instant, Vec<StageCount>);

impl AppState {
    pub fn new(config: &Config, console: &ConsoleConfig, registry: Registry) -> AppState {
        AppState {
            regions: Arc::new(config.region_names()),
            ports: keel_operations_live::ports(config),
            runbook: Arc::new(keel_operations_live::runbook(config)),
            trail: Arc::new(DynamoStore::new(&config.runbook)),
            registry: Arc::new(registry),
            sessions: Arc::new(Sessions::new(Duration::from_secs(
                console.session_minutes * 60,
            ))),
            runs: RunBoard::default(),
            refresh: Duration::from_millis(console.refresh_ms.max(200)),
            telemetry: Arc::new(HttpProbes::new(config)),
            last_counts: Arc::default(),
        }
    }

    /// Records the console's actions in the trail.
    pub fn auditor(&self) -> Auditor<'_> {
        Auditor {
            trail: self.trail.as_ref(),
            clock: &SystemClock,
            channel: Channel::Console,
        }
    }
}
