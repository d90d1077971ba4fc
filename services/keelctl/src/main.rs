//! keelctl: what SREs run: `keelctl status`, `keelctl controls list|set`, `keelctl reconcile`,
//! `keelctl ledger verify`.
//! It reads the same configuration as the services (`KEEL_CONFIG`, by default the local stack's
//! `deploy/local/config/keel.toml`).
//!
//! Exit codes: 0 all good, 1 the check found a violation (named on stderr or in the JSON), 2 the check
//! could not run (for example the database is unreachable).

mod ledger;
mod reconcile;
mod status;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_arc::ControlConfig;
use keel_routing::{App, RegionConfig};
use serde::{Deserialize, Serialize};

/// The parts of the services' configuration keelctl needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub regions: BTreeMap<String, RegionConfig>,
    pub control: ControlConfig,
}

#[derive(Parser)]
#[command(
    name = "keelctl",
    version,
    about = "Operate Keel: status, routing controls, the ledger."
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
    /// Compares every hop (a producer's outbox and the next consumer's inbox, within and between
    /// the applications) by message id and content digest in each application's active database,
    /// and reports the gaps and the repair each needs. Exit 1 when there are gaps. Reports only:
    /// replay comes with rotation.
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
    },
    /// The settlement application's double-entry ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
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
        Command::Reconcile {
            app,
            window_minutes,
            settle_seconds,
        } => match config() {
            Err(code) => code,
            Ok(config) => {
                let window = reconcile::Window {
                    seconds: window_minutes * 60.0,
                    settle_seconds,
                };
                reconcile::reconcile(&config, app, window, cli.json).await
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
