//! Keel's side of Route 53 ARC (DESIGN section 5).
//!
//! - [`ArcClient`]: reads and changes routing controls with the real `aws-sdk-route53recoverycluster`,
//!   trying each cluster endpoint in turn (starting from the last one that answered), as AWS advises:
//!   any one endpoint may be down, the cluster is up while one answers.
//! - [`watch`]: polls every control on an interval, and tells a service whether its gate is open.
//!   A service whose controls cannot be read for longer than `fence_after_ms` is fenced: it treats
//!   every gate as closed.

mod client;
mod watcher;

pub use client::{ArcClient, ArcError, RoutingControl};
pub use watcher::{watch, Fence, Reading};

use serde::{Deserialize, Serialize};

/// The `[control]` table of every service's configuration, and keelctl's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlConfig {
    /// The ARC cluster's endpoints, tried in turn: each a URL (signed for `signing_region`), or
    /// `{ url, region }` as the cluster lists them (each signed for its own region, as AWS asks).
    pub endpoints: Vec<Endpoint>,
    /// The region a plain-URL endpoint's requests are signed for.
    pub signing_region: String,
    /// Where the client's credentials come from (`chain`: aws-config's; `local`: the stand-ins').
    pub credentials: keel_aws::CredentialSource,
    /// How long one endpoint gets to answer before the next is tried.
    pub request_timeout_ms: u64,
    /// How often a service reads its routing controls.
    pub poll_interval_ms: u64,
    /// How long a service goes on after its last successful read before it fences itself.
    pub fence_after_ms: u64,
}

/// One endpoint of the ARC cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Endpoint {
    Url(String),
    InRegion { url: String, region: String },
}

impl Endpoint {
    pub fn url(&self) -> &str {
        match self {
            Endpoint::Url(url) | Endpoint::InRegion { url, .. } => url,
        }
    }

    /// The region its requests are signed for.
    pub fn region<'a>(&'a self, signing_region: &'a str) -> &'a str {
        match self {
            Endpoint::Url(_) => signing_region,
            Endpoint::InRegion { region, .. } => region,
        }
    }
}

impl From<String> for Endpoint {
    fn from(url: String) -> Self {
        Endpoint::Url(url)
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            endpoints: ["18301", "18302", "18303"]
                .map(|port| Endpoint::from(format!("http://127.0.0.1:{port}")))
                .to_vec(),
            signing_region: "us-west-2".to_owned(),
            credentials: keel_aws::CredentialSource::default(),
            request_timeout_ms: 1_000,
            poll_interval_ms: 500,
            fence_after_ms: 5_000,
        }
    }
}
