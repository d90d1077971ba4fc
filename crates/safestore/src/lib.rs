//! The Postgres safe-store (DESIGN section 4). Each service owns one schema in its application's
//! database; its connections run with `search_path` set to that schema, so the shared tables here
//! (inbox, outbox, consumer offsets, dead letters) and the service's own tables are named unqualified.

pub mod hop;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use keel_messages::Message;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};
pub use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// The shared safe-store track, applied to every service schema before the service's own migrations.
static SAFESTORE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database url: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    #[error("cannot reach the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrating schema {schema}: {source}")]
    Migrate {
        schema: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Where a service's safe-store is.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// The schema this service owns.
    pub schema: String,
    pub max_connections: u32,
}

/// Connects with `search_path` set to the service's schema, creates the schema if needed and runs the
/// shared safe-store track then the service's own migrations.
pub async fn connect(options: &StoreOptions, migrations: &Migrator) -> Result<PgPool, StoreError> {
    let connect = connect_options(options)?;

    let mut admin = PgConnection::connect_with(&connect)
        .await
        .map_err(StoreError::Connect)?;
    sqlx::query(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(&options.schema)
    ))
    .execute(&mut admin)
    .await?;
    for migrator in [&SAFESTORE_MIGRATIONS, migrations] {
        let mut migrator = Migrator {
            ignore_missing: true,
            ..clone_migrator(migrator)
        };
        migrator.set_locking(true);
        migrator
            .run(&mut admin)
            .await
            .map_err(|source| StoreError::Migrate {
                schema: options.schema.clone(),
                source,
            })?;
    }
    admin.close().await?;

    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(connect)
        .await
        .map_err(StoreError::Connect)
}

/// A pool for a schema that someone else migrates, connecting only when first used: for a process
/// that must start while its database is a read-only standby or away.
pub fn lazy_pool(options: &StoreOptions) -> Result<PgPool, StoreError> {
    let connect = connect_options(options)?;
    Ok(PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(connect))
}

/// The service's schema first on the search path, and its name as the connections' application
/// name, so `pg_stat_activity` (and the bench's profile) tells which service a backend works for.
fn connect_options(options: &StoreOptions) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(&options.url)
        .map_err(StoreError::InvalidUrl)?
        .options([("search_path", options.schema.as_str())])
        .application_name(&format!("keel-{}", options.schema)))
}

fn clone_migrator(migrator: &Migrator) -> Migrator {
    Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: migrator.ignore_missing,
        locking: migrator.locking,
        no_tx: migrator.no_tx,
    }
}

/// The one way a schema or table name goes into SQL that cannot take it as a parameter: quoted as
/// an identifier, so that a name is only ever a name.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether retrying the same work can succeed: the connection or the server had a passing problem, or
/// the transaction lost a race. A transaction that failed with one of these was rolled back.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57P") // operator intervention: shutdown, cannot connect now
                || code == "40001" // serialization failure
                || code == "40P01" // deadlock detected
                || code == "25006" // read-only transaction: a standby, until promotion completes
        }),
        _ => false,
    }
}

/// A message on its way out through the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub message_id: Uuid,
    pub topic: String,
    pub key: String,
    /// The message's JSON text, exactly as it will travel.
    pub payload: String,
    /// The W3C trace context of the work that produced it, when traces are exported.
    pub traceparent: Option<String>,
}

impl Outgoing {
    pub fn of<M: Message>(message: &M) -> Self {
        Outgoing {
            message_id: message.message_id(),
            topic: M::TOPIC.to_owned(),
            key: message.key(),
            payload: serde_json::to_string(message).expect("messages always serialize"),
            traceparent: None,
        }
    }

    /// The same message, continuing the trace `traceparent` names.
    pub fn continuing(self, traceparent: Option<String>) -> Self {
        Outgoing {
            traceparent,
            ..self
        }
    }
}

/// Writes messages to the outbox in one statement. A message already there (same id) is kept as it
/// was: its id is derived from its content, so it is the same message.
///
/// First it takes the outbox's lock, held until the transaction ends, so that writers (several
/// consumers, a sweeper, a second instance) add rows one transaction at a time: row ids are then in
/// commit order, and the relay can follow them with a cursor and miss nothing (migration 0004).
/// Call it last in a transaction, just before committing.
pub async fn enqueue(conn: &mut PgConnection, messages: &[Outgoing]) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/outbox'))")
        .execute(&mut *conn)
        .await?;
    let ids: Vec<Uuid> = messages.iter().map(|m| m.message_id).collect();
    let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    let payloads: Vec<&str> = messages.iter().map(|m| m.payload.as_str()).collect();
    let traceparents: Vec<Option<&str>> =
        messages.iter().map(|m| m.traceparent.as_deref()).collect();
    sqlx::query(
        "INSERT INTO outbox (message_id, topic, key, payload, traceparent)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&topics)
    .bind(&keys)
    .bind(&payloads)
    .bind(&traceparents)
    .execute(conn)
    .await?;
    Ok(())
}

/// Where a consumed message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The message as received (JSON), kept as the consumer's input.
    pub payload: &'a str,
}

/// Records consumed message ids in the inbox and returns those seen for the first time: the others
/// were processed before and must be skipped.
pub async fn claim_inbox(
    conn: &mut PgConnection,
    messages: &[(Uuid, Origin<'_>)],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    if messages.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<Uuid> = messages.iter().map(|(id, _)| *id).collect();
    let topics: Vec<&str> = messages.iter().map(|(_, o)| o.topic).collect();
    let partitions: Vec<i32> = messages.iter().map(|(_, o)| o.partition).collect();
    let offsets: Vec<i64> = messages.iter().map(|(_, o)| o.offset).collect();
    let payloads: Vec<&str> = messages.iter().map(|(_, o)| o.payload).collect();
    let fresh: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO inbox (message_id, topic, partition, \"offset\", payload)
         SELECT id, topic, part, off, payload
         FROM UNNEST($1::uuid[], $2::text[], $3::int[], $4::bigint[], $5::text[])
              AS m(id, topic, part, off, payload)
         ON CONFLICT (message_id) DO NOTHING
         RETURNING message_id",
    )
    .bind(&ids)
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&payloads)
    .fetch_all(conn)
    .await?;
    Ok(fresh.into_iter().collect())
}

/// The next offset to consume per partition of `topic` in the Kafka `cluster`, as last committed
/// with its effects.
pub async fn load_offsets(
    pool: &PgPool,
    cluster: &str,
    topic: &str,
) -> Result<HashMap<i32, i64>, sqlx::Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM consumer_offsets WHERE cluster = $1 AND topic = $2",
    )
    .bind(cluster)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A consumer's position in one partition, as stored with its effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    /// The next offset to consume.
    pub next: i64,
    /// When the newest message consumed was produced (the record's timestamp, in milliseconds
    /// since the epoch), if known.
    pub produced_ms: Option<i64>,
}

/// Stores the consumer's position; a position never moves backwards.
pub async fn save_offsets(
    conn: &mut PgConnection,
    cluster: &str,
    topic: &str,
    positions: &[Position],
) -> Result<(), sqlx::Error> {
    let partitions: Vec<i32> = positions.iter().map(|p| p.partition).collect();
    let offsets: Vec<i64> = positions.iter().map(|p| p.next).collect();
    let produced: Vec<Option<i64>> = positions.iter().map(|p| p.produced_ms).collect();
    sqlx::query(
        "INSERT INTO consumer_offsets (cluster, topic, partition, next_offset, message_at)
         SELECT $4, $1, p, o, to_timestamp(m::float8 / 1000)
         FROM UNNEST($2::int[], $3::bigint[], $5::bigint[]) AS u(p, o, m)
         ON CONFLICT (cluster, topic, partition) DO UPDATE
         SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset),
             message_at = GREATEST(consumer_offsets.message_at, EXCLUDED.message_at),
             updated_at = now()",
    )
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .bind(cluster)
    .bind(&produced)
    .execute(conn)
    .await?;
    Ok(())
}

/// A message that cannot be processed, kept with its origin and the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message_id: Option<Uuid>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub error: String,
}

pub async fn record_dead_letter(
    conn: &mut PgConnection,
    letter: &DeadLetter,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (message_id, topic, partition, \"offset\", key, payload, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (topic, partition, \"offset\") DO NOTHING",
    )
    .bind(letter.message_id)
    .bind(&letter.topic)
    .bind(letter.partition)
    .bind(letter.offset)
    .bind(&letter.key)
    .bind(&letter.payload)
    .bind(&letter.error)
    .execute(conn)
    .await?;
    Ok(())
}

/// An outbox row to publish.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingMessage {
    pub id: i64,
    pub message_id: Uuid,
    pub topic: String,
    pub key: String,
    pub payload: String,
    pub traceparent: Option<String>,
}

/// The next rows to publish: per topic, up to `limit` rows after its cursor (an outbox row id), in
/// id order. Topics not asked for keep their rows, in order, until they are.
pub async fn unpublished_after(
    pool: &PgPool,
    cursors: &[(String, i64)],
    limit: i64,
) -> Result<Vec<PendingMessage>, sqlx::Error> {
    let topics: Vec<&str> = cursors.iter().map(|(t, _)| t.as_str()).collect();
    let ids: Vec<i64> = cursors.iter().map(|(_, id)| *id).collect();
    sqlx::query_as(
        "SELECT r.id, r.message_id, r.topic, r.key, r.payload, r.traceparent
         FROM UNNEST($1::text[], $2::bigint[]) AS c(topic, id),
         LATERAL (
             SELECT o.id, o.message_id, o.topic, o.key, o.payload, o.traceparent
             FROM outbox o
             WHERE o.topic = c.topic AND o.id > c.id
             ORDER BY o.id
             LIMIT $3
         ) r",
    )
    .bind(&topics)
    .bind(&ids)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// How far the relay has published each of `topics`: the last row id (0 for a topic never
/// published).
pub async fn relay_progress(
    pool: &PgPool,
    topics: &[String],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT topic, id FROM relay_progress WHERE topic = ANY($1)")
            .bind(topics)
            .fetch_all(pool)
            .await?;
    let mut progress: HashMap<String, i64> = topics.iter().map(|t| (t.clone(), 0)).collect();
    progress.extend(rows);
    Ok(progress)
}

/// Records that everything up to each row id was published. A cursor never moves backwards. Not
/// waited for on disk: progress lost in a crash only means publishing some rows again, which
/// consumers drop by id.
pub async fn save_relay_progress(
    pool: &PgPool,
    progress: &[(String, i64)],
) -> Result<(), sqlx::Error> {
    if progress.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO relay_progress AS p (topic, id)
         SELECT * FROM UNNEST($1::text[], $2::bigint[])
         ON CONFLICT (topic) DO UPDATE SET id = EXCLUDED.id, updated_at = now()
         WHERE p.id < EXCLUDED.id",
    )
    .bind(progress.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>())
    .bind(progress.iter().map(|(_, id)| *id).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// How many outbox rows of `topics` wait to be published, counting at most `cap` per topic (a bound
/// keeps the count cheap when the relay is far behind).
pub async fn outbox_depth(pool: &PgPool, topics: &[String], cap: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(d.n), 0)::bigint
         FROM UNNEST($1::text[]) AS t(topic)
         LEFT JOIN relay_progress p USING (topic),
         LATERAL (
             SELECT count(*) AS n FROM (
                 SELECT 1 FROM outbox o
                 WHERE o.topic = t.topic AND o.id > coalesce(p.id, 0)
                 LIMIT $2) waiting
         ) d",
    )
    .bind(topics)
    .bind(cap)
    .fetch_one(pool)
    .await
}

/// Holds `name`'s session-level advisory lock on a connection of its own, so that one process of a
/// scaled-out stage does a job the instances share (the outbox relay). `None` while another holds
/// it; the lock is released when the returned connection closes.
pub async fn try_singleton(
    pool: &PgPool,
    name: &str,
) -> Result<Option<sqlx::pool::PoolConnection<Postgres>>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext(current_schema() || '/' || $1))")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    Ok(locked.then_some(conn))
}

/// How long consumed and produced messages are kept (`[retention]`). Inboxes and outboxes are what
/// reconciliation compares and replays from, so they must outlive its window (keelctl refuses a
/// window that reaches past them); after that they are only history, and keeping them forever would
/// make every store grow without bound.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Retention {
    /// Inbox rows consumed, and outbox rows published, longer ago than this are retired.
    pub hours: u64,
    /// Participants' notifications (the pull feed) are kept this long.
    pub notification_days: u64,
    /// How often each store retires what has aged out, at most `batch` rows per statement.
    pub interval_seconds: u64,
    pub batch: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            hours: 24,
            notification_days: 30,
            interval_seconds: 60,
            batch: 10_000,
        }
    }
}

impl Retention {
    pub fn messages(&self) -> Duration {
        Duration::from_secs(self.hours * 3600)
    }

    pub fn notifications(&self) -> Duration {
        Duration::from_secs(self.notification_days * 86_400)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds.max(1))
    }
}

/// Retires up to `batch` inbox rows consumed, and up to `batch` outbox rows published, more than
/// `older_than` ago. Unpublished outbox rows are never retired. Returns how many rows went.
pub async fn retire(pool: &PgPool, older_than: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    let seconds = older_than.as_secs_f64();
    let inbox = sqlx::query(
        "DELETE FROM inbox WHERE message_id IN (
             SELECT message_id FROM inbox
             WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2)",
    )
    .bind(seconds)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    let outbox = sqlx::query(
        "DELETE FROM outbox WHERE (topic, id) IN (
             SELECT o.topic, o.id FROM outbox o
             LEFT JOIN relay_progress p USING (topic)
             WHERE o.created_at < now() - make_interval(secs => $1)
               AND o.id <= coalesce(p.id, 0)
             LIMIT $2)",
    )
    .bind(seconds)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inbox + outbox)
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn a_quoted_name_stays_one_identifier() {
        assert_eq!(quote_ident("matching"), r#""matching""#);
        // A quote inside is doubled, so the name cannot end the identifier and go on as SQL.
        assert_eq!(
            quote_ident(r#"x"; DROP TABLE inbox; --"#),
            r#""x""; DROP TABLE inbox; --""#
        );
    }
}
