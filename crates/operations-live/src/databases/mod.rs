//! The databases port, twice: [`LocalDatabases`] over the local stack's Postgres clusters (`make
//! up`), [`AuroraDatabases`] over Aurora PostgreSQL Global Databases. `[runbook] databases` picks
//! one. What is plain SQL (counting acknowledged records, whether a database answers or takes
//! writes) is the same for both: [`Sql`].

mod aurora;
mod local;

pub use aurora::{AuroraApplication, AuroraConfig, AuroraDatabases};
pub use local::LocalDatabases;

use std::time::{Duration, Instant};

use keel_operations::ports::{acknowledged_records, Acknowledged, DatabaseError};
use keel_routing::App;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::config::Config;

/// Which implementation of the port keelctl and the console use (`[runbook] databases`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseKind {
    /// The local stack's clusters: SQL, and keel-localstack's `Cluster` for their files.
    #[default]
    Local,
    /// Aurora Global Databases, through the RDS API (`[aurora]`).
    Aurora,
}

/// An error about `app`'s database in `region`.
pub(crate) fn failed(app: App, region: &str) -> impl Fn(String) -> DatabaseError + '_ {
    move |detail| DatabaseError {
        app,
        region: region.to_owned(),
        detail,
    }
}

/// Each application's database in each region, reached with the URL the configuration gives.
#[derive(Clone)]
pub struct Sql {
    config: Config,
}

impl Sql {
    pub fn new(config: &Config) -> Self {
        Sql {
            config: config.clone(),
        }
    }

    /// The configuration the URLs come from (and the rest of the implementation's settings).
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn url(&self, app: App, region: &str) -> Result<&str, DatabaseError> {
        self.config
            .database_url(app, region)
            .map_err(|e| failed(app, region)(e.to_string()))
    }

    pub(crate) async fn connect(
        &self,
        app: App,
        region: &str,
        timeout: Duration,
    ) -> Result<PgPool, DatabaseError> {
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect(self.url(app, region)?)
            .await
            .map_err(|e| failed(app, region)(e.to_string()))
    }

    /// Runs `query` on a connection of its own to `app`'s database in `region`.
    pub(crate) async fn with<T, F, Fut>(
        &self,
        app: App,
        region: &str,
        query: F,
    ) -> Result<T, DatabaseError>
    where
        F: FnOnce(PgPool) -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let pool = self.connect(app, region, Duration::from_secs(5)).await?;
        let result = query(pool.clone()).await;
        pool.close().await;
        result.map_err(|e| failed(app, region)(e.to_string()))
    }

    /// Connection attempts, one at a time, until one succeeds or `within` has passed (at least
    /// one). Not a pool: a pool's connect retries a refused connection until its whole timeout,
    /// so a stopped database took the whole bound to be seen stopped (a second of every planned
    /// rotation's outage, two of every failover's).
    pub async fn answers(&self, app: App, region: &str, within: Duration) -> bool {
        self.connection(app, region, within).await.is_some()
    }

    async fn connection(&self, app: App, region: &str, within: Duration) -> Option<PgConnection> {
        let url = self.url(app, region).ok()?;
        let deadline = Instant::now() + within;
        loop {
            let bound = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            if let Ok(Ok(connection)) =
                tokio::time::timeout(bound, PgConnection::connect(url)).await
            {
                return Some(connection);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One connection attempt: whether it answers as a primary (not in recovery).
    pub async fn takes_writes(&self, app: App, region: &str) -> bool {
        let Some(mut connection) = self.connection(app, region, Duration::ZERO).await else {
            return false;
        };
        let standby = in_recovery(&mut connection).await;
        let _ = connection.close().await;
        matches!(standby, Ok(false))
    }

    pub async fn acknowledged(
        &self,
        app: App,
        region: &str,
    ) -> Result<Acknowledged, DatabaseError> {
        let (table, id) = acknowledged_records(app);
        let count = self
            .with(app, region, |pool| async move {
                match app {
                    App::TradeMatching => {
                        sqlx::query_scalar!(
                            r#"SELECT count(*) AS "count!" FROM ingress.submissions"#
                        )
                        .fetch_one(&pool)
                        .await
                    }
                    App::Settlement => {
                        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM settlement.inbox"#)
                            .fetch_one(&pool)
                            .await
                    }
                }
            })
            .await?;
        Ok(Acknowledged { count, table, id })
    }

    pub async fn acknowledged_missing(
        &self,
        app: App,
        from: &str,
        to: &str,
    ) -> Result<i64, DatabaseError> {
        let ids: Vec<uuid::Uuid> = self
            .with(app, from, |pool| async move {
                match app {
                    App::TradeMatching => {
                        sqlx::query_scalar!("SELECT leg_id FROM ingress.submissions")
                            .fetch_all(&pool)
                            .await
                    }
                    App::Settlement => {
                        sqlx::query_scalar!("SELECT message_id FROM settlement.inbox")
                            .fetch_all(&pool)
                            .await
                    }
                }
            })
            .await?;
        let total = ids.len() as i64;
        let present: i64 = self
            .with(app, to, |pool| async move {
                match app {
                    App::TradeMatching => {
                        sqlx::query_scalar!(
                            r#"SELECT count(*) AS "count!" FROM ingress.submissions WHERE leg_id = ANY($1)"#,
                            &ids
                        )
                        .fetch_one(&pool)
                        .await
                    }
                    App::Settlement => {
                        sqlx::query_scalar!(
                            r#"SELECT count(*) AS "count!" FROM settlement.inbox WHERE message_id = ANY($1)"#,
                            &ids
                        )
                        .fetch_one(&pool)
                        .await
                    }
                }
            })
            .await?;
        Ok(total - present)
    }
}

/// Whether the database is a standby.
pub(crate) async fn in_recovery<'e>(
    executor: impl sqlx::PgExecutor<'e>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT pg_is_in_recovery() AS "in_recovery!""#)
        .fetch_one(executor)
        .await
}
