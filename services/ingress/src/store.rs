//! Ingress's reads and writes. It writes only its own schema (submissions, idempotency keys, cancel
//! requests, webhooks, outbox); it reads the trade state that matching publishes in its schema and
//! the notification feed, as the participants' single API.

use chrono::{DateTime, Utc};
use keel_domain::{MatchKey, ParticipantId, TradeId, TradeStatus};
use keel_messages::Submission;
use keel_platform::trace;
use keel_safestore::{Outgoing, PgPool};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

/// How far an acknowledged submission's commit must have gone (DESIGN section 5): to the local disk
/// only, or also to the standby's, so that losing the primary's region loses no acknowledged trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Local,
    /// Waits for the synchronous standby (`synchronous_standby_names` on the primary) to flush.
    Replicated,
}

impl Durability {
    /// Sets this transaction's `synchronous_commit`.
    pub async fn apply(self, tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        let setting = match self {
            Durability::Local => "local",
            Durability::Replicated => "on",
        };
        sqlx::query_scalar!("SELECT set_config('synchronous_commit', $1, true)", setting)
            .fetch_one(tx)
            .await?;
        Ok(())
    }
}

/// A leg as the trade view shows it.
#[derive(Debug)]
pub struct LegRow {
    pub leg_id: Uuid,
    pub sender: String,
    pub version: i32,
    pub im_id: String,
    pub broker_id: String,
    pub trade_ref: String,
    pub block: Json<Value>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct HistoryRow {
    pub status: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
    pub entry: Json<Value>,
}

pub struct TradeView {
    /// The latest version of each party's leg.
    pub legs: Vec<LegRow>,
    pub status: Option<String>,
    pub history: Vec<HistoryRow>,
}

impl TradeView {
    pub fn match_key(&self) -> Option<MatchKey> {
        let leg = self.legs.first()?;
        Some(MatchKey {
            im_id: ParticipantId::parse(&leg.im_id).ok()?,
            broker_id: ParticipantId::parse(&leg.broker_id).ok()?,
            trade_ref: keel_domain::TradeRef::parse(&leg.trade_ref).ok()?,
        })
    }

    pub fn is_party(&self, participant: &ParticipantId) -> bool {
        self.match_key()
            .is_some_and(|k| k.im_id == *participant || k.broker_id == *participant)
    }

    pub fn current_status(&self) -> Option<TradeStatus> {
        self.status.as_deref().and_then(|s| s.parse().ok())
    }
}

/// Undefined table: matching has not created its schema yet, so it knows of no trade.
fn none_if_undefined<T: Default>(result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
    match result {
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Ok(T::default()),
        other => other,
    }
}

pub async fn load_trade(
    pool: &PgPool,
    trade_id: TradeId,
) -> Result<Option<TradeView>, sqlx::Error> {
    let legs = sqlx::query_as!(
        LegRow,
        r#"SELECT DISTINCT ON (sender) leg_id, sender, version, im_id, broker_id, trade_ref,
                  block AS "block: Json<Value>", received_at
           FROM ingress.submissions WHERE trade_id = $1 ORDER BY sender, version DESC"#,
        trade_id.0
    )
    .fetch_all(pool)
    .await?;
    if legs.is_empty() {
        return Ok(None);
    }
    let status = none_if_undefined(
        sqlx::query_scalar!(
            "SELECT status FROM matching.trades WHERE trade_id = $1",
            trade_id.0
        )
        .fetch_optional(pool)
        .await,
    )?;
    let history = none_if_undefined(
        sqlx::query_as!(
            HistoryRow,
            r#"SELECT status, at, reason, entry AS "entry: Json<Value>"
               FROM matching.status_history WHERE trade_id = $1 ORDER BY seq"#,
            trade_id.0
        )
        .fetch_all(pool)
        .await,
    )?;
    Ok(Some(TradeView {
        legs,
        status: status.flatten(),
        history,
    }))
}

/// Records a cancel request and its outbox row; matching decides whether it still can be cancelled.
pub async fn request_cancel(
    pool: &PgPool,
    durability: Durability,
    trade_id: TradeId,
    match_key: MatchKey,
    by: &ParticipantId,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    durability.apply(&mut tx).await?;
    let requested_at = Utc::now();
    let fresh = sqlx::query_scalar!(
        "INSERT INTO ingress.cancel_requests (trade_id, requested_by, requested_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING 1",
        trade_id.0,
        by.as_str(),
        requested_at
    )
    .fetch_optional(&mut *tx)
    .await?;
    if fresh.is_some() {
        let message = Submission::Cancel {
            trade_id,
            match_key,
            requested_by: by.clone(),
            requested_at,
        };
        let traceparent = trace::exported().then(|| {
            let span = tracing::info_span!("request cancel", trade_id = %trade_id.0);
            trace::within_trade(&span, trade_id.0);
            trace::traceparent(&span)
        });
        let outgoing = Outgoing::of(&message).continuing(traceparent.flatten());
        keel_safestore::enqueue(&mut tx, &[outgoing]).await?;
    }
    tx.commit().await
}

pub async fn feed(
    pool: &PgPool,
    recipient: &ParticipantId,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Value)>, sqlx::Error> {
    let rows = none_if_undefined(
        sqlx::query!(
            r#"SELECT seq, body AS "body: Json<Value>" FROM notification.notifications
               WHERE recipient = $1 AND seq > $2 ORDER BY seq LIMIT $3"#,
            recipient.as_str(),
            after,
            limit
        )
        .fetch_all(pool)
        .await,
    )?;
    Ok(rows.into_iter().map(|row| (row.seq, row.body.0)).collect())
}

pub async fn set_webhook(
    pool: &PgPool,
    participant: &ParticipantId,
    url: &str,
    sealed_secret: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO ingress.webhooks (participant_id, url, sealed_secret) VALUES ($1, $2, $3)
         ON CONFLICT (participant_id) DO UPDATE
         SET url = EXCLUDED.url, sealed_secret = EXCLUDED.sealed_secret, updated_at = now()",
        participant.as_str(),
        url,
        sealed_secret
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Seals webhook secrets stored in plaintext before secrets were sealed; how many it sealed.
pub async fn seal_plaintext_webhook_secrets(
    pool: &PgPool,
    key: &keel_security::SealingKey,
) -> Result<usize, sqlx::Error> {
    let plain = sqlx::query!(
        "SELECT participant_id, sealed_secret FROM ingress.webhooks
         WHERE sealed_secret NOT LIKE 'v1:%' FOR UPDATE"
    )
    .fetch_all(pool)
    .await?;
    for row in &plain {
        sqlx::query!(
            "UPDATE ingress.webhooks SET sealed_secret = $2 WHERE participant_id = $1",
            row.participant_id,
            key.seal(&row.sealed_secret)
        )
        .execute(pool)
        .await?;
    }
    Ok(plain.len())
}

pub async fn webhook(
    pool: &PgPool,
    participant: &ParticipantId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT url FROM ingress.webhooks WHERE participant_id = $1",
        participant.as_str()
    )
    .fetch_optional(pool)
    .await
}

pub async fn remove_webhook(
    pool: &PgPool,
    participant: &ParticipantId,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        "DELETE FROM ingress.webhooks WHERE participant_id = $1",
        participant.as_str()
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Retires, every retention interval, outbox rows published and idempotency keys older than the
/// retention (a retry after that is a new request). Submissions themselves are the record of what
/// Keel accepted and are kept.
pub async fn retire_old(
    pool: PgPool,
    retention: keel_safestore::Retention,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let batch = retention.batch.max(1);
    keel_service_kit::run_in_rounds(
        "retention",
        retention.interval(),
        batch as usize,
        std::sync::Arc::new(tokio::sync::Notify::new()),
        shutdown,
        || async {
            let mut retired = keel_safestore::retire(&pool, retention.messages(), batch).await?;
            retired += sqlx::query!(
                "DELETE FROM ingress.idempotency_keys WHERE (participant_id, key) IN (
                     SELECT participant_id, key FROM ingress.idempotency_keys
                     WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)",
                retention.messages().as_secs_f64(),
                batch
            )
            .execute(&pool)
            .await?
            .rows_affected();
            Ok(retired as usize)
        },
    )
    .await
}
