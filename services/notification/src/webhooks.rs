//! Webhook delivery. Participants register a URL through ingress (`PUT /v1/webhook`, kept in
//! `ingress.webhooks`); this worker finds their new notifications, POSTs each one signed with the
//! participant's secret, and retries failures with capped exponential backoff up to a bound. Delivery
//! is at least once; receivers dedup by `notification_id`. The pull feed stays the record.
//!
//! A delivery goes only where the egress policy allows (no internal address unless configured,
//! checked on the URL and on every address its name resolves to), is not redirected, and times out.
//! The signing secret is stored sealed by ingress and opened here for each delivery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use keel_safestore::PgPool;
use keel_security::egress::EgressPolicy;
use keel_security::SealingKey;
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
    /// Whether plain http and internal addresses may be webhook targets (off but locally).
    #[serde(flatten)]
    pub egress: EgressPolicy,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            initial_backoff_ms: 500,
            max_backoff_ms: 300_000,
            timeout_ms: 5_000,
            egress: EgressPolicy::default(),
        }
    }
}

pub struct Worker {
    pool: PgPool,
    config: WebhookConfig,
    poll: Duration,
    client: reqwest::Client,
    key: SealingKey,
}

struct Due {
    notification_id: Uuid,
    attempts: i32,
    body: String,
    url: String,
    sealed_secret: String,
}

/// Resolves a webhook's host name and keeps only the addresses the egress policy allows, so a name
/// that points (or is re-pointed) at an internal address is not connected to.
struct GuardedResolver {
    policy: EgressPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.check_ip(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves only to addresses webhooks may not reach ({found:?})"
                )
                .into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
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
    pub fn new(pool: PgPool, config: WebhookConfig, poll: Duration, key: SealingKey) -> Self {
        Self {
            client: client(&config),
            pool,
            config,
            poll,
            key,
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
            r#"SELECT d.notification_id, d.attempts, n.body::text AS "body!", w.url, w.sealed_secret
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
        let secret = self
            .key
            .open(&delivery.sealed_secret)
            .map_err(|e| e.to_string())?;
        deliver(
            &self.client,
            &self.config.egress,
            &delivery.url,
            delivery.notification_id,
            &secret,
            &delivery.body,
        )
        .await
    }
}

/// The delivery client: a bounded time per delivery, no redirect followed (a 3xx is a failed
/// delivery), names resolved through the egress policy.
fn client(config: &WebhookConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver {
            policy: config.egress,
        }))
        .build()
        .expect("HTTP client builds")
}

/// A failed request with its causes (a refused resolution, a timeout), for the delivery's
/// last_error.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// POSTs one signed notification to `url`, if the egress policy allows it.
async fn deliver(
    client: &reqwest::Client,
    policy: &EgressPolicy,
    url: &str,
    notification_id: Uuid,
    secret: &str,
    body: &str,
) -> Result<(), String> {
    let url = policy
        .check_url(url)
        .map_err(|refusal| format!("refused: {refusal}"))?;
    let timestamp = chrono::Utc::now().timestamp();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("keel-notification-id", notification_id.to_string())
        .header("keel-signature", signature(secret, timestamp, body))
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()))
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

    const LOCAL: EgressPolicy = EgressPolicy {
        allow_http: true,
        allow_private_targets: true,
    };

    fn config(egress: EgressPolicy) -> WebhookConfig {
        WebhookConfig {
            timeout_ms: 500,
            egress,
            ..WebhookConfig::default()
        }
    }

    /// A receiver on loopback: `/hook` redirects to `/inner`, `/slow` never answers in time;
    /// returns its address and how often `/inner` was reached.
    async fn receiver() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use axum::routing::post;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let inner = Arc::new(AtomicUsize::new(0));
        let hits = inner.clone();
        let app = axum::Router::new()
            .route(
                "/hook",
                post(|| async {
                    (
                        axum::http::StatusCode::TEMPORARY_REDIRECT,
                        [("location", "/inner")],
                    )
                }),
            )
            .route(
                "/inner",
                post(move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, inner)
    }

    async fn deliver_to(egress: EgressPolicy, url: &str) -> Result<(), String> {
        let config = config(egress);
        deliver(
            &client(&config),
            &config.egress,
            url,
            Uuid::nil(),
            "s",
            "{}",
        )
        .await
    }

    #[tokio::test]
    async fn a_delivery_is_not_redirected_and_times_out() {
        let (address, inner) = receiver().await;
        let redirected = deliver_to(LOCAL, &format!("http://{address}/hook")).await;
        assert_eq!(redirected, Err("HTTP 307 Temporary Redirect".to_owned()));
        assert_eq!(
            deliver_to(LOCAL, &format!("http://{address}/inner")).await,
            Ok(())
        );
        assert_eq!(
            inner.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the redirect was not followed"
        );
        let started = std::time::Instant::now();
        let slow = deliver_to(LOCAL, &format!("http://{address}/slow")).await;
        assert!(
            slow.as_ref().is_err_and(|e| e.contains("timed out")),
            "a slow receiver times out: {slow:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_delivery_to_an_internal_address_is_refused_without_connecting() {
        let (address, inner) = receiver().await;
        let https_only = EgressPolicy::default();
        let refused = deliver_to(https_only, &format!("http://{address}/inner")).await;
        assert!(refused.is_err_and(|e| e.contains("refused: scheme http")));
        let http_public_only = EgressPolicy {
            allow_http: true,
            allow_private_targets: false,
        };
        let refused = deliver_to(http_public_only, &format!("http://{address}/inner")).await;
        assert!(refused.is_err_and(|e| e.contains("internal address")));
        assert_eq!(inner.load(std::sync::atomic::Ordering::SeqCst), 0);

        // A name is checked on what it resolves to.
        use reqwest::dns::Resolve;
        let guarded = GuardedResolver {
            policy: http_public_only,
        };
        let resolved = guarded
            .resolve("localhost".parse().unwrap())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            resolved.is_err_and(|e| e.contains("may not reach")),
            "a name resolving to loopback is not connected to"
        );
        let local = GuardedResolver { policy: LOCAL };
        assert!(local.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
