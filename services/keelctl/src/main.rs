//! keelctl: what SREs run: `keelctl status`, `keelctl controls list|set`, `keelctl rotate`,
//! `keelctl failover`, `keelctl reprotect`, `keelctl reconcile`, `keelctl generator start|stop`,
//! `keelctl audit`, `keelctl ledger verify`. Commands that change Keel need an operator
//! (`--operator`, see [`identity`]) and are recorded in the audit trail.
//! It reads the same configuration as the services (`KEEL_CONFIG`, by default the local stack's
//! `deploy/local/config/keel.toml`). The work is keel-operations' (the runbook, over ports) and
//! keel-operations-live's (the ports against the real systems); keelctl parses, renders, and maps
//! each failure to an exit code ([`error::Error::exit_code`]).
//!
//! Exit codes: 0 all good, 1 the command found something wrong (named on stderr or in the JSON),
//! 2 it could not run (for example the database is unreachable) or would not (a refusal).

mod commands;
mod error;
mod identity;
mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_operations_live::Config;
use keel_routing::App;

use crate::error::Error;

#[derive(Parser)]
#[command(
    name = "keelctl",
    version,
    about = "Operate Keel: status, routing controls, rotation and failover, reconciliation, the ledger."
)]
pub(crate) struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Who is acting: an operator of the registry (`[operators] registry`). Commands that change
    /// Keel need one, with the password in KEEL_OPERATOR_PASSWORD or typed at the prompt, and are
    /// recorded in the audit trail.
    #[arg(long, global = true, env = "KEEL_OPERATOR")]
    pub(crate) operator: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Unplanned failover (disaster recovery): moves an application (`--app`), or every
    /// application that processes in a lost region (`--region`, one after another), out of it without
    /// needing anything from it: fence it, promote the standby, processing On, reconcile and
    /// replay, verify, traffic On. Re-protect once the region is back.
    Failover(FailoverArgs),
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
    /// The audit trail: every operator action from keelctl and the console (who, what, when, from
    /// where, the outcome), newest first; or, given a reconciliation run's id (in a rotation's
    /// report, or `keelctl reconcile --repair`'s), that run's summary and every message it
    /// replayed or restored.
    Audit {
        /// A reconciliation run's id.
        run: Option<String>,
        /// How many actions to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Starts or stops the trade generator (the global `generator` routing control).
    Generator {
        #[command(subcommand)]
        command: GeneratorCommand,
    },
    /// The operator registry.
    Operators {
        #[command(subcommand)]
        command: OperatorsCommand,
    },
    /// The settlement application's double-entry ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(clap::Args)]
pub(crate) struct MoveArgs {
    #[arg(long, value_parser = parse_app)]
    pub(crate) app: App,
    /// The region to move to.
    #[arg(long)]
    pub(crate) to: String,
    /// The region to move from; by default the one where the application processes now.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Print the plan and what each step checks; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["app", "region"])))]
pub(crate) struct FailoverArgs {
    /// One application.
    #[arg(long, value_parser = parse_app)]
    pub(crate) app: Option<App>,
    /// The lost region: every application that processes there (or whose failover out of it is
    /// under way) fails over, each in a run of its own, trade matching first.
    #[arg(long, conflicts_with = "from")]
    pub(crate) region: Option<String>,
    /// The region to move to; with --region, by default the one other region.
    #[arg(long, required_unless_present = "region")]
    pub(crate) to: Option<String>,
    /// With --app: the region to move from; by default the one where the application processes.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Print the plan and what each step checks; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Subcommand)]
pub(crate) enum ControlsCommand {
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
pub(crate) enum GeneratorCommand {
    Start,
    Stop,
}

#[derive(Subcommand)]
pub(crate) enum OperatorsCommand {
    /// Every operator and their role.
    List,
    /// Prints an argon2 hash of a password (read from stdin, or asked for on a terminal) for the
    /// registry's `password_hash`.
    Hash,
}

#[derive(Subcommand)]
pub(crate) enum LedgerCommand {
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

#[derive(Debug, thiserror::Error)]
#[error("unknown application {0:?} (trade-matching, settlement)")]
struct UnknownApp(String);

fn parse_app(name: &str) -> Result<App, UnknownApp> {
    App::from_name(name).ok_or_else(|| UnknownApp(name.to_owned()))
}

fn load_config() -> Result<Config, Error> {
    if std::env::var_os("KEEL_CONFIG").is_none() {
        std::env::set_var("KEEL_CONFIG", "deploy/local/config/keel.toml");
    }
    keel_platform::config::load().map_err(|error| Error::Config(error.to_string()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // The local stack's databases take the local password file; elsewhere there is none.
    keel_operations_live::use_local_pgpass();
    let cli = Cli::parse();
    let json = cli.json;
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            render::error(&error, json);
            error.exit_code()
        }
    }
}
