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

pub use client::{aws_credentials, ArcClient, ArcError, RoutingControl};
pub use watcher::{watch, Fence, Reading};

use serde::{Deserialize, Serialize};

/// The `[control]` table of every service's configuration, and keelctl's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlConfig {
    /// The ARC cluster's endpoints, tried in turn.
    pub endpoints: Vec<String>,
    /// The region requests are signed for (any region; the cluster is global).
    pub signing_region: String,
    /// How long one endpoint gets to answer before the next is tried.
    pub request_timeout_ms: u64,
    /// How often a service reads its routing controls.
    pub poll_interval_ms: u64,
    /// How long a service goes on after its last successful read before it fences itself.
    pub fence_after_ms: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            endpoints: vec![
                "http://127.0.0.1:18301".to_owned(),
                "http://127.0.0.1:18302".to_owned(),
                "http://127.0.0.1:18303".to_owned(),
            ],
            signing_region: "us-west-2".to_owned(),
            request_timeout_ms: 1_000,
            poll_interval_ms: 500,
            fence_after_ms: 5_000,
        }
    }
}
