//! keelctl: what SREs run. Today: `keelctl ledger verify`.
//!
//! Exit codes: 0 all good, 1 the check found a violation (named on stderr or in the JSON), 2 the check
//! could not run (for example the database is unreachable).

mod ledger;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keelctl", version, about = "Operate Keel: check the ledger.")]
struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The settlement application's double-entry ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Checks the whole ledger: postings balance per instruction, postings belong to settled
    /// instructions, every position equals its opening balance plus its postings, every asset is
    /// conserved, and nothing is negative where not allowed. Names the first violation.
    Verify {
        /// The settlement application's database.
        #[arg(
            long,
            env = "KEEL_SETTLEMENT__DATABASE_URL",
            default_value = "postgres://keel@127.0.0.1:54322/keel_st"
        )]
        database_url: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ledger {
            command: LedgerCommand::Verify { database_url },
        } => ledger::verify(&database_url, cli.json).await,
    }
}
