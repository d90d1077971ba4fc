//! keel-arc-endpoint: one endpoint of the local Route 53 ARC cluster (DESIGN section 5). Run several,
//! each on its own port and all on the same `--state` file: they answer from and change one durable
//! state, as a real cluster's regional endpoints do, and any of them can be killed.

mod api;
mod cluster;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::routing::{get, post};
use clap::Parser;
use keel_routing::App;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where this endpoint listens.
    #[arg(long, env = "KEEL_ARC_LISTEN", default_value = "127.0.0.1:18301")]
    listen: SocketAddr,
    /// The cluster's state file, shared by every endpoint of the cluster; created on first start.
    #[arg(long, env = "KEEL_ARC_STATE")]
    state: PathBuf,
    /// The regions, comma separated; used only when the state file is created.
    #[arg(
        long,
        env = "KEEL_ARC_REGIONS",
        value_delimiter = ',',
        default_value = "us-east-1,us-west-2"
    )]
    regions: Vec<String>,
    /// Where each application starts active, as APP=REGION (default: every application in the first
    /// region); used only when the state file is created.
    #[arg(long = "active", value_parser = parse_active)]
    active: Vec<(App, String)>,
}

fn parse_active(value: &str) -> Result<(App, String), String> {
    let (app, region) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} is not APP=REGION"))?;
    let app = App::from_name(app).ok_or_else(|| {
        format!("unknown application {app:?} (one of trade-matching, settlement)")
    })?;
    Ok((app, region.to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = keel_platform::telemetry::init("arc-endpoint");
    let shutdown = keel_platform::shutdown::on_signal();
    let mut active: BTreeMap<App, String> = App::ALL
        .into_iter()
        .map(|app| (app, args.regions[0].clone()))
        .collect();
    for (app, region) in &args.active {
        anyhow::ensure!(
            args.regions.contains(region),
            "--active {app}={region}: {region} is not one of --regions"
        );
        active.insert(*app, region.clone());
    }
    let state = cluster::SharedState::open(&args.state, || {
        cluster::Cluster::new(&args.regions, &active)
    })
    .with_context(|| format!("opening the cluster state {}", args.state.display()))?;

    let router = axum::Router::new()
        .route("/", post(api::handle))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, state = %args.state.display(), "ARC endpoint up");
    keel_platform::ops::serve(listener, router, shutdown).await?;
    Ok(())
}
