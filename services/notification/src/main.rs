//! notification: `tm.events` → one notification per recipient (the pull feed) → signed webhooks.

mod handler;
mod webhooks;

use std::time::Duration;

use keel_messages::topics;
use keel_routing::App;
use keel_service_kit::{Stage, StageConfig, Task};
use serde::{Deserialize, Serialize};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    #[serde(flatten)]
    stage: StageConfig,
    webhooks: webhooks::WebhookConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init("notification");
    let shutdown = keel_platform::shutdown::on_signal();
    let stage = Stage {
        app: App::TradeMatching,
        name: "notification",
        schema: "notification",
        topic: topics::EVENTS,
        dead_letter_topic: topics::TM_DEAD_LETTERS,
        produces: &[],
        migrations: &MIGRATIONS,
    };
    let webhook_config = config.webhooks;
    stage
        .run(config.stage, shutdown, async |context| {
            let worker = webhooks::Worker::new(
                context.pool.clone(),
                webhook_config.clone(),
                Duration::from_millis(200),
            );
            let tasks: Vec<Task> = vec![Box::pin(worker.run(context.shutdown.clone()))];
            Ok((handler::Notification, tasks))
        })
        .await?;
    Ok(())
}
