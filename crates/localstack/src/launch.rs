//! How each Keel process is started: one place for `make up`'s supervisor and the test harness.

use std::path::Path;
use std::process::Command;

use keel_routing::App;
use keel_topology::{Kind, Service};

/// A service of the topology in `region`, listening on `port`: the API's listener for ingress, the
/// ops listener (`/healthz`, `/readyz`, `/metrics`) for a stage. Its configuration comes from
/// `KEEL_CONFIG` and `KEEL_*` (the caller's environment, and what it adds).
pub fn service(bin_dir: &Path, service: &Service, region: &str, port: u16) -> Command {
    let mut command = Command::new(bin_dir.join(format!("keel-{}", service.name)));
    command
        .env("KEEL_REGION", region)
        .env(listen_variable(service), format!("127.0.0.1:{port}"));
    command
}

/// Where a service is told its listener.
pub fn listen_variable(service: &Service) -> &'static str {
    match service.kind {
        Kind::Api => "KEEL_LISTEN",
        Kind::Stage => "KEEL_OPS_LISTEN",
    }
}

/// One endpoint of the local ARC cluster, sharing `state` with the others; a fresh state starts
/// each application active where `active` says.
pub fn arc_endpoint(
    bin_dir: &Path,
    port: u16,
    state: &Path,
    regions: &[String],
    active: &[(App, String)],
) -> Command {
    let mut command = Command::new(bin_dir.join("keel-arc-endpoint"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--state")
        .arg(state)
        .args(["--regions", &regions.join(",")]);
    for (app, region) in active {
        command.args(["--active", &format!("{app}={region}")]);
    }
    command
}
