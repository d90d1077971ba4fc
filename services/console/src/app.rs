//! The console's shared state: the operations library over the real systems (as keelctl has it),
//! the operator registry, the sign-in sessions and the run the console started.

use std::sync::Arc;
use std::time::Duration;

use keel_operations::ports::{AuditTrail, SystemClock};
use keel_operations::{Auditor, Channel, Ports, Registry, Runbook};
use keel_operations_live::{Config, DynamoStore};

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
}

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
