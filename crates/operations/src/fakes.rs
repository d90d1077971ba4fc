//! An in-memory Keel, small enough to reason about, behind every port: routing controls that keep
//! the safety rules, databases that replicate and promote, a runbook store with the real lock and
//! version semantics, services whose health follows their processing control, brokers and the
//! pipeline's stores. One [`World`] implements every port, so a test changes the world (loses a
//! region, stops a service, cuts every port off) and watches what the runbook does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use keel_rotation::{GapCounts, HopTally, Journal, Mode, Reconciled};
use keel_routing::{
    control_name, initial_states, standard_rules, violations, App, ControlStates, Gate, SafetyRule,
};
use keel_topology::{hops_of, service};

use crate::audit::AuditEntry;
use crate::health::{Health, Processing};
use crate::ports::{
    acknowledged_records, Acknowledged, AuditTrail, BrokerError, Brokers, Clock, ControlsError,
    DatabaseError, Databases, IngressAnswer, Pipeline, PipelineError, Queues, Replication,
    RoutingControls, RunbookStore, ServiceProbes, StandbyLink, StoreError, Telemetry,
    TelemetryError, Verification,
};
use crate::runbook::{Ports, Runbook, Settings};
use crate::telemetry::Sample;

pub const EAST: &str = "us-east-1";
pub const WEST: &str = "us-west-2";

/// A database's role: a primary, or a standby streaming from the primary in a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    StandbyOf(String),
}

#[derive(Debug, Clone)]
pub struct FakeDatabase {
    pub role: Role,
    pub running: bool,
    /// Acknowledged records it holds.
    pub acknowledged: i64,
}

#[derive(Debug)]
struct State {
    controls: BTreeMap<String, bool>,
    rules: Vec<SafetyRule>,
    databases: BTreeMap<(App, String), FakeDatabase>,
    stopped_services: BTreeSet<(String, &'static str)>,
    lost_regions: BTreeSet<String>,
    /// Every port but the runbook store fails while this is set.
    outage: bool,
    /// The runbook store fails while this is set.
    store_down: bool,
    locks: BTreeMap<App, String>,
    journals: BTreeMap<String, (Journal, u64)>,
    audit: BTreeMap<String, AuditEntry>,
    /// Outbox rows left to drain; each look at the queues sees one fewer.
    pending: i64,
    verify_problems: Vec<String>,
    /// Gaps the Reconcile step leaves missing.
    missing_after_reconcile: usize,
    /// What happened, in order: "stop us-east-1 trade-matching", "promote ...".
    log: Vec<String>,
}

/// The whole fake deployment.
pub struct World {
    regions: Vec<String>,
    state: Mutex<State>,
    clock: AtomicU64,
}

impl World {
    /// Two regions, both applications active in [`EAST`], each database streaming to a standby in
    /// [`WEST`], every service up, `acknowledged` records in every database.
    pub fn two_regions(acknowledged: i64) -> Arc<World> {
        let regions = vec![EAST.to_owned(), WEST.to_owned()];
        let active = App::ALL.map(|app| (app, EAST.to_owned())).into();
        let mut databases = BTreeMap::new();
        for app in App::ALL {
            for (region, role) in [(EAST, Role::Primary), (WEST, Role::StandbyOf(EAST.into()))] {
                databases.insert(
                    (app, region.to_owned()),
                    FakeDatabase {
                        role,
                        running: true,
                        acknowledged,
                    },
                );
            }
        }
        Arc::new(World {
            state: Mutex::new(State {
                controls: initial_states(&regions, &active),
                rules: standard_rules(&regions),
                databases,
                stopped_services: BTreeSet::new(),
                lost_regions: BTreeSet::new(),
                outage: false,
                store_down: false,
                locks: BTreeMap::new(),
                journals: BTreeMap::new(),
                audit: BTreeMap::new(),
                pending: 3,
                verify_problems: Vec::new(),
                missing_after_reconcile: 0,
                log: Vec::new(),
            }),
            regions,
            clock: AtomicU64::new(1_800_000_000_000),
        })
    }

    pub fn ports(self: &Arc<Self>) -> Ports {
        Ports {
            controls: self.clone(),
            databases: self.clone(),
            store: self.clone(),
            probes: self.clone(),
            brokers: self.clone(),
            pipeline: self.clone(),
            clock: self.clone(),
        }
    }

    /// A runbook over this world that waits milliseconds, not seconds.
    pub fn runbook(self: &Arc<Self>) -> Runbook {
        let fast = Duration::from_millis(1);
        Runbook::new(
            self.ports(),
            self.regions.clone(),
            Settings {
                step_bound: Duration::from_millis(40),
                poll: fast,
                settlement_traffic_wait: fast,
                fence_after: Duration::from_millis(5),
                database_switch_bound: Duration::from_millis(40),
                rebuild_bound: Duration::from_millis(40),
            },
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the world's lock is never poisoned")
    }

    /// Every port but the runbook store fails (until this is called again with `false`).
    pub fn set_outage(&self, outage: bool) {
        self.state().outage = outage;
    }

    /// The runbook store fails (until this is called again with `false`).
    pub fn set_store_down(&self, down: bool) {
        self.state().store_down = down;
    }

    /// A region lost whole: its services, broker and databases stop answering.
    pub fn lose_region(&self, region: &str) {
        self.state().lost_regions.insert(region.to_owned());
    }

    /// The lost region is back, its databases as they were when it was lost.
    pub fn restore_region(&self, region: &str) {
        self.state().lost_regions.remove(region);
    }

    pub fn stop_service(&self, region: &str, name: &'static str) {
        self.state()
            .stopped_services
            .insert((region.to_owned(), name));
    }

    pub fn start_service(&self, region: &str, name: &'static str) {
        self.state()
            .stopped_services
            .remove(&(region.to_owned(), name));
    }

    pub fn set_pending(&self, pending: i64) {
        self.state().pending = pending;
    }

    pub fn set_verify_problems(&self, problems: Vec<String>) {
        self.state().verify_problems = problems;
    }

    pub fn set_missing_after_reconcile(&self, missing: usize) {
        self.state().missing_after_reconcile = missing;
    }

    /// Changes a database, as a test's damage (records lost, a standby detached).
    pub fn change_database(&self, app: App, region: &str, change: impl FnOnce(&mut FakeDatabase)) {
        let mut state = self.state();
        change(
            state
                .databases
                .get_mut(&(app, region.to_owned()))
                .expect("a known database"),
        );
    }

    pub fn database(&self, app: App, region: &str) -> FakeDatabase {
        self.state().databases[&(app, region.to_owned())].clone()
    }

    pub fn control(&self, app: App, gate: Gate, region: &str) -> bool {
        let name = control_name(app, gate, region);
        self.state().controls.get(&name).copied().unwrap_or(false)
    }

    pub fn controls(&self) -> BTreeMap<String, bool> {
        self.state().controls.clone()
    }

    pub fn lock(&self, app: App) -> Option<String> {
        self.state().locks.get(&app).cloned()
    }

    pub fn journal(&self, run_id: &str) -> Option<Journal> {
        self.state().journals.get(run_id).map(|(j, _)| j.clone())
    }

    /// What the databases went through, in order.
    pub fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    fn reachable(&self, state: &State, region: &str) -> bool {
        !state.outage && !state.lost_regions.contains(region)
    }
}

fn database_error(app: App, region: &str, detail: &str) -> DatabaseError {
    DatabaseError {
        app,
        region: region.to_owned(),
        detail: detail.to_owned(),
    }
}

impl Clock for World {
    /// Ten milliseconds pass at every reading, so every step takes time.
    fn now_ms(&self) -> u64 {
        self.clock.fetch_add(10, Ordering::Relaxed)
    }
}

#[async_trait]
impl RoutingControls for World {
    async fn states(&self) -> Result<ControlStates, ControlsError> {
        let state = self.state();
        if state.outage {
            return Err(ControlsError::Unreachable("every endpoint cut off".into()));
        }
        Ok(ControlStates {
            states: state.controls.clone(),
        })
    }

    async fn set(
        &self,
        changes: &[(String, bool)],
        overrides: &[String],
    ) -> Result<(), ControlsError> {
        let mut state = self.state();
        if state.outage {
            return Err(ControlsError::Unreachable("every endpoint cut off".into()));
        }
        let mut next = state.controls.clone();
        for (name, on) in changes {
            match next.get_mut(name) {
                Some(value) => *value = *on,
                None => return Err(ControlsError::Rejected(format!("no control {name}"))),
            }
        }
        let broken: Vec<String> = violations(&state.rules, &next)
            .into_iter()
            .filter(|rule| !overrides.contains(&rule.name))
            .map(|rule| format!("{}: {}", rule.name, rule.describe()))
            .collect();
        if !broken.is_empty() {
            return Err(ControlsError::Refused(broken.join("; ")));
        }
        state.controls = next;
        Ok(())
    }
}

#[async_trait]
impl Databases for World {
    async fn replication(&self, app: App, region: &str) -> Result<Replication, DatabaseError> {
        let state = self.state();
        let database = &state.databases[&(app, region.to_owned())];
        if !self.reachable(&state, region) || !database.running {
            return Err(database_error(app, region, "connection refused"));
        }
        Ok(match &database.role {
            Role::Primary => Replication::Primary {
                standbys: state
                    .databases
                    .iter()
                    .filter(|((a, r), db)| {
                        *a == app
                            && db.running
                            && self.reachable(&state, r)
                            && db.role == Role::StandbyOf(region.to_owned())
                    })
                    .map(|((a, r), _)| StandbyLink {
                        name: standby_name(*a, r),
                        state: "streaming".to_owned(),
                        behind_bytes: Some(0),
                        replay_lag_seconds: None,
                        synchronous: false,
                    })
                    .collect(),
            },
            Role::StandbyOf(_) => Replication::Standby {
                behind_bytes: Some(0),
                last_replayed_seconds_ago: Some(0.2),
            },
        })
    }

    fn standby_name(&self, app: App, region: &str) -> Result<String, DatabaseError> {
        Ok(standby_name(app, region))
    }

    async fn flushed_position(&self, app: App, region: &str) -> Result<String, DatabaseError> {
        self.replication(app, region).await?;
        Ok("0/3000060".to_owned())
    }

    async fn wait_replayed(
        &self,
        app: App,
        region: &str,
        _position: &str,
        _bound: Duration,
    ) -> Result<Duration, DatabaseError> {
        match self.replication(app, region).await? {
            Replication::Standby { .. } => Ok(Duration::from_millis(1)),
            Replication::Primary { .. } => Err(database_error(app, region, "not a standby")),
        }
    }

    async fn acknowledged(&self, app: App, region: &str) -> Result<Acknowledged, DatabaseError> {
        self.replication(app, region).await?;
        let (table, id) = acknowledged_records(app);
        Ok(Acknowledged {
            count: self.state().databases[&(app, region.to_owned())].acknowledged,
            table,
            id,
        })
    }

    async fn acknowledged_missing(
        &self,
        app: App,
        from: &str,
        to: &str,
    ) -> Result<i64, DatabaseError> {
        let source = self.acknowledged(app, from).await?.count;
        let target = self.acknowledged(app, to).await?.count;
        Ok((source - target).max(0))
    }

    async fn answers(&self, app: App, region: &str, _timeout: Duration) -> bool {
        self.replication(app, region).await.is_ok()
    }

    async fn takes_writes(&self, app: App, region: &str) -> bool {
        matches!(
            self.replication(app, region).await,
            Ok(Replication::Primary { .. })
        )
    }

    /// As the local Postgres clusters do it: the old primary is stopped first, so nothing writes
    /// two primaries; a lost one is left as it is when the move is unplanned.
    async fn switch_primary(
        &self,
        app: App,
        from: &str,
        to: &str,
        mode: Mode,
        _bound: Duration,
    ) -> Result<Vec<String>, DatabaseError> {
        let mut done = Vec::new();
        let stopped = {
            let mut state = self.state();
            if self.reachable(&state, from) {
                state.log.push(format!("stop {app} {from}"));
                state
                    .databases
                    .get_mut(&(app, from.to_owned()))
                    .expect("known")
                    .running = false;
                true
            } else {
                false
            }
        };
        match (stopped, mode) {
            (true, _) => done.push(format!("{from}'s primary stopped")),
            (false, Mode::Planned) => return Err(database_error(app, from, "unreachable")),
            (false, Mode::Unplanned) => done.push(format!("{from}'s primary unreachable")),
        }
        self.replication(app, to).await?;
        let mut state = self.state();
        state.log.push(format!("promote {app} {to}"));
        state
            .databases
            .get_mut(&(app, to.to_owned()))
            .expect("known")
            .role = Role::Primary;
        done.push(format!("{to}'s database promoted"));
        Ok(done)
    }

    async fn rebuild_standby(
        &self,
        app: App,
        region: &str,
        primary_region: &str,
        _bound: Duration,
    ) -> Result<String, DatabaseError> {
        match self.replication(app, primary_region).await? {
            Replication::Primary { .. } => {}
            Replication::Standby { .. } => {
                return Err(database_error(app, primary_region, "not a primary"))
            }
        }
        let mut state = self.state();
        if !self.reachable(&state, region) {
            return Err(database_error(app, region, "unreachable"));
        }
        state.log.push(format!("rebuild {app} {region}"));
        let primary = state.databases[&(app, primary_region.to_owned())].acknowledged;
        let database = state
            .databases
            .get_mut(&(app, region.to_owned()))
            .expect("known");
        *database = FakeDatabase {
            role: Role::StandbyOf(primary_region.to_owned()),
            running: true,
            acknowledged: primary,
        };
        Ok(standby_name(app, region))
    }

    async fn wait_streaming(
        &self,
        app: App,
        primary_region: &str,
        name: &str,
        _bound: Duration,
    ) -> Result<(), DatabaseError> {
        match self.replication(app, primary_region).await? {
            Replication::Primary { standbys } if standbys.iter().any(|s| s.name == name) => Ok(()),
            _ => Err(database_error(
                app,
                primary_region,
                &format!("{name} is not streaming"),
            )),
        }
    }
}

fn standby_name(app: App, region: &str) -> String {
    format!("{}_{}", app.name(), region).replace('-', "_")
}

#[async_trait]
impl AuditTrail for World {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut state = self.state();
        store_answers(&state)?;
        state.audit.insert(entry.id.clone(), entry.clone());
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let state = self.state();
        store_answers(&state)?;
        Ok(state.audit.values().rev().take(limit).cloned().collect())
    }
}

#[async_trait]
impl RunbookStore for World {
    async fn lock_holder(&self, app: App) -> Result<Option<String>, StoreError> {
        let state = self.state();
        store_answers(&state)?;
        Ok(state.locks.get(&app).cloned())
    }

    async fn lock(&self, app: App, run_id: &str, _holder: &str) -> Result<(), StoreError> {
        let mut state = self.state();
        store_answers(&state)?;
        match state.locks.get(&app) {
            Some(holder) if holder != run_id => Err(StoreError::Locked {
                app,
                run_id: holder.clone(),
            }),
            _ => {
                state.locks.insert(app, run_id.to_owned());
                Ok(())
            }
        }
    }

    async fn unlock(&self, app: App, run_id: &str) -> Result<(), StoreError> {
        let mut state = self.state();
        store_answers(&state)?;
        if state.locks.get(&app).is_some_and(|holder| holder == run_id) {
            state.locks.remove(&app);
        }
        Ok(())
    }

    async fn load(&self, run_id: &str) -> Result<Option<(Journal, u64)>, StoreError> {
        let state = self.state();
        store_answers(&state)?;
        Ok(state.journals.get(run_id).cloned())
    }

    async fn save(&self, journal: &Journal, version: u64) -> Result<u64, StoreError> {
        let mut state = self.state();
        store_answers(&state)?;
        let stored = state.journals.get(&journal.run_id).map_or(0, |(_, v)| *v);
        if stored != version {
            return Err(StoreError::LostRace(journal.run_id.clone()));
        }
        state
            .journals
            .insert(journal.run_id.clone(), (journal.clone(), version + 1));
        Ok(version + 1)
    }
}

fn store_answers(state: &State) -> Result<(), StoreError> {
    if state.store_down {
        return Err(StoreError::Failed {
            endpoint: "the fake store".into(),
            detail: "cut off".into(),
        });
    }
    Ok(())
}

/// Every running service has processed as many messages as the databases hold records; the
/// reconciler reports the gaps reconciliation would leave.
#[async_trait]
impl Telemetry for World {
    async fn samples(
        &self,
        region: &str,
        name: &'static str,
    ) -> Result<Vec<Sample>, TelemetryError> {
        let state = self.state();
        if !self.reachable(&state, region)
            || state.stopped_services.contains(&(region.to_owned(), name))
        {
            return Err(TelemetryError {
                source_name: format!("{name} in {region}"),
                detail: "connection refused".to_owned(),
            });
        }
        let processed = state
            .databases
            .values()
            .map(|db| db.acknowledged)
            .max()
            .unwrap_or(0) as f64;
        let (metric, labels) = if name == "ingress" {
            ("keel_ingress_legs_accepted_total", BTreeMap::new())
        } else {
            (
                "keel_consumer_messages_total",
                BTreeMap::from([("outcome".to_owned(), "processed".to_owned())]),
            )
        };
        Ok(vec![Sample {
            name: metric.to_owned(),
            labels,
            value: processed,
        }])
    }

    async fn reconciler(&self) -> Result<Vec<Sample>, TelemetryError> {
        let state = self.state();
        Ok(vec![Sample {
            name: "keel_reconcile_gaps".to_owned(),
            labels: BTreeMap::from([
                (
                    "hop".to_owned(),
                    "ingress -> ingestion (tm.submissions)".to_owned(),
                ),
                ("kind".to_owned(), "missing".to_owned()),
            ]),
            value: state.missing_after_reconcile as f64,
        }])
    }
}

#[async_trait]
impl ServiceProbes for World {
    async fn health(&self, region: &str, name: &'static str) -> Health {
        let state = self.state();
        if !self.reachable(&state, region)
            || state.stopped_services.contains(&(region.to_owned(), name))
        {
            return Health::Down("connection refused".to_owned());
        }
        let app = service(name).expect("a service of the topology").app;
        let control = control_name(app, Gate::Processing, region);
        if state.controls.get(&control).copied().unwrap_or(false) {
            Health::Ready(Processing::Active)
        } else {
            Health::Ready(Processing::Standby(format!("{control} is Off")))
        }
    }

    async fn ingress(&self, region: &str) -> IngressAnswer {
        let traffic = control_name(App::TradeMatching, Gate::Traffic, region);
        let state = self.state();
        if !self.reachable(&state, region)
            || state
                .stopped_services
                .contains(&(region.to_owned(), "ingress"))
        {
            IngressAnswer::Refusing("unreachable".to_owned())
        } else if state.controls.get(&traffic).copied().unwrap_or(false) {
            IngressAnswer::Accepting("401 Unauthorized".to_owned())
        } else {
            IngressAnswer::Refusing("503 Service Unavailable".to_owned())
        }
    }
}

#[async_trait]
impl Brokers for World {
    async fn answers(&self, region: &str) -> Result<(), BrokerError> {
        if self.reachable(&self.state(), region) {
            Ok(())
        } else {
            Err(BrokerError {
                region: region.to_owned(),
                brokers: "fake".to_owned(),
                detail: "metadata request timed out".to_owned(),
            })
        }
    }
}

#[async_trait]
impl Pipeline for World {
    async fn queues(&self, app: App, region: &str) -> Result<Queues, PipelineError> {
        let mut state = self.state();
        if !self.reachable(&state, region) {
            return Err(PipelineError::Database(format!(
                "{app}'s database in {region} does not answer"
            )));
        }
        let depth = state.pending;
        state.pending = (depth - 1).max(0);
        Ok(Queues {
            outbox_depth: depth,
            consumer_lag: BTreeMap::new(),
        })
    }

    async fn reconcile(&self, app: App, run_id: &str) -> Result<Reconciled, PipelineError> {
        let state = self.state();
        if state.outage {
            return Err(PipelineError::Database("cut off".into()));
        }
        let missing = state.missing_after_reconcile;
        let hops: Vec<HopTally> = hops_of(app)
            .map(|hop| HopTally {
                hop: hop.name(),
                found: GapCounts {
                    missing: 1,
                    ..GapCounts::default()
                },
                replayed: 1,
                restored: 0,
                left: GapCounts::default(),
            })
            .collect();
        let mut reconciled = Reconciled {
            run_id: Some(run_id.to_owned()),
            found: hops.len(),
            repaired: hops.len(),
            left: missing,
            hops,
            skipped: Vec::new(),
        };
        if let Some(first) = reconciled.hops.first_mut() {
            first.left.missing = missing;
        }
        Ok(reconciled)
    }

    async fn verify(&self, _app: App) -> Result<Verification, PipelineError> {
        let state = self.state();
        if state.outage {
            return Err(PipelineError::Database("cut off".into()));
        }
        Ok(Verification {
            seen: vec![
                "no duplicate notification".into(),
                "the ledger verifies".into(),
            ],
            problems: state.verify_problems.clone(),
        })
    }
}
