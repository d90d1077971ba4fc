//! keelctl: what SREs run: `keelctl status`, `keelctl controls list|set`, `keelctl ledger verify`.
//! It reads the same configuration as the services (`KEEL_CONFIG`, by default the local stack's
//! `deploy/local/config/keel.toml`).
//!
//! Exit codes: 0 all good, 1 the check found a violation (named on stderr or in the JSON), 2 the check
//! could not run (for example the database is unreachable).

mod ledger;
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
        Command::Ledger {
            command: LedgerCommand::Verify { database_url },
        } => {
            let database_url = match database_url {
                Some(url) => url,
                None => match config() {
                    Err(code) => return code,
                    Ok(config) => match status::active_database(&config, App::Settlement).await {
                        Ok(url) => url,
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
