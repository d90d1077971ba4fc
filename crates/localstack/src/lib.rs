//! The local stack's parts, in Rust: what `make up`, `make down`, `make test`'s harness and the
//! runbook's local database operations start and stop, through the same code.
//!
//! - [`postgres::Cluster`]: a Postgres cluster: primary, standby, rebuild, promote, stop, crash;
//! - [`credentials`]: the clusters' password (scram), kept under the state folder;
//! - [`services::Broker`], [`services::Moto`]: a region's nisshi broker, the DynamoDB endpoint;
//! - [`process`]: processes by pid (pidfiles, process groups, SIGTERM then SIGKILL);
//! - [`launch`]: how each Keel process is started (the services, the ARC endpoints);
//! - [`layout`]: the local stack as the configuration and the topology lay it out;
//! - [`prometheus`]: Prometheus's configuration, from the layout, with the repository's alert rules;
//! - [`supervisor`]: keeps processes running, restarting one that exits, and says so;
//! - [`stack`]: `make up` and `make down`;
//! - `keel-local` (src/bin): the command line over them.

pub mod credentials;
pub mod launch;
pub mod layout;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod services;
pub mod stack;
pub mod supervisor;
pub mod tools;

use std::time::Duration;

pub use postgres::Cluster;
pub use tools::Tools;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
    #[error("nothing listens on 127.0.0.1:{port} after {timeout:?}")]
    NotListening { port: u16, timeout: Duration },
}
