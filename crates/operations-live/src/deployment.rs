//! The names a deployment must give what Keel's binaries look up by name: topics, routing controls
//! and their control panels, safety rules, the runbook table, the services and their binaries,
//! the environment variables and paths they read. `deploy/terraform/keel-names.json` is this,
//! written out; the Terraform reads its names from there, and a test keeps the file equal to what
//! the code says now (`KEEL_BLESS=1` rewrites it), so the two cannot drift apart.
//!
//! Names that depend on the regions are patterns (`{application}`, `{region}`, `{gate}`): the
//! Terraform expands them over its `regions` variable, as `keel_routing` does over the
//! configuration's regions.

use std::collections::BTreeMap;

use keel_routing::{App, Gate, GENERATOR};
use keel_topology::{Kind, SERVICES};
use serde::Serialize;

use crate::store::RunbookConfig;

/// The routing control of an application's gate in a region (`keel_routing::control_name`).
pub const CONTROL_PATTERN: &str = "{application}-{region}-{gate}";
/// One rule per application and gate: at most one region's control On.
pub const ONE_REGION_RULE_PATTERN: &str = "{application}-{gate}-in-one-region";
/// One rule per application and region: traffic On only while processing is On.
pub const TRAFFIC_NEEDS_PROCESSING_PATTERN: &str =
    "{application}-{region}-traffic-needs-processing";
/// The control panel that holds the generator's control.
pub const GENERATOR_CONTROL_PANEL: &str = "keel";

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentNames {
    pub about: &'static str,
    pub applications: Vec<Application>,
    pub services: Vec<ServiceNames>,
    pub topics: Vec<TopicNames>,
    pub routing: Routing,
    pub runbook_store: RunbookStore,
    pub ops_paths: OpsPaths,
    /// The ports the processes listen on in a container, as the deployment sets their listeners.
    pub container_ports: ContainerPorts,
    pub environment: Environment,
    /// Every variable each process is given, by process (the services, `console`, `keelctl`): each
    /// binary's tests check that its configuration takes them.
    pub variables_by_process: BTreeMap<&'static str, Vec<&'static str>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Application {
    pub name: &'static str,
    /// Its control panel holds its routing controls.
    pub control_panel: &'static str,
    pub services: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceNames {
    pub name: &'static str,
    pub binary: String,
    pub application: &'static str,
    /// `api`: serves participants on its own listener, besides its ops listener; `stage`: a
    /// consumer with an ops listener.
    pub kind: &'static str,
    /// The schema it owns in its application's database.
    pub schema: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicNames {
    pub name: &'static str,
    /// The application whose services consume it.
    pub application: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Routing {
    pub gates: Vec<&'static str>,
    pub control: &'static str,
    pub generator_control: &'static str,
    pub generator_control_panel: &'static str,
    pub one_region_rule: &'static str,
    pub traffic_needs_processing_rule: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunbookStore {
    pub table: String,
    /// Both keys are strings.
    pub partition_key: &'static str,
    pub sort_key: &'static str,
}

/// One address plan for every task: the variables in `environment` set the listeners to these.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerPorts {
    /// Ingress's participants' API (the load balancer's target).
    pub api: u16,
    /// Every process's `/healthz`, `/readyz`, `/metrics`.
    pub ops: u16,
    /// The operators' console.
    pub console: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpsPaths {
    pub health: &'static str,
    pub ready: &'static str,
    pub metrics: &'static str,
}

/// The environment variables a deployment sets; everything else comes from the configuration file
/// (`KEEL_CONFIG`).
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// Every Keel process.
    pub every_process: Vec<&'static str>,
    /// Every service with an ops listener.
    pub ops: Vec<&'static str>,
    /// The participants' API listener (ingress).
    pub api_listen: &'static str,
    /// The console's listener.
    pub console_listen: &'static str,
    /// Secrets, each only for the services named.
    pub secrets: Vec<SecretVariable>,
    /// What the image's entrypoint (`deploy/docker/entrypoint.sh`) turns into files.
    pub files: Vec<FileVariable>,
}

/// A variable holding a file's content: the entrypoint writes it and points `setting` at it.
#[derive(Debug, Clone, Serialize)]
pub struct FileVariable {
    pub variable: &'static str,
    pub setting: &'static str,
    pub processes: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecretVariable {
    pub name: &'static str,
    pub services: Vec<&'static str>,
}

/// The processes that are not pipeline services: the console, and keelctl (the continuous
/// reconciler is `keelctl reconcile --watch`).
pub const OPERATOR_PROCESSES: [&str; 2] = ["console", "keelctl"];

/// What the code names today.
pub fn names() -> DeploymentNames {
    let environment = environment();
    let variables_by_process = variables_by_process(&environment);
    let consumers_of = |topic: &str| {
        SERVICES
            .iter()
            .find(|s| s.consumes.contains(&topic))
            .map(|s| s.app.name())
            .unwrap_or_else(|| App::receiving(topic).map_or("none", App::name))
    };
    let mut topics: Vec<&'static str> = SERVICES.iter().flat_map(|s| s.topics()).collect();
    topics.sort_unstable();
    topics.dedup();
    DeploymentNames {
        about: "Written by keel-operations-live's deployment test from the code (KEEL_BLESS=1 cargo test -p keel-operations-live --test deployment_names); do not edit.",
        applications: App::ALL
            .iter()
            .map(|app| Application {
                name: app.name(),
                control_panel: app.name(),
                services: SERVICES
                    .iter()
                    .filter(|s| s.app == *app)
                    .map(|s| s.name)
                    .collect(),
            })
            .collect(),
        services: SERVICES
            .iter()
            .map(|s| ServiceNames {
                name: s.name,
                binary: format!("keel-{}", s.name),
                application: s.app.name(),
                kind: match s.kind {
                    Kind::Api => "api",
                    Kind::Stage => "stage",
                },
                schema: s.schema,
            })
            .collect(),
        topics: topics
            .into_iter()
            .map(|name| TopicNames {
                name,
                application: consumers_of(name),
            })
            .collect(),
        routing: Routing {
            gates: Gate::ALL.iter().map(|g| g.name()).collect(),
            control: CONTROL_PATTERN,
            generator_control: GENERATOR,
            generator_control_panel: GENERATOR_CONTROL_PANEL,
            one_region_rule: ONE_REGION_RULE_PATTERN,
            traffic_needs_processing_rule: TRAFFIC_NEEDS_PROCESSING_PATTERN,
        },
        runbook_store: RunbookStore {
            table: RunbookConfig::default().table,
            partition_key: crate::store::PARTITION_KEY,
            sort_key: crate::store::SORT_KEY,
        },
        ops_paths: OpsPaths {
            health: keel_platform::ops::HEALTH_PATH,
            ready: keel_platform::ops::READY_PATH,
            metrics: keel_platform::ops::METRICS_PATH,
        },
        container_ports: ContainerPorts {
            api: 8080,
            ops: 9100,
            console: 8080,
        },
        environment,
        variables_by_process,
    }
}

fn environment() -> Environment {
    let services: Vec<&'static str> = SERVICES.iter().map(|s| s.name).collect();
    Environment {
        every_process: vec!["KEEL_CONFIG", "KEEL_REGION"],
        ops: vec!["KEEL_OPS_LISTEN"],
        api_listen: "KEEL_LISTEN",
        console_listen: "KEEL_CONSOLE__LISTEN",
        secrets: vec![
            SecretVariable {
                name: "KEEL_TOKEN_SECRET",
                services: vec!["ingress"],
            },
            SecretVariable {
                name: "KEEL_WEBHOOK_KEY",
                services: vec!["ingress", "notification"],
            },
            // libpq's and sqlx's: the password for database URLs that carry none.
            SecretVariable {
                name: "PGPASSWORD",
                services: services.clone(),
            },
        ],
        files: vec![
            FileVariable {
                variable: "KEEL_CONFIG_TOML",
                setting: "KEEL_CONFIG",
                processes: services.iter().copied().chain(OPERATOR_PROCESSES).collect(),
            },
            FileVariable {
                variable: "KEEL_PARTICIPANT_CREDENTIALS_JSON",
                setting: "KEEL_CREDENTIALS_FILE",
                processes: vec!["ingress"],
            },
            FileVariable {
                variable: "KEEL_REFERENCE_DATA_JSON",
                setting: "KEEL_REFERENCE_DATA",
                processes: vec!["ingress", "settlement"],
            },
            FileVariable {
                variable: "KEEL_OPERATORS_TOML",
                setting: "KEEL_OPERATORS__REGISTRY",
                processes: OPERATOR_PROCESSES.to_vec(),
            },
        ],
    }
}

/// What each process is given, from the environment's lists.
fn variables_by_process(environment: &Environment) -> BTreeMap<&'static str, Vec<&'static str>> {
    let mut by_process: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
    for service in SERVICES {
        let given = by_process.entry(service.name).or_default();
        given.extend(&environment.every_process);
        given.extend(&environment.ops);
        if service.kind == Kind::Api {
            given.push(environment.api_listen);
        }
    }
    by_process
        .entry("console")
        .or_default()
        .push(environment.console_listen);
    for secret in &environment.secrets {
        for process in &secret.services {
            by_process.entry(process).or_default().push(secret.name);
        }
    }
    for file in &environment.files {
        for process in &file.processes {
            by_process.entry(process).or_default().push(file.setting);
        }
    }
    for given in by_process.values_mut() {
        given.sort_unstable();
        given.dedup();
    }
    by_process
}

/// `pattern` with each `{key}` replaced by its value.
pub fn expand(pattern: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(pattern.to_owned(), |name, (key, value)| {
            name.replace(&format!("{{{key}}}"), value)
        })
}
