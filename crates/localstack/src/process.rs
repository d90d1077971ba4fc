//! Processes by pid: started in a process group of their own (a terminal's Ctrl-C reaches only the
//! command that started them), remembered in pidfiles, stopped by pid (SIGTERM, then SIGKILL after
//! a grace period). Never by name or pattern.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::LocalError;

/// Whether `pid` is a live process (a zombie, killed and not yet reaped, is not).
pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// The live children of `pid`, read from /proc.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// SIGTERM, then SIGKILL if it still runs after `grace`.
pub fn stop(pid: i32, grace: Duration) {
    if kill(Pid::from_raw(pid), Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// SIGKILL, as a crash.
pub fn crash(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Starts `command` in a process group of its own, its output appended to `log`.
pub fn spawn(command: &mut Command, log: &Path) -> Result<Child, LocalError> {
    let io = |source| LocalError::Io {
        what: format!("opening {}", log.display()),
        source,
    };
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| LocalError::Io {
            what: format!("starting {:?}", command.get_program()),
            source,
        })
}

/// A file holding a process's pid.
#[derive(Debug, Clone)]
pub struct Pidfile(pub PathBuf);

impl Pidfile {
    pub fn read(&self) -> Option<i32> {
        std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()
    }

    /// The pid, if that process runs.
    pub fn running(&self) -> Option<i32> {
        self.read().filter(|pid| alive(*pid))
    }

    pub fn write(&self, pid: u32) -> Result<(), LocalError> {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&self.0, pid.to_string()).map_err(|source| LocalError::Io {
            what: format!("writing {}", self.0.display()),
            source,
        })
    }

    /// Stops the process it names (if it runs) and removes the file.
    pub fn stop(&self, grace: Duration) {
        if let Some(pid) = self.running() {
            stop(pid, grace);
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LocalError::NotListening { port, timeout });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_alive_until_it_is_stopped_and_its_children_are_found() {
        let dir = std::env::temp_dir().join(format!("keel-process-{}", std::process::id()));
        let mut child = spawn(Command::new("sleep").arg("30"), &dir.join("sleep.log")).unwrap();
        let pid = child.id() as i32;
        assert!(alive(pid));
        assert!(children(std::process::id() as i32).contains(&pid));
        let pidfile = Pidfile(dir.join("sleep.pid"));
        pidfile.write(child.id()).unwrap();
        assert_eq!(pidfile.running(), Some(pid));
        pidfile.stop(Duration::from_secs(5));
        let _ = child.wait();
        assert!(!alive(pid));
        assert_eq!(pidfile.read(), None, "the pidfile is removed");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
