//! Ingress's reads and writes. It writes only its own schema (submissions, idempotency keys, cancel
//! requests, webhooks, outbox); it reads the trade state that matching publishes in its schema and
//! the notification feed, as the participants' single API.

use chrono::{DateTime, Utc};
use keel_domain::{MatchKey, ParticipantId, TradeId, TradeStatus};
use keel_messages::Submission;
use keel_safestore::{Outgoing, PgPool};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::routes::submit::AcceptedLeg;

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
    async fn apply(self, tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        let setting = match self {
            Durability::Local => "local",
            Durability::Replicated => "on",
        };
        sqlx::query("SELECT set_config('synchronous_commit', $1, true)")
            .bind(setting)
            .execute(tx)
            .await?;
        Ok(())
    }
}

/// Records accepted legs and their outbox rows in one transaction, and answers `response` (or, for a
/// replayed idempotency key, the answer first given). A leg already recorded with the same content is
/// acknowledged again; with other content it is a conflict and nothing is recorded.
pub async fn record_legs(
    pool: &PgPool,
    durability: Durability,
    sender: &ParticipantId,
    legs: &[AcceptedLeg],
    idempotency: Option<(&str, &str)>,
    response: Value,
) -> Result<Value, ApiError> {
    let mut tx = pool.begin().await?;
    durability.apply(&mut tx).await?;
    if let Some((key, digest)) = idempotency {
        let claimed: Option<i32> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (participant_id, key, request_digest) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING RETURNING 1",
        )
        .bind(sender.as_str())
        .bind(key)
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            let (stored_digest, stored): (String, Option<Json<Value>>) = sqlx::query_as(
                "SELECT request_digest, response FROM idempotency_keys WHERE participant_id = $1 AND key = $2",
            )
            .bind(sender.as_str())
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            return match stored {
                Some(Json(answer)) if stored_digest == digest => Ok(answer),
                _ => Err(ApiError::Conflict {
                    code: "idempotency_key_reused",
                    message: format!(
                        "Idempotency-Key {key:?} was already used for a different request"
                    ),
                }),
            };
        }
    }

    let received_at = Utc::now();
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO submissions (leg_id, trade_id, sender, trade_ref, version, im_id, broker_id, block, digest, received_at)
         SELECT l.*, $10 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::jsonb[], $9::text[])
             AS l(leg_id, trade_id, sender, trade_ref, version, im_id, broker_id, block, digest)
         ON CONFLICT (leg_id) DO NOTHING
         RETURNING leg_id",
    )
    .bind(legs.iter().map(|l| l.leg_id.0).collect::<Vec<_>>())
    .bind(legs.iter().map(|l| l.trade_id.0).collect::<Vec<_>>())
    .bind(legs.iter().map(|_| sender.as_str()).collect::<Vec<_>>())
    .bind(legs.iter().map(|l| l.block.trade_ref.as_str()).collect::<Vec<_>>())
    .bind(legs.iter().map(|l| l.block.version.get() as i32).collect::<Vec<_>>())
    .bind(legs.iter().map(|l| l.block.im_id.as_str()).collect::<Vec<_>>())
    .bind(legs.iter().map(|l| l.block.broker_id.as_str()).collect::<Vec<_>>())
    .bind(legs.iter().map(|l| l.canonical.clone()).collect::<Vec<_>>())
    .bind(legs.iter().map(|l| l.digest.as_str()).collect::<Vec<_>>())
    .bind(received_at)
    .fetch_all(&mut *tx)
    .await?;

    if inserted.len() < legs.len() {
        let existing: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT leg_id, digest FROM submissions WHERE leg_id = ANY($1)")
                .bind(
                    legs.iter()
                        .filter(|l| !inserted.contains(&l.leg_id.0))
                        .map(|l| l.leg_id.0)
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&mut *tx)
                .await?;
        for (leg_id, digest) in existing {
            let leg = legs
                .iter()
                .find(|l| l.leg_id.0 == leg_id)
                .expect("queried from legs");
            if leg.digest != digest {
                return Err(ApiError::Conflict {
                    code: "leg_version_conflict",
                    message: format!(
                        "trade_ref {} version {} was already submitted with different content; amend with a higher version",
                        leg.block.trade_ref,
                        leg.block.version.get()
                    ),
                });
            }
        }
    }

    let outgoing: Vec<Outgoing> = legs
        .iter()
        .filter(|l| inserted.contains(&l.leg_id.0))
        .map(|l| {
            Outgoing::of(&Submission::Leg {
                leg_id: l.leg_id,
                trade_id: l.trade_id,
                match_key: l.block.match_key(),
                sender: sender.clone(),
                received_at,
                block: l.canonical.clone(),
            })
        })
        .collect();
    keel_safestore::enqueue(&mut tx, &outgoing).await?;
    if let Some((key, _)) = idempotency {
        sqlx::query(
            "UPDATE idempotency_keys SET response = $3 WHERE participant_id = $1 AND key = $2",
        )
        .bind(sender.as_str())
        .bind(key)
        .bind(&response)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    metrics::counter!("keel_ingress_legs_accepted_total").increment(outgoing.len() as u64);
    Ok(response)
}

/// A leg as the trade view shows it.
#[derive(Debug, sqlx::FromRow)]
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

#[derive(Debug, sqlx::FromRow)]
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
    let legs: Vec<LegRow> = sqlx::query_as(
        "SELECT DISTINCT ON (sender) leg_id, sender, version, im_id, broker_id, trade_ref, block, received_at
         FROM submissions WHERE trade_id = $1 ORDER BY sender, version DESC",
    )
    .bind(trade_id.0)
    .fetch_all(pool)
    .await?;
    if legs.is_empty() {
        return Ok(None);
    }
    let status: Option<Option<String>> = none_if_undefined(
        sqlx::query_scalar("SELECT status FROM matching.trades WHERE trade_id = $1")
            .bind(trade_id.0)
            .fetch_optional(pool)
            .await,
    )?;
    let history: Vec<HistoryRow> = none_if_undefined(
        sqlx::query_as("SELECT status, at, reason, entry FROM matching.status_history WHERE trade_id = $1 ORDER BY seq")
            .bind(trade_id.0)
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
    let fresh: Option<i32> = sqlx::query_scalar(
        "INSERT INTO cancel_requests (trade_id, requested_by, requested_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING 1",
    )
    .bind(trade_id.0)
    .bind(by.as_str())
    .bind(requested_at)
    .fetch_optional(&mut *tx)
    .await?;
    if fresh.is_some() {
        let message = Submission::Cancel {
            trade_id,
            match_key,
            requested_by: by.clone(),
            requested_at,
        };
        keel_safestore::enqueue(&mut tx, &[Outgoing::of(&message)]).await?;
    }
    tx.commit().await
}

pub async fn feed(
    pool: &PgPool,
    recipient: &ParticipantId,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Value)>, sqlx::Error> {
    let rows: Vec<(i64, Json<Value>)> = none_if_undefined(
        sqlx::query_as(
            "SELECT seq, body FROM notification.notifications WHERE recipient = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(recipient.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await,
    )?;
    Ok(rows
        .into_iter()
        .map(|(seq, Json(body))| (seq, body))
        .collect())
}

pub async fn set_webhook(
    pool: &PgPool,
    participant: &ParticipantId,
    url: &str,
    secret: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhooks (participant_id, url, secret) VALUES ($1, $2, $3)
         ON CONFLICT (participant_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, updated_at = now()",
    )
    .bind(participant.as_str())
    .bind(url)
    .bind(secret)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn webhook(
    pool: &PgPool,
    participant: &ParticipantId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT url FROM webhooks WHERE participant_id = $1")
        .bind(participant.as_str())
        .fetch_optional(pool)
        .await
}

pub async fn remove_webhook(
    pool: &PgPool,
    participant: &ParticipantId,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM webhooks WHERE participant_id = $1")
        .bind(participant.as_str())
        .execute(pool)
        .await?;
    Ok(result.rows_affected() > 0)
}
