//! Moving an application's database between regions. Reading replication state and promoting go
//! through SQL, so they work on any Postgres that answers, whoever started it. Stopping a cluster
//! and rebuilding one as a standby need its files: locally keelctl runs the stack's own
//! `postgres.sh` on `{state_dir}/{region}/{tm|st}-postgres` (on AWS these are Aurora Global
//! Database operations; see deploy/terraform/README.md).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use keel_routing::App;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::Config;

pub struct Databases<'a> {
    config: &'a Config,
}

/// A cluster's place on disk and on the network.
struct Cluster {
    dir: PathBuf,
    port: u16,
    database: String,
}

impl<'a> Databases<'a> {
    pub fn new(config: &'a Config) -> Self {
        Databases { config }
    }

    pub async fn connect(
        &self,
        app: App,
        region: &str,
        timeout: Duration,
    ) -> Result<PgPool, String> {
        let url = self.config.database_url(app, region)?;
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect(url)
            .await
            .map_err(|e| format!("{app}'s database in {region}: {e}"))
    }

    fn cluster(&self, app: App, region: &str) -> Result<Cluster, String> {
        let url = self.config.database_url(app, region)?;
        let options = PgConnectOptions::from_str(url).map_err(|e| format!("{url}: {e}"))?;
        let state_dir = match self.config.runbook.state_dir.as_str() {
            "" => std::env::var("KEEL_STATE").unwrap_or_else(|_| {
                format!(
                    "/var/tmp/keel-{}",
                    std::env::var("USER").unwrap_or_else(|_| "root".to_owned())
                )
            }),
            dir => dir.to_owned(),
        };
        let short = match app {
            App::TradeMatching => "tm",
            App::Settlement => "st",
        };
        Ok(Cluster {
            dir: PathBuf::from(state_dir)
                .join(region)
                .join(format!("{short}-postgres")),
            port: options.get_port(),
            database: options
                .get_database()
                .ok_or_else(|| format!("{url}: no database name"))?
                .to_owned(),
        })
    }

    async fn script(&self, args: &[&str], bound: Duration) -> Result<(), String> {
        let script = &self.config.runbook.database_script;
        let run = tokio::process::Command::new("bash")
            .arg(script)
            .args(args)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(bound, run)
            .await
            .map_err(|_| format!("{script} {} took longer than {bound:?}", args.join(" ")))?
            .map_err(|e| format!("{script}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{script} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Stops `app`'s cluster in `region` (a fast shutdown: sessions are cut, and every standby is
    /// sent the WAL up to the shutdown checkpoint first).
    pub async fn stop(&self, app: App, region: &str, bound: Duration) -> Result<(), String> {
        let cluster = self.cluster(app, region)?;
        self.script(&["stop", &cluster.dir.to_string_lossy()], bound)
            .await
    }

    /// The name `app`'s standby in `region` replicates as (`application_name`), as the stack's
    /// scripts give it.
    pub fn standby_name(&self, app: App, region: &str) -> Result<String, String> {
        Ok(standby_name(&self.cluster(app, region)?.database, region))
    }

    /// Rebuilds `app`'s cluster in `region` as a streaming standby of its primary in
    /// `primary_region`. The old data directory is kept beside it as `data.replaced` (it may hold
    /// writes the new primary never got; the one before is removed).
    pub async fn rebuild_standby(
        &self,
        app: App,
        region: &str,
        primary_region: &str,
        bound: Duration,
    ) -> Result<String, String> {
        let cluster = self.cluster(app, region)?;
        let primary = self.cluster(app, primary_region)?;
        let name = self.standby_name(app, region)?;
        self.script(
            &[
                "rebuild",
                &cluster.dir.to_string_lossy(),
                &cluster.port.to_string(),
                &primary.port.to_string(),
                &name,
            ],
            bound,
        )
        .await?;
        Ok(name)
    }
}

fn standby_name(database: &str, region: &str) -> String {
    format!("{database}_{}", region.replace('-', "_"))
}

/// Whether the cluster is a standby.
pub async fn in_recovery(pool: &PgPool) -> Result<bool, String> {
    sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())
}

/// The primary's flushed WAL position.
pub async fn flushed_lsn(primary: &PgPool) -> Result<String, String> {
    sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text")
        .fetch_one(primary)
        .await
        .map_err(|e| e.to_string())
}

/// Waits until the standby has replayed up to `lsn`; returns how long it took.
pub async fn wait_replayed(
    standby: &PgPool,
    lsn: &str,
    bound: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let behind: Option<f64> = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::float8",
        )
        .bind(lsn)
        .fetch_one(standby)
        .await
        .map_err(|e| e.to_string())?;
        match behind {
            Some(bytes) if bytes <= 0.0 => return Ok(started.elapsed()),
            _ if started.elapsed() >= bound => {
                return Err(format!(
                    "the standby has not replayed up to {lsn} after {bound:?} ({} bytes behind)",
                    behind.map_or("unknown".to_owned(), |b| format!("{b:.0}"))
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Promotes a standby (a no-op on a primary) and waits until it takes writes. The promoted primary
/// waits for no standby: none is attached until re-protection, and a synchronous commit waiting for
/// one would stop every acknowledgement (re-protection names the new standby again).
pub async fn promote(pool: &PgPool) -> Result<(), String> {
    if in_recovery(pool).await? {
        let promoted: bool = sqlx::query_scalar("SELECT pg_promote(true, 60)")
            .fetch_one(pool)
            .await
            .map_err(|e| format!("pg_promote: {e}"))?;
        if !promoted {
            return Err("pg_promote did not finish within 60 s".to_owned());
        }
    }
    for statement in [
        "ALTER SYSTEM RESET synchronous_standby_names",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    // Taking a transaction id needs a writable primary.
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(pool)
        .await
        .map_err(|e| format!("the promoted database takes no writes: {e}"))?;
    Ok(())
}

/// Waits until `primary` streams to the standby named `name`.
pub async fn wait_streaming(primary: &PgPool, name: &str, bound: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM pg_stat_replication WHERE application_name = $1")
                .bind(name)
                .fetch_optional(primary)
                .await
                .map_err(|e| e.to_string())?;
        if state.as_deref() == Some("streaming") {
            return Ok(());
        }
        if started.elapsed() >= bound {
            return Err(format!(
                "standby {name} is not streaming after {bound:?} (state: {})",
                state.unwrap_or_else(|| "not connected".to_owned())
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
