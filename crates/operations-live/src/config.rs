//! The parts of the services' configuration the operations need (`KEEL_CONFIG`, as the services
//! read it), and where each application's database is.

use std::collections::BTreeMap;

use keel_arc::ControlConfig;
use keel_operations::access::{Registry, RegistryError};
use keel_routing::{App, RegionConfig};
use serde::{Deserialize, Serialize};

use crate::store::RunbookConfig;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub regions: BTreeMap<String, RegionConfig>,
    pub control: ControlConfig,
    pub runbook: RunbookConfig,
    /// Producer tuning for replays (the brokers are each region's).
    pub kafka: keel_streaming::KafkaOptions,
    /// How long the stores keep inbox and outbox rows: reconciliation must not look further back.
    pub retention: keel_safestore::Retention,
    pub operators: OperatorsConfig,
    /// What only the local stack has (`[local]`).
    pub local: LocalConfig,
    /// The Aurora Global Databases, when `[runbook] databases = "aurora"`.
    pub aurora: crate::databases::AuroraConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalConfig {
    /// Where the continuous reconciler serves its metrics, as keel-local starts it.
    pub reconciler_listen: String,
    /// Where a standby reaches its primary when that is not the primary's own port: the chaos
    /// suite puts a relay it can break on every link between regions, the replication streams
    /// included. None in `make up`'s stack.
    pub replication_links: Vec<ReplicationLink>,
}

/// How a standby of `app` in region `from` reaches the primary in region `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationLink {
    pub app: App,
    pub from: String,
    pub to: String,
    pub port: u16,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            reconciler_listen: "127.0.0.1:9190".to_owned(),
            replication_links: Vec::new(),
        }
    }
}

impl LocalConfig {
    /// The port a standby of `app` in `from` connects to for its primary in `to`, if it is not
    /// the primary's own.
    pub fn replication_port(&self, app: App, from: &str, to: &str) -> Option<u16> {
        self.replication_links
            .iter()
            .find(|link| link.app == app && link.from == from && link.to == to)
            .map(|link| link.port)
    }
}

/// The `[operators]` table: who may operate Keel, for keelctl and the console.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OperatorsConfig {
    /// The registry of operators, their roles and password hashes (keel-operations' `access`).
    pub registry: String,
    /// How keelctl knows who runs it: a name and password from the registry, or the caller's
    /// AWS identity (STS) mapped by the registry's `[[principal]]` tables.
    pub identity: IdentitySource,
    /// STS's endpoint; empty for AWS's own in `sts_region`.
    pub sts_endpoint: String,
    pub sts_region: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentitySource {
    Registry,
    Aws,
}

impl Default for OperatorsConfig {
    fn default() -> Self {
        Self {
            registry: "deploy/local/config/operators.toml".to_owned(),
            identity: IdentitySource::Registry,
            sts_endpoint: String::new(),
            sts_region: "us-east-1".to_owned(),
        }
    }
}

/// The operator registry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OperatorsError {
    #[error("reading the operator registry {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid { path: String, source: RegistryError },
}

/// The caller's AWS identity cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the caller's AWS identity ({endpoint}): {detail}")]
pub struct IdentityError {
    pub endpoint: String,
    pub detail: String,
}

impl OperatorsConfig {
    /// The ARN of whoever's credentials this process runs with (STS `GetCallerIdentity`).
    pub async fn caller_arn(
        &self,
        credentials: keel_aws::CredentialSource,
    ) -> Result<String, IdentityError> {
        let endpoint = if self.sts_endpoint.is_empty() {
            format!("STS {}", self.sts_region)
        } else {
            self.sts_endpoint.clone()
        };
        let mut builder = aws_sdk_sts::Config::builder()
            .region(aws_sdk_sts::config::Region::new(self.sts_region.clone()))
            .credentials_provider(keel_aws::credentials(credentials));
        if !self.sts_endpoint.is_empty() {
            builder = builder.endpoint_url(&self.sts_endpoint);
        }
        let answer = aws_sdk_sts::Client::from_conf(builder.build())
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| IdentityError {
                endpoint: endpoint.clone(),
                detail: aws_sdk_sts::error::DisplayErrorContext(&e).to_string(),
            })?;
        answer.arn.ok_or(IdentityError {
            endpoint,
            detail: "no ARN in the answer".to_owned(),
        })
    }

    /// Reads and parses the registry.
    pub fn registry(&self) -> Result<Registry, OperatorsError> {
        let path = self.registry.clone();
        let text = std::fs::read_to_string(&path).map_err(|source| OperatorsError::Read {
            path: path.clone(),
            source,
        })?;
        Registry::parse(&text).map_err(|source| OperatorsError::Invalid { path, source })
    }
}

/// Something the configuration lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no database for {app} in {region} (regions.{region}.databases)")]
    NoDatabase { app: App, region: String },
    #[error("no region {0} in the configuration (regions)")]
    NoRegion(String),
}

impl Config {
    /// `app`'s database in `region`.
    pub fn database_url(&self, app: App, region: &str) -> Result<&str, ConfigError> {
        self.regions
            .get(region)
            .and_then(|r| r.databases.get(app.name()))
            .map(String::as_str)
            .ok_or_else(|| ConfigError::NoDatabase {
                app,
                region: region.to_owned(),
            })
    }

    pub fn region(&self, region: &str) -> Result<&RegionConfig, ConfigError> {
        self.regions
            .get(region)
            .ok_or_else(|| ConfigError::NoRegion(region.to_owned()))
    }

    pub fn region_names(&self) -> Vec<String> {
        self.regions.keys().cloned().collect()
    }
}
