//! Webhook delivery. Participants register a URL through ingress (`PUT /v1/webhook`, kept in
//! `ingress.webhooks`); this worker finds their new notifications, POSTs each one signed with the
//! participant's secret, and retries failures with capped exponential backoff up to a bound. Delivery
//! is at least once; receivers dedup by `notification_id`. The pull feed stays the record.

use std::time::Duration;

use hmac::{Hmac, Mac};
use keel_safestore::PgPool;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `max_backoff_ms`.
    pub initial_backoff_ms: i64,
    pub max_backoff_ms: i64,
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            initial_backoff_ms: 500,
            max_backoff_ms: 300_000,
            timeout_ms: 5_000,
        }
    }
}

pub struct Worker {
    pool: PgPool,
    config: WebhookConfig,
    poll: Duration,
    client: reqwest::Client,
}

struct Due {
    notification_id: Uuid,
    attempts: i32,
    body: String,
    url: String,
    secret: String,
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the timestamp is signed too, so a receiver
/// can refuse replays.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

impl Worker {
    pub fn new(pool: PgPool, config: WebhookConfig, poll: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .expect("HTTP client builds");
        Self {
            pool,
            config,
            poll,
            client,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.poll) => {}
            }
            if let Err(error) = self.scan().await {
                // ingress may not have created its webhooks table yet; try again next round.
                tracing::debug!(%error, "webhook scan skipped");
                continue;
            }
            if let Err(error) = self.deliver_due().await {
                tracing::warn!(%error, "webhook delivery round failed");
            }
        }
    }

    /// Queues deliveries for new notifications of participants that have a webhook.
    async fn scan(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let last = sqlx::query_scalar!("SELECT last_seq FROM notification.webhook_scan FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let upto = sqlx::query_scalar!(
            "SELECT max(seq) FROM (SELECT seq FROM notification.notifications
             WHERE seq > $1 ORDER BY seq LIMIT 5000) s",
            last
        )
        .fetch_one(&mut *tx)
        .await?;
        let Some(upto) = upto else { return Ok(()) };
        sqlx::query!(
            "INSERT INTO notification.webhook_deliveries (notification_id, recipient)
             SELECT n.notification_id, n.recipient FROM notification.notifications n
             JOIN ingress.webhooks w ON w.participant_id = n.recipient
             WHERE n.seq > $1 AND n.seq <= $2
             ON CONFLICT DO NOTHING",
            last,
            upto
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!("UPDATE notification.webhook_scan SET last_seq = $1", upto)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn deliver_due(&self) -> Result<(), sqlx::Error> {
        let due = sqlx::query_as!(
            Due,
            r#"SELECT d.notification_id, d.attempts, n.body::text AS "body!", w.url, w.secret
               FROM notification.webhook_deliveries d
               JOIN notification.notifications n USING (notification_id)
               JOIN ingress.webhooks w ON w.participant_id = d.recipient
               WHERE d.delivered_at IS NULL AND d.failed_at IS NULL AND d.next_attempt_at <= now()
               ORDER BY n.seq LIMIT 100"#
        )
        .fetch_all(&self.pool)
        .await?;
        let outcomes = futures::future::join_all(due.iter().map(|d| self.post(d))).await;
        for (delivery, outcome) in due.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    sqlx::query!(
                        "UPDATE notification.webhook_deliveries
                         SET delivered_at = now(), attempts = attempts + 1 WHERE notification_id = $1",
                        delivery.notification_id
                    )
                    .execute(&self.pool)
                    .await?;
                    metrics::counter!("keel_webhook_deliveries_total", "outcome" => "delivered")
                        .increment(1);
                }
                Err(error) => {
                    let attempts = delivery.attempts + 1;
                    let give_up = attempts >= self.config.max_attempts;
                    let backoff = (self.config.initial_backoff_ms << (attempts - 1).min(20))
                        .min(self.config.max_backoff_ms);
                    sqlx::query!(
                        "UPDATE notification.webhook_deliveries
                         SET attempts = $2, last_error = $3,
                             next_attempt_at = now() + make_interval(secs => $4::double precision / 1000),
                             failed_at = CASE WHEN $5 THEN now() END
                         WHERE notification_id = $1",
                        delivery.notification_id,
                        attempts,
                        error,
                        backoff as f64,
                        give_up
                    )
                    .execute(&self.pool)
                    .await?;
                    let outcome = if give_up { "failed" } else { "retry" };
                    metrics::counter!("keel_webhook_deliveries_total", "outcome" => outcome)
                        .increment(1);
                    tracing::warn!(notification_id = %delivery.notification_id, attempts, error, give_up, "webhook delivery failed");
                }
            }
        }
        Ok(())
    }

    async fn post(&self, delivery: &Due) -> Result<(), String> {
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("keel-notification-id", delivery.notification_id.to_string())
            .header(
                "keel-signature",
                signature(&delivery.secret, timestamp, &delivery.body),
            )
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let one = signature("secret", 1_700_000_000, "{}");
        assert!(one.starts_with("t=1700000000,v1="));
        assert_ne!(one, signature("secret", 1_700_000_001, "{}"));
        assert_ne!(one, signature("secret", 1_700_000_000, "{ }"));
        assert_ne!(one, signature("other", 1_700_000_000, "{}"));
    }
}
