//! `keelctl status` and `keelctl controls`: per application and region, the routing controls, the
//! services' health, the database's role and replication lag, consumer lag and outbox depth.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use keel_arc::ArcClient;
use keel_platform::ops::{ReadyzBody, ROUTING_CONTROLS_CHECK};
use keel_routing::{App, Gate};
use keel_safestore::quote_ident;
use keel_topology::services_of;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::Config;

/// What a service's `/readyz` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Down(String),
    /// The checks that fail, and why.
    Unready(BTreeMap<String, String>),
    /// Ready; the note says whether it processes: "active", "standby (...)".
    Ready(String),
}

impl Health {
    pub fn is_active(&self) -> bool {
        matches!(self, Health::Ready(note) if note == "active")
    }

    /// Not processing: standing by, fenced, or down.
    pub fn is_stopped(&self) -> bool {
        match self {
            Health::Down(_) => true,
            Health::Ready(note) => note.starts_with("standby"),
            // Fenced: it cannot read its routing controls, so it neither consumes nor produces.
            Health::Unready(failing) => failing.contains_key(ROUTING_CONTROLS_CHECK),
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Down(why) => write!(f, "down ({why})"),
            Health::Unready(failing) => {
                let failing: Vec<String> = failing
                    .iter()
                    .map(|(check, why)| format!("{check}: {why}"))
                    .collect();
                write!(f, "unready ({})", failing.join("; "))
            }
            Health::Ready(note) => f.write_str(note),
        }
    }
}

pub async fn readiness(http: &reqwest::Client, base: &str) -> Health {
    match http.get(format!("{base}/readyz")).send().await {
        Err(error) => Health::Down(error.without_url().to_string()),
        Ok(response) => {
            let status = response.status();
            match response.json::<ReadyzBody>().await {
                Err(error) => Health::Down(format!(
                    "/readyz answered {status} with a body that is not readiness: {}",
                    error.without_url()
                )),
                Ok(body) if body.ready => {
                    Health::Ready(body.notes.get("processing").cloned().unwrap_or_default())
                }
                Ok(body) => Health::Unready(body.failing),
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Row {
    app: &'static str,
    region: String,
    traffic: Option<bool>,
    processing: Option<bool>,
    /// Service name → "active", "standby (...)", "fenced", or why it is not ready.
    services: BTreeMap<&'static str, String>,
    database: Database,
    /// Messages in this region's Kafka not yet consumed, per topic (primary only).
    consumer_lag: BTreeMap<String, i64>,
    /// Outbox rows not yet published (primary only).
    outbox_depth: Option<i64>,
    /// Why the consumer lag could not be read from this region's broker.
    broker_error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Database {
    role: String,
    /// Primary: bytes of WAL each standby has yet to replay. Standby: bytes received but not replayed.
    replication_lag_bytes: Option<i64>,
    /// Primary: the standby's replay lag as Postgres measures it. Standby: time since the last
    /// replayed transaction was committed on the primary.
    replication_lag_seconds: Option<f64>,
    synchronous_standby: Option<String>,
    error: Option<String>,
}

pub async fn status(config: &Config, json_out: bool) -> ExitCode {
    let arc = ArcClient::new(&config.control);
    let controls = arc.states().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    let mut rows = Vec::new();
    for app in App::ALL {
        for (region, topology) in &config.regions {
            let state = |gate| controls.as_ref().ok().map(|c| c.allows(app, gate, region));
            let mut services = BTreeMap::new();
            for service in services_of(app) {
                let health = match topology.services.get(service.name) {
                    None => "not configured".to_owned(),
                    Some(base) => readiness(&http, base).await.to_string(),
                };
                services.insert(service.name, health);
            }
            let mut row = Row {
                app: app.name(),
                region: region.clone(),
                traffic: state(Gate::Traffic),
                processing: state(Gate::Processing),
                services,
                database: Database::default(),
                consumer_lag: BTreeMap::new(),
                outbox_depth: None,
                broker_error: None,
            };
            match topology.databases.get(app.name()) {
                None => row.database.error = Some("not configured".to_owned()),
                Some(url) => match PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(2))
                    .connect(url)
                    .await
                {
                    Err(error) => {
                        row.database.role = "unreachable".to_owned();
                        row.database.error = Some(error.to_string());
                    }
                    Ok(pool) => {
                        if let Err(error) = inspect(&pool, app, &topology.kafka, &mut row).await {
                            row.database.error = Some(error.to_string());
                        }
                        pool.close().await;
                    }
                },
            }
            rows.push(row);
        }
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "controls": controls.as_ref().map(|c| &c.states).map_err(|e| e.to_string()),
                "applications": rows,
            }))
            .expect("json")
        );
    } else {
        if let Err(error) = &controls {
            println!("routing controls unreadable: {error}\n");
        } else if let Ok(c) = &controls {
            println!(
                "generator: {}\n",
                on_off(Some(c.is_on(keel_routing::GENERATOR)))
            );
        }
        println!(
            "{:<15} {:<10} {:<8} {:<10} {:<9} {:>12} {:>8} {:>8}  services",
            "application",
            "region",
            "traffic",
            "processing",
            "database",
            "repl lag",
            "cons lag",
            "outbox"
        );
        for row in &rows {
            let lag = match (
                row.database.replication_lag_bytes,
                row.database.replication_lag_seconds,
            ) {
                (Some(bytes), Some(seconds)) => format!("{bytes} B/{seconds:.1}s"),
                (Some(bytes), None) => format!("{bytes} B"),
                (None, Some(seconds)) => format!("{seconds:.1}s"),
                _ => "-".to_owned(),
            };
            let consumer_lag: i64 = row.consumer_lag.values().sum();
            println!(
                "{:<15} {:<10} {:<8} {:<10} {:<9} {:>12} {:>8} {:>8}  {}",
                row.app,
                row.region,
                on_off(row.traffic),
                on_off(row.processing),
                row.database.role,
                lag,
                if row.consumer_lag.is_empty() {
                    "-".to_owned()
                } else {
                    consumer_lag.to_string()
                },
                row.outbox_depth.map_or("-".to_owned(), |d| d.to_string()),
                row.services
                    .iter()
                    .map(|(s, h)| format!("{s}: {h}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(error) = &row.database.error {
                println!("{:<26} database: {error}", "");
            }
            if let Some(error) = &row.broker_error {
                println!("{:<26} {error}", "");
            }
        }
    }
    if controls.is_err() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn on_off(state: Option<bool>) -> &'static str {
    match state {
        Some(true) => "On",
        Some(false) => "Off",
        None => "?",
    }
}

async fn inspect(pool: &PgPool, app: App, kafka: &str, row: &mut Row) -> Result<(), sqlx::Error> {
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(pool)
        .await?;
    if standby {
        row.database.role = "standby".to_owned();
        let (bytes, seconds): (Option<i64>, Option<f64>) = sqlx::query_as(
            "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
                    CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                         ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END",
        )
        .fetch_one(pool)
        .await?;
        row.database.replication_lag_bytes = bytes;
        row.database.replication_lag_seconds = seconds;
        return Ok(());
    }
    row.database.role = "primary".to_owned();
    let standbys: Vec<(String, Option<i64>, Option<f64>, String)> = sqlx::query_as(
        "SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
                extract(epoch FROM replay_lag)::float8, sync_state
         FROM pg_stat_replication",
    )
    .fetch_all(pool)
    .await?;
    row.database.replication_lag_bytes = standbys.iter().filter_map(|s| s.1).max();
    row.database.replication_lag_seconds =
        Some(standbys.iter().filter_map(|s| s.2).fold(0.0_f64, f64::max));
    row.database.synchronous_standby = standbys.iter().find(|s| s.3 == "sync").map(|s| s.0.clone());
    if standbys.is_empty() {
        row.database.replication_lag_seconds = None;
        row.database.error = Some("no standby is connected".to_owned());
    }
    match queues(pool, app, &row.region, kafka).await {
        Ok((depth, lag)) => {
            row.outbox_depth = Some(depth);
            row.consumer_lag = lag;
        }
        Err(QueuesError::Database(error)) => return Err(error),
        Err(broker @ QueuesError::Broker { .. }) => row.broker_error = Some(broker.to_string()),
    }
    Ok(())
}

/// Why `app`'s queues could not be read: the database, or the broker the lag is measured in.
#[derive(Debug, thiserror::Error)]
pub enum QueuesError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker {kafka}: consumer lag unreadable: {reason}")]
    Broker { kafka: String, reason: String },
}

/// `app`'s outbox rows waiting for the relay, and its consumers' lag per topic in `region`'s Kafka.
pub async fn queues(
    pool: &PgPool,
    app: App,
    region: &str,
    kafka: &str,
) -> Result<(i64, BTreeMap<String, i64>), QueuesError> {
    let mut depth = 0;
    let mut offsets: Vec<(String, i32, i64)> = Vec::new();
    for schema in services_of(app).map(|service| quote_ident(service.schema)) {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("{schema}.outbox"))
            .fetch_one(pool)
            .await?;
        if !exists {
            continue;
        }
        depth += sqlx::query_scalar::<_, i64>(&format!(
            "SELECT count(*) FROM {schema}.outbox o
             LEFT JOIN {schema}.relay_progress p USING (topic)
             WHERE o.id > coalesce(p.id, 0)"
        ))
        .fetch_one(pool)
        .await?;
        offsets.extend(
            sqlx::query_as::<_, (String, i32, i64)>(&format!(
                "SELECT topic, partition, next_offset FROM {schema}.consumer_offsets WHERE cluster = $1"
            ))
            .bind(region)
            .fetch_all(pool)
            .await?,
        );
    }
    Ok((depth, consumer_lag(kafka, &offsets).await?))
}

/// Per topic: the broker's high watermark minus the offset the consumer stored in Postgres. A
/// broker that does not answer is an error: a lag that cannot be read is not zero.
async fn consumer_lag(
    kafka: &str,
    offsets: &[(String, i32, i64)],
) -> Result<BTreeMap<String, i64>, QueuesError> {
    let kafka = kafka.to_owned();
    let offsets = offsets.to_vec();
    let unreadable = |reason: String| QueuesError::Broker {
        kafka: kafka.clone(),
        reason,
    };
    let read = tokio::task::spawn_blocking({
        let kafka = kafka.clone();
        move || -> Result<BTreeMap<String, i64>, String> {
            let mut lag = BTreeMap::new();
            let consumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &kafka)
                .set("broker.address.family", "v4")
                .create::<BaseConsumer>()
                .map_err(|e| e.to_string())?;
            for (topic, partition, next) in offsets {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(2))
                    .map_err(|e| format!("{topic}: {e}"))?;
                *lag.entry(topic).or_insert(0) += (high - next).max(0);
            }
            Ok(lag)
        }
    })
    .await
    .map_err(|e| unreadable(e.to_string()))?;
    read.map_err(unreadable)
}

/// `keelctl controls set NAME=On|Off ...`: all at once, or nothing (the cluster checks its safety
/// rules against the result).
pub async fn set_controls(
    config: &Config,
    changes: &[String],
    overrides: &[String],
    json_out: bool,
) -> ExitCode {
    let mut parsed = Vec::new();
    for change in changes {
        let Some((name, state)) = change.split_once('=') else {
            eprintln!("error: {change:?} is not NAME=On or NAME=Off");
            return ExitCode::from(2);
        };
        let on = match state.to_ascii_lowercase().as_str() {
            "on" => true,
            "off" => false,
            _ => {
                eprintln!("error: {change:?}: the state must be On or Off");
                return ExitCode::from(2);
            }
        };
        parsed.push((name, on));
    }
    let arc = ArcClient::new(&config.control);
    match arc.set(&parsed, overrides).await {
        Ok(()) => {
            if json_out {
                println!("{}", json!({"updated": changes}));
            } else {
                println!("updated: {}", changes.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json_out {
                println!("{}", json!({"error": error.to_string()}));
            } else {
                eprintln!("error: {error}");
            }
            match error {
                keel_arc::ArcError::Refused(_) => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

/// `keelctl controls list`.
pub async fn list_controls(config: &Config, json_out: bool) -> ExitCode {
    let arc = ArcClient::new(&config.control);
    match arc.list().await {
        Ok(controls) => {
            if json_out {
                let map: BTreeMap<_, _> = controls.iter().map(|c| (c.name.clone(), c.on)).collect();
                println!("{}", serde_json::to_string_pretty(&map).expect("json"));
            } else {
                for c in controls {
                    println!(
                        "{:<40} {:<4} {}",
                        c.name,
                        on_off(Some(c.on)),
                        c.control_panel
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// The region where each of `apps` processes now, from one reading of the routing controls.
pub async fn active_regions(
    config: &Config,
    apps: &[App],
) -> Result<BTreeMap<App, String>, String> {
    let states = ArcClient::new(&config.control)
        .states()
        .await
        .map_err(|error| format!("cannot read the routing controls: {error}"))?;
    let regions: Vec<String> = config.regions.keys().cloned().collect();
    apps.iter()
        .map(|app| {
            states
                .active_region(*app, Gate::Processing, &regions)
                .map(|region| (*app, region.to_owned()))
                .ok_or_else(|| format!("{app} is not processing in exactly one region"))
        })
        .collect()
}

/// The database of each of `apps` in the region where it processes now, from one reading of the
/// routing controls.
pub async fn active_databases(
    config: &Config,
    apps: &[App],
) -> Result<BTreeMap<App, String>, String> {
    active_regions(config, apps)
        .await?
        .into_iter()
        .map(|(app, region)| Ok((app, config.database_url(app, &region)?.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_broker_that_does_not_answer_is_a_broker_error_not_a_database_one() {
        // Nothing listens on the discard port: the watermark read fails after its timeout.
        let error = consumer_lag("127.0.0.1:9", &[("tm.trades".to_owned(), 0, 0)])
            .await
            .unwrap_err();
        assert!(matches!(error, QueuesError::Broker { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("broker 127.0.0.1:9: consumer lag unreadable: tm.trades:"),
            "{error}"
        );
    }
}
