//! `keelctl` against a stack: its configuration and controls, run by the local registry's
//! operator (`deploy/local/config/operators.toml`) unless a test says otherwise.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::machine::bin_dir;
use crate::stack::Stack;

/// Who runs keelctl.
#[derive(Debug, Clone, Copy)]
pub enum Signed<'a> {
    /// An operator of the registry and the password given.
    As { name: &'a str, password: &'a str },
    /// Nobody: no `KEEL_OPERATOR`, no password.
    Anonymous,
}

/// The local registry's operator.
pub const OPERATOR: Signed<'static> = Signed::As {
    name: "ops",
    password: "keel-local-operator",
};

/// The local registry's viewer.
pub const VIEWER: Signed<'static> = Signed::As {
    name: "viewer",
    password: "keel-local-viewer",
};

impl Stack {
    /// `keelctl` with these arguments against this stack (its configuration and controls), run by
    /// the local registry's operator.
    fn keelctl_command(&self, args: &[&str]) -> Command {
        self.keelctl_command_as(OPERATOR, args)
    }

    fn keelctl_command_as(&self, who: Signed<'_>, args: &[&str]) -> Command {
        let mut command = Command::new(bin_dir(self.options.release).join("keelctl"));
        command.args(args).env("KEEL_CONFIG", &self.config_file);
        match who {
            Signed::As { name, password } => command
                .env("KEEL_OPERATOR", name)
                .env("KEEL_OPERATOR_PASSWORD", password),
            Signed::Anonymous => command
                .env_remove("KEEL_OPERATOR")
                .env_remove("KEEL_OPERATOR_PASSWORD"),
        };
        command.stdin(Stdio::null());
        command
    }

    /// Runs `keelctl` with `extra` read after the stack's configuration (it overrides what it
    /// names), as nobody: for an identity that is not a name and password.
    pub fn keelctl_with_config(
        &self,
        extra: &std::path::Path,
        args: &[&str],
    ) -> std::process::Output {
        let mut command = self.keelctl_command_as(Signed::Anonymous, args);
        command.env(
            "KEEL_CONFIG",
            format!("{}:{}", self.config_file.display(), extra.display()),
        );
        command
            .output()
            .unwrap_or_else(|e| panic!("running keelctl: {e}"))
    }

    /// Runs `keelctl` as `who`, with these arguments against this stack.
    pub fn keelctl_as(&self, who: Signed<'_>, args: &[&str]) -> std::process::Output {
        self.keelctl_command_as(who, args)
            .output()
            .unwrap_or_else(|e| panic!("running keelctl: {e}"))
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

    /// Starts `keelctl` with these arguments in the background on the test's runtime, its output
    /// appended to the stack's `logs/keelctl.log` (the caller waits for it or kills it).
    pub fn spawn_keelctl_async(&self, args: &[&str]) -> tokio::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/keelctl.log"))
            .expect("the stack's log folder");
        let mut command = tokio::process::Command::from(self.keelctl_command(args));
        command
            .stdout(log.try_clone().expect("a log file handle"))
            .stderr(log)
            .kill_on_drop(true)
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
