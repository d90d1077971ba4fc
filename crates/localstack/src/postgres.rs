//! One local PostgreSQL 15 cluster: a primary, or a physical streaming standby of one, in its own
//! folder on 127.0.0.1:`port`, run as a non-root user when started as root. What `make up`, the
//! test harness and the runbook's local database operations (stop, rebuild as a standby) use.

use std::path::PathBuf;
use std::process::{Command, Output};

use nix::unistd::geteuid;

use crate::credentials;
use crate::process::{self, alive};
use crate::tools::Tools;
use crate::LocalError;

/// The primary's settings, appended to a fresh cluster's postgresql.conf.
fn primary_settings(port: u16, run: &str, shared_buffers: &str) -> String {
    format!(
        "
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{run}'
max_connections = 300
shared_buffers = {shared_buffers}
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = lz4
# Large values (a trade's state with both legs) are compressed with lz4 rather than pglz: several
# times cheaper in CPU for about the same size (docs/decisions.md).
default_toast_compression = lz4
wal_level = replica
max_wal_senders = 10
fsync = on
synchronous_commit = local
hot_standby = on
wal_keep_size = 1GB
logging_collector = off
# Statement statistics, for finding where the database's time goes.
shared_preload_libraries = 'pg_stat_statements'
"
    )
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    /// `shared_buffers` of a fresh primary (the local stack's 512MB; tests use less).
    pub shared_buffers: String,
}

impl Cluster {
    pub fn new(dir: impl Into<PathBuf>, port: u16) -> Cluster {
        Cluster {
            dir: dir.into(),
            port,
            shared_buffers: "512MB".to_owned(),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// A Postgres binary, as the Postgres user.
    /// With the local password file, for the clients (psql, pg_basebackup) and for a standby's
    /// WAL receiver, which the server starts.
    fn pg(&self, tools: &Tools, program: &str) -> Command {
        let binary = tools.pg_bin.join(program);
        let mut command = if geteuid().is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", &tools.pg_user, "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        command.env("PGPASSFILE", credentials::pgpass_file());
        command
    }

    /// Turns a cluster made before passwords were required (trust) into one that requires them:
    /// the role gets the local password (on a primary), then every `trust` line of pg_hba.conf
    /// becomes scram-sha-256 and the server reloads it. Nothing to do on a cluster made since.
    fn require_passwords(&self, tools: &Tools, primary: bool) -> Result<(), LocalError> {
        let hba = self.data().join("pg_hba.conf");
        let Ok(text) = std::fs::read_to_string(&hba) else {
            return Ok(());
        };
        let trusting = |line: &str| {
            !line.trim_start().starts_with('#') && line.split_whitespace().last() == Some("trust")
        };
        if !text.lines().any(trusting) {
            return Ok(());
        }
        if primary {
            let password = credentials::password().ok_or_else(|| LocalError::Failed {
                what: "requiring passwords".to_owned(),
                detail: "no local password was made".to_owned(),
            })?;
            self.psql(
                tools,
                self.port,
                &format!("ALTER ROLE keel PASSWORD '{password}'"),
            )?;
        }
        let hardened: String = text
            .lines()
            .map(|line| match line.rsplit_once("trust") {
                Some((head, "")) if trusting(line) => format!("{head}scram-sha-256\n"),
                _ => format!("{line}\n"),
            })
            .collect();
        std::fs::write(&hba, hardened).map_err(|source| LocalError::Io {
            what: format!("writing {}", hba.display()),
            source,
        })?;
        self.run(
            "pg_ctl reload",
            self.pg(tools, "pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("reload"),
        )?;
        Ok(())
    }

    fn run(&self, what: &str, command: &mut Command) -> Result<Output, LocalError> {
        let output = command.output().map_err(|source| LocalError::Io {
            what: format!("running {what}"),
            source,
        })?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(LocalError::Failed {
                what: format!("{what} ({})", self.dir.display()),
                detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// A folder the Postgres user owns.
    fn own_dir(&self, tools: &Tools, dir: &PathBuf) -> Result<(), LocalError> {
        std::fs::create_dir_all(dir).map_err(|source| LocalError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        credentials::give_to_postgres_user(tools, dir)
    }

    /// The postmaster's pid, from its pid file.
    pub fn postmaster(&self) -> Option<i32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the cluster runs.
    pub fn running(&self) -> bool {
        self.postmaster().is_some_and(alive)
    }

    /// A postmaster killed outright stays a zombie until something reaps it, and both pg_ctl and
    /// Postgres take a zombie's pid in their lock files for a running server: the lock files of a
    /// dead or zombie process are stale, and removed.
    fn clear_dead_lock(&self) {
        let mut locks = vec![self.data().join("postmaster.pid")];
        if let Ok(entries) = std::fs::read_dir(self.run_dir()) {
            locks.extend(
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "lock")),
            );
        }
        for lock in locks {
            let pid = std::fs::read_to_string(&lock)
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                if !alive(pid) {
                    let _ = std::fs::remove_file(&lock);
                    if let Some(socket) = lock.to_str().and_then(|l| l.strip_suffix(".lock")) {
                        let _ = std::fs::remove_file(socket);
                    }
                }
            }
        }
    }

    fn start_server(&self, tools: &Tools) -> Result<(), LocalError> {
        self.clear_dead_lock();
        if self.running() {
            return Ok(());
        }
        let log = self.dir.join("postgres.log");
        self.run(
            "pg_ctl start",
            self.pg(tools, "pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]),
        )?;
        Ok(())
    }

    fn psql(&self, tools: &Tools, port: u16, sql: &str) -> Result<String, LocalError> {
        let output = self.run(
            "psql",
            self.pg(tools, "psql")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-U", "keel", "-d", "postgres", "-qtAc", sql]),
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Starts the cluster as a primary (creating it if it does not exist), with these databases.
    pub fn start(&self, tools: &Tools, databases: &[&str]) -> Result<(), LocalError> {
        self.own_dir(tools, &self.dir)?;
        credentials::ensure(tools)?;
        if !self.data().join("PG_VERSION").exists() {
            let initdb = self.run(
                "initdb",
                self.pg(tools, "initdb")
                    .arg("-D")
                    .arg(self.data())
                    .args(["-U", "keel", "--auth=scram-sha-256", "-E", "UTF8"])
                    .arg(format!(
                        "--pwfile={}",
                        credentials::password_file().display()
                    )),
            )?;
            let _ = std::fs::write(self.dir.join("initdb.log"), initdb.stdout);
            self.own_dir(tools, &self.run_dir())?;
            append(
                &self.data().join("postgresql.conf"),
                &primary_settings(
                    self.port,
                    &self.run_dir().to_string_lossy(),
                    &self.shared_buffers,
                ),
            )?;
        }
        self.start_server(tools)?;
        self.require_passwords(tools, true)?;
        for database in databases {
            let exists = self.psql(
                tools,
                self.port,
                &format!("SELECT 1 FROM pg_database WHERE datname = '{database}'"),
            )?;
            if exists != "1" {
                self.run(
                    "createdb",
                    self.pg(tools, "createdb")
                        .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                        .args(["-U", "keel", database]),
                )?;
            }
        }
        Ok(())
    }

    /// Starts the cluster as a streaming standby of the primary on `primary_port` (cloning it with
    /// pg_basebackup if it does not exist), replicating as `name`; the primary lists `name` in
    /// synchronous_standby_names, so a transaction that sets synchronous_commit=on waits for it
    /// (others commit locally: synchronous_commit=local is the clusters' default).
    pub fn start_standby(
        &self,
        tools: &Tools,
        primary_port: u16,
        name: &str,
    ) -> Result<(), LocalError> {
        self.own_dir(tools, &self.dir)?;
        credentials::ensure(tools)?;
        if !self.data().join("PG_VERSION").exists() {
            let backup = self.run(
                "pg_basebackup",
                self.pg(tools, "pg_basebackup")
                    .args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
                    .args(["-U", "keel", "-D"])
                    .arg(self.data())
                    .args(["-X", "stream", "--checkpoint=fast", "-R"])
                    .args(["-d", &format!("application_name={name}")]),
            )?;
            let _ = std::fs::write(self.dir.join("basebackup.log"), backup.stderr);
            self.own_dir(tools, &self.run_dir())?;
            append(
                &self.data().join("postgresql.conf"),
                &format!(
                    "\nport = {}\nunix_socket_directories = '{}'\n",
                    self.port,
                    self.run_dir().display()
                ),
            )?;
        }
        self.start_server(tools)?;
        self.require_passwords(tools, false)?;
        self.psql(
            tools,
            primary_port,
            &format!("ALTER SYSTEM SET synchronous_standby_names = '\"{name}\"'"),
        )?;
        self.psql(tools, primary_port, "SELECT pg_reload_conf()")?;
        Ok(())
    }

    /// Rebuilds the cluster (a former primary, say) as a standby of `primary_port`: stops it, keeps
    /// its data as `data.replaced` (it may hold writes the new primary never got; the one kept
    /// before is removed) and clones it again.
    pub fn rebuild_as_standby(
        &self,
        tools: &Tools,
        primary_port: u16,
        name: &str,
    ) -> Result<(), LocalError> {
        self.stop(tools)?;
        if self.running() {
            return Err(LocalError::Failed {
                what: format!("rebuilding {}", self.dir.display()),
                detail: "the cluster still runs".to_owned(),
            });
        }
        let replaced = self.dir.join("data.replaced");
        if self.data().exists() {
            let _ = std::fs::remove_dir_all(&replaced);
            std::fs::rename(self.data(), &replaced).map_err(|source| LocalError::Io {
                what: format!("keeping {} as data.replaced", self.data().display()),
                source,
            })?;
        }
        self.start_standby(tools, primary_port, name)
    }

    /// Makes a standby a primary.
    pub fn promote(&self, tools: &Tools) -> Result<(), LocalError> {
        self.run(
            "pg_ctl promote",
            self.pg(tools, "pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-w", "-t", "60", "promote"]),
        )?;
        Ok(())
    }

    /// A fast shutdown: sessions are cut, and every standby is sent the WAL up to the shutdown
    /// checkpoint first. Nothing to do when it does not run.
    pub fn stop(&self, tools: &Tools) -> Result<(), LocalError> {
        self.clear_dead_lock();
        if !self.running() {
            return Ok(());
        }
        self.run(
            "pg_ctl stop",
            self.pg(tools, "pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
        )?;
        Ok(())
    }

    /// SIGKILL of the postmaster, then of every process it started: the database is lost as in a
    /// crash.
    pub fn crash(&self) {
        if let Some(postmaster) = self.postmaster() {
            // The postmaster first, so it cannot restart its children.
            let backends = process::children(postmaster);
            process::crash(postmaster);
            for backend in backends.into_iter().chain(process::children(postmaster)) {
                process::crash(backend);
            }
        }
    }
}

fn append(file: &PathBuf, text: &str) -> Result<(), LocalError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| LocalError::Io {
            what: format!("writing {}", file.display()),
            source,
        })
}
