//! The databases port over the local stack's Postgres clusters. Reading replication state,
//! counting and promoting go through SQL, so they work on any Postgres that answers, whoever
//! started it. Stopping a cluster and rebuilding one as a standby need its files: keel-localstack's
//! `Cluster` in `{state_dir}/{region}/{tm|st}-postgres`, the code `make up` starts them with (on
//! AWS these are Aurora Global Database operations: [`super::AuroraDatabases`]).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use keel_localstack::layout::{cluster_dir, standby_name};
use keel_localstack::{Cluster, Tools};
use keel_operations::ports::{Acknowledged, DatabaseError, Databases, Replication, StandbyLink};
use keel_rotation::Mode;
use keel_routing::App;
use sqlx::postgres::PgConnectOptions;

use super::{failed, in_recovery, Sql};
use crate::config::Config;

pub struct LocalDatabases {
    sql: Sql,
    tools: Arc<Tools>,
}

/// A cluster's place on disk and on the network, and its database.
struct Place {
    cluster: Cluster,
    database: String,
}

impl LocalDatabases {
    pub fn new(config: &Config) -> Self {
        LocalDatabases {
            sql: Sql::new(config),
            tools: Arc::new(Tools::from_env()),
        }
    }

    fn place(&self, app: App, region: &str) -> Result<Place, DatabaseError> {
        let failed = failed(app, region);
        let url = self.sql.url(app, region)?;
        let options = PgConnectOptions::from_str(url).map_err(|e| failed(e.to_string()))?;
        let state_dir = match self.sql.config().runbook.state_dir.as_str() {
            "" => keel_localstack::tools::state_dir(),
            dir => PathBuf::from(dir),
        };
        Ok(Place {
            cluster: Cluster::new(cluster_dir(&state_dir, app, region), options.get_port()),
            database: options
                .get_database()
                .ok_or_else(|| failed("its URL names no database".to_owned()))?
                .to_owned(),
        })
    }

    /// Runs a cluster operation (blocking: it waits for pg_ctl) off the runtime, within `bound`.
    async fn on_cluster<F>(
        &self,
        app: App,
        region: &str,
        bound: Duration,
        operation: F,
    ) -> Result<(), DatabaseError>
    where
        F: FnOnce(&Cluster, &Tools) -> Result<(), keel_localstack::LocalError> + Send + 'static,
    {
        let failed = failed(app, region);
        let cluster = self.place(app, region)?.cluster;
        let tools = self.tools.clone();
        let run = tokio::task::spawn_blocking(move || operation(&cluster, &tools));
        tokio::time::timeout(bound, run)
            .await
            .map_err(|_| failed(format!("took longer than {bound:?}")))?
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))
    }

    /// The promoted primary waits for no standby: none is attached until re-protection, and a
    /// synchronous commit waiting for one would stop every acknowledgement (re-protection names
    /// the new standby again).
    async fn promote(&self, app: App, region: &str) -> Result<(), DatabaseError> {
        self.sql
            .with(app, region, |pool| async move {
                if in_recovery(&pool).await? {
                    let promoted =
                        sqlx::query_scalar!(r#"SELECT pg_promote(true, 60) AS "promoted!""#)
                            .fetch_one(&pool)
                            .await?;
                    if !promoted {
                        return Err(sqlx::Error::Protocol(
                            "pg_promote did not finish within 60 s".into(),
                        ));
                    }
                }
                sqlx::query("ALTER SYSTEM RESET synchronous_standby_names")
                    .execute(&pool)
                    .await?;
                sqlx::query_scalar!("SELECT pg_reload_conf()")
                    .fetch_one(&pool)
                    .await?;
                // Taking a transaction id needs a writable primary.
                sqlx::query_scalar!("SELECT pg_current_xact_id()::text")
                    .fetch_one(&pool)
                    .await?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl Databases for LocalDatabases {
    async fn replication(&self, app: App, region: &str) -> Result<Replication, DatabaseError> {
        self.sql.with(app, region, |pool| async move {
            if in_recovery(&pool).await? {
                let lag = sqlx::query!(
                    r#"SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS behind_bytes,
                              extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS last_replayed_seconds_ago"#
                )
                .fetch_one(&pool)
                .await?;
                return Ok(Replication::Standby {
                    behind_bytes: Some(lag.behind_bytes.unwrap_or(0)),
                    last_replayed_seconds_ago: lag.last_replayed_seconds_ago,
                });
            }
            let standbys = sqlx::query!(
                "SELECT application_name, state,
                        pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS behind_bytes,
                        extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds,
                        sync_state
                 FROM pg_stat_replication"
            )
            .fetch_all(&pool)
            .await?;
            Ok(Replication::Primary {
                standbys: standbys
                    .into_iter()
                    .map(|standby| StandbyLink {
                        name: standby.application_name.unwrap_or_default(),
                        state: standby.state.unwrap_or_default(),
                        behind_bytes: standby.behind_bytes,
                        replay_lag_seconds: standby.replay_lag_seconds,
                        synchronous: standby.sync_state.as_deref() == Some("sync"),
                    })
                    .collect(),
            })
        })
        .await
    }

    /// As `make up` names it: `{database}_{region}`, dashes as underscores.
    fn standby_name(&self, app: App, region: &str) -> Result<String, DatabaseError> {
        Ok(standby_name(&self.place(app, region)?.database, region))
    }

    async fn flushed_position(&self, app: App, region: &str) -> Result<String, DatabaseError> {
        self.sql
            .with(app, region, |pool| async move {
                sqlx::query_scalar!(r#"SELECT pg_current_wal_flush_lsn()::text AS "lsn!""#)
                    .fetch_one(&pool)
                    .await
            })
            .await
    }

    async fn wait_replayed(
        &self,
        app: App,
        region: &str,
        position: &str,
        bound: Duration,
    ) -> Result<Duration, DatabaseError> {
        let standby = self
            .sql
            .connect(app, region, Duration::from_secs(5))
            .await?;
        let started = Instant::now();
        let outcome = loop {
            let behind = sqlx::query_scalar!(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::float8",
                position
            )
            .fetch_one(&standby)
            .await;
            match behind {
                Err(e) => break Err(e.to_string()),
                Ok(Some(bytes)) if bytes <= 0.0 => break Ok(started.elapsed()),
                Ok(behind) if started.elapsed() >= bound => {
                    break Err(format!(
                        "the standby has not replayed up to {position} after {bound:?} ({} bytes behind)",
                        behind.map_or("unknown".to_owned(), |b| format!("{b:.0}"))
                    ))
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        standby.close().await;
        outcome.map_err(failed(app, region))
    }

    async fn acknowledged(&self, app: App, region: &str) -> Result<Acknowledged, DatabaseError> {
        self.sql.acknowledged(app, region).await
    }

    async fn acknowledged_missing(
        &self,
        app: App,
        from: &str,
        to: &str,
    ) -> Result<i64, DatabaseError> {
        self.sql.acknowledged_missing(app, from, to).await
    }

    async fn answers(&self, app: App, region: &str, within: Duration) -> bool {
        self.sql.answers(app, region, within).await
    }

    async fn takes_writes(&self, app: App, region: &str) -> bool {
        self.sql.takes_writes(app, region).await
    }

    /// The old primary is stopped first (a fast shutdown: sessions are cut, and every standby is
    /// sent the WAL up to the shutdown checkpoint), so nothing can write it once the target is
    /// promoted.
    async fn switch_primary(
        &self,
        app: App,
        from: &str,
        to: &str,
        mode: Mode,
        bound: Duration,
    ) -> Result<Vec<String>, DatabaseError> {
        let mut done = Vec::new();
        match self
            .on_cluster(app, from, bound, |cluster, tools| cluster.stop(tools))
            .await
        {
            Ok(()) => done.push(format!("{from}'s primary stopped")),
            Err(e) if mode == Mode::Planned => return Err(e),
            Err(e) => done.push(format!(
                "{from}'s primary could not be stopped ({e}); its services are fenced"
            )),
        }
        // One attempt: it has just been seen to stop.
        if mode == Mode::Planned && self.sql.answers(app, from, Duration::ZERO).await {
            return Err(failed(app, from)(
                "still answers after being stopped; nothing was promoted".to_owned(),
            ));
        }
        self.promote(app, to).await?;
        done.push(format!("{to}'s database promoted and taking writes"));
        Ok(done)
    }

    /// The old data directory is kept beside it as `data.replaced` (it may hold writes the new
    /// primary never got; the one before is removed).
    async fn rebuild_standby(
        &self,
        app: App,
        region: &str,
        primary_region: &str,
        bound: Duration,
    ) -> Result<String, DatabaseError> {
        let primary_port = self
            .sql
            .config()
            .local
            .replication_port(app, region, primary_region)
            .unwrap_or(self.place(app, primary_region)?.cluster.port);
        let name = self.standby_name(app, region)?;
        let standby = name.clone();
        self.on_cluster(app, region, bound, move |cluster, tools| {
            cluster.rebuild_as_standby(tools, primary_port, &standby)
        })
        .await?;
        Ok(name)
    }

    async fn wait_streaming(
        &self,
        app: App,
        primary_region: &str,
        name: &str,
        bound: Duration,
    ) -> Result<(), DatabaseError> {
        let primary = self
            .sql
            .connect(app, primary_region, Duration::from_secs(5))
            .await?;
        let started = Instant::now();
        let outcome = loop {
            let state = sqlx::query_scalar!(
                "SELECT state FROM pg_stat_replication WHERE application_name = $1",
                name
            )
            .fetch_optional(&primary)
            .await
            .map(Option::flatten);
            match state {
                Err(e) => break Err(e.to_string()),
                Ok(Some(state)) if state == "streaming" => break Ok(()),
                Ok(state) if started.elapsed() >= bound => {
                    break Err(format!(
                        "standby {name} is not streaming after {bound:?} (state: {})",
                        state.unwrap_or_else(|| "not connected".to_owned())
                    ))
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        primary.close().await;
        outcome.map_err(failed(app, primary_region))
    }
}
