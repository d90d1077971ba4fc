//! The configuration a stack's processes read: the local stack's file, with this stack's regions,
//! ARC cluster, runbook store, operator registry and timings in place of the local ones. The parts the harness sets
//! are the services' and keelctl's own configuration types (`RegionConfig`, `ControlConfig`,
//! `RunbookConfig`, `OperatorsConfig`), serialised; the rest of the file is kept as it is.

use std::collections::BTreeMap;

use keel_arc::ControlConfig;
use keel_operations_live::{OperatorsConfig, RunbookConfig};
use keel_routing::RegionConfig;
use serde::Serialize;

use crate::machine::repo_root;
use crate::stack::Stack;

/// The file's `[section]` with `value` in it, whole.
fn replace(config: &mut toml::Table, section: &str, value: &impl Serialize) -> anyhow::Result<()> {
    config.insert(section.to_owned(), toml::Value::try_from(value)?);
    Ok(())
}

impl Stack {
    pub(crate) fn write_config(&self) -> anyhow::Result<()> {
        let base = std::fs::read_to_string(repo_root().join("deploy/local/config/keel.toml"))?;
        let mut config: toml::Table = base.parse()?;
        let regions: BTreeMap<String, RegionConfig> = self
            .regions
            .iter()
            .map(|(name, region)| {
                let region = RegionConfig {
                    kafka: region.kafka_brokers.clone(),
                    ingress_url: region.ingress_url.clone(),
                    databases: region
                        .databases
                        .iter()
                        .map(|(app, url)| (app.name().to_owned(), url.clone()))
                        .collect(),
                    services: region
                        .ops_ports
                        .iter()
                        .map(|(service, port)| {
                            ((*service).to_owned(), format!("http://127.0.0.1:{port}"))
                        })
                        .collect(),
                };
                ((*name).to_owned(), region)
            })
            .collect();
        replace(&mut config, "regions", &regions)?;
        let control = ControlConfig {
            endpoints: self
                .arc_ports
                .iter()
                .map(|port| format!("http://127.0.0.1:{port}"))
                .collect(),
            poll_interval_ms: 200,
            request_timeout_ms: 500,
            fence_after_ms: self.options.fence_after_ms,
            ..ControlConfig::default()
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
            dynamodb_endpoint: std::env::var("KEEL_TEST_DYNAMODB")
                .unwrap_or_else(|_| "http://127.0.0.1:18490".to_owned()),
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
        std::fs::write(&self.config_file, toml::to_string(&config)?)?;
        Ok(())
    }
}
