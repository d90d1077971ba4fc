//! Keeps Keel's processes running: starts each, notices when one exits, says so, and starts it
//! again (at once if it had run a while, after a growing pause if it keeps failing at start).
//! Stops them in their order: what takes work in first (the generator), then the services (they
//! drain), then the brokers and the ARC endpoints.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::process::{self, Pidfile};
use crate::LocalError;

/// When a process is stopped: lower first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopOrder {
    Load,
    Service,
    Broker,
    Control,
}

/// How long a process must have run for its exit to count as a crash, not a failure to start.
const SETTLED: Duration = Duration::from_secs(10);
const MOST_PAUSE: Duration = Duration::from_secs(30);

struct Supervised {
    name: String,
    command: Box<dyn Fn() -> Command + Send>,
    log: PathBuf,
    order: StopOrder,
    child: Option<Child>,
    started: Instant,
    restarts: u32,
    pause: Duration,
    restart_at: Option<Instant>,
}

pub struct Supervisor {
    children: Vec<Supervised>,
    pids: PathBuf,
    /// Where the supervisor says what it does.
    say: Box<dyn Fn(&str) + Send>,
}

impl Supervisor {
    pub fn new(pids: PathBuf, say: impl Fn(&str) + Send + 'static) -> Supervisor {
        Supervisor {
            children: Vec::new(),
            pids,
            say: Box::new(say),
        }
    }

    fn pidfile(&self, name: &str) -> Pidfile {
        Pidfile(self.pids.join(format!("{name}.pid")))
    }

    /// Starts a process to keep running; `command` makes its command each time it starts.
    pub fn start(
        &mut self,
        name: &str,
        order: StopOrder,
        log: PathBuf,
        command: impl Fn() -> Command + Send + 'static,
    ) -> Result<u32, LocalError> {
        // One left by a supervisor that was itself killed: stopped, so the port is free.
        self.pidfile(name).stop(Duration::from_secs(10));
        let child = process::spawn(&mut command(), &log)?;
        let pid = child.id();
        self.pidfile(name).write(pid)?;
        self.children.push(Supervised {
            name: name.to_owned(),
            command: Box::new(command),
            log,
            order,
            child: Some(child),
            started: Instant::now(),
            restarts: 0,
            pause: Duration::from_secs(1),
            restart_at: None,
        });
        Ok(pid)
    }

    /// Looks at every process once: one that exited is reported and started again when due.
    pub fn tend(&mut self) {
        for index in 0..self.children.len() {
            let exited = {
                let supervised = &mut self.children[index];
                match supervised.child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    Some(Err(e)) => Some(format!("cannot be waited for: {e}")),
                    _ => None,
                }
            };
            if let Some(status) = exited {
                let supervised = &mut self.children[index];
                supervised.child = None;
                let ran = supervised.started.elapsed();
                let pause = if ran >= SETTLED {
                    supervised.pause = Duration::from_secs(1);
                    Duration::ZERO
                } else {
                    let pause = supervised.pause;
                    supervised.pause = (pause * 2).min(MOST_PAUSE);
                    pause
                };
                supervised.restart_at = Some(Instant::now() + pause);
                let message = format!(
                    "{} exited ({status}) after {:.1} s; restarting it{} (see {})",
                    supervised.name,
                    ran.as_secs_f64(),
                    if pause.is_zero() {
                        String::new()
                    } else {
                        format!(" in {} s", pause.as_secs())
                    },
                    supervised.log.display()
                );
                (self.say)(&message);
            }
            let due = self.children[index]
                .restart_at
                .is_some_and(|at| Instant::now() >= at);
            if due {
                self.restart(index);
            }
        }
    }

    fn restart(&mut self, index: usize) {
        let supervised = &mut self.children[index];
        supervised.restart_at = None;
        match process::spawn(&mut (supervised.command)(), &supervised.log) {
            Ok(child) => {
                supervised.restarts += 1;
                supervised.started = Instant::now();
                let pid = child.id();
                supervised.child = Some(child);
                let name = supervised.name.clone();
                let restarts = supervised.restarts;
                let _ = self.pidfile(&name).write(pid);
                (self.say)(&format!("{name} restarted (pid {pid}, restart {restarts})"));
            }
            Err(e) => {
                supervised.restart_at = Some(Instant::now() + supervised.pause);
                let message = format!("{} could not be restarted: {e}", supervised.name);
                (self.say)(&message);
            }
        }
    }

    /// Every process with its pid and restarts, in the order started.
    pub fn processes(&self) -> Vec<(String, Option<u32>, u32)> {
        self.children
            .iter()
            .map(|s| (s.name.clone(), s.child.as_ref().map(Child::id), s.restarts))
            .collect()
    }

    /// Stops everything, one order at a time: SIGTERM to each of that order, then waits for them
    /// (SIGKILL after `grace`).
    pub fn stop_all(&mut self, grace: Duration) {
        let mut orders: Vec<StopOrder> = self.children.iter().map(|s| s.order).collect();
        orders.sort();
        orders.dedup();
        for order in orders {
            let stopping: Vec<usize> = (0..self.children.len())
                .filter(|i| self.children[*i].order == order)
                .collect();
            for index in &stopping {
                if let Some(child) = &self.children[*index].child {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(child.id() as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            let deadline = Instant::now() + grace;
            for index in stopping {
                let name = self.children[index].name.clone();
                if let Some(mut child) = self.children[index].child.take() {
                    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if matches!(child.try_wait(), Ok(None)) {
                        (self.say)(&format!("{name} did not stop within {grace:?}; killed"));
                        let _ = child.kill();
                    }
                    let _ = child.wait();
                }
                let _ = std::fs::remove_file(self.pidfile(&name).0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn a_process_that_exits_is_reported_and_started_again_and_all_stop_in_order() {
        let dir = std::env::temp_dir().join(format!("keel-supervisor-{}", std::process::id()));
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut supervisor = Supervisor::new(dir.join("pids"), {
            let said = said.clone();
            move |line: &str| said.lock().unwrap().push(line.to_owned())
        });
        let first = supervisor
            .start(
                "sleeper",
                StopOrder::Service,
                dir.join("sleeper.log"),
                || {
                    let mut command = Command::new("sleep");
                    command.arg("30");
                    command
                },
            )
            .unwrap();
        // A crash, from outside.
        process::crash(first as i32);
        let deadline = Instant::now() + Duration::from_secs(10);
        while supervisor.processes()[0].2 == 0 && Instant::now() < deadline {
            supervisor.tend();
            std::thread::sleep(Duration::from_millis(50));
        }
        let (_, pid, restarts) = supervisor.processes()[0].clone();
        assert_eq!(restarts, 1);
        assert_ne!(pid, Some(first));
        let said = said.lock().unwrap().clone();
        assert!(said[0].starts_with("sleeper exited (signal: 9"), "{said:?}");
        assert!(said[1].starts_with("sleeper restarted"), "{said:?}");
        assert_eq!(
            Pidfile(dir.join("pids/sleeper.pid")).running(),
            pid.map(|p| p as i32)
        );
        supervisor.stop_all(Duration::from_secs(5));
        assert!(!process::alive(pid.unwrap() as i32));
        assert_eq!(Pidfile(dir.join("pids/sleeper.pid")).read(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
