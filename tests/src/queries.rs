//! Reading a stack's stores: counts, waiting for counts and for a trade's status, replication
//! positions, and the SQL of a hop's published and unpublished rows.

use std::time::Duration;

use anyhow::bail;
use keel_safestore::quote_ident;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::stack::Stack;

impl Stack {
    /// A count from trade matching's database.
    pub async fn count(&self, sql: &str) -> i64 {
        count_in(&self.db, sql).await
    }

    /// A count from settlement's database.
    pub async fn st_count(&self, sql: &str) -> i64 {
        count_in(&self.st_db, sql).await
    }

    /// Waits until `sql` counts `expected` in trade matching's database, or fails naming what it
    /// last saw.
    pub async fn wait_for_count(
        &self,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_count_in(&self.db, sql, expected, timeout)
            .await
    }

    /// As [`Stack::wait_for_count`], in settlement's database.
    pub async fn wait_for_st_count(
        &self,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_count_in(&self.st_db, sql, expected, timeout)
            .await
    }

    /// As [`Stack::wait_for_count`], in any database (such as another region's).
    pub async fn wait_for_count_in(
        &self,
        db: &PgPool,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until_count(db, sql, timeout, &format!("{expected}"), |seen| {
            seen == expected
        })
        .await
    }

    /// Waits until `sql` counts at least `at_least` in trade matching's database (for a count that
    /// keeps growing, such as the generator's submissions).
    pub async fn wait_for_at_least(
        &self,
        sql: &str,
        at_least: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until_count(
            &self.db,
            sql,
            timeout,
            &format!("at least {at_least}"),
            |seen| seen >= at_least,
        )
        .await
    }

    async fn wait_until_count(
        &self,
        db: &PgPool,
        sql: &str,
        timeout: Duration,
        wanted: &str,
        done: impl Fn(i64) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db)
                .await
                .unwrap_or(-1);
            if done(seen) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "`{sql}` is {seen}, expected {wanted} within {timeout:?} (logs: {})",
                    self.dir.join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to a minute) until the trade, as `token`'s participant reads it through the API, has
    /// `status`; returns the trade.
    pub async fn wait_for_trade_status(
        &self,
        token: &str,
        trade_id: &str,
        status: &str,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (code, body) = self
                .client()
                .get(&format!("/v1/trades/{trade_id}"), token)
                .await
                .expect("ingress reachable");
            assert_eq!(code, 200, "{body}");
            if body["status"] == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "trade {trade_id} never reached {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A small pool on `url` (a region's database, for example).
pub async fn connect(url: &str) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new().max_connections(2).connect(url).await?)
}

/// Waits until `standby` has replayed everything `primary` has written so far.
pub async fn wait_replayed(
    primary: &PgPool,
    standby: &PgPool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(primary)
        .await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let behind: f64 = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::float8",
        )
        .bind(&target)
        .fetch_one(standby)
        .await?;
        if behind <= 0.0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the standby is still {behind} bytes behind {target} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A count from any database; panics naming the query if it fails.
pub async fn count_in(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// SQL counting `schema`'s outbox rows of `topic` that its relay has not published yet (those after
/// the relay's recorded position; see safe-store migration 0004).
pub fn unpublished_sql(schema: &str, topic: &str) -> String {
    let schema = quote_ident(schema);
    format!(
        "SELECT count(*) FROM {schema}.outbox o LEFT JOIN {schema}.relay_progress p USING (topic)
         WHERE o.topic = '{topic}' AND o.id > coalesce(p.id, 0)"
    )
}

/// SQL counting `schema`'s outbox rows of `topic` that its relay has published.
pub fn published_sql(schema: &str, topic: &str) -> String {
    let schema = quote_ident(schema);
    format!(
        "SELECT count(*) FROM {schema}.outbox o LEFT JOIN {schema}.relay_progress p USING (topic)
         WHERE o.topic = '{topic}' AND o.id <= coalesce(p.id, 0)"
    )
}
