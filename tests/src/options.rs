//! What a test may choose about its stack: regions, where each application starts active,
//! replication, ARC endpoints, scaled-out stages, timings; and the topology's services.

use std::collections::BTreeMap;

use keel_routing::App;

/// The names of the services of both applications, in the topology's start order.
pub fn service_names() -> impl Iterator<Item = &'static str> {
    keel_topology::SERVICES.iter().map(|service| service.name)
}

pub const EAST: &str = "us-east-1";

pub const WEST: &str = "us-west-2";

/// Tunables a test may change.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub match_window_seconds: i64,
    pub release: bool,
    pub extra_env: Vec<(String, String)>,
    /// The regions; the first is where both applications start active unless `active` says else.
    pub regions: Vec<&'static str>,
    pub active: BTreeMap<App, &'static str>,
    /// Per application, a primary cluster in its active region and a streaming standby in each
    /// other region (otherwise one database per application, shared by every region).
    pub replicated: bool,
    pub arc_endpoints: usize,
    pub fence_after_ms: u64,
    /// Stages run as several instances in each region, splitting their topics' partitions:
    /// service name and instance count (the topics need at least that many partitions).
    pub instances: BTreeMap<&'static str, u32>,
    /// Every link a fault may hit (each region to its databases and broker, to the other
    /// region's, to the ARC endpoints; each standby to its primary) goes through a relay the
    /// test can slow, drop or cut ([`crate::network`]). Needs `replicated`.
    pub network: bool,
    /// The stack's runbook store is a DynamoDB endpoint of its own (durable: its tables outlive a
    /// SIGKILL), which a test may kill; otherwise a table in the endpoint `make test` started.
    pub own_runbook_store: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            match_window_seconds: 3600,
            release: false,
            extra_env: Vec::new(),
            regions: vec![EAST],
            active: BTreeMap::new(),
            replicated: false,
            arc_endpoints: 1,
            fence_after_ms: 5_000,
            instances: BTreeMap::new(),
            network: false,
            own_runbook_store: false,
        }
    }
}

impl StackOptions {
    pub fn two_regions() -> Self {
        Self {
            regions: vec![EAST, WEST],
            ..Self::default()
        }
    }

    /// Two regions, per application a primary and a streaming standby, replicating synchronously
    /// (an acknowledgement waits for the standby) or not.
    pub fn replicated_two_regions(synchronous: bool) -> Self {
        Self {
            replicated: true,
            extra_env: vec![(
                "KEEL_REPLICATION__SYNCHRONOUS".into(),
                synchronous.to_string(),
            )],
            ..Self::two_regions()
        }
    }

    pub fn active_region(&self, app: App) -> &'static str {
        self.active.get(&app).copied().unwrap_or(self.regions[0])
    }
}
