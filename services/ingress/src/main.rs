//! ingress: the participants' HTTP API (DESIGN section 3). Every accepted submission is committed to
//! the safe-store (with its outbox row for `tm.submissions`) before it is acknowledged.
//!
//! It runs warm in every region. The API answers while trade matching's `traffic` control for this
//! region is On (503 naming the active region otherwise); the outbox relay runs, and the schema is
//! migrated, while the `processing` control is On.

mod admission;
mod api_error;
mod app;
mod auth;
mod config;
mod group_commit;
mod routes;
mod store;

use std::sync::Arc;

use keel_platform::ops::{self, Readiness};
use keel_routing::App;
use keel_safestore::StoreOptions;
use keel_service_kit::{Regional, StageConfig};
use keel_streaming::{OutboxRelay, RelayOptions};
use keel_topology::INGRESS;
use tokio::sync::Notify;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: config::Config = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init(INGRESS.name);
    let shutdown = keel_platform::shutdown::on_signal();
    let metrics = ops::install_metrics(INGRESS.name, &config.region);
    let token_secret = keel_security::require(
        "token_secret",
        &config.token_secret,
        keel_security::LOCAL_EXAMPLE_TOKEN_SECRET,
        &config.environment,
        "every region's ingress needs the same secret of at least 32 characters in KEEL_TOKEN_SECRET",
    )?;
    let participants =
        auth::ParticipantsHandle::new(auth::Participants::load(&config.credentials_file)?);
    participants.reload_every(
        config.credentials_file.clone(),
        std::time::Duration::from_millis(config.credentials_reload_ms),
        shutdown.clone(),
    );
    let reference = read_reference_data(&config.reference_data)?;
    let tokens = auth::TokenIssuer::new(token_secret, config.token_ttl_seconds);
    let webhook_key = keel_security::webhook_key(&config.webhook_key, &config.environment)?;
    // The region plumbing is the stages'; ingress reads it from the same tables.
    let regions = StageConfig {
        region: config.region.clone(),
        regions: config.regions.clone(),
        kafka: config.kafka.clone(),
        ..StageConfig::default()
    };

    let store = StoreOptions {
        url: regions.database_url(INGRESS.app)?,
        schema: INGRESS.schema.to_owned(),
        max_connections: config.db_max_connections,
    };
    // Lazy: in a standby region the database is a read-only replica, and nothing is served anyway.
    let pool = keel_safestore::lazy_pool(&store)?;
    let ledger = sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.ledger_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect_lazy(&regions.database_url(App::Settlement)?)?;
    let regional = Regional::start(
        INGRESS.app,
        &config.region,
        &config.regions,
        &config.control,
        shutdown.clone(),
    );

    let clusters = keel_service_kit::clusters(&config.regions, &config.kafka);
    let admission = if config.admission.enabled() {
        let probe = admission::PipelineProbe::new(
            [
                (App::TradeMatching, pool.clone()),
                (App::Settlement, ledger.clone()),
            ]
            .into(),
            regional.clone(),
            clusters.clone(),
        );
        admission::Admission::start(probe, &config.admission, shutdown.clone())
    } else {
        admission::Admission::open()
    };

    let readiness = Readiness::default();
    let relay_wake = Arc::new(Notify::new());
    let state = app::AppState::new(
        pool.clone(),
        ledger,
        app::Door {
            participants,
            reference,
            tokens,
            webhook_key: webhook_key.clone(),
        },
        relay_wake.clone(),
        regional.clone(),
        &config,
    )
    .with_admission(admission);
    let router = app::router(state, &config);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let ops_listener = tokio::net::TcpListener::bind(config.ops_listen).await?;
    tracing::info!(listen = %listener.local_addr()?, ops = %ops_listener.local_addr()?, region = config.region, "ingress up");

    let kafka = regions.local_kafka()?;
    let sessions = regional.run_while_processing(&readiness, &shutdown, |session| {
        let (store, kafka, clusters, regional, relay_wake, readiness, retention, webhook_key) = (
            store.clone(),
            kafka.clone(),
            clusters.clone(),
            regional.clone(),
            relay_wake.clone(),
            readiness.clone(),
            config.retention.clone(),
            webhook_key.clone(),
        );
        async move {
            // Migrates the schema (only a primary can), then relays accepted submissions.
            let Some(migrated) =
                keel_service_kit::connect_store(&store, &keel_migrations::INGRESS, &session)
                    .await
                    .map_err(|e| e.to_string())?
            else {
                return Ok(());
            };
            let sealed = store::seal_plaintext_webhook_secrets(&migrated, &webhook_key)
                .await
                .map_err(|e| e.to_string())?;
            if sealed > 0 {
                tracing::info!(sealed, "webhook secrets stored in plaintext are now sealed");
            }
            let relayed: Vec<String> = INGRESS.relayed().map(str::to_owned).collect();
            keel_streaming::admin::ensure_topics(&kafka, INGRESS.produces)
                .await
                .map_err(|e| e.to_string())?;
            let relay = OutboxRelay::new(
                clusters,
                Arc::new(regional),
                relayed.clone(),
                migrated.clone(),
                RelayOptions::default(),
            )
            .with_waker(relay_wake);
            readiness.set_ready("session");
            let depth =
                keel_streaming::spawn_depth_gauge(migrated.clone(), relayed, session.clone());
            let retire = tokio::spawn(store::retire_old(
                migrated.clone(),
                retention.clone(),
                session.clone(),
            ));
            relay.run(session).await;
            let _ = tokio::join!(depth, retire);
            migrated.close().await;
            Ok(())
        }
    });
    let (served, ops_served, ()) = tokio::join!(
        ops::serve(listener, router, shutdown.clone()),
        ops::serve(
            ops_listener,
            ops::router(readiness.clone(), metrics),
            shutdown.clone()
        ),
        sessions
    );
    served?;
    ops_served?;
    pool.close().await;
    Ok(())
}

fn read_reference_data(path: &std::path::Path) -> anyhow::Result<keel_ledger::ReferenceData> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading reference data {}: {e}", path.display()))?;
    keel_ledger::ReferenceData::from_json(&raw)
        .map_err(|e| anyhow::anyhow!("reference data {}: {e}", path.display()))
}
