//! The configuration a stack's processes read: the local stack's file, with this stack's regions,
//! ARC cluster, runbook store, operator registry and timings in place of the local ones. The parts the harness sets
//! are the services' and keelctl's own configuration types (`RegionConfig`, `ControlConfig`,
//! `RunbookConfig`, `OperatorsConfig`), serialised; the rest of the file is kept as it is. With
//! the chaos network each region's processes read a view of their own (what they reach through a
//! relay), and the operator's file says how each standby reaches its primary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_arc::ControlConfig;
use keel_operations_live::{OperatorsConfig, ReplicationLink, RunbookConfig};
use keel_routing::{App, RegionConfig};
use serde::Serialize;

use crate::machine::repo_root;
use crate::network::{LinkId, Peer, OPERATOR};
use crate::stack::{db_name, Stack};

/// The file's `[section]` with `value` in it, whole.
fn replace(config: &mut toml::Table, section: &str, value: &impl Serialize) -> anyhow::Result<()> {
    config.insert(section.to_owned(), toml::Value::try_from(value)?);
    Ok(())
}

impl Stack {
    /// The file the processes of `region` read: with the chaos network, a view of their own in
    /// which everything outside the region (and their own databases and broker) is reached
    /// through a relay; otherwise the operator's file.
    pub(crate) fn config_file_in(&self, region: &str) -> PathBuf {
        match self.network {
            Some(_) => self.dir.join(format!("keel-{region}.toml")),
            None => self.config_file.clone(),
        }
    }

    /// The port `from`'s processes reach `to` at: the relay's, with the chaos network.
    pub(crate) fn through(&self, from: &str, to: Peer, port: u16) -> anyhow::Result<u16> {
        match &self.network {
            Some(network) => network.port(
                LinkId {
                    from: from.to_owned(),
                    to,
                },
                port,
            ),
            None => Ok(port),
        }
    }

    fn cluster_port(&self, app: App, region: &str) -> anyhow::Result<u16> {
        self.clusters
            .iter()
            .find(|c| c.app == app && c.region == region)
            .map(|c| c.port)
            .context("the chaos network needs a replicated stack")
    }

    /// The regions as processes in `from` see them (`None`: the operator, who reaches every
    /// server directly).
    fn regions_seen_from(
        &self,
        from: Option<&str>,
    ) -> anyhow::Result<BTreeMap<String, RegionConfig>> {
        let mut regions = BTreeMap::new();
        for (name, region) in &self.regions {
            let mut kafka = region.kafka_brokers.clone();
            let mut databases: BTreeMap<String, String> = region
                .databases
                .iter()
                .map(|(app, url)| (app.name().to_owned(), url.clone()))
                .collect();
            if let Some(from) = from {
                let broker_port = match region.remote_broker_ports.get(from) {
                    Some(port) => *port,
                    None => region.kafka_port,
                };
                let port = self.through(from, Peer::Broker((*name).to_owned()), broker_port)?;
                kafka = format!("127.0.0.1:{port}");
                if from == *name {
                    for app in App::ALL {
                        let cluster = self.cluster_port(app, name)?;
                        let port =
                            self.through(from, Peer::Database(app, (*name).to_owned()), cluster)?;
                        databases.insert(
                            app.name().to_owned(),
                            format!("postgres://keel@127.0.0.1:{port}/{}", db_name(app)),
                        );
                    }
                }
            }
            let region = RegionConfig {
                kafka,
                ingress_url: region.ingress_url.clone(),
                databases,
                services: region
                    .ops_ports
                    .iter()
                    .map(|(service, port)| {
                        ((*service).to_owned(), format!("http://127.0.0.1:{port}"))
                    })
                    .collect(),
            };
            regions.insert((*name).to_owned(), region);
        }
        Ok(regions)
    }

    /// How a standby in one region reaches its primary in another, for keelctl's re-protection.
    fn replication_links(&self) -> anyhow::Result<Vec<ReplicationLink>> {
        let mut links = Vec::new();
        if self.network.is_none() {
            return Ok(links);
        }
        for app in App::ALL {
            for from in self.regions.keys() {
                for to in self.regions.keys().filter(|to| *to != from) {
                    let primary = self.cluster_port(app, to)?;
                    links.push(ReplicationLink {
                        app,
                        from: (*from).to_owned(),
                        to: (*to).to_owned(),
                        port: self.through(from, Peer::Database(app, (*to).to_owned()), primary)?,
                    });
                }
            }
        }
        Ok(links)
    }

    pub(crate) fn write_config(&self) -> anyhow::Result<()> {
        self.write_config_seen_from(None, &self.config_file)?;
        if self.network.is_some() {
            for region in self.regions.keys() {
                self.write_config_seen_from(Some(region), &self.config_file_in(region))?;
            }
        }
        Ok(())
    }

    fn write_config_seen_from(&self, from: Option<&str>, file: &Path) -> anyhow::Result<()> {
        let base = std::fs::read_to_string(repo_root().join("deploy/local/config/keel.toml"))?;
        let mut config: toml::Table = base.parse()?;
        replace(&mut config, "regions", &self.regions_seen_from(from)?)?;
        let mut endpoints = Vec::new();
        for (index, port) in self.arc_ports.iter().enumerate() {
            let port = match from {
                Some(from) => self.through(from, Peer::Arc(index), *port)?,
                None => *port,
            };
            endpoints.push(format!("http://127.0.0.1:{port}"));
        }
        // The rest as the local stack has it (its credentials among them).
        let local_control: ControlConfig = config
            .get("control")
            .cloned()
            .map(toml::Value::try_into)
            .transpose()?
            .unwrap_or_default();
        let control = ControlConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            poll_interval_ms: 200,
            request_timeout_ms: 500,
            fence_after_ms: self.options.fence_after_ms,
            ..local_control
        };
        replace(&mut config, "control", &control)?;
        // The runbook store: the test DynamoDB endpoint `make test` starts, a table per stack; the
        // clusters in the stack's folder, laid out as `make up` lays them out.
        let local: RunbookConfig = config
            .get("runbook")
            .cloned()
            .map(toml::Value::try_into)
            .transpose()?
            .unwrap_or_default();
        let runbook = RunbookConfig {
            dynamodb_endpoint: match &self.runbook_store {
                Some(store) => format!(
                    "http://127.0.0.1:{}",
                    self.through(OPERATOR, Peer::RunbookStore, store.port)?
                ),
                None => std::env::var("KEEL_TEST_DYNAMODB")
                    .unwrap_or_else(|_| "http://127.0.0.1:18490".to_owned()),
            },
            table: format!(
                "keel-runbooks-{}",
                self.dir.file_name().unwrap().to_string_lossy()
            ),
            state_dir: self.dir.to_string_lossy().into_owned(),
            step_timeout_seconds: 60,
            ..local
        };
        replace(&mut config, "runbook", &runbook)?;
        let operators = OperatorsConfig {
            registry: repo_root()
                .join("deploy/local/config/operators.toml")
                .to_string_lossy()
                .into_owned(),
            ..OperatorsConfig::default()
        };
        replace(&mut config, "operators", &operators)?;
        if let Some(toml::Value::Table(local)) = config.get_mut("local") {
            local.insert(
                "replication_links".to_owned(),
                toml::Value::try_from(self.replication_links()?)?,
            );
        }
        std::fs::write(file, toml::to_string(&config)?)?;
        Ok(())
    }
}
