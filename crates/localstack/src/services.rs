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
    /// The port clients are told to reach it at, when that is not its own: a relay in front of
    /// it (the chaos suite's network), or a second broker on the same log serving another
    /// region's clients through their own relay.
    pub advertised_port: Option<u16>,
}

impl Broker {
    /// The command that runs it (in its folder: nisshi reads a .env file in its working directory
    /// and resolves sqlite paths against it).
    pub fn command(&self, tools: &Tools) -> Command {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!(
            "tcp://127.0.0.1:{}",
            self.advertised_port.unwrap_or(self.port)
        );
        let mut command = Command::new(&tools.nisshi);
        command
            .current_dir(&self.dir)
            .args(["broker", "--cluster-id", &self.cluster_id])
            .args(["--listener-url", &url, "--advertised-listener-url", &advertised])
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

/// The local DynamoDB endpoint (moto_server). moto keeps its tables in memory; a durable one also
/// appends every request it serves to `recording.jsonl` in its folder (moto's recorder) and, when
/// it starts again, replays that file before it records anew, so its tables outlive a crash as a
/// real DynamoDB's would. Requests that arrive while it replays are served but not recorded: its
/// clients must be held off meanwhile (the chaos harness drops their packets).
#[derive(Debug, Clone)]
pub struct Moto {
    pub dir: PathBuf,
    pub port: u16,
    pub durable: bool,
}

impl Moto {
    fn pidfile(&self) -> Pidfile {
        Pidfile(self.dir.join("moto.pid"))
    }

    fn recording(&self) -> PathBuf {
        self.dir.join("recording.jsonl")
    }

    /// Starts it unless it runs, and waits until it listens (and, durable, has its tables back).
    pub fn start(&self, tools: &Tools) -> Result<(), LocalError> {
        if self.pidfile().running().is_some() {
            return process::wait_for_port(self.port, Duration::from_secs(30));
        }
        let mut command = Command::new(&tools.moto);
        command.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.durable {
            std::fs::create_dir_all(&self.dir).map_err(|source| LocalError::Io {
                what: format!("creating {}", self.dir.display()),
                source,
            })?;
            complete_lines_only(&self.recording())?;
            command.env("MOTO_RECORDER_FILEPATH", self.recording());
        }
        let child = process::spawn(&mut command, &self.dir.join("moto.log"))?;
        self.pidfile().write(child.id())?;
        process::wait_for_port(self.port, Duration::from_secs(30))?;
        if self.durable {
            let recorded = std::fs::metadata(self.recording()).is_ok_and(|m| m.len() > 0);
            if recorded {
                self.recorder("replay-recording", Duration::from_secs(600))?;
            }
            self.recorder("start-recording", Duration::from_secs(30))?;
        }
        Ok(())
    }

    pub fn stop(&self) {
        self.pidfile().stop(Duration::from_secs(5));
    }

    pub fn pid(&self) -> Option<i32> {
        self.pidfile().running()
    }

    /// SIGKILL, as a crash: a durable one loses at most the request it was serving.
    pub fn crash(&self) {
        if let Some(pid) = self.pidfile().running() {
            process::crash(pid);
            while process::alive(pid) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// POST /moto-api/recorder/`action`, which must answer 200 within `bound`.
    fn recorder(&self, action: &str, bound: Duration) -> Result<(), LocalError> {
        let failed = |detail: String| LocalError::Failed {
            what: format!("moto's recorder ({action}) on 127.0.0.1:{}", self.port),
            detail,
        };
        let status = post(self.port, &format!("/moto-api/recorder/{action}"), bound)
            .map_err(|e| failed(e.to_string()))?;
        if status != 200 {
            return Err(failed(format!(
                "answered {status}: see {}",
                self.dir.join("moto.log").display()
            )));
        }
        Ok(())
    }
}

/// Keeps only a recording's whole requests: a crash mid-write leaves half a line at its end (and
/// a long request written in pieces while another was written may leave one in the middle), and
/// moto's replay stops at the first line it cannot read, with recording left off for good.
fn complete_lines_only(recording: &std::path::Path) -> Result<(), LocalError> {
    let Ok(text) = std::fs::read(recording) else {
        return Ok(());
    };
    let mut kept = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|b| *b == b'\n') {
        let whole =
            line.ends_with(b"\n") && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok();
        if whole {
            kept.extend_from_slice(line);
        }
    }
    if kept.len() < text.len() {
        std::fs::write(recording, &kept).map_err(|source| LocalError::Io {
            what: format!("keeping {}'s whole lines", recording.display()),
            source,
        })?;
    }
    Ok(())
}

/// A bodiless HTTP POST to loopback; the status code. (The local tools are synchronous, and may
/// be called from within a runtime, where a blocking HTTP client may not run.)
fn post(port: u16, path: &str, bound: Duration) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(bound))?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:.80}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_keeps_only_its_whole_requests() {
        let dir = std::env::temp_dir().join(format!("keel-moto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("recording.jsonl");
        for (written, kept) in [
            ("{\"a\":1}\n{\"b\":2}\n", "{\"a\":1}\n{\"b\":2}\n"),
            ("{\"a\":1}\n{\"b\":", "{\"a\":1}\n"),
            ("{\"a\":1}\n{\"b\"\n", "{\"a\":1}\n"),
            ("{\"a\"", ""),
            ("{\"a\":1}\n{\"b\n{\"c\":3}\n", "{\"a\":1}\n{\"c\":3}\n"),
        ] {
            std::fs::write(&file, written).unwrap();
            complete_lines_only(&file).unwrap();
            assert_eq!(std::fs::read_to_string(&file).unwrap(), kept, "{written:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
