//! Starts a real Keel stack for a test: the trade-matching and settlement applications in one or
//! more regions, each region with its own nisshi broker and every service as child processes on free
//! loopback ports, plus the local ARC cluster (one or more `keel-arc-endpoint` processes sharing a
//! state file). Databases are either databases in the test Postgres cluster (`KEEL_TEST_PG`, started
//! by `make test`) shared by every region, or, with [`StackOptions::replicated`], per application a
//! Postgres primary in its active region and a streaming standby in the other, in clusters of the
//! stack's own. Every process is stopped when the [`Stack`] is dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use keel_arc::ArcClient;
pub use keel_routing::{control_name, App, Gate};
pub use rand;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub use keel_generator::Client;

/// The names of the services of both applications, in the topology's start order.
pub fn service_names() -> impl Iterator<Item = &'static str> {
    keel_topology::SERVICES.iter().map(|service| service.name)
}

/// Whether `service` serves the API (its health and metrics on the API's listener).
fn serves_api(service: &str) -> bool {
    keel_topology::service(service).map(|s| s.kind) == Some(keel_topology::Kind::Api)
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

    pub fn active_region(&self, app: App) -> &'static str {
        self.active.get(&app).copied().unwrap_or(self.regions[0])
    }
}

/// One region's processes and ports.
pub struct Region {
    pub kafka_brokers: String,
    pub ingress_url: String,
    kafka_port: u16,
    ops_ports: BTreeMap<&'static str, u16>,
    services: BTreeMap<&'static str, Child>,
    /// Instances after the first of scaled-out stages: (service, index) to process and ops port.
    extra_instances: BTreeMap<(&'static str, u32), (Option<Child>, u16)>,
    broker: Option<Child>,
    /// Where the region's broker keeps its log (`--storage-engine`).
    broker_storage: String,
    /// Database URL per application, in this region.
    pub databases: BTreeMap<App, String>,
}

/// A Postgres cluster the stack made (replicated stacks only).
pub struct Cluster {
    pub app: App,
    pub region: &'static str,
    pub dir: PathBuf,
    pub port: u16,
}

pub struct Stack {
    pub name: String,
    pub dir: PathBuf,
    /// Trade matching's database in its active region.
    pub database_url: String,
    /// Settlement's database in its active region.
    pub st_database_url: String,
    /// The first region's broker and ingress.
    pub kafka_brokers: String,
    pub ingress_url: String,
    pub regions: BTreeMap<&'static str, Region>,
    pub clusters: Vec<Cluster>,
    arc_ports: Vec<u16>,
    arc: BTreeMap<usize, Child>,
    config_file: PathBuf,
    options: StackOptions,
    pub db: PgPool,
    pub st_db: PgPool,
    /// Every service came up; until then the folder is kept on drop, for its logs.
    started: bool,
}

/// A loopback port for a process the stack will start. Not one the OS picks (`:0`): those are
/// ephemeral ports, which outbound connections (to Postgres, to the broker) also take as their
/// source ports, so by the time the process binds it one may hold it ("Address already in use").
/// So: a random port below the ephemeral range (32768 and up on Linux), free when checked, and never
/// handed out twice by this test process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().expect("port registry");
    for _ in 0..1_000 {
        let port = rand::random_range(20_000..29_000);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in 20000-29000 after 1000 tries");
}

pub fn bin_dir(release: bool) -> PathBuf {
    if let Ok(dir) = std::env::var("KEEL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // A test runs from target/<profile>/deps/, a binary such as keel-bench from target/<profile>/.
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("profile dir");
    }
    let target = dir.parent().expect("target dir");
    target.join(if release { "release" } else { "debug" })
}

/// The checkout this runs from. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test, so a test
/// binary reused from a build in another checkout (the target dir is shared between clones) still
/// reads this checkout's files; the build-time value is for binaries started without cargo.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("repo root")
        .to_path_buf()
}

async fn wait_until_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits until `/readyz` on 127.0.0.1:`port` answers 200 (bounded per request: whatever holds the
/// port may accept and never answer).
async fn wait_ready_at(
    port: u16,
    timeout: Duration,
    what: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(&url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{what} not ready after {timeout:?}; see {}",
                dir.join("logs").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The local tools (Postgres, nisshi), as `make test` exports them.
fn tools() -> keel_localstack::Tools {
    keel_localstack::Tools::from_env()
}

impl Cluster {
    /// The same code `make up` runs its clusters with (keel-localstack), with small buffers.
    fn local(&self) -> keel_localstack::Cluster {
        keel_localstack::Cluster {
            shared_buffers: "32MB".to_owned(),
            ..keel_localstack::Cluster::new(&self.dir, self.port)
        }
    }
}

fn db_name(app: App) -> &'static str {
    match app {
        App::TradeMatching => "keel_tm",
        App::Settlement => "keel_st",
    }
}

/// Where a replicated stack keeps `app`'s cluster in `region`: the layout of `make up`'s state
/// folder, which keelctl's database operations expect (`[runbook] state_dir`).
use keel_localstack::layout::cluster_dir;

/// Where each region's broker keeps its log: a database of its own in the test Postgres cluster
/// (`KEEL_TEST_PG`), or with `KEEL_BROKER_STORAGE=sqlite` a file in the broker's folder.
async fn broker_storage(
    unique: &str,
    regions: &[&'static str],
) -> anyhow::Result<BTreeMap<&'static str, String>> {
    if std::env::var("KEEL_BROKER_STORAGE").as_deref() == Ok("sqlite") {
        return Ok(regions
            .iter()
            .map(|r| (*r, "sqlite://data/nisshi.db".to_owned()))
            .collect());
    }
    let admin_url = std::env::var("KEEL_TEST_PG").context(
        "KEEL_TEST_PG is not set: run the system tests through `make test`, which starts their Postgres",
    )?;
    let Some((base, _)) = admin_url.rsplit_once('/') else {
        bail!("KEEL_TEST_PG must end with /<database>");
    };
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await?;
    let mut storage = BTreeMap::new();
    for region in regions {
        let database = format!("keel_{unique}_kafka_{}", region.replace('-', "_")).to_lowercase();
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&admin)
            .await?;
        storage.insert(*region, format!("{base}/{database}"));
    }
    admin.close().await;
    Ok(storage)
}

/// Notes a child process's pid in `KEEL_TEST_PIDS` (a folder `make test` makes), so that whatever a
/// killed test run leaves running can be stopped by pid.
pub fn register_child(child: &Child) {
    if let Ok(dir) = std::env::var("KEEL_TEST_PIDS") {
        let _ = std::fs::write(
            PathBuf::from(dir).join(child.id().to_string()),
            std::process::id().to_string(),
        );
    }
}

impl Stack {
    /// Starts a fresh stack; `name` names its databases and folder.
    pub async fn start(name: &str, options: StackOptions) -> anyhow::Result<Stack> {
        let unique = format!("{name}_{}_{}", std::process::id(), rand::random::<u32>());
        let dir = std::env::temp_dir().join("keel-tests").join(&unique);
        std::fs::create_dir_all(dir.join("logs"))?;

        let mut clusters = Vec::new();
        let mut databases: BTreeMap<&'static str, BTreeMap<App, String>> = BTreeMap::new();
        if options.replicated {
            for app in App::ALL {
                let active = options.active_region(app);
                let primary = Cluster {
                    app,
                    region: active,
                    dir: cluster_dir(&dir, app, active),
                    port: free_port(),
                };
                primary.local().start(&tools(), &[db_name(app)])?;
                for region in options.regions.iter().filter(|r| **r != active) {
                    let standby = Cluster {
                        app,
                        region,
                        dir: cluster_dir(&dir, app, region),
                        port: free_port(),
                    };
                    let name = keel_localstack::layout::standby_name(db_name(app), region);
                    standby
                        .local()
                        .start_standby(&tools(), primary.port, &name)?;
                    clusters.push(standby);
                }
                clusters.push(primary);
            }
            for cluster in &clusters {
                databases.entry(cluster.region).or_default().insert(
                    cluster.app,
                    format!(
                        "postgres://keel@127.0.0.1:{}/{}",
                        cluster.port,
                        db_name(cluster.app)
                    ),
                );
            }
        } else {
            let admin_url = std::env::var("KEEL_TEST_PG").context(
                "KEEL_TEST_PG is not set: run the system tests through `make test`, which starts their Postgres",
            )?;
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin_url)
                .await?;
            let Some((base, _)) = admin_url.rsplit_once('/') else {
                bail!("KEEL_TEST_PG must end with /<database>");
            };
            let tm = format!("keel_{unique}").to_lowercase();
            for app in App::ALL {
                let database = match app {
                    App::TradeMatching => tm.clone(),
                    App::Settlement => format!("{tm}_st"),
                };
                sqlx::query(&format!("CREATE DATABASE {database}"))
                    .execute(&admin)
                    .await?;
                for region in &options.regions {
                    databases
                        .entry(region)
                        .or_default()
                        .insert(app, format!("{base}/{database}"));
                }
            }
            admin.close().await;
        }
        let broker_storage = broker_storage(&unique, &options.regions).await?;
        let database_url =
            databases[options.active_region(App::TradeMatching)][&App::TradeMatching].clone();
        let st_database_url =
            databases[options.active_region(App::Settlement)][&App::Settlement].clone();
        let db = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await?;
        let st_db = PgPoolOptions::new()
            .max_connections(2)
            .connect(&st_database_url)
            .await?;

        let regions: BTreeMap<&'static str, Region> = options
            .regions
            .iter()
            .map(|name| {
                let kafka_port = free_port();
                let ingress_port = free_port();
                let ops_ports = service_names()
                    .map(|s| {
                        (
                            s,
                            if serves_api(s) {
                                ingress_port
                            } else {
                                free_port()
                            },
                        )
                    })
                    .collect();
                (
                    *name,
                    Region {
                        kafka_brokers: format!("127.0.0.1:{kafka_port}"),
                        ingress_url: format!("http://127.0.0.1:{ingress_port}"),
                        kafka_port,
                        ops_ports,
                        services: BTreeMap::new(),
                        extra_instances: options
                            .instances
                            .iter()
                            .flat_map(|(service, count)| {
                                (1..*count).map(|index| ((*service, index), (None, free_port())))
                            })
                            .collect(),
                        broker: None,
                        broker_storage: broker_storage[name].clone(),
                        databases: databases.remove(name).unwrap_or_default(),
                    },
                )
            })
            .collect();
        let first = &regions[options.regions[0]];
        let mut stack = Stack {
            name: name.to_owned(),
            kafka_brokers: first.kafka_brokers.clone(),
            ingress_url: first.ingress_url.clone(),
            config_file: dir.join("keel.toml"),
            dir,
            database_url,
            st_database_url,
            regions,
            clusters,
            arc_ports: (0..options.arc_endpoints.max(1))
                .map(|_| free_port())
                .collect(),
            arc: BTreeMap::new(),
            options,
            db,
            st_db,
            started: false,
        };
        stack.write_config()?;
        for index in 0..stack.arc_ports.len() {
            stack.start_arc(index).await?;
        }
        let names: Vec<&'static str> = stack.regions.keys().copied().collect();
        for region in &names {
            stack.start_broker_in(region).await?;
        }
        for region in &names {
            for service in service_names() {
                stack.start_service_in(region, service)?;
            }
            let extra: Vec<(&'static str, u32)> = stack.regions[region]
                .extra_instances
                .keys()
                .copied()
                .collect();
            for (service, index) in &extra {
                stack.start_instance_in(region, service, *index)?;
            }
        }
        for region in &names {
            for service in service_names() {
                stack
                    .wait_ready_in(region, service, Duration::from_secs(60))
                    .await?;
            }
        }
        stack.started = true;
        Ok(stack)
    }

    /// The local stack's configuration (`deploy/local/config/keel.toml`) with this stack's regions,
    /// ARC cluster and test timings in place of the local ones.
    fn write_config(&self) -> anyhow::Result<()> {
        let base = std::fs::read_to_string(repo_root().join("deploy/local/config/keel.toml"))?;
        let mut config: toml::Table = base.parse()?;
        let mut regions = toml::Table::new();
        for (name, region) in &self.regions {
            let mut table = toml::Table::new();
            table.insert("kafka".into(), region.kafka_brokers.clone().into());
            table.insert("ingress_url".into(), region.ingress_url.clone().into());
            let databases: toml::Table = region
                .databases
                .iter()
                .map(|(app, url)| (app.name().to_owned(), url.clone().into()))
                .collect();
            table.insert("databases".into(), databases.into());
            let services: toml::Table = region
                .ops_ports
                .iter()
                .map(|(service, port)| {
                    (
                        (*service).to_owned(),
                        format!("http://127.0.0.1:{port}").into(),
                    )
                })
                .collect();
            table.insert("services".into(), services.into());
            regions.insert((*name).to_owned(), table.into());
        }
        config.insert("regions".into(), regions.into());
        let mut control = toml::Table::new();
        control.insert(
            "endpoints".into(),
            self.arc_ports
                .iter()
                .map(|port| toml::Value::from(format!("http://127.0.0.1:{port}")))
                .collect::<Vec<_>>()
                .into(),
        );
        control.insert("poll_interval_ms".into(), 200.into());
        control.insert("request_timeout_ms".into(), 500.into());
        control.insert(
            "fence_after_ms".into(),
            (self.options.fence_after_ms as i64).into(),
        );
        config.insert("control".into(), control.into());
        // The runbook store: the test DynamoDB endpoint `make test` starts, a table per stack.
        let mut runbook = config
            .get("runbook")
            .and_then(|r| r.as_table())
            .cloned()
            .unwrap_or_default();
        runbook.insert(
            "dynamodb_endpoint".into(),
            std::env::var("KEEL_TEST_DYNAMODB")
                .unwrap_or_else(|_| "http://127.0.0.1:18490".to_owned())
                .into(),
        );
        runbook.insert(
            "table".into(),
            format!(
                "keel-runbooks-{}",
                self.dir.file_name().unwrap().to_string_lossy()
            )
            .into(),
        );
        runbook.insert(
            "state_dir".into(),
            self.dir.to_string_lossy().into_owned().into(),
        );
        runbook.insert("step_timeout_seconds".into(), 60.into());
        config.insert("runbook".into(), runbook.into());
        std::fs::write(&self.config_file, toml::to_string(&config)?)?;
        Ok(())
    }

    /// Starts ARC endpoint `index` (again) on its port, sharing the stack's state file.
    pub async fn start_arc(&mut self, index: usize) -> anyhow::Result<()> {
        let port = self.arc_ports[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("logs/arc-{index}.log")))?;
        let regions: Vec<String> = self.options.regions.iter().map(|r| r.to_string()).collect();
        let active: Vec<(App, String)> = App::ALL
            .map(|app| (app, self.options.active_region(app).to_owned()))
            .to_vec();
        let mut command = keel_localstack::launch::arc_endpoint(
            &bin_dir(self.options.release),
            port,
            &self.dir.join("arc/state.json"),
            &regions,
            &active,
        );
        let child = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting keel-arc-endpoint")?;
        register_child(&child);
        self.arc.insert(index, child);
        wait_until_port(port, Duration::from_secs(30)).await
    }

    /// SIGKILL of ARC endpoint `index`.
    pub fn kill_arc(&mut self, index: usize) {
        if let Some(mut child) = self.arc.remove(&index) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `[control]` configuration of this stack's ARC endpoints.
    pub fn control_config(&self) -> keel_arc::ControlConfig {
        keel_arc::ControlConfig {
            endpoints: self
                .arc_ports
                .iter()
                .map(|port| format!("http://127.0.0.1:{port}"))
                .collect(),
            request_timeout_ms: 500,
            ..keel_arc::ControlConfig::default()
        }
    }

    /// The ARC client every service uses, pointed at this stack's endpoints.
    pub fn arc_client(&self) -> ArcClient {
        ArcClient::new(&self.control_config())
    }

    pub async fn start_broker(&mut self) -> anyhow::Result<()> {
        let first = self.options.regions[0];
        self.start_broker_in(first).await
    }

    pub async fn start_broker_in(&mut self, region: &str) -> anyhow::Result<()> {
        std::env::var("KEEL_NISSHI_BIN")
            .context("KEEL_NISSHI_BIN is not set (make test sets it)")?;
        let port = self.regions[region].kafka_port;
        let broker = keel_localstack::services::Broker {
            dir: self.dir.join(format!("kafka-{region}")),
            port,
            storage: self.regions[region].broker_storage.clone(),
            cluster_id: format!("keel-test-{port}"),
        };
        broker.prepare()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("logs/nisshi-{region}.log")))?;
        let child = broker
            .command(&tools())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nisshi")?;
        register_child(&child);
        self.regions.get_mut(region).expect("known region").broker = Some(child);
        wait_until_port(port, Duration::from_secs(60)).await
    }

    /// Stops the first region's broker (SIGTERM, then SIGKILL) and starts it again on the same log.
    pub async fn restart_broker(&mut self, down_for: Duration) -> anyhow::Result<()> {
        let first = self.options.regions[0];
        if let Some(mut broker) = self.regions.get_mut(first).and_then(|r| r.broker.take()) {
            let _ = kill(Pid::from_raw(broker.id() as i32), Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while broker.try_wait()?.is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = broker.kill();
            let _ = broker.wait();
        }
        tokio::time::sleep(down_for).await;
        self.start_broker().await
    }

    pub fn start_service(&mut self, service: &'static str) -> anyhow::Result<()> {
        let first = self.options.regions[0];
        self.start_service_in(first, service)
    }

    pub fn start_service_in(&mut self, region: &str, service: &'static str) -> anyhow::Result<()> {
        let port = self.regions[region].ops_ports[service];
        let child = self.spawn_service(region, service, 0, port)?;
        self.regions
            .get_mut(region)
            .expect("known region")
            .services
            .insert(service, child);
        Ok(())
    }

    /// Starts instance `index` (1 and up) of a scaled-out stage in `region`.
    pub fn start_instance_in(
        &mut self,
        region: &str,
        service: &'static str,
        index: u32,
    ) -> anyhow::Result<()> {
        let port = self.regions[region].extra_instances[&(service, index)].1;
        let child = self.spawn_service(region, service, index, port)?;
        self.regions
            .get_mut(region)
            .expect("known region")
            .extra_instances
            .get_mut(&(service, index))
            .expect("known instance")
            .0 = Some(child);
        Ok(())
    }

    /// SIGKILL of instance `index` (1 and up) of a scaled-out stage in `region`.
    pub fn kill_instance_in(&mut self, region: &str, service: &'static str, index: u32) {
        let instance = self
            .regions
            .get_mut(region)
            .and_then(|r| r.extra_instances.get_mut(&(service, index)))
            .and_then(|(child, _)| child.take());
        if let Some(mut child) = instance {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `/readyz` of instance `index` (1 and up) of a scaled-out stage answers 200.
    pub async fn wait_instance_ready_in(
        &self,
        region: &str,
        service: &'static str,
        index: u32,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let port = self.regions[region].extra_instances[&(service, index)].1;
        wait_ready_at(
            port,
            timeout,
            &format!("{service} #{index} in {region}"),
            &self.dir,
        )
        .await
    }

    fn spawn_service(
        &self,
        region: &str,
        service: &'static str,
        index: u32,
        port: u16,
    ) -> anyhow::Result<Child> {
        let definition = keel_topology::service(service).context("a service of the topology")?;
        let log_name = if index == 0 {
            format!("logs/{service}-{region}.log")
        } else {
            format!("logs/{service}-{index}-{region}.log")
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log_name))?;
        let mut command = keel_localstack::launch::service(
            &bin_dir(self.options.release),
            definition,
            region,
            port,
        );
        command
            .current_dir(repo_root())
            // The local stack's configuration, with this stack's databases, brokers and ports.
            .env("KEEL_CONFIG", &self.config_file)
            .env(
                "KEEL_PARTICIPANTS_FILE",
                repo_root().join("deploy/local/participants.json"),
            )
            .env(
                "KEEL_MATCHING__MATCH_WINDOW_SECONDS",
                self.options.match_window_seconds.to_string(),
            )
            .env("KEEL_MATCHING__SWEEP_INTERVAL_MS", "200")
            .env(
                "KEEL_SETTLEMENT__REFERENCE_DATA",
                repo_root().join("deploy/local/reference-data.json"),
            )
            .env("KEEL_SETTLEMENT__CYCLE_INTERVAL_MS", "200")
            .env("KEEL_WEBHOOKS__INITIAL_BACKOFF_MS", "100")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(count) = self.options.instances.get(service) {
            command
                .env("KEEL_INSTANCES__INDEX", index.to_string())
                .env("KEEL_INSTANCES__COUNT", count.to_string());
        }
        for (key, value) in &self.options.extra_env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting keel-{service}"))?;
        register_child(&child);
        Ok(child)
    }

    /// SIGKILL: no drain, no flush, exactly as a crash.
    pub fn kill(&mut self, service: &'static str) {
        let first = self.options.regions[0];
        self.kill_in(first, service);
    }

    pub fn kill_in(&mut self, region: &str, service: &'static str) {
        if let Some(mut child) = self
            .regions
            .get_mut(region)
            .and_then(|r| r.services.remove(service))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The loss of a whole region: SIGKILL of every process in it, at once: its services, its
    /// broker and its database clusters.
    pub fn kill_region(&mut self, region: &str) {
        let pids: Vec<i32> = {
            let r = &self.regions[region];
            r.services
                .values()
                .chain(r.broker.iter())
                .map(|child| child.id() as i32)
                .collect()
        };
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let apps: Vec<App> = self
            .clusters
            .iter()
            .filter(|c| c.region == region)
            .map(|c| c.app)
            .collect();
        for app in apps {
            let _ = self.kill_database(app, region);
        }
        let r = self.regions.get_mut(region).expect("region");
        for (_, mut child) in std::mem::take(&mut r.services) {
            let _ = child.wait();
        }
        if let Some(mut broker) = r.broker.take() {
            let _ = broker.wait();
        }
    }

    pub async fn wait_ready(&self, service: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_ready_in(self.options.regions[0], service, timeout)
            .await
    }

    pub async fn wait_ready_in(
        &self,
        region: &str,
        service: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let port = self.regions[region].ops_ports[service];
        wait_ready_at(port, timeout, &format!("{service} in {region}"), &self.dir).await
    }

    /// The body of a service's `/readyz` in `region`.
    pub async fn readiness_in(
        &self,
        region: &str,
        service: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let response = self.get_readyz(region, service).await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// `GET /readyz` of a service, bounded: whatever holds the port may accept and never answer.
    async fn get_readyz(&self, region: &str, service: &str) -> reqwest::Result<reqwest::Response> {
        let url = format!(
            "http://127.0.0.1:{}/readyz",
            self.regions[region].ops_ports[service]
        );
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?
            .get(&url)
            .send()
            .await
    }

    /// Promotes `app`'s standby in `region` to primary (what the database switch does).
    pub fn promote(&self, app: App, region: &str) -> anyhow::Result<()> {
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.app == app && c.region == region)
            .context("no such cluster (is the stack replicated?)")?;
        Ok(cluster.local().promote(&tools())?)
    }

    /// SIGKILL of every process of `app`'s cluster in `region`: the database is lost as in a crash.
    pub fn kill_database(&self, app: App, region: &str) -> anyhow::Result<()> {
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.app == app && c.region == region)
            .context("no such cluster (is the stack replicated?)")?;
        cluster.local().crash();
        Ok(())
    }

    /// The base URL of a service's ops endpoints (`/readyz`, `/metrics`) in `region`; for ingress,
    /// its API.
    pub fn ops_url(&self, region: &str, service: &str) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.regions[region].ops_ports[service]
        )
    }

    /// Every process the stack started, by name (`matching us-east-1`, `broker us-east-1`, `arc 0`)
    /// and pid: for measuring where the CPU goes.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut processes = Vec::new();
        for (region, r) in &self.regions {
            for (service, child) in &r.services {
                processes.push((format!("{service} {region}"), child.id()));
            }
            for ((service, index), (child, _)) in &r.extra_instances {
                if let Some(child) = child {
                    processes.push((format!("{service}#{index} {region}"), child.id()));
                }
            }
            if let Some(broker) = &r.broker {
                processes.push((format!("broker {region}"), broker.id()));
            }
        }
        for (index, child) in &self.arc {
            processes.push((format!("arc {index}"), child.id()));
        }
        processes
    }

    /// Starts `app`'s cluster in `region` again (after [`Stack::kill_database`]): crash recovery
    /// replays its WAL.
    pub fn restart_database(&self, app: App, region: &str) -> anyhow::Result<()> {
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.app == app && c.region == region)
            .context("no such cluster (is the stack replicated?)")?;
        Ok(cluster.local().start(&tools(), &[])?)
    }

    /// The body of a service's `/readyz` in the first region.
    pub async fn readiness(&self, service: &str) -> anyhow::Result<(u16, String)> {
        let response = self.get_readyz(self.options.regions[0], service).await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Whether the service's process (in the first region) is still running.
    pub fn is_running(&mut self, service: &str) -> bool {
        let first = self.options.regions[0];
        self.regions
            .get_mut(first)
            .and_then(|r| r.services.get_mut(service))
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The first region's ingress.
    pub fn client(&self) -> Client {
        Client::new(&self.ingress_url)
    }

    pub fn client_in(&self, region: &str) -> Client {
        Client::new(&self.regions[region].ingress_url)
    }

    /// A bearer token for the participant with this client id (from `deploy/local/participants.json`).
    pub async fn token(&self, client_id: &str) -> String {
        let credentials = participants()
            .into_iter()
            .find(|c| c.client_id == client_id)
            .expect("known client id");
        self.client().token(&credentials).await.expect("token")
    }

    /// A count from trade matching's database.
    pub async fn count(&self, sql: &str) -> i64 {
        count_in(&self.db, sql).await
    }

    /// A count from settlement's database.
    pub async fn st_count(&self, sql: &str) -> i64 {
        count_in(&self.st_db, sql).await
    }

    /// Waits until `sql` counts `expected` in trade matching's database, or fails naming what it
    /// last saw.
    pub async fn wait_for_count(
        &self,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_count_in(&self.db, sql, expected, timeout)
            .await
    }

    /// As [`Stack::wait_for_count`], in settlement's database.
    pub async fn wait_for_st_count(
        &self,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_count_in(&self.st_db, sql, expected, timeout)
            .await
    }

    /// As [`Stack::wait_for_count`], in any database (such as another region's).
    pub async fn wait_for_count_in(
        &self,
        db: &PgPool,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until_count(db, sql, timeout, &format!("{expected}"), |seen| {
            seen == expected
        })
        .await
    }

    /// Waits until `sql` counts at least `at_least` in trade matching's database (for a count that
    /// keeps growing, such as the generator's submissions).
    pub async fn wait_for_at_least(
        &self,
        sql: &str,
        at_least: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until_count(
            &self.db,
            sql,
            timeout,
            &format!("at least {at_least}"),
            |seen| seen >= at_least,
        )
        .await
    }

    async fn wait_until_count(
        &self,
        db: &PgPool,
        sql: &str,
        timeout: Duration,
        wanted: &str,
        done: impl Fn(i64) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db)
                .await
                .unwrap_or(-1);
            if done(seen) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "`{sql}` is {seen}, expected {wanted} within {timeout:?} (logs: {})",
                    self.dir.join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A small pool on `url` (a region's database, for example).
pub async fn connect(url: &str) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new().max_connections(2).connect(url).await?)
}

/// Waits until `standby` has replayed everything `primary` has written so far.
pub async fn wait_replayed(
    primary: &PgPool,
    standby: &PgPool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(primary)
        .await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let behind: f64 = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::float8",
        )
        .bind(&target)
        .fetch_one(standby)
        .await?;
        if behind <= 0.0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the standby is still {behind} bytes behind {target} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A count from any database; panics naming the query if it fails.
pub async fn count_in(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

impl Stack {
    /// Waits (up to a minute) until the trade, as `token`'s participant reads it through the API, has
    /// `status`; returns the trade.
    pub async fn wait_for_trade_status(
        &self,
        token: &str,
        trade_id: &str,
        status: &str,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (code, body) = self
                .client()
                .get(&format!("/v1/trades/{trade_id}"), token)
                .await
                .expect("ingress reachable");
            assert_eq!(code, 200, "{body}");
            if body["status"] == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "trade {trade_id} never reached {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `keelctl` with these arguments against this stack (its configuration and controls).
    fn keelctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin_dir(self.options.release).join("keelctl"));
        command.args(args).env("KEEL_CONFIG", &self.config_file);
        command
    }

    /// Runs `keelctl` as [`Stack::keelctl`] does, without blocking the test's runtime (a generator
    /// may run on it meanwhile), bounded by `timeout`; its progress (stderr) is passed through.
    pub async fn keelctl_async(&self, args: &[&str], timeout: Duration) -> std::process::Output {
        let mut command = tokio::process::Command::from(self.keelctl_command(args));
        let run = command
            .stderr(Stdio::inherit())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| panic!("keelctl {args:?} took longer than {timeout:?}"))
            .unwrap_or_else(|e| panic!("running keelctl: {e}"))
    }

    /// Starts `keelctl` with these arguments against this stack, in the background (the caller
    /// kills it).
    pub fn spawn_keelctl(&self, args: &[&str]) -> Child {
        self.keelctl_command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("running keelctl: {e}"))
    }

    /// Runs `keelctl` with these arguments against this stack (its configuration and controls).
    pub fn keelctl(&self, args: &[&str]) -> std::process::Output {
        self.keelctl_command(args)
            .output()
            .unwrap_or_else(|e| panic!("running keelctl: {e}"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for region in self.regions.values_mut() {
            let extra = std::mem::take(&mut region.extra_instances)
                .into_values()
                .filter_map(|(child, _)| child);
            for mut child in std::mem::take(&mut region.services)
                .into_values()
                .chain(extra)
            {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Some(mut broker) = region.broker.take() {
                let _ = broker.kill();
                let _ = broker.wait();
            }
        }
        for (_, mut child) in std::mem::take(&mut self.arc) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for cluster in &self.clusters {
            let _ = cluster.local().stop(&tools());
        }
        // A failed test, or a stack that failed to start, keeps its folder (logs, databases) to
        // be read; a passing one leaves nothing behind (replicated stacks hold hundreds of MB).
        if std::thread::panicking() || !self.started {
            eprintln!("stack kept for inspection: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn participants() -> Vec<keel_generator::Credentials> {
    keel_generator::Credentials::load(&repo_root().join("deploy/local/participants.json"))
        .expect("participants file")
}

/// The UTC date `days` from today, as the API writes dates.
pub fn days_from_today(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

/// A valid block between IM-ALPHA and BR-NORTH (the example of DESIGN section 2), traded today for
/// settlement tomorrow: once MATCHED, its instructions wait in settlement for their date, so nothing
/// of it settles during a test. [`settling_block`] settles at once.
pub fn sample_block(trade_ref: &str) -> serde_json::Value {
    serde_json::json!({
        "trade_ref": trade_ref,
        "im_id": "IM-ALPHA",
        "broker_id": "BR-NORTH",
        "side": "BUY",
        "security": "US0378331005",
        "quantity": 1000,
        "price": "187.2500",
        "currency": "USD",
        "trade_date": days_from_today(0),
        "settlement_date": days_from_today(1),
        "allocations": [
            {"allocation_id": "1", "account": "IM-ALPHA-FUND-001", "quantity": 600},
            {"allocation_id": "2", "account": "IM-ALPHA-FUND-002", "quantity": 400}
        ]
    })
}

/// [`sample_block`] for settlement today: it settles as soon as it matches.
pub fn settling_block(trade_ref: &str) -> serde_json::Value {
    let mut block = sample_block(trade_ref);
    block["settlement_date"] = serde_json::json!(days_from_today(0));
    block
}

/// Submits `pairs` matching trades ([`sample_block`]s) between IM-ALPHA and BR-NORTH as a steady
/// stream: each request carries `per_request` legs of one side, with `pause` between rounds. Panics on
/// any refusal.
pub async fn stream_matching_pairs(
    client: Client,
    im: String,
    broker: String,
    prefix: String,
    pairs: usize,
    per_request: usize,
    pause: Duration,
) {
    stream_pairs(
        client,
        [im, broker],
        prefix,
        pairs,
        per_request,
        pause,
        sample_block,
    )
    .await
}

/// As [`stream_matching_pairs`], with each block made by `block` from its trade ref.
pub async fn stream_pairs(
    client: Client,
    [im, broker]: [String; 2],
    prefix: String,
    pairs: usize,
    per_request: usize,
    pause: Duration,
    block: fn(&str) -> serde_json::Value,
) {
    let blocks: Vec<serde_json::Value> = (0..pairs)
        .map(|i| block(&format!("{prefix}-{i:06}")))
        .collect();
    for chunk in blocks.chunks(per_request) {
        for token in [&im, &broker] {
            submit_until_accepted(&client, token, chunk).await;
        }
        tokio::time::sleep(pause).await;
    }
}

/// Submits a batch as a well-behaved client does: while ingress answers 429 (the pipeline is
/// behind: a broker restarting, a consumer killed), waits its `Retry-After` and sends the same
/// batch again (a leg is recorded once, whatever the retries). Panics on any other refusal, or if
/// it is still refused after two minutes.
pub async fn submit_until_accepted(client: &Client, token: &str, blocks: &[serde_json::Value]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = client
            .submit_batch(token, blocks)
            .await
            .expect("ingress reachable");
        if status == 429 && tokio::time::Instant::now() < deadline {
            let wait = body["error"]["retry_after_seconds"].as_u64().unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        assert_eq!(status, 202, "{body}");
        return;
    }
}

/// Checks every store after `trades` matching pairs of [`sample_block`]s went through: every leg was
/// processed once at every stage, every trade has exactly its four history entries, carried to
/// notification once each, each party got exactly one notification per entry, and settlement holds
/// exactly the trades' two instructions each (one message per trade), waiting for their settlement
/// date.
pub async fn assert_exactly_once(stack: &Stack, trades: i64) {
    let legs = trades * 2;
    let instructions = trades * 2;
    stack
        .wait_for_st_count(
            "SELECT count(*) FROM settlement.instructions",
            instructions,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    // A trade's entries travel in one `tm.events` message per matching batch that appended to it:
    // two messages when its legs came in different batches, one when they came together.
    let event_messages = stack
        .count("SELECT count(*) FROM matching.outbox WHERE topic = 'tm.events'")
        .await;
    assert!(
        (trades..=trades * 2).contains(&event_messages),
        "{event_messages} tm.events messages for {trades} trades"
    );
    let checks = [
        ("SELECT count(*) FROM ingress.submissions", legs),
        ("SELECT count(*) FROM ingress.outbox", legs),
        ("SELECT count(*) FROM ingestion.inbox", legs),
        ("SELECT count(*) FROM ingestion.outbox", legs),
        ("SELECT count(*) FROM matching.inbox", legs),
        ("SELECT count(*) FROM matching.trades WHERE status = 'MATCHED'", trades),
        ("SELECT count(*) FROM matching.status_history", trades * 4),
        (
            "SELECT count(*) FROM (SELECT trade_id FROM matching.status_history GROUP BY trade_id
              HAVING array_agg(status ORDER BY seq) <> ARRAY['RECEIVED','UNMATCHED','RECEIVED','MATCHED']) odd",
            0,
        ),
        (
            "SELECT coalesce(sum(jsonb_array_length(payload::jsonb->'entries')), 0)::bigint FROM matching.outbox WHERE topic = 'tm.events'",
            trades * 4,
        ),
        ("SELECT count(*) FROM matching.outbox WHERE topic = 'st.instructions'", trades),
        (
            "SELECT coalesce(sum(jsonb_array_length(payload::jsonb->'allocations')), 0)::bigint FROM matching.outbox WHERE topic = 'st.instructions'",
            instructions,
        ),
        ("SELECT count(*) FROM notification.inbox", event_messages),
        ("SELECT count(*) FROM notification.notifications", trades * 8),
        (
            "SELECT count(*) FROM (SELECT DISTINCT trade_id, body->>'history_seq', recipient FROM notification.notifications) d",
            trades * 8,
        ),
        ("SELECT count(*) FROM notification.notifications WHERE status = 'MATCHED'", trades * 2),
        // Each inbox keeps what it consumed, byte for byte what its producer's outbox holds.
        (
            "SELECT count(*) FROM ingress.outbox o JOIN ingestion.inbox i USING (message_id) WHERE o.payload = i.payload",
            legs,
        ),
        (
            "SELECT count(*) FROM ingestion.outbox o JOIN matching.inbox i USING (message_id) WHERE o.payload = i.payload",
            legs,
        ),
        (
            "SELECT count(*) FROM matching.outbox o JOIN notification.inbox i USING (message_id) WHERE o.payload = i.payload",
            event_messages,
        ),
        ("SELECT count(*) FROM ingestion.dead_letters", 0),
        ("SELECT count(*) FROM matching.dead_letters", 0),
        ("SELECT count(*) FROM notification.dead_letters", 0),
    ];
    for (sql, expected) in checks {
        assert_eq!(stack.count(sql).await, expected, "{sql}");
    }
    let settlement_checks = [
        ("SELECT count(*) FROM settlement.inbox", trades),
        (
            "SELECT count(*) FROM settlement.instructions WHERE status = 'PENDING'",
            instructions,
        ),
        ("SELECT count(*) FROM settlement.postings", 0),
        ("SELECT count(*) FROM settlement.dead_letters", 0),
    ];
    for (sql, expected) in settlement_checks {
        assert_eq!(stack.st_count(sql).await, expected, "{sql}");
    }
}

/// SQL counting `schema`'s outbox rows of `topic` that its relay has not published yet (those after
/// the relay's recorded position; see safe-store migration 0004).
pub fn unpublished_sql(schema: &str, topic: &str) -> String {
    format!(
        "SELECT count(*) FROM {schema}.outbox o LEFT JOIN {schema}.relay_progress p USING (topic)
         WHERE o.topic = '{topic}' AND o.id > coalesce(p.id, 0)"
    )
}

/// SQL counting `schema`'s outbox rows of `topic` that its relay has published.
pub fn published_sql(schema: &str, topic: &str) -> String {
    format!(
        "SELECT count(*) FROM {schema}.outbox o LEFT JOIN {schema}.relay_progress p USING (topic)
         WHERE o.topic = '{topic}' AND o.id <= coalesce(p.id, 0)"
    )
}

/// The seed for a randomized test: `KEEL_SEED` to replay one, otherwise fresh. Printed either way.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("KEEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("{test}: seed {seed} (replay with KEEL_SEED={seed})");
    seed
}
