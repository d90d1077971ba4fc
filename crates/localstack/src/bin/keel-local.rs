//! keel-local: the local stack from the command line. `make up` is `keel-local up`, `make down`
//! is `keel-local down`; `make test` starts and stops its Postgres cluster and DynamoDB endpoint
//! with it; an operator can use it on `make up`'s clusters.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_localstack::services::Moto;
use keel_localstack::stack::{self, Local};
use keel_localstack::{Cluster, Tools};

#[derive(Parser)]
#[command(
    name = "keel-local",
    about = "The local stack's Postgres clusters and DynamoDB endpoint."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the two-region stack (in the background, supervised) and waits until it is ready.
    Up,
    /// Stops everything `up` started. State stays for the next `up`.
    Down,
    /// The supervisor `up` starts: brings the stack up, then keeps it running until SIGTERM.
    #[command(hide = true)]
    Supervise,
    /// One Postgres 15 cluster in DIR on 127.0.0.1:PORT.
    Postgres {
        #[command(subcommand)]
        action: Postgres,
    },
    /// Creates and migrates every service's schema in the database at URL: what the
    /// compile-checked queries are prepared and checked against (`make test`).
    Migrate { url: String },
    /// The local DynamoDB endpoint (moto) in DIR on 127.0.0.1:PORT.
    Moto {
        #[command(subcommand)]
        action: MotoAction,
    },
}

#[derive(Subcommand)]
enum Postgres {
    /// A primary with these databases (created if missing).
    Start {
        dir: PathBuf,
        port: u16,
        databases: Vec<String>,
        /// shared_buffers of a fresh cluster.
        #[arg(long, default_value = "512MB")]
        shared_buffers: String,
    },
    /// A streaming standby of the primary on PRIMARY_PORT, replicating as NAME.
    Standby {
        dir: PathBuf,
        port: u16,
        primary_port: u16,
        name: String,
    },
    /// Stops the cluster, keeps its data as data.replaced, and clones it again as a standby.
    Rebuild {
        dir: PathBuf,
        port: u16,
        primary_port: u16,
        name: String,
    },
    /// Makes a standby a primary.
    Promote { dir: PathBuf },
    /// A fast shutdown.
    Stop { dir: PathBuf },
}

#[derive(Subcommand)]
enum MotoAction {
    Start {
        dir: PathBuf,
        port: u16,
        /// Record every request in DIR and replay the recording at start, so that the tables
        /// outlive a crash.
        #[arg(long)]
        durable: bool,
    },
    Stop {
        dir: PathBuf,
    },
}

/// The stack as `make` runs it: from the repository (the working directory, or `KEEL_ROOT`), with
/// the binaries beside this one.
fn local() -> anyhow::Result<Local> {
    let root = match std::env::var_os("KEEL_ROOT") {
        Some(root) => PathBuf::from(root),
        None => std::env::current_dir()?,
    };
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    Local::load(&root, bin_dir)
}

fn run(command: Command) -> anyhow::Result<()> {
    let tools = Tools::from_env();
    match command {
        Command::Up => stack::up(&local()?),
        Command::Down => stack::down(&local()?),
        Command::Supervise => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(stack::supervise(local()?)),
        Command::Postgres { action } => Ok(match action {
            Postgres::Start {
                dir,
                port,
                databases,
                shared_buffers,
            } => {
                let cluster = Cluster {
                    shared_buffers,
                    ..Cluster::new(dir, port)
                };
                let databases: Vec<&str> = databases.iter().map(String::as_str).collect();
                cluster.start(&tools, &databases)
            }
            Postgres::Standby {
                dir,
                port,
                primary_port,
                name,
            } => Cluster::new(dir, port).start_standby(&tools, primary_port, &name),
            Postgres::Rebuild {
                dir,
                port,
                primary_port,
                name,
            } => Cluster::new(dir, port).rebuild_as_standby(&tools, primary_port, &name),
            Postgres::Promote { dir } => Cluster::new(dir, 0).promote(&tools),
            Postgres::Stop { dir } => Cluster::new(dir, 0).stop(&tools),
        }?),
        Command::Migrate { url } => Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(keel_migrations::migrate_all(&url))?),
        Command::Moto { action } => match action {
            MotoAction::Start { dir, port, durable } => {
                Ok(Moto { dir, port, durable }.start(&tools)?)
            }
            MotoAction::Stop { dir } => {
                Moto {
                    dir,
                    port: 0,
                    durable: false,
                }
                .stop();
                Ok(())
            }
        },
    }
}

fn main() -> ExitCode {
    keel_localstack::credentials::use_local_pgpass();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keel-local: {error:#}");
            ExitCode::FAILURE
        }
    }
}
