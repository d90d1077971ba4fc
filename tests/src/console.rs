//! The console (keel-console) against a stack: started on a port of its own with the stack's
//! configuration, stopped when its guard is dropped.

use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::machine::{bin_dir, free_port, register_child, wait_until_port};
use crate::stack::Stack;

/// A running console; dropping it stops it.
pub struct Console {
    pub url: String,
    child: Child,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stack {
    /// Starts the console over this stack (its regions, controls, runbook store and the local
    /// operator registry), refreshing every `refresh`.
    pub async fn start_console(&self, refresh: Duration) -> anyhow::Result<Console> {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/console.log"))?;
        let child = std::process::Command::new(bin_dir(self.options.release).join("keel-console"))
            .env("KEEL_CONFIG", &self.config_file)
            .env("KEEL_CONSOLE__LISTEN", format!("127.0.0.1:{port}"))
            .env("KEEL_CONSOLE__REFRESH_MS", refresh.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting keel-console")?;
        register_child(&child);
        let console = Console {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        wait_until_port(port, Duration::from_secs(30)).await?;
        Ok(console)
    }
}
