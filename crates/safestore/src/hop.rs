//! Reading one side of a hop for reconciliation (`keel-reconcile` decides what the differences mean).
//! Schemas are named explicitly: reconciliation reads every service's schema from one pool.

use uuid::Uuid;

/// The content digest reconciliation compares: Postgres's SHA-256 of the stored `jsonb` written out
/// as text. `jsonb` normalizes key order and whitespace, so an outbox row and the inbox row of the
/// same message have the same digest.
const DIGEST: &str = "encode(sha256(convert_to(payload::text, 'UTF8')), 'hex')";

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
    sqlx::query_as(&format!(
        "SELECT message_id, {DIGEST} FROM {schema}.outbox
         WHERE topic = $1 AND published_at IS NOT NULL
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
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {schema}.outbox WHERE topic = $1 AND published_at IS NULL"
    ))
    .bind(topic)
    .fetch_one(pool)
    .await
}

/// These messages as `schema`'s outbox stored them, to publish again.
pub async fn stored_messages(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    ids: &[Uuid],
) -> Result<Vec<crate::PendingMessage>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT id, message_id, topic, key, payload::text AS payload FROM {schema}.outbox
         WHERE topic = $1 AND message_id = ANY($2) ORDER BY id"
    ))
    .bind(topic)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// What `schema`'s inbox kept of these messages: id and payload (rows kept before inboxes had
/// payloads are left out).
pub async fn consumed_payloads(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, serde_json::Value)>, sqlx::Error> {
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
/// the producer's record is whole again. A message already there is left as it is.
pub async fn restore(
    pool: &sqlx::PgPool,
    schema: &str,
    messages: &[crate::Outgoing],
) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = messages.iter().map(|m| m.message_id).collect();
    let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    let payloads: Vec<serde_json::Value> = messages.iter().map(|m| m.payload.clone()).collect();
    Ok(sqlx::query(&format!(
        "INSERT INTO {schema}.outbox (message_id, topic, key, payload, published_at)
         SELECT *, now() FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[])
         ON CONFLICT (message_id) DO NOTHING"
    ))
    .bind(&ids)
    .bind(&topics)
    .bind(&keys)
    .bind(&payloads)
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
    sqlx::query_scalar(&format!(
        "SELECT message_id FROM {schema}.inbox WHERE topic = $1 AND message_id = ANY($2)"
    ))
    .bind(topic)
    .bind(ids)
    .fetch_all(pool)
    .await
}
