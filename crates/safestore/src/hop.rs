//! Reading one side of a hop for reconciliation (`keel-reconcile` decides what the differences mean).
//! Schemas are named explicitly: reconciliation reads every service's schema from one pool.

use uuid::Uuid;

/// The content digest reconciliation compares: Postgres's SHA-256 of the stored `jsonb` written out
/// as text. `jsonb` normalizes key order and whitespace, so an outbox row and the inbox row of the
/// same message have the same digest.
const DIGEST: &str = "encode(sha256(convert_to(payload::text, 'UTF8')), 'hex')";

/// `schema`'s outbox rows for `topic` created between `window_seconds` and `settle_seconds` ago
/// (newer ones may still be in flight): id and digest.
pub async fn produced(
    pool: &sqlx::PgPool,
    schema: &str,
    topic: &str,
    window_seconds: f64,
    settle_seconds: f64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT message_id, {DIGEST} FROM {schema}.outbox
         WHERE topic = $1 AND created_at >= now() - make_interval(secs => $2)
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
