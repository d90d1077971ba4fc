//! notification: `tm.events` → one notification per recipient (the pull feed) → signed webhooks.

mod handler;
mod webhooks;

use std::time::Duration;

use keel_service_kit::{Stage, StageConfig, Task};
use keel_topology::NOTIFICATION;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    #[serde(flatten)]
    stage: StageConfig,
    webhooks: webhooks::WebhookConfig,
    /// `local` only in the local stack, where the checked-in example secrets are accepted.
    environment: String,
    /// Opens the webhook signing secrets ingress stored sealed (base64 AES-256; no default).
    webhook_key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init(NOTIFICATION.name);
    let shutdown = keel_platform::shutdown::on_signal();
    let webhook_key = keel_security::webhook_key(&config.webhook_key, &config.environment)?;
    let stage = Stage::new(&NOTIFICATION, &keel_migrations::NOTIFICATION);
    let webhook_config = config.webhooks;
    let retention = config.stage.retention.clone();
    stage
        .run(config.stage, shutdown, async |context| {
            let worker = webhooks::Worker::new(
                context.pool.clone(),
                webhook_config.clone(),
                Duration::from_millis(200),
                webhook_key.clone(),
            );
            let pool = context.pool.clone();
            let (keep, batch) = (retention.notifications(), retention.batch.max(1));
            let retire = keel_service_kit::run_in_rounds(
                "notification retention",
                retention.interval(),
                batch as usize,
                context.relay_wake.clone(),
                context.shutdown.clone(),
                move || retire_notifications(pool.clone(), keep, batch),
            );
            let tasks: Vec<Task> = vec![
                Box::pin(worker.run(context.shutdown.clone())),
                Box::pin(retire),
            ];
            Ok((handler::Notification, tasks))
        })
        .await?;
    Ok(())
}

/// Retires up to `batch` notifications (and their webhook deliveries) older than `keep`: the feed
/// keeps a bounded history.
async fn retire_notifications(
    pool: sqlx::PgPool,
    keep: Duration,
    batch: i64,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The oldest rows by feed position (creation order), so no index on created_at is needed.
    let old = sqlx::query_scalar!(
        r#"SELECT notification_id AS "notification_id!" FROM (
               SELECT notification_id, created_at FROM notification.notifications ORDER BY seq LIMIT $2
           ) oldest
           WHERE created_at < now() - make_interval(secs => $1)"#,
        keep.as_secs_f64(),
        batch
    )
    .fetch_all(&mut *tx)
    .await?;
    if old.is_empty() {
        return Ok(0);
    }
    sqlx::query!(
        "DELETE FROM notification.webhook_deliveries WHERE notification_id = ANY($1)",
        &old
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM notification.notifications WHERE notification_id = ANY($1)",
        &old
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(old.len())
}

#[cfg(test)]
mod deployment_tests {
    use super::*;

    /// The variables the deployment gives this process are settings its configuration takes.
    #[test]
    fn it_takes_every_variable_the_deployment_gives_it() {
        keel_platform::config::assert_takes_deployment_variables::<Config>(
            env!("CARGO_MANIFEST_DIR"),
            "notification",
        );
    }
}
