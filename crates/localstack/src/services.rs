//! The other local servers: the nisshi broker of a region and the moto DynamoDB endpoint, each
//! started in the background with a pidfile in its folder, and stopped by that pid.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{self, Pidfile};
use crate::tools::Tools;
use crate::LocalError;

/// One nisshi broker on 127.0.0.1:`port`, its log kept in `storage`: `postgres://…/DATABASE` (the
/// database must exist; nisshi creates its tables) or `sqlite://data/nisshi.db` (relative to `dir`).
#[derive(Debug, Clone)]
pub struct Broker {
    pub dir: PathBuf,
    pub port: u16,
    pub storage: String,
    pub cluster_id: String,
}

impl Broker {
    /// The command that runs it (in its folder: nisshi reads a .env file in its working directory
    /// and resolves sqlite paths against it).
    pub fn command(&self, tools: &Tools) -> Command {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&tools.nisshi);
        command
            .current_dir(&self.dir)
            .args(["broker", "--cluster-id", &self.cluster_id])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // In its environment, not its arguments: the URL carries the local password.
            .env("STORAGE_ENGINE", crate::credentials::with_password(&self.storage));
        command
    }

    pub fn prepare(&self) -> Result<(), LocalError> {
        std::fs::create_dir_all(self.dir.join("data")).map_err(|source| LocalError::Io {
            what: format!("creating {}", self.dir.display()),
            source,
        })
    }
}

/// The local DynamoDB endpoint (moto_server): tables in memory, lasting until it stops.
#[derive(Debug, Clone)]
pub struct Moto {
    pub dir: PathBuf,
    pub port: u16,
}

impl Moto {
    fn pidfile(&self) -> Pidfile {
        Pidfile(self.dir.join("moto.pid"))
    }

    /// Starts it unless it runs, and waits until it listens.
    pub fn start(&self, tools: &Tools) -> Result<(), LocalError> {
        if self.pidfile().running().is_none() {
            let child = process::spawn(
                Command::new(&tools.moto).args(["-H", "127.0.0.1", "-p", &self.port.to_string()]),
                &self.dir.join("moto.log"),
            )?;
            self.pidfile().write(child.id())?;
        }
        process::wait_for_port(self.port, Duration::from_secs(30))
    }

    pub fn stop(&self) {
        self.pidfile().stop(Duration::from_secs(5));
    }
}
