//! A stack: its regions, databases, brokers, services and ARC endpoints as child processes, started
//! with keel-localstack's code (the clusters, the broker command, how a service or an ARC endpoint
//! is launched), and stopped by pid: killed, crashed, restarted at a test's will. Dropped, it stops
//! everything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use keel_arc::ArcClient;
use keel_generator::Client;
use keel_routing::App;
use keel_safestore::quote_ident;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use keel_localstack::layout::cluster_dir;

use crate::fixtures::participants;
use crate::machine::{
    bin_dir, free_port, register_child, register_pid, repo_root, tools, wait_ready_at,
    wait_until_port,
};
use crate::network::{Condition, Imposition, LinkId, Network, Peer};
use crate::options::{service_names, StackOptions};

/// One region's processes and ports.
pub struct Region {
    pub kafka_brokers: String,
    pub ingress_url: String,
    pub(crate) ingress_port: u16,
    pub(crate) kafka_port: u16,
    pub(crate) ops_ports: BTreeMap<&'static str, u16>,
    pub(crate) services: BTreeMap<&'static str, Child>,
    /// Instances after the first of scaled-out stages: (service, index) to process and ops port.
    pub(crate) extra_instances: BTreeMap<(&'static str, u32), (Option<Child>, u16)>,
    pub(crate) broker: Option<Child>,
    /// With the chaos network, per other region: the port of a second broker on this region's
    /// log, serving that region's clients through their own relay (a broker advertises one
    /// address, and clients go wherever it says, so each relay needs a broker of its own).
    pub(crate) remote_broker_ports: BTreeMap<&'static str, u16>,
    pub(crate) remote_brokers: Vec<Child>,
    /// Where the region's broker keeps its log (`--storage-engine`).
    pub(crate) broker_storage: String,
    /// Database URL per application, in this region.
    pub databases: BTreeMap<App, String>,
}

impl Region {
    /// The region's broker processes: its own, and those serving the other regions' clients.
    fn take_brokers(&mut self) -> Vec<Child> {
        let mut brokers: Vec<Child> = self.broker.take().into_iter().collect();
        brokers.append(&mut self.remote_brokers);
        brokers
    }
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
    pub(crate) arc_ports: Vec<u16>,
    pub(crate) arc: BTreeMap<usize, Child>,
    pub(crate) config_file: PathBuf,
    pub(crate) options: StackOptions,
    pub db: PgPool,
    pub st_db: PgPool,
    /// The relays a chaos run breaks (with [`StackOptions::network`]).
    pub network: Option<Network>,
    /// The stack's own DynamoDB endpoint (with [`StackOptions::own_runbook_store`]).
    pub runbook_store: Option<keel_localstack::services::Moto>,
    /// While it is down and replaying: nobody reaches it (with the chaos network).
    runbook_store_held: Option<Imposition>,
    /// Every service came up; until then the folder is kept on drop, for its logs.
    pub(crate) started: bool,
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

pub(crate) fn db_name(app: App) -> &'static str {
    match app {
        App::TradeMatching => "keel_tm",
        App::Settlement => "keel_st",
    }
}

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
        sqlx::query(&format!("CREATE DATABASE {}", quote_ident(&database)))
            .execute(&admin)
            .await?;
        storage.insert(*region, format!("{base}/{database}"));
    }
    admin.close().await;
    Ok(storage)
}

impl Stack {
    /// Starts a fresh stack; `name` names its databases and folder.
    pub async fn start(name: &str, options: StackOptions) -> anyhow::Result<Stack> {
        keel_localstack::credentials::use_local_pgpass();
        let unique = format!("{name}_{}_{}", std::process::id(), rand::random::<u32>());
        let dir = std::env::temp_dir().join("keel-tests").join(&unique);
        std::fs::create_dir_all(dir.join("logs"))?;

        let network = options.network.then(Network::new).transpose()?;
        let mut clusters = Vec::new();
        let mut databases: BTreeMap<&'static str, BTreeMap<App, String>> = BTreeMap::new();
        if options.network && !options.replicated {
            bail!("the chaos network needs a replicated stack (a cluster per region)");
        }
        if options.network && std::env::var("KEEL_BROKER_STORAGE").as_deref() == Ok("sqlite") {
            // A second broker on the same log needs a log two processes can share.
            bail!("the chaos network needs the brokers' log in Postgres, not sqlite");
        }
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
                    let primary_port = match &network {
                        Some(network) => network.port(
                            LinkId {
                                from: (*region).to_owned(),
                                to: Peer::Database(app, active.to_owned()),
                            },
                            primary.port,
                        )?,
                        None => primary.port,
                    };
                    standby
                        .local()
                        .start_standby(&tools(), primary_port, &name)?;
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
                sqlx::query(&format!("CREATE DATABASE {}", quote_ident(&database)))
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
                let ops_ports = service_names().map(|s| (s, free_port())).collect();
                (
                    *name,
                    Region {
                        kafka_brokers: format!("127.0.0.1:{kafka_port}"),
                        ingress_url: format!("http://127.0.0.1:{ingress_port}"),
                        ingress_port,
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
                        remote_broker_ports: if options.network {
                            options
                                .regions
                                .iter()
                                .filter(|other| *other != name)
                                .map(|other| (*other, free_port()))
                                .collect()
                        } else {
                            BTreeMap::new()
                        },
                        remote_brokers: Vec::new(),
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
            network,
            runbook_store: None,
            runbook_store_held: None,
            started: false,
        };
        if stack.options.own_runbook_store {
            let store = keel_localstack::services::Moto {
                dir: stack.dir.join("dynamodb"),
                port: free_port(),
                durable: true,
            };
            store.start(&tools())?;
            if let Some(pid) = store.pid() {
                register_pid(pid as u32);
            }
            stack.runbook_store = Some(store);
        }
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
                .map(|port| format!("http://127.0.0.1:{port}").into())
                .collect(),
            request_timeout_ms: 500,
            credentials: keel_aws::CredentialSource::Local,
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

    /// Starts the broker of `region` (again) on its log: with the chaos network, advertising its
    /// relay, and with a second broker on the same log for each other region's clients.
    pub async fn start_broker_in(&mut self, region: &str) -> anyhow::Result<()> {
        std::env::var("KEEL_NISSHI_BIN")
            .context("KEEL_NISSHI_BIN is not set (make test sets it)")?;
        let port = self.regions[region].kafka_port;
        let mut brokers = vec![(region.to_owned(), port)];
        brokers.extend(
            self.regions[region]
                .remote_broker_ports
                .iter()
                .map(|(from, port)| ((*from).to_owned(), *port)),
        );
        for (from, listen) in brokers {
            let advertised = self.through(&from, Peer::Broker(region.to_owned()), listen)?;
            let for_others = from != region;
            let (folder, log_name) = if for_others {
                (
                    format!("kafka-{region}-for-{from}"),
                    format!("logs/nisshi-{region}-for-{from}.log"),
                )
            } else {
                (
                    format!("kafka-{region}"),
                    format!("logs/nisshi-{region}.log"),
                )
            };
            let broker = keel_localstack::services::Broker {
                dir: self.dir.join(&folder),
                port: listen,
                storage: self.regions[region].broker_storage.clone(),
                cluster_id: format!("keel-test-{port}"),
                advertised_port: (advertised != listen).then_some(advertised),
            };
            broker.prepare()?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(log_name))?;
            let child = broker
                .command(&tools())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting nisshi")?;
            register_child(&child);
            let r = self.regions.get_mut(region).expect("known region");
            if for_others {
                r.remote_brokers.push(child);
            } else {
                r.broker = Some(child);
            }
            wait_until_port(listen, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// SIGKILL of the broker in `region` (every process of it); false when it was not running.
    pub fn kill_broker_in(&mut self, region: &str) -> bool {
        let Some(r) = self.regions.get_mut(region) else {
            return false;
        };
        let running = r.broker.is_some();
        for mut broker in r.take_brokers() {
            let _ = broker.kill();
            let _ = broker.wait();
        }
        running
    }

    /// Stops the first region's broker (SIGTERM, then SIGKILL) and starts it again on the same log.
    pub async fn restart_broker(&mut self, down_for: Duration) -> anyhow::Result<()> {
        let first = self.options.regions[0];
        let brokers = self
            .regions
            .get_mut(first)
            .map(Region::take_brokers)
            .unwrap_or_default();
        for mut broker in brokers {
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
            Some(self.regions[region].ingress_port),
        );
        command
            .current_dir(repo_root())
            // The local stack's configuration, with this stack's databases, brokers and ports.
            .env("KEEL_CONFIG", self.config_file_in(region))
            .env(
                "KEEL_CREDENTIALS_FILE",
                repo_root().join("deploy/local/config/participant-credentials.json"),
            )
            .env(
                "KEEL_MATCHING__MATCH_WINDOW_SECONDS",
                self.options.match_window_seconds.to_string(),
            )
            .env("KEEL_MATCHING__SWEEP_INTERVAL_MS", "200")
            .env(
                "KEEL_REFERENCE_DATA",
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
                .chain(r.remote_brokers.iter())
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
        for mut broker in r.take_brokers() {
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

    /// The base URL of a service's ops endpoints (`/readyz`, `/metrics`) in `region`.
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
            for (broker, from) in r.remote_brokers.iter().zip(r.remote_broker_ports.keys()) {
                processes.push((format!("broker {region} for {from}"), broker.id()));
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
            for mut broker in region.take_brokers() {
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
        if let Some(store) = &self.runbook_store {
            store.stop();
        }
        // A failed test, or a stack that failed to start, keeps its folder (logs, databases) to
        // be read, and so does every stack with KEEL_KEEP_STACKS non-empty (a chaos run with an
        // anomaly does not panic); a passing one leaves nothing behind (replicated stacks hold
        // hundreds of MB).
        if std::thread::panicking()
            || !self.started
            || std::env::var_os("KEEL_KEEP_STACKS").is_some_and(|keep| !keep.is_empty())
        {
            eprintln!("stack kept for inspection: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Stack {
    /// SIGKILL of the stack's own DynamoDB endpoint; false when it has none running. With the
    /// chaos network nobody reaches it until it is back with its tables.
    pub fn kill_runbook_store(&mut self) -> bool {
        let Some(store) = self.runbook_store.as_ref().filter(|s| s.pid().is_some()) else {
            return false;
        };
        if let Some(network) = &self.network {
            self.runbook_store_held =
                Some(network.impose(|link| link.to == Peer::RunbookStore, Condition::Dropped));
        }
        store.crash();
        true
    }

    /// Starts the stack's own DynamoDB endpoint again: it replays what it recorded, and only then
    /// is it reachable.
    pub fn start_runbook_store(&mut self) -> anyhow::Result<()> {
        let store = self
            .runbook_store
            .as_ref()
            .context("the stack has no runbook store of its own")?;
        store.start(&tools())?;
        if let Some(pid) = store.pid() {
            register_pid(pid as u32);
        }
        if let (Some(network), Some(held)) = (&self.network, self.runbook_store_held.take()) {
            network.lift(&held);
        }
        Ok(())
    }
}
