//! How each Keel process is started: one place for `make up`'s supervisor and the test harness.

use std::path::Path;
use std::process::Command;

use keel_routing::App;
use keel_topology::{Kind, Service};

/// A service of the topology in `region`, its ops listener (`/healthz`, `/readyz`, `/metrics`) on
/// `ops_port` and, for the API, the participants' listener on `api_port`: the two are apart, so
/// nothing operational is reachable where participants are. Its configuration comes from
/// `KEEL_CONFIG` and `KEEL_*` (the caller's environment, and what it adds).
pub fn service(
    bin_dir: &Path,
    service: &Service,
    region: &str,
    ops_port: u16,
    api_port: Option<u16>,
) -> Command {
    let mut command = Command::new(bin_dir.join(format!("keel-{}", service.name)));
    command
        .env("KEEL_REGION", region)
        .env("KEEL_OPS_LISTEN", format!("127.0.0.1:{ops_port}"));
    if let (Kind::Api, Some(port)) = (service.kind, api_port) {
        command.env("KEEL_LISTEN", format!("127.0.0.1:{port}"));
    }
    command
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
