//! Keel at a glance, per application and region: the routing controls, every service's health, the
//! database's role and replication lag, consumer lag and outbox depth. What `keelctl status` prints
//! and the console shows.

use std::collections::BTreeMap;

use keel_routing::{App, Gate, GENERATOR};
use keel_topology::services_of;
use serde::Serialize;

use crate::health::Health;
use crate::ports::{Queues, Replication};
use crate::runbook::Ports;

/// A part read, or why it could not be: one part that cannot be read does not hide the others.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reading<T> {
    Read(T),
    Unreadable(String),
}

impl<T> Reading<T> {
    fn of<E: std::fmt::Display>(result: Result<T, E>) -> Self {
        match result {
            Ok(value) => Reading::Read(value),
            Err(error) => Reading::Unreadable(error.to_string()),
        }
    }

    pub fn read(&self) -> Option<&T> {
        match self {
            Reading::Read(value) => Some(value),
            Reading::Unreadable(_) => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Every control's state, or why they cannot be read.
    pub controls: Reading<BTreeMap<String, bool>>,
    pub applications: Vec<Row>,
}

impl Status {
    pub fn generator(&self) -> Option<bool> {
        self.controls
            .read()
            .map(|c| c.get(GENERATOR).copied().unwrap_or(false))
    }
}

/// One application in one region.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub app: App,
    pub region: String,
    pub traffic: Option<bool>,
    pub processing: Option<bool>,
    pub services: BTreeMap<&'static str, Health>,
    /// The database's role and lag, or why it cannot be read.
    pub database: Reading<Replication>,
    /// The queues, on a primary; why they cannot be read otherwise.
    pub queues: Option<Reading<Queues>>,
}

impl Row {
    /// A primary with no standby attached: nothing replicates its writes.
    pub fn unprotected(&self) -> bool {
        matches!(&self.database, Reading::Read(Replication::Primary { standbys }) if standbys.is_empty())
    }
}

/// Reads everything, each part on its own: one that cannot be read is shown as such, not fatal.
pub async fn gather(ports: &Ports, regions: &[String]) -> Status {
    let controls = ports.controls.states().await.map(|c| c.states);
    let mut applications = Vec::new();
    for app in App::ALL {
        for region in regions {
            let gate = |gate| {
                controls.as_ref().ok().map(|c| {
                    c.get(&keel_routing::control_name(app, gate, region))
                        .copied()
                        .unwrap_or(false)
                })
            };
            let mut services = BTreeMap::new();
            for service in services_of(app) {
                services.insert(
                    service.name,
                    ports.probes.health(region, service.name).await,
                );
            }
            let database = Reading::of(ports.databases.replication(app, region).await);
            let queues = match &database {
                Reading::Read(Replication::Primary { .. }) => {
                    Some(Reading::of(ports.pipeline.queues(app, region).await))
                }
                _ => None,
            };
            applications.push(Row {
                app,
                region: region.clone(),
                traffic: gate(Gate::Traffic),
                processing: gate(Gate::Processing),
                services,
                database,
                queues,
            });
        }
    }
    Status {
        controls: Reading::of(controls),
        applications,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{World, EAST, WEST};

    #[tokio::test]
    async fn status_shows_each_region_as_it_is_and_what_cannot_be_read() {
        let world = World::two_regions(5);
        world.lose_region(WEST);
        let status = gather(&world.ports(), &[EAST.to_owned(), WEST.to_owned()]).await;
        assert_eq!(status.generator(), Some(true));
        assert_eq!(status.applications.len(), 4);
        let row = |app, region: &str| {
            status
                .applications
                .iter()
                .find(|r| r.app == app && r.region == region)
                .unwrap()
        };
        let east = row(App::TradeMatching, EAST);
        assert_eq!((east.traffic, east.processing), (Some(true), Some(true)));
        assert!(east.services.values().all(Health::is_active));
        assert!(east.unprotected(), "its standby's region is lost");
        assert!(matches!(east.queues, Some(Reading::Read(_))));
        let west = row(App::Settlement, WEST);
        assert_eq!(west.processing, Some(false));
        assert!(west.database.read().is_none());
        assert!(west.queues.is_none());
        assert!(west.services.values().all(|h| matches!(h, Health::Down(_))));
    }
}
