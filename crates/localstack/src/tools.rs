//! Where the installed tools are. `deploy/local/bin/env.sh` decides (and `install.sh` installs
//! them); it exports these variables for `make`, and the defaults below are the same.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Tools {
    /// PostgreSQL 15's binaries (initdb, pg_ctl, pg_basebackup, psql, createdb).
    pub pg_bin: PathBuf,
    /// Postgres refuses to run as root: as root, its commands run as this user.
    pub pg_user: String,
    pub nisshi: PathBuf,
    pub moto: PathBuf,
    /// Debian's Prometheus.
    pub prometheus: PathBuf,
}

impl Tools {
    pub fn from_env() -> Tools {
        let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let home = var("HOME").unwrap_or_else(|| PathBuf::from("/root"));
        let cache = var("KEEL_CACHE").unwrap_or_else(|| home.join(".cache/keel"));
        let tools = var("KEEL_TOOLS").unwrap_or_else(|| cache.join("tools"));
        Tools {
            pg_bin: var("KEEL_PG_BIN").unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into()),
            pg_user: std::env::var("KEEL_PG_USER").unwrap_or_else(|_| "keel".to_owned()),
            nisshi: var("KEEL_NISSHI_BIN").unwrap_or_else(|| tools.join("bin/nisshi")),
            moto: var("KEEL_MOTO_BIN").unwrap_or_else(|| installed_moto(&tools)),
            prometheus: var("KEEL_PROMETHEUS_BIN").unwrap_or_else(|| "/usr/bin/prometheus".into()),
        }
    }
}

/// moto as install.sh installs it: `{tools}/moto-{version}/bin/moto_server` (the newest there).
fn installed_moto(tools: &std::path::Path) -> PathBuf {
    let mut installed: Vec<PathBuf> = std::fs::read_dir(tools)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("moto-"))
        })
        .collect();
    installed.sort();
    installed
        .pop()
        .unwrap_or_else(|| tools.join("moto"))
        .join("bin/moto_server")
}

/// Where the local stack keeps its run-time state: `KEEL_STATE`, else `/var/tmp/keel-{user}` (under
/// /var/tmp rather than in the clone, so the non-root Postgres user can reach its data).
pub fn state_dir() -> PathBuf {
    match std::env::var_os("KEEL_STATE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let uid = nix::unistd::geteuid();
            let user = nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |user| user.name);
            PathBuf::from(format!("/var/tmp/keel-{user}"))
        }
    }
}
