//! `make up` and `make down`: the two-region stack on this machine (DESIGN section 8).
//!
//! `keel-local up` starts `keel-local supervise` in the background and follows its log until the
//! stack is ready. The supervisor brings the stack up in order, then keeps it running:
//! - the local ARC cluster: one endpoint per `[control] endpoints`, sharing one state file;
//! - the local DynamoDB endpoint (moto): the runbook lock, journals and audit;
//! - per application, a Postgres primary in the region where the routing controls say it
//!   processes (a fresh cluster: `KEEL_TM_ACTIVE`, `KEEL_ST_ACTIVE`, by default the first region)
//!   and a streaming standby in each other region;
//! - per region, a nisshi broker (its log in a Postgres cluster of its own, or with
//!   `KEEL_BROKER_STORAGE=sqlite` in a file) and every service of the topology (warm: a service
//!   whose processing control is Off stands by);
//! - the trade generator, which follows the active region, the continuous reconciler,
//!   Prometheus (with the repository's alert rules), and the console.
//!
//! A service, broker, ARC endpoint, generator or reconciler that exits is started again, and the
//! supervisor's log says so. `keel-local down` stops the supervisor (which stops what it runs, in
//! order), then the databases and the DynamoDB endpoint. State stays for the next `up`.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_arc::ArcClient;
use keel_routing::{App, Gate};

use crate::layout::{standby_name, Layout, LocalConfig, Places};
use crate::process::{self, Pidfile};
use crate::services::{Broker, Moto};
use crate::supervisor::{StopOrder, Supervisor};
use crate::tools::{state_dir, Tools};
use crate::{launch, Cluster};

/// Everything `up`, `down` and the supervisor need to know.
pub struct Local {
    pub root: PathBuf,
    pub config_file: PathBuf,
    pub config: LocalConfig,
    pub layout: Layout,
    pub places: Places,
    pub tools: Tools,
    pub bin_dir: PathBuf,
}

impl Local {
    /// From `KEEL_CONFIG` (by default `deploy/local/config/keel.toml` under `root`).
    pub fn load(root: &Path, bin_dir: PathBuf) -> anyhow::Result<Local> {
        let config_file = match std::env::var_os("KEEL_CONFIG") {
            Some(file) => PathBuf::from(file),
            None => root.join("deploy/local/config/keel.toml"),
        };
        std::env::set_var("KEEL_CONFIG", &config_file);
        let config: LocalConfig = keel_platform::config::load()?;
        let layout = Layout::of(&config)?;
        Ok(Local {
            root: root.to_owned(),
            config_file,
            config,
            layout,
            places: Places { state: state_dir() },
            tools: Tools::from_env(),
            bin_dir,
        })
    }

    fn supervisor_pidfile(&self) -> Pidfile {
        Pidfile(self.places.state.join("supervisor.pid"))
    }

    fn supervisor_log(&self) -> PathBuf {
        self.places.state.join("supervisor.log")
    }

    fn ready_marker(&self) -> PathBuf {
        self.places.state.join("supervisor.ready")
    }
}

fn say(line: &str) {
    println!("{} [keel] {line}", chrono::Utc::now().format("%H:%M:%S"));
}

/// `keel-local up`: starts the supervisor unless it runs, and follows its log until the stack is
/// ready (or the supervisor gives up).
pub fn up(local: &Local) -> anyhow::Result<()> {
    std::fs::create_dir_all(&local.places.state)?;
    if local.supervisor_pidfile().running().is_some() && local.ready_marker().exists() {
        println!("Keel is up already (make down stops it).");
        print_info(local);
        return Ok(());
    }
    let log = local.supervisor_log();
    let from = std::fs::metadata(&log).map_or(0, |m| m.len());
    if local.supervisor_pidfile().running().is_none() {
        let _ = std::fs::remove_file(local.ready_marker());
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("supervise")
            .current_dir(&local.root)
            .env("KEEL_CONFIG", &local.config_file);
        let child = process::spawn(&mut command, &log)?;
        local.supervisor_pidfile().write(child.id())?;
    }
    // Follow the log: what the supervisor does, as it does it.
    let mut reader = BufReader::new(std::fs::File::open(&log)?);
    reader.seek(SeekFrom::Start(from))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            print!("{line}");
            line.clear();
        }
        if local.ready_marker().exists() {
            print_info(local);
            return Ok(());
        }
        if local.supervisor_pidfile().running().is_none() {
            anyhow::bail!(
                "the supervisor stopped before the stack was ready; see {}",
                log.display()
            );
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the stack is not ready after 10 minutes; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `keel-local down`: the supervisor and what it runs, then the databases and the DynamoDB
/// endpoint.
pub fn down(local: &Local) -> anyhow::Result<()> {
    let supervisor = local.supervisor_pidfile();
    if let Some(pid) = supervisor.running() {
        say("stopping the supervisor: the generator, the services (they drain), the brokers, the ARC cluster");
        // Services drain for up to 30 s, each order in turn.
        process::stop(pid, Duration::from_secs(120));
    }
    let _ = std::fs::remove_file(&supervisor.0);
    let _ = std::fs::remove_file(local.ready_marker());
    // What a supervisor that was itself killed left running.
    if let Ok(entries) = std::fs::read_dir(local.places.pids()) {
        for entry in entries.flatten() {
            Pidfile(entry.path()).stop(Duration::from_secs(10));
        }
    }
    for region in &local.layout.regions {
        for app in App::ALL {
            let cluster = Cluster::new(local.places.cluster(app, &region.name), 0);
            if let Err(e) = cluster.stop(&local.tools) {
                say(&format!("{e}"));
            }
        }
        let storage = Cluster::new(local.places.broker_storage(&region.name), 0);
        if let Err(e) = storage.stop(&local.tools) {
            say(&format!("{e}"));
        }
        say(&format!("stopped {}", region.name));
    }
    Moto {
        dir: local.places.dynamodb(),
        port: local.layout.dynamodb_port,
        durable: false,
    }
    .stop();
    say("stopped the DynamoDB endpoint");
    Ok(())
}

/// `keel-local supervise`: brings the stack up, then keeps it running until SIGTERM.
pub async fn supervise(local: Local) -> anyhow::Result<()> {
    let mut supervisor = Supervisor::new(local.places.pids(), say);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let started = tokio::select! {
        started = bring_up(&local, &mut supervisor) => started,
        _ = terminate.recv() => Err(anyhow::anyhow!("stopped while starting")),
    };
    if let Err(error) = started {
        say(&format!("cannot start the stack: {error:#}"));
        let stopping = tokio::task::spawn_blocking(move || {
            supervisor.stop_all(Duration::from_secs(30));
        });
        let _ = stopping.await;
        return Err(error);
    }
    std::fs::write(local.ready_marker(), "ready\n")?;
    say("ready; keeping every process running (make down stops them)");
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => supervisor.tend(),
        }
    }
    let _ = std::fs::remove_file(local.ready_marker());
    say("stopping");
    tokio::task::spawn_blocking(move || supervisor.stop_all(Duration::from_secs(30))).await?;
    say("stopped");
    Ok(())
}

/// Where each application processes: read from the routing controls (after a rotation its
/// primary is in the other region), else `KEEL_TM_ACTIVE` / `KEEL_ST_ACTIVE`, else the first
/// region.
fn first_active(local: &Local) -> Vec<(App, String)> {
    let first = local.layout.region_names()[0].clone();
    App::ALL
        .into_iter()
        .map(|app| {
            let variable = match app {
                App::TradeMatching => "KEEL_TM_ACTIVE",
                App::Settlement => "KEEL_ST_ACTIVE",
            };
            (
                app,
                std::env::var(variable).unwrap_or_else(|_| first.clone()),
            )
        })
        .collect()
}

async fn bring_up(local: &Local, supervisor: &mut Supervisor) -> anyhow::Result<()> {
    let regions = local.layout.region_names();
    let fresh = first_active(local);
    let arc = local.places.arc();
    say(&format!(
        "starting the ARC cluster on {:?} (a fresh state starts {})",
        local.layout.arc_ports,
        fresh
            .iter()
            .map(|(app, region)| format!("{app} in {region}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for (index, port) in local.layout.arc_ports.iter().copied().enumerate() {
        let (bin, state, regions, fresh) = (
            local.bin_dir.clone(),
            arc.join("state.json"),
            regions.clone(),
            fresh.clone(),
        );
        supervisor.start(
            &format!("arc-{}", index + 1),
            StopOrder::Control,
            arc.join(format!("logs/endpoint-{}.log", index + 1)),
            move || launch::arc_endpoint(&bin, port, &state, &regions, &fresh),
        )?;
    }
    for port in &local.layout.arc_ports {
        process::wait_for_port(*port, Duration::from_secs(30))?;
    }

    say(&format!(
        "starting the DynamoDB endpoint (moto) on 127.0.0.1:{}",
        local.layout.dynamodb_port
    ));
    Moto {
        dir: local.places.dynamodb(),
        port: local.layout.dynamodb_port,
        durable: false,
    }
    .start(&local.tools)?;

    let states = ArcClient::new(&local.config.control).states().await?;
    let active: Vec<(App, String)> = fresh
        .into_iter()
        .map(|(app, fallback)| {
            let region = states
                .active_region(app, Gate::Processing, &regions)
                .map_or(fallback, str::to_owned);
            (app, region)
        })
        .collect();
    for (app, active_region) in &active {
        start_databases(local, *app, active_region)?;
    }

    for region in &local.layout.regions {
        let storage = if std::env::var("KEEL_BROKER_STORAGE").as_deref() == Ok("sqlite") {
            "sqlite://data/nisshi.db".to_owned()
        } else {
            let port = region.broker_storage_port.ok_or_else(|| {
                anyhow::anyhow!("no [local] broker_storage_ports for {}", region.name)
            })?;
            say(&format!(
                "starting Postgres (the broker's log, {}) on 127.0.0.1:{port}",
                region.name
            ));
            Cluster::new(local.places.broker_storage(&region.name), port)
                .start(&local.tools, &["keel_kafka"])?;
            format!("postgres://keel@127.0.0.1:{port}/keel_kafka")
        };
        let broker = Broker {
            dir: local.places.broker(&region.name),
            port: region.kafka_port,
            storage,
            cluster_id: format!("keel-{}", region.kafka_port),
            advertised_port: None,
        };
        broker.prepare()?;
        say(&format!(
            "starting nisshi ({}) on 127.0.0.1:{}",
            region.name, region.kafka_port
        ));
        let tools = local.tools.clone();
        let log = broker.dir.join("nisshi.log");
        supervisor.start(
            &format!("broker-{}", region.name),
            StopOrder::Broker,
            log,
            move || broker.command(&tools),
        )?;
        process::wait_for_port(region.kafka_port, Duration::from_secs(60))?;
    }

    for region in &local.layout.regions {
        for (service, port) in region.services.iter().copied() {
            let (bin, root, config, name, api_port) = (
                local.bin_dir.clone(),
                local.root.clone(),
                local.config_file.clone(),
                region.name.clone(),
                region.api_port,
            );
            supervisor.start(
                &format!("{}-{}", service.name, region.name),
                StopOrder::Service,
                local
                    .places
                    .logs(&region.name)
                    .join(format!("{}.log", service.name)),
                move || {
                    let mut command = launch::service(&bin, service, &name, port, Some(api_port));
                    command.current_dir(&root).env("KEEL_CONFIG", &config);
                    command
                },
            )?;
        }
        say(&format!("started every service in {}", region.name));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    for region in &local.layout.regions {
        for (service, port) in &region.services {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ready = http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                if Instant::now() >= deadline {
                    anyhow::bail!(
                        "{} in {} is not ready after 60 s; see {}",
                        service.name,
                        region.name,
                        local.places.logs(&region.name).display()
                    );
                }
                supervisor.tend();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    say("every service is ready");

    // It starts at the active region's ingress, follows refusals to whichever region is active,
    // and runs only while the `generator` routing control is On.
    let tm_active = &active[0].1;
    let (first, others): (Vec<_>, Vec<_>) = local
        .config
        .regions
        .iter()
        .partition(|(name, _)| *name == tm_active);
    let ingress: Vec<String> = first
        .into_iter()
        .chain(others)
        .map(|(_, region)| region.ingress_url.clone())
        .collect();
    let rate = std::env::var("KEEL_GENERATOR_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(local.config.local.generator_rate);
    let (bin, root, endpoints) = (
        local.bin_dir.clone(),
        local.root.clone(),
        local
            .config
            .control
            .endpoints
            .iter()
            .map(keel_arc::Endpoint::url)
            .collect::<Vec<_>>()
            .join(","),
    );
    supervisor.start(
        "generator",
        StopOrder::Load,
        local.places.state.join("generator.log"),
        move || {
            let mut command = Command::new(bin.join("keel-generator"));
            command
                .current_dir(&root)
                .args(["--ingress", &ingress.join(",")])
                .args(["--control-endpoints", &endpoints])
                .args(["--rate", &rate.to_string()]);
            command
        },
    )?;
    let (bin, root, config, listen) = (
        local.bin_dir.clone(),
        local.root.clone(),
        local.config_file.clone(),
        local.layout.reconciler_listen.clone(),
    );
    supervisor.start(
        "reconciler",
        StopOrder::Load,
        local.places.state.join("reconciler.log"),
        move || {
            let mut command = Command::new(bin.join("keelctl"));
            command
                .current_dir(&root)
                .env("KEEL_CONFIG", &config)
                .args(["reconcile", "--watch", "--metrics-listen", &listen])
                .args(["--interval-seconds", "15"]);
            command
        },
    )?;
    // Prometheus scrapes every service and the reconciler and evaluates the repository's rules.
    let prometheus_dir = local.places.state.join("prometheus");
    std::fs::create_dir_all(prometheus_dir.join("data"))?;
    let prometheus_config = prometheus_dir.join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        crate::prometheus::config(
            &local.layout,
            &local.root.join("deploy/prometheus/alerts.yml"),
        ),
    )?;
    let binary = local.tools.prometheus.clone();
    supervisor.start(
        "prometheus",
        StopOrder::Load,
        local.places.state.join("prometheus.log"),
        move || {
            let mut command = Command::new(&binary);
            command
                .arg(format!("--config.file={}", prometheus_config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    prometheus_dir.join("data").display()
                ))
                .arg(format!(
                    "--web.listen-address={}",
                    crate::prometheus::LISTEN
                ))
                .arg("--storage.tsdb.retention.time=2d");
            command
        },
    )?;
    let (bin, root, config) = (
        local.bin_dir.clone(),
        local.root.clone(),
        local.config_file.clone(),
    );
    supervisor.start(
        "console",
        StopOrder::Load,
        local.places.state.join("console.log"),
        move || {
            let mut command = Command::new(bin.join("keel-console"));
            command.current_dir(&root).env("KEEL_CONFIG", &config);
            command
        },
    )?;
    Ok(())
}

/// `app`'s primary in `active`, and a standby in every other region, each started unless it runs.
fn start_databases(local: &Local, app: App, active: &str) -> anyhow::Result<()> {
    let layout_of = |region: &str| {
        local
            .layout
            .regions
            .iter()
            .find(|r| r.name == region)
            .map(|r| r.databases[&app].clone())
            .ok_or_else(|| anyhow::anyhow!("no region {region}"))
    };
    let (primary_port, database) = layout_of(active)?;
    let primary = Cluster::new(local.places.cluster(app, active), primary_port);
    if primary.data().join("standby.signal").exists() {
        say(&format!(
            "WARNING: {app}'s database in {active}, where {app} processes, is still a standby: finish the handover by promoting it (runbooks/routing-controls.md)"
        ));
    }
    say(&format!(
        "starting Postgres ({app} primary, {active}) on 127.0.0.1:{primary_port}"
    ));
    primary.start(&local.tools, &[&database])?;
    for region in local.layout.region_names() {
        if region == active {
            continue;
        }
        let (port, _) = layout_of(&region)?;
        let standby = Cluster::new(local.places.cluster(app, &region), port);
        let data = standby.data();
        if data.join("PG_VERSION").exists() && !data.join("standby.signal").exists() {
            // A former primary, left by a handover: it may hold writes the new primary lacks, so
            // it is neither started (two primaries) nor overwritten.
            say(&format!(
                "WARNING: {app}'s database in {region} is a former primary, not a standby of {active}; not starting it (runbooks/routing-controls.md, re-protect)"
            ));
            continue;
        }
        say(&format!(
            "starting Postgres ({app} standby, {region}) on 127.0.0.1:{port}"
        ));
        standby.start_standby(
            &local.tools,
            primary_port,
            &standby_name(&database, &region),
        )?;
    }
    Ok(())
}

fn print_info(local: &Local) {
    println!(
        "\nKeel is up in {} regions. State and logs: {}",
        local.layout.regions.len(),
        local.places.state.display()
    );
    for region in &local.layout.regions {
        let ports: Vec<String> = region
            .services
            .iter()
            .map(|(s, p)| format!("{} {p}", s.name))
            .collect();
        let databases: Vec<String> = region
            .databases
            .iter()
            .map(|(app, (port, db))| format!("{app} {port}/{db}"))
            .collect();
        println!(
            "  {}: Kafka 127.0.0.1:{}; {}; Postgres {}",
            region.name,
            region.kafka_port,
            ports.join(", "),
            databases.join(", ")
        );
    }
    println!(
        "  ARC {:?}; DynamoDB {}; reconciler http://{}/metrics",
        local.layout.arc_ports, local.layout.dynamodb_port, local.layout.reconciler_listen
    );
    println!(
        "  supervisor log: {} (a process that exits is started again, and said there)\n",
        local.supervisor_log().display()
    );
    println!(
        "Prometheus: http://{} (alerts: /alerts)",
        crate::prometheus::LISTEN
    );
    println!(
        "Console:  http://{} (operator ops / keel-local-operator; viewer viewer / keel-local-viewer)",
        local.config.console.listen
    );
    println!("Status:   target/release/keelctl status");
    println!("Generator: KEEL_OPERATOR=ops target/release/keelctl generator stop");
    println!("Ledger:   target/release/keelctl ledger verify");
    println!(
        "Rotate:   target/release/keelctl rotate --app trade-matching --to us-west-2 --dry-run"
    );
    println!("Stop:     make down");
}
