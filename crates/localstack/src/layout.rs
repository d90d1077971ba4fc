//! The local stack as the configuration lays it out (`deploy/local/config/keel.toml`): every
//! region's broker, ingress, databases and services with their ports, the ARC endpoints, the
//! DynamoDB endpoint. Derived, with the services from the topology: nothing here lists them again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_arc::ControlConfig;
use keel_routing::{App, RegionConfig};
use keel_topology::{Service, SERVICES};
use serde::{Deserialize, Serialize};

/// The parts of the configuration the local stack is laid out from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalConfig {
    pub regions: BTreeMap<String, RegionConfig>,
    pub control: ControlConfig,
    pub runbook: RunbookEndpoint,
    pub console: ConsoleEndpoint,
    pub local: LocalSection,
}

/// `[console]`: where the console listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleEndpoint {
    pub listen: String,
}

impl Default for ConsoleEndpoint {
    fn default() -> Self {
        ConsoleEndpoint {
            listen: "127.0.0.1:8080".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunbookEndpoint {
    pub dynamodb_endpoint: String,
}

/// `[local]`: what only the local stack has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalSection {
    /// Per region, the Postgres cluster that holds its broker's log.
    pub broker_storage_ports: BTreeMap<String, u16>,
    /// Where the continuous reconciler serves its metrics.
    pub reconciler_listen: String,
    /// Legs per second the generator offers (`KEEL_GENERATOR_RATE` overrides).
    pub generator_rate: f64,
}

impl Default for LocalSection {
    fn default() -> Self {
        LocalSection {
            broker_storage_ports: BTreeMap::new(),
            reconciler_listen: "127.0.0.1:9190".to_owned(),
            generator_rate: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("{what}: {value:?} names no port")]
    NoPort { what: String, value: String },
    #[error("{what}: {value:?} names no database")]
    NoDatabase { what: String, value: String },
    #[error("regions.{region}.{what} is missing")]
    Missing { region: String, what: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub regions: Vec<RegionLayout>,
    pub arc_ports: Vec<u16>,
    pub dynamodb_port: u16,
    pub reconciler_listen: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionLayout {
    pub name: String,
    pub kafka_port: u16,
    pub broker_storage_port: Option<u16>,
    /// Where participants reach the API (`ingress_url`).
    pub api_port: u16,
    /// Every service of the topology, with its ops listener's port.
    pub services: Vec<(&'static Service, u16)>,
    /// Each application's database here: its port and name.
    pub databases: BTreeMap<App, (u16, String)>,
}

/// The port of `http://host:port/...`, `postgres://user@host:port/db` or `host:port`.
fn port_of(what: &str, value: &str) -> Result<u16, LayoutError> {
    let after_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = after_scheme.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    host_port
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| LayoutError::NoPort {
            what: what.to_owned(),
            value: value.to_owned(),
        })
}

impl Layout {
    pub fn of(config: &LocalConfig) -> Result<Layout, LayoutError> {
        let mut regions = Vec::new();
        for (name, region) in &config.regions {
            let missing = |what: &str| LayoutError::Missing {
                region: name.clone(),
                what: what.to_owned(),
            };
            let services = SERVICES
                .iter()
                .map(|service| {
                    let url = region
                        .services
                        .get(service.name)
                        .ok_or_else(|| missing(&format!("services.{}", service.name)))?;
                    Ok((
                        service,
                        port_of(&format!("{} in {name}", service.name), url)?,
                    ))
                })
                .collect::<Result<Vec<_>, LayoutError>>()?;
            let mut databases = BTreeMap::new();
            for app in App::ALL {
                let url = region
                    .databases
                    .get(app.name())
                    .ok_or_else(|| missing(&format!("databases.{app}")))?;
                let what = format!("{app}'s database in {name}");
                let database = url
                    .rsplit_once('/')
                    .map(|(_, db)| db.split('?').next().unwrap_or_default().to_owned())
                    .filter(|db| !db.is_empty())
                    .ok_or_else(|| LayoutError::NoDatabase {
                        what: what.clone(),
                        value: url.clone(),
                    })?;
                databases.insert(app, (port_of(&what, url)?, database));
            }
            regions.push(RegionLayout {
                name: name.clone(),
                kafka_port: port_of(&format!("kafka in {name}"), &region.kafka)?,
                broker_storage_port: config.local.broker_storage_ports.get(name).copied(),
                api_port: port_of(&format!("ingress_url in {name}"), &region.ingress_url)?,
                services,
                databases,
            });
        }
        Ok(Layout {
            regions,
            arc_ports: config
                .control
                .endpoints
                .iter()
                .map(|endpoint| port_of("control.endpoints", endpoint.url()))
                .collect::<Result<_, _>>()?,
            dynamodb_port: port_of(
                "runbook.dynamodb_endpoint",
                &config.runbook.dynamodb_endpoint,
            )?,
            reconciler_listen: config.local.reconciler_listen.clone(),
        })
    }

    pub fn region_names(&self) -> Vec<String> {
        self.regions.iter().map(|r| r.name.clone()).collect()
    }
}

/// Where the local stack keeps each part under the state folder.
pub struct Places {
    pub state: PathBuf,
}

impl Places {
    /// `app`'s cluster in `region` (the layout keelctl's local database operations expect).
    pub fn cluster(&self, app: App, region: &str) -> PathBuf {
        cluster_dir(&self.state, app, region)
    }

    pub fn broker_storage(&self, region: &str) -> PathBuf {
        self.state.join(region).join("kafka-postgres")
    }

    pub fn broker(&self, region: &str) -> PathBuf {
        self.state.join(region).join("kafka")
    }

    pub fn logs(&self, region: &str) -> PathBuf {
        self.state.join(region).join("logs")
    }

    pub fn arc(&self) -> PathBuf {
        self.state.join("arc")
    }

    pub fn dynamodb(&self) -> PathBuf {
        self.state.join("dynamodb")
    }

    pub fn pids(&self) -> PathBuf {
        self.state.join("pids")
    }
}

/// `{state}/{region}/{tm|st}-postgres`.
pub fn cluster_dir(state: &Path, app: App, region: &str) -> PathBuf {
    let short = match app {
        App::TradeMatching => "tm",
        App::Settlement => "st",
    };
    state.join(region).join(format!("{short}-postgres"))
}

/// The name `app`'s standby in `region` replicates as: `{database}_{region}`, dashes as
/// underscores.
pub fn standby_name(database: &str, region: &str) -> String {
    format!("{database}_{}", region.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_every_kind_of_address() {
        assert_eq!(port_of("x", "http://127.0.0.1:8081").unwrap(), 8081);
        assert_eq!(port_of("x", "http://127.0.0.1:8081/v1").unwrap(), 8081);
        assert_eq!(
            port_of("x", "postgres://keel@127.0.0.1:54321/keel_tm").unwrap(),
            54321
        );
        assert_eq!(port_of("x", "127.0.0.1:19092").unwrap(), 19092);
        assert!(port_of("kafka", "localhost").is_err());
    }

    #[test]
    fn the_local_configuration_lays_out_every_service_of_the_topology_in_every_region() {
        // The checkout's file when the test runs (the target dir is shared between clones).
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
        let file = format!("{manifest}/../../deploy/local/config/keel.toml");
        let config: LocalConfig =
            toml_from_file(&file).expect("the local configuration reads as LocalConfig");
        let layout = Layout::of(&config).unwrap();
        assert_eq!(layout.region_names(), ["us-east-1", "us-west-2"]);
        for region in &layout.regions {
            let names: Vec<&str> = region.services.iter().map(|(s, _)| s.name).collect();
            assert_eq!(names, SERVICES.map(|s| s.name));
            assert_eq!(region.databases.len(), App::ALL.len());
            assert!(region.broker_storage_port.is_some(), "{}", region.name);
        }
        let mut ports: Vec<u16> = layout
            .regions
            .iter()
            .flat_map(|r| {
                r.services
                    .iter()
                    .map(|(_, p)| *p)
                    .chain([r.kafka_port])
                    .chain(r.broker_storage_port)
                    .chain(r.databases.values().map(|(p, _)| *p))
            })
            .chain(layout.arc_ports.iter().copied())
            .chain([layout.dynamodb_port])
            .collect();
        let all = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), all, "no two parts share a port");
    }

    fn toml_from_file(path: &str) -> Result<LocalConfig, String> {
        std::env::set_var("KEEL_CONFIG", path);
        keel_platform::config::load().map_err(|e| e.to_string())
    }
}
