//! keel-generator: submits generated trades through the ingress API at a set rate, and stops cleanly
//! on SIGINT/SIGTERM or after `--duration`, printing what it did.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use keel_generator::{Client, Credentials, DriverOptions, Mix};

#[derive(Parser)]
#[command(about = "Submit generated trade blocks to Keel's ingress at a set rate")]
struct Args {
    /// Ingress base URL.
    #[arg(
        long,
        env = "KEEL_GENERATOR_INGRESS",
        default_value = "http://127.0.0.1:8081"
    )]
    ingress: String,
    /// Participants and their client credentials.
    #[arg(
        long,
        env = "KEEL_GENERATOR_PARTICIPANTS",
        default_value = "deploy/local/participants.json"
    )]
    participants: PathBuf,
    /// Legs per second.
    #[arg(long, env = "KEEL_GENERATOR_RATE", default_value_t = 5.0)]
    rate: f64,
    /// Seconds to run; 0 runs until stopped.
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Most legs in one batch request (1 = one request per leg).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Shares of each kind of trade. `failing` trades match, then fail to settle for lack of cash or
    /// securities (they go to the IM's unfunded fund, FUND-999).
    #[arg(
        long,
        default_value = "matching=0.83,failing=0.02,mismatching=0.07,unmatched=0.05,invalid=0.03"
    )]
    mix: Mix,
    /// Seed for the trade stream; random when absent.
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = keel_platform::telemetry::init("generator");
    let stop = keel_platform::shutdown::on_signal();
    let participants = Credentials::load(&args.participants)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let options = DriverOptions {
        rate: args.rate,
        duration: (args.duration > 0).then(|| Duration::from_secs(args.duration)),
        batch: args.batch,
        concurrency: args.concurrency,
        mix: args.mix,
        seed,
        prefix: format!("G{}", chrono::Utc::now().format("%Y%m%d%H%M%S")),
    };
    tracing::info!(
        rate = args.rate,
        seed,
        ingress = args.ingress,
        "generator started"
    );
    let report =
        keel_generator::run(Client::new(&args.ingress), &participants, options, stop).await?;
    tracing::info!(
        legs_sent = report.legs_sent,
        legs_accepted = report.legs_accepted,
        legs_refused = report.legs_refused,
        legs_failed = report.legs_failed,
        trades = ?report.trades,
        ack_p50_ms = report.percentile(0.5),
        ack_p99_ms = report.percentile(0.99),
        seconds = report.elapsed.as_secs_f64(),
        "generator stopped"
    );
    Ok(())
}
