//! keelctl: what SREs run: `keelctl status`, `keelctl controls list|set`, `keelctl rotate`,
//! `keelctl failover`, `keelctl reprotect`, `keelctl reconcile`, `keelctl ledger verify`.
//! It reads the same configuration as the services (`KEEL_CONFIG`, by default the local stack's
//! `deploy/local/config/keel.toml`).
//!
//! Exit codes: 0 all good, 1 the check found a violation (named on stderr or in the JSON), 2 the check
//! could not run (for example the database is unreachable).

mod ledger;
mod reconcile;
mod runbook;
mod status;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_arc::ControlConfig;
use keel_rotation::Mode;
use keel_routing::{App, RegionConfig};
use runbook::store::{RunbookConfig, RunbookStore};
use serde::{Deserialize, Serialize};

/// The parts of the services' configuration keelctl needs.
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
}

impl Config {
    /// `app`'s database in `region`.
    pub fn database_url(&self, app: App, region: &str) -> Result<&str, String> {
        self.regions
            .get(region)
            .and_then(|r| r.databases.get(app.name()))
            .map(String::as_str)
            .ok_or_else(|| {
                format!("no database for {app} in {region} (regions.{region}.databases)")
            })
    }
}

#[derive(Parser)]
#[command(
    name = "keelctl",
    version,
    about = "Operate Keel: status, routing controls, rotation and failover, reconciliation, the ledger."
)]
struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per application and region: routing controls, service health, database role and
    /// replication lag, consumer lag and outbox depth.
    Status,
    /// The ARC routing controls.
    Controls {
        #[command(subcommand)]
        command: ControlsCommand,
    },
    /// Planned rotation: moves an application to another region with both regions up. Traffic
    /// Off, drain, processing Off, wait for the standby, switch the database, processing On,
    /// reconcile and replay, verify, traffic On, re-protect; each step checks its outcome, and the
    /// run is journaled so it can be resumed by running the same command again.
    Rotate(MoveArgs),
    /// Unplanned failover (disaster recovery): moves an application out of a lost region without
    /// needing anything from it: fence it, promote the standby, processing On, reconcile and
    /// replay, verify, traffic On. Re-protect once the region is back.
    Failover(MoveArgs),
    /// Rebuilds an application's database in a region (by default the one it does not process
    /// in) as a streaming standby of its primary: after a failover, once the lost region is back.
    Reprotect {
        #[arg(long, value_parser = parse_app)]
        app: App,
        #[arg(long)]
        region: Option<String>,
    },
    /// Compares every hop (a producer's outbox and the next consumer's inbox, within and between
    /// the applications) by message id and content digest in each application's active database,
    /// and reports the gaps and the repair each needs. Exit 1 when gaps are left.
    Reconcile {
        /// Only the hops of this application (its own and the two between the applications).
        #[arg(long, value_parser = parse_app)]
        app: Option<App>,
        /// How far back to look, in minutes.
        #[arg(long, default_value_t = 60.0)]
        window_minutes: f64,
        /// Leave out what was produced in the last this many seconds: it may still be in flight.
        #[arg(long, default_value_t = 5.0)]
        settle_seconds: f64,
        /// Repair: replay what is missing, restore across applications what only the downstream
        /// has, audited in the runbook store; waits for each hop's replay to arrive.
        #[arg(long, conflicts_with = "watch")]
        repair: bool,
        /// Keep reconciling (reporting only) and export the gaps per hop as Prometheus metrics.
        #[arg(long)]
        watch: bool,
        /// With --watch: where /metrics is served.
        #[arg(long, default_value = "127.0.0.1:9190")]
        metrics_listen: String,
        /// With --watch: seconds between runs.
        #[arg(long, default_value_t = 15)]
        interval_seconds: u64,
        /// With --watch: stop after this many runs (by default, at a signal).
        #[arg(long)]
        rounds: Option<u64>,
    },
    /// Releases an application's runbook lock held by a run that cannot finish (a planned
    /// rotation whose source region was lost). The run's journal stays. Only that run's lock is
    /// released: name it as the refusal named it.
    Unlock {
        #[arg(long, value_parser = parse_app)]
        app: App,
        /// The run holding the lock.
        #[arg(long)]
        run: String,
    },
    /// A reconciliation run's audit trail: its summary and every message it replayed or restored
    /// (the run id is in the rotation's report, or `keelctl reconcile --repair`'s).
    Audit {
        /// The run id.
        run: String,
    },
    /// The settlement application's double-entry ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(clap::Args)]
struct MoveArgs {
    #[arg(long, value_parser = parse_app)]
    app: App,
    /// The region to move to.
    #[arg(long)]
    to: String,
    /// The region to move from; by default the one where the application processes now.
    #[arg(long)]
    from: Option<String>,
    /// Print the plan and what each step checks; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Subcommand)]
enum ControlsCommand {
    /// Every control and its state.
    List,
    /// Sets controls, all at once or none: `keelctl controls set trade-matching-us-east-1-traffic=Off`.
    /// The cluster refuses (exit 1) a result that breaks a safety rule.
    Set {
        /// NAME=On or NAME=Off, one or more.
        #[arg(required = true)]
        changes: Vec<String>,
        /// Break glass: a safety rule (name or ARN) this change may break.
        #[arg(long = "override")]
        overrides: Vec<String>,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Checks the whole ledger: postings balance per instruction, postings belong to settled
    /// instructions, every position equals its opening balance plus its postings, every asset is
    /// conserved, and nothing is negative where not allowed. Names the first violation.
    Verify {
        /// The settlement application's database; by default its database in the region where
        /// settlement processes (read from the routing controls).
        #[arg(long, env = "KEEL_LEDGER_DATABASE_URL")]
        database_url: Option<String>,
    },
}

async fn move_app(
    config: impl FnOnce() -> Result<Config, ExitCode>,
    mode: Mode,
    args: MoveArgs,
    json: bool,
) -> ExitCode {
    match config() {
        Err(code) => code,
        Ok(config) => {
            let args = runbook::RunArgs {
                app: args.app,
                mode,
                to: args.to,
                from: args.from,
                dry_run: args.dry_run,
                yes: args.yes,
                json,
            };
            runbook::run(&config, args).await
        }
    }
}

fn parse_app(name: &str) -> Result<App, String> {
    App::from_name(name)
        .ok_or_else(|| format!("unknown application {name:?} (trade-matching, settlement)"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = || -> Result<Config, ExitCode> {
        if std::env::var_os("KEEL_CONFIG").is_none() {
            std::env::set_var("KEEL_CONFIG", "deploy/local/config/keel.toml");
        }
        keel_platform::config::load().map_err(|error| {
            eprintln!("error: {error}");
            ExitCode::from(2)
        })
    };
    match cli.command {
        Command::Status => match config() {
            Ok(config) => status::status(&config, cli.json).await,
            Err(code) => code,
        },
        Command::Controls { command } => match config() {
            Err(code) => code,
            Ok(config) => match command {
                ControlsCommand::List => status::list_controls(&config, cli.json).await,
                ControlsCommand::Set { changes, overrides } => {
                    status::set_controls(&config, &changes, &overrides, cli.json).await
                }
            },
        },
        Command::Rotate(args) => move_app(config, Mode::Planned, args, cli.json).await,
        Command::Failover(args) => move_app(config, Mode::Unplanned, args, cli.json).await,
        Command::Reprotect { app, region } => match config() {
            Err(code) => code,
            Ok(config) => runbook::reprotect(&config, app, region, cli.json).await,
        },
        Command::Unlock { app, run } => match config() {
            Err(code) => code,
            Ok(config) => {
                let store = RunbookStore::new(&config.runbook);
                match store.lock_holder(app).await {
                    Ok(Some(holder)) if holder == run => match store.unlock(app, &run).await {
                        Ok(()) => {
                            println!("released {app}'s runbook lock held by run {run}");
                            ExitCode::SUCCESS
                        }
                        Err(error) => {
                            eprintln!("error: {error}");
                            ExitCode::from(2)
                        }
                    },
                    Ok(Some(holder)) => {
                        eprintln!("error: {app}'s lock is held by run {holder}, not {run}");
                        ExitCode::from(1)
                    }
                    Ok(None) => {
                        eprintln!("{app}'s runbook lock is not held");
                        ExitCode::SUCCESS
                    }
                    Err(error) => {
                        eprintln!("error: {error}");
                        ExitCode::from(2)
                    }
                }
            }
        },
        Command::Audit { run } => match config() {
            Err(code) => code,
            Ok(config) => match RunbookStore::new(&config.runbook).audit_of(&run).await {
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
                Ok(items) if items.is_empty() => {
                    eprintln!("no audit for run {run}");
                    ExitCode::from(1)
                }
                Ok(items) => {
                    if cli.json {
                        let map: BTreeMap<_, _> = items.into_iter().collect();
                        println!("{}", serde_json::to_string_pretty(&map).expect("json"));
                    } else {
                        for (what, action) in items {
                            println!("{what}\t{action}");
                        }
                    }
                    ExitCode::SUCCESS
                }
            },
        },
        Command::Reconcile {
            app,
            window_minutes,
            settle_seconds,
            repair,
            watch,
            metrics_listen,
            interval_seconds,
            rounds,
        } => match config() {
            Err(code) => code,
            Ok(config) => {
                let window = reconcile::Window {
                    seconds: minutes_to_seconds(window_minutes),
                    settle_seconds,
                };
                if let Err(error) = window.within(&config.retention) {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
                if watch {
                    return reconcile::watch(
                        &config,
                        app,
                        window,
                        std::time::Duration::from_secs(interval_seconds),
                        rounds,
                        &metrics_listen,
                    )
                    .await;
                }
                if !repair {
                    return reconcile::reconcile(&config, app, window, None, cli.json).await;
                }
                let store = RunbookStore::new(&config.runbook);
                if let Err(error) = store.ensure_table().await {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
                let regions = match status::active_regions(&config, &App::ALL).await {
                    Ok(regions) => regions,
                    Err(error) => {
                        eprintln!("error: {error}");
                        return ExitCode::from(2);
                    }
                };
                let run_id = format!(
                    "reconcile-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
                );
                let repairing = reconcile::Repairing::new(&config, &store, run_id, &regions);
                reconcile::reconcile(&config, app, window, Some(repairing), cli.json).await
            }
        },
        Command::Ledger {
            command: LedgerCommand::Verify { database_url },
        } => {
            let database_url = match database_url {
                Some(url) => url,
                None => match config() {
                    Err(code) => return code,
                    Ok(config) => match status::active_databases(&config, &[App::Settlement]).await
                    {
                        Ok(mut urls) => urls.remove(&App::Settlement).expect("asked for"),
                        Err(why) => {
                            eprintln!("error: {why}; pass --database-url");
                            return ExitCode::from(2);
                        }
                    },
                },
            };
            ledger::verify(&database_url, cli.json).await
        }
    }
}

#[allow(clippy::float_arithmetic)] // a duration typed by an operator, not money
fn minutes_to_seconds(minutes: f64) -> f64 {
    minutes * 60.0
}
