//! ingress: the participants' HTTP API (DESIGN section 3). Every accepted submission is committed to
//! the safe-store (with its outbox row for `tm.submissions`) before it is acknowledged.

mod api_error;
mod app;
mod auth;
mod config;
mod routes;
mod store;

use keel_platform::ops::{self, Readiness};
use keel_safestore::StoreOptions;
use keel_streaming::{OutboxRelay, RelayOptions};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: config::Config = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init("ingress");
    let shutdown = keel_platform::shutdown::on_signal();
    let metrics = ops::install_metrics("ingress", &config.region);
    let participants = auth::Participants::load(&config.participants_file)?;
    let tokens = auth::TokenIssuer::new(&config.token_secret, config.token_ttl_seconds);

    let store = StoreOptions {
        url: config.database_url.clone(),
        schema: "ingress".to_owned(),
        max_connections: config.db_max_connections,
    };
    let Some(pool) = keel_service_kit::connect_store(&store, &MIGRATIONS, &shutdown).await? else {
        return Ok(());
    };
    keel_streaming::admin::ensure_topics(&config.kafka, &[keel_messages::topics::SUBMISSIONS])
        .await?;
    let relay = OutboxRelay::new(config.kafka.clone(), pool.clone(), RelayOptions::default());
    let ledger = sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.settlement.max_connections)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect_lazy(&config.settlement.database_url)?;

    let readiness = Readiness::default();
    let state = app::AppState::new(
        pool.clone(),
        ledger,
        participants,
        tokens,
        relay.waker(),
        &config,
    );
    let router = app::router(state, &config).merge(ops::router(readiness.clone(), metrics));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, region = config.region, "ingress up");
    readiness.set_ready("database");

    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    ops::serve(listener, router, shutdown.clone()).await?;
    relay_task.await??;
    pool.close().await;
    Ok(())
}
