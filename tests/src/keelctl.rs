//! `keelctl` against a stack: its configuration and controls.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::machine::bin_dir;
use crate::stack::Stack;

impl Stack {
    /// `keelctl` with these arguments against this stack (its configuration and controls).
    fn keelctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin_dir(self.options.release).join("keelctl"));
        command.args(args).env("KEEL_CONFIG", &self.config_file);
        command
    }

    /// Runs `keelctl` as [`Stack::keelctl`] does, without blocking the test's runtime (a generator
    /// may run on it meanwhile), bounded by `timeout`; its progress (stderr) is passed through.
    pub async fn keelctl_async(&self, args: &[&str], timeout: Duration) -> std::process::Output {
        let mut command = tokio::process::Command::from(self.keelctl_command(args));
        let run = command
            .stderr(Stdio::inherit())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| panic!("keelctl {args:?} took longer than {timeout:?}"))
            .unwrap_or_else(|e| panic!("running keelctl: {e}"))
    }

    /// Starts `keelctl` with these arguments against this stack, in the background (the caller
    /// kills it).
    pub fn spawn_keelctl(&self, args: &[&str]) -> Child {
        self.keelctl_command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("running keelctl: {e}"))
    }

    /// Runs `keelctl` with these arguments against this stack (its configuration and controls).
    pub fn keelctl(&self, args: &[&str]) -> std::process::Output {
        self.keelctl_command(args)
            .output()
            .unwrap_or_else(|e| panic!("running keelctl: {e}"))
    }
}
