//! Reading one side of a hop for reconciliation (`keel-reconcile` decides what the differences mean).
//! Schemas are named explicitly: reconciliation reads every service's schema from one pool.

use uuid::Uuid;

use crate::quote_ident;

/// The content digest reconciliation compares: Postgres's SHA-256 of the stored JSON text. The text
/// that travels is the outbox's, and a consumer keeps the bytes it received, so an outbox row and
/// the inbox row of the same message have the same digest (safe-store migration 0005).
const DIGEST: &str = "encode(sha256(convert_to(payload, 'UTF8')), 'hex')";

/// How far `schema`'s relay has published topic `$1` (`schema` already quoted): the last outbox row
/// id published (0 when it never has). Rows at or before it are published (migration 0004).
fn progress(schema: &str) -> String {
    format!("coalesce((SELECT id FROM {schema}.relay_progress WHERE topic = $1), 0)")
}

/// `schema`'s outbox rows for `topic` published, and created between `window_seconds` and
/// `settle_seconds` ago (newer ones may still be in flight): id and digest. Unpublished rows are
/// not gaps: they wait for the relay (see [`unpublished`]).
pub async fn produced(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    window_seconds: f64,
    settle_seconds: f64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let schema = &quote_ident(schema);
    let published = progress(schema);
    sqlx::query_as(&format!(
        "SELECT message_id, {DIGEST} FROM {schema}.outbox
         WHERE topic = $1 AND id <= {published}
           AND created_at >= now() - make_interval(secs => $2)
           AND created_at < now() - make_interval(secs => $3)"
    ))
    .bind(topic)
    .bind(window_seconds)
    .bind(settle_seconds)
    .fetch_all(pool)
    .await
}

/// `schema`'s outbox rows with these ids, whenever they were created.
pub async fn produced_with_ids(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let schema = &quote_ident(schema);
    sqlx::query_as(&format!(
        "SELECT message_id, {DIGEST} FROM {schema}.outbox WHERE topic = $1 AND message_id = ANY($2)"
    ))
    .bind(topic)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// `schema`'s inbox rows for `topic`: those with these ids, and those consumed in the last
/// `window_seconds`. The digest is None for rows consumed before inboxes kept payloads.
pub async fn consumed(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    window_seconds: f64,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<String>)>, sqlx::Error> {
    let schema = &quote_ident(schema);
    sqlx::query_as(&format!(
        "SELECT message_id, {DIGEST} FROM {schema}.inbox
         WHERE topic = $1
           AND (message_id = ANY($3) OR processed_at >= now() - make_interval(secs => $2))"
    ))
    .bind(topic)
    .bind(window_seconds)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// How many of `schema`'s outbox rows for `topic` wait for the relay.
pub async fn unpublished(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
) -> Result<i64, sqlx::Error> {
    Ok(waiting(pool, schema, topic, i64::MAX).await?.0)
}

/// These messages as `schema`'s outbox stored them, to publish again.
pub async fn stored_messages(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    ids: &[Uuid],
) -> Result<Vec<crate::PendingMessage>, sqlx::Error> {
    let schema = &quote_ident(schema);
    sqlx::query_as(&format!(
        "SELECT id, message_id, topic, key, payload, traceparent FROM {schema}.outbox
         WHERE topic = $1 AND message_id = ANY($2) ORDER BY id"
    ))
    .bind(topic)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// What `schema`'s inbox kept of these messages: id and payload, the JSON text as received (rows
/// kept before inboxes had payloads are left out).
pub async fn consumed_payloads(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let schema = &quote_ident(schema);
    sqlx::query_as(&format!(
        "SELECT message_id, payload FROM {schema}.inbox
         WHERE topic = $1 AND message_id = ANY($2) AND payload IS NOT NULL"
    ))
    .bind(topic)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// Puts lost messages back in `schema`'s outbox as already published (their consumer has them), so
/// the producer's record is whole again: under negative row ids, before every relay position. A
/// message already there is left as it is.
pub async fn restore(
    pool: &sqlx::PgPool,
    schema: &str,
    messages: &[crate::Outgoing],
) -> Result<u64, sqlx::Error> {
    let schema = &quote_ident(schema);
    let ids: Vec<Uuid> = messages.iter().map(|m| m.message_id).collect();
    let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    let payloads: Vec<&str> = messages.iter().map(|m| m.payload.as_str()).collect();
    Ok(sqlx::query(&format!(
        "INSERT INTO {schema}.outbox (message_id, topic, key, payload, id)
         SELECT *, -nextval(pg_get_serial_sequence($5, 'id'))
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[])
         ON CONFLICT (message_id) DO NOTHING"
    ))
    .bind(&ids)
    .bind(&topics)
    .bind(&keys)
    .bind(&payloads)
    .bind(format!("{schema}.outbox"))
    .execute(pool)
    .await?
    .rows_affected())
}

/// Which of these ids `schema`'s inbox holds.
pub async fn consumed_ids(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let schema = &quote_ident(schema);
    sqlx::query_scalar(&format!(
        "SELECT message_id FROM {schema}.inbox WHERE topic = $1 AND message_id = ANY($2)"
    ))
    .bind(topic)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// Where `schema`'s consumer of `topic` stands in the Kafka `cluster`, per partition: the next
/// offset it will read, and how long ago the newest message it finished was produced (seconds, on
/// the database's clock; None before the first).
pub async fn consumer_offsets(
    pool: &sqlx::PgPool,
    schema: &str,
    cluster: &str,
    topic: &str,
) -> Result<std::collections::HashMap<i32, (i64, Option<f64>)>, sqlx::Error> {
    let schema = &quote_ident(schema);
    let rows: Vec<(i32, i64, Option<f64>)> = sqlx::query_as(&format!(
        "SELECT partition, next_offset, extract(epoch FROM now() - message_at)::float8
         FROM {schema}.consumer_offsets WHERE cluster = $1 AND topic = $2"
    ))
    .bind(cluster)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(partition, next, age)| (partition, (next, age)))
        .collect())
}

/// The continuous reconciler's reads: only what is new since its last round.
pub mod incremental {
    use uuid::Uuid;

    use super::{progress, quote_ident, DIGEST};

    /// An upstream record published after the reconciler's cursor.
    #[derive(Debug, Clone, sqlx::FromRow)]
    pub struct Published {
        /// Its outbox row id: the reconciler's cursor.
        pub id: i64,
        pub message_id: Uuid,
        pub digest: String,
        /// When it was produced, in seconds since the epoch (the database's clock).
        pub produced_at: f64,
    }

    /// The database's clock, in seconds since the epoch.
    pub async fn now(pool: &sqlx::PgPool) -> Result<f64, sqlx::Error> {
        sqlx::query_scalar("SELECT extract(epoch FROM now())::float8")
            .fetch_one(pool)
            .await
    }

    /// Where a cursor starts so that the first round covers what was produced in the last
    /// `window_seconds`: just before the first such row.
    pub async fn window_start(
        pool: &sqlx::PgPool,
        schema: &str,
        topic: &str,
        window_seconds: f64,
    ) -> Result<i64, sqlx::Error> {
        let schema = &quote_ident(schema);
        let first: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT min(id) FROM {schema}.outbox
             WHERE topic = $1 AND created_at >= now() - make_interval(secs => $2)"
        ))
        .bind(topic)
        .bind(window_seconds)
        .fetch_one(pool)
        .await?;
        match first {
            Some(id) => Ok(id - 1),
            None => {
                sqlx::query_scalar(&format!("SELECT {published}", published = progress(schema)))
                    .bind(topic)
                    .fetch_one(pool)
                    .await
            }
        }
    }

    /// Up to `limit` records of `topic` published after `after`, in publishing order.
    pub async fn published_after(
        pool: &sqlx::PgPool,
        schema: &str,
        topic: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Published>, sqlx::Error> {
        let schema = &quote_ident(schema);
        let published = progress(schema);
        sqlx::query_as(&format!(
            "SELECT id, message_id, {DIGEST} AS digest,
                    extract(epoch FROM created_at)::float8 AS produced_at
             FROM {schema}.outbox
             WHERE topic = $1 AND id > $2 AND id <= {published}
             ORDER BY id LIMIT $3"
        ))
        .bind(topic)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
    }

    /// What `schema`'s inbox holds of these ids: id and digest (None for rows kept before inboxes
    /// kept payloads).
    pub async fn consumed_with_ids(
        pool: &sqlx::PgPool,
        schema: &str,
        topic: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Option<String>)>, sqlx::Error> {
        let schema = &quote_ident(schema);
        sqlx::query_as(&format!(
            "SELECT message_id, {DIGEST} FROM {schema}.inbox WHERE topic = $1 AND message_id = ANY($2)"
        ))
        .bind(topic)
        .bind(ids)
        .fetch_all(pool)
        .await
    }

    /// Ids `schema` consumed of `topic` since `since` (seconds since the epoch), and the latest
    /// consumption time among them.
    pub async fn consumed_since(
        pool: &sqlx::PgPool,
        schema: &str,
        topic: &str,
        since: f64,
    ) -> Result<Vec<(Uuid, f64)>, sqlx::Error> {
        let schema = &quote_ident(schema);
        sqlx::query_as(&format!(
            "SELECT message_id, extract(epoch FROM processed_at)::float8 FROM {schema}.inbox
             WHERE topic = $1 AND processed_at >= to_timestamp($2)"
        ))
        .bind(topic)
        .bind(since)
        .fetch_all(pool)
        .await
    }
}

/// How many of `schema`'s outbox rows for `topic` wait for the relay (counting at most `cap`), and
/// how long the oldest of them has waited, in seconds (0 when none waits).
pub async fn waiting(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    cap: i64,
) -> Result<(i64, f64), sqlx::Error> {
    let schema = &quote_ident(schema);
    let published = progress(schema);
    sqlx::query_as(&format!(
        "SELECT count(*),
                coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
         FROM (SELECT created_at FROM {schema}.outbox
               WHERE topic = $1 AND id > {published}
               ORDER BY id LIMIT $2) waiting"
    ))
    .bind(topic)
    .bind(cap)
    .fetch_one(pool)
    .await
}
