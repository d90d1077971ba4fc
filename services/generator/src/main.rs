//! keel-generator: submits generated trades through the ingress API at a set rate, and stops cleanly
//! on SIGINT/SIGTERM or after `--duration`, printing what it did.
//!
//! It follows the active region: a refusing ingress names the active one, and an unreachable one is
//! replaced by the next in `--ingress`. With `--control-endpoints` it runs only while the global
//! `generator` routing control is On.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use keel_arc::{ArcClient, ControlConfig};
use keel_generator::{Client, Credentials, DriverOptions, Mix};

#[derive(Parser)]
#[command(about = "Submit generated trade blocks to Keel's ingress at a set rate")]
struct Args {
    /// Ingress base URLs, comma-separated: the first is used first, the others when it cannot be
    /// reached.
    #[arg(
        long,
        env = "KEEL_GENERATOR_INGRESS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8081,http://127.0.0.1:8082"
    )]
    ingress: Vec<String>,
    /// ARC cluster endpoints, comma-separated. When given, legs are generated only while the
    /// `generator` routing control is On (and readable).
    #[arg(long, env = "KEEL_GENERATOR_CONTROL_ENDPOINTS", value_delimiter = ',')]
    control_endpoints: Vec<String>,
    /// Seconds a request keeps being retried while no region takes traffic.
    #[arg(long, default_value_t = 60)]
    retry_for: u64,
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
    let control = (!args.control_endpoints.is_empty()).then(|| {
        let config = ControlConfig {
            endpoints: args
                .control_endpoints
                .iter()
                .cloned()
                .map(keel_arc::Endpoint::from)
                .collect(),
            // The generator drives the local stack; its ARC endpoints only check a signature.
            credentials: keel_aws::CredentialSource::Local,
            ..ControlConfig::default()
        };
        keel_arc::watch(Arc::new(ArcClient::new(&config)), &config, stop.clone())
    });
    let options = DriverOptions {
        rate: args.rate,
        duration: (args.duration > 0).then(|| Duration::from_secs(args.duration)),
        batch: args.batch,
        concurrency: args.concurrency,
        mix: args.mix,
        seed,
        prefix: format!("G{}", chrono::Utc::now().format("%Y%m%d%H%M%S")),
        control,
        retry_for: Duration::from_secs(args.retry_for),
    };
    tracing::info!(
        rate = args.rate,
        seed,
        ingress = ?args.ingress,
        controlled = !args.control_endpoints.is_empty(),
        "generator started"
    );
    let client = Client::with_ingresses(&args.ingress);
    let report = keel_generator::run(client, &participants, options, stop).await?;
    tracing::info!(
        legs_sent = report.legs_sent,
        legs_accepted = report.legs_accepted,
        legs_refused = report.legs_refused,
        legs_failed = report.legs_failed,
        redirects = report.redirects,
        retries = report.retries,
        throttled = report.throttled,
        paused_seconds = report.paused.as_secs_f64(),
        trades = ?report.trades,
        ack_p50_ms = report.percentile(0.5),
        ack_p99_ms = report.percentile(0.99),
        seconds = report.elapsed.as_secs_f64(),
        "generator stopped"
    );
    Ok(())
}
