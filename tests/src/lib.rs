//! Starts a real Keel stack for a test: the trade-matching and settlement applications, each with its
//! own database in the test Postgres cluster (`KEEL_TEST_PG`, started by `make test`), one tansu
//! broker, and the service binaries as child processes on free loopback ports. Every process is
//! killed when the [`Stack`] is dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use rand;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub use keel_generator::Client;

/// The services of both applications, in start order: trade matching, then settlement.
pub const SERVICES: [&str; 5] = [
    "ingress",
    "ingestion",
    "matching",
    "notification",
    "settlement",
];

/// Tunables a test may change.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub match_window_seconds: i64,
    pub release: bool,
    pub extra_env: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            match_window_seconds: 3600,
            release: false,
            extra_env: Vec::new(),
        }
    }
}

pub struct Stack {
    pub name: String,
    pub dir: PathBuf,
    /// Trade matching's database.
    pub database_url: String,
    /// Settlement's database.
    pub st_database_url: String,
    pub kafka_brokers: String,
    pub ingress_url: String,
    kafka_port: u16,
    ops_ports: BTreeMap<&'static str, u16>,
    options: StackOptions,
    services: BTreeMap<&'static str, Child>,
    broker: Option<Child>,
    pub db: PgPool,
    pub st_db: PgPool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn bin_dir(release: bool) -> PathBuf {
    if let Ok(dir) = std::env::var("KEEL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // A test runs from target/<profile>/deps/, a binary such as keel-bench from target/<profile>/.
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("profile dir");
    }
    let target = dir.parent().expect("target dir");
    target.join(if release { "release" } else { "debug" })
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

async fn wait_until_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

impl Stack {
    /// Starts a fresh stack; `name` names its database and folder.
    pub async fn start(name: &str, options: StackOptions) -> anyhow::Result<Stack> {
        let admin_url = std::env::var("KEEL_TEST_PG").context(
            "KEEL_TEST_PG is not set: run the system tests through `make test`, which starts their Postgres",
        )?;
        let unique = format!("{name}_{}_{}", std::process::id(), rand::random::<u32>());
        let dir = std::env::temp_dir().join("keel-tests").join(&unique);
        std::fs::create_dir_all(dir.join("logs"))?;

        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await?;
        let database = format!("keel_{unique}").to_lowercase();
        let st_database = format!("{database}_st");
        for name in [&database, &st_database] {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        let Some((base, _)) = admin_url.rsplit_once('/') else {
            bail!("KEEL_TEST_PG must end with /<database>");
        };
        let database_url = format!("{base}/{database}");
        let st_database_url = format!("{base}/{st_database}");
        let db = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await?;
        let st_db = PgPoolOptions::new()
            .max_connections(2)
            .connect(&st_database_url)
            .await?;

        let kafka_port = free_port();
        let ingress_port = free_port();
        let ops_ports = SERVICES
            .iter()
            .map(|s| {
                (
                    *s,
                    if *s == "ingress" {
                        ingress_port
                    } else {
                        free_port()
                    },
                )
            })
            .collect();
        let mut stack = Stack {
            name: name.to_owned(),
            dir,
            database_url,
            st_database_url,
            kafka_brokers: format!("127.0.0.1:{kafka_port}"),
            ingress_url: format!("http://127.0.0.1:{ingress_port}"),
            kafka_port,
            ops_ports,
            options,
            services: BTreeMap::new(),
            broker: None,
            db,
            st_db,
        };
        stack.start_broker().await?;
        for service in SERVICES {
            stack.start_service(service)?;
        }
        for service in SERVICES {
            stack.wait_ready(service, Duration::from_secs(60)).await?;
        }
        Ok(stack)
    }

    pub async fn start_broker(&mut self) -> anyhow::Result<()> {
        let tansu = std::env::var("KEEL_TANSU_BIN")
            .context("KEEL_TANSU_BIN is not set (make test sets it)")?;
        let broker_dir = self.dir.join("tansu");
        std::fs::create_dir_all(broker_dir.join("data"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/tansu.log"))?;
        let url = format!("tcp://127.0.0.1:{}", self.kafka_port);
        let child = Command::new(tansu)
            .current_dir(&broker_dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://data/tansu.db"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tansu")?;
        self.broker = Some(child);
        wait_until_port(self.kafka_port, Duration::from_secs(30)).await
    }

    /// Stops the broker (SIGTERM, then SIGKILL) and starts it again on the same log.
    pub async fn restart_broker(&mut self, down_for: Duration) -> anyhow::Result<()> {
        if let Some(mut broker) = self.broker.take() {
            let _ = kill(Pid::from_raw(broker.id() as i32), Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while broker.try_wait()?.is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = broker.kill();
            let _ = broker.wait();
        }
        tokio::time::sleep(down_for).await;
        self.start_broker().await
    }

    pub fn start_service(&mut self, service: &'static str) -> anyhow::Result<()> {
        let binary = bin_dir(self.options.release).join(format!("keel-{service}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("logs/{service}.log")))?;
        let port = self.ops_ports[service];
        let mut command = Command::new(&binary);
        command
            .current_dir(repo_root())
            // The local stack's configuration, with this stack's own database, broker and ports.
            .env(
                "KEEL_CONFIG",
                repo_root().join("deploy/local/config/us-east-1.toml"),
            )
            .env("KEEL_DATABASE_URL", &self.database_url)
            .env("KEEL_KAFKA__BROKERS", &self.kafka_brokers)
            .env(
                "KEEL_PARTICIPANTS_FILE",
                repo_root().join("deploy/local/participants.json"),
            )
            .env(
                "KEEL_MATCHING__MATCH_WINDOW_SECONDS",
                self.options.match_window_seconds.to_string(),
            )
            .env("KEEL_MATCHING__SWEEP_INTERVAL_MS", "200")
            .env("KEEL_SETTLEMENT__DATABASE_URL", &self.st_database_url)
            .env(
                "KEEL_SETTLEMENT__REFERENCE_DATA",
                repo_root().join("deploy/local/reference-data.json"),
            )
            .env("KEEL_SETTLEMENT__CYCLE_INTERVAL_MS", "200")
            .env("KEEL_WEBHOOKS__INITIAL_BACKOFF_MS", "100")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if service == "ingress" {
            command.env("KEEL_LISTEN", format!("127.0.0.1:{port}"));
        } else {
            command.env("KEEL_OPS_LISTEN", format!("127.0.0.1:{port}"));
        }
        for (key, value) in &self.options.extra_env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        self.services.insert(service, child);
        Ok(())
    }

    /// SIGKILL: no drain, no flush, exactly as a crash.
    pub fn kill(&mut self, service: &'static str) {
        if let Some(mut child) = self.services.remove(service) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn wait_ready(&self, service: &str, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.ops_ports[service]);
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{service} not ready after {timeout:?}; see {}",
                    self.dir.join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The body of a service's `/readyz`.
    pub async fn readiness(&self, service: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{}/readyz", self.ops_ports[service]);
        let response = reqwest::get(&url).await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Whether the service's process is still running.
    pub fn is_running(&mut self, service: &str) -> bool {
        self.services
            .get_mut(service)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn client(&self) -> Client {
        Client::new(&self.ingress_url)
    }

    /// A bearer token for the participant with this client id (from `deploy/local/participants.json`).
    pub async fn token(&self, client_id: &str) -> String {
        let credentials = participants()
            .into_iter()
            .find(|c| c.client_id == client_id)
            .expect("known client id");
        self.client().token(&credentials).await.expect("token")
    }

    /// A count from trade matching's database.
    pub async fn count(&self, sql: &str) -> i64 {
        count_in(&self.db, sql).await
    }

    /// A count from settlement's database.
    pub async fn st_count(&self, sql: &str) -> i64 {
        count_in(&self.st_db, sql).await
    }

    /// Waits until `sql` counts `expected` in trade matching's database, or fails naming what it
    /// last saw.
    pub async fn wait_for_count(
        &self,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_count_in(&self.db, sql, expected, timeout)
            .await
    }

    /// As [`Stack::wait_for_count`], in settlement's database.
    pub async fn wait_for_st_count(
        &self,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_count_in(&self.st_db, sql, expected, timeout)
            .await
    }

    async fn wait_for_count_in(
        &self,
        db: &PgPool,
        sql: &str,
        expected: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db)
                .await
                .unwrap_or(-1);
            if seen == expected {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "`{sql}` is {seen}, expected {expected} within {timeout:?} (logs: {})",
                    self.dir.join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn count_in(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

impl Stack {
    /// Waits (up to a minute) until the trade, as `token`'s participant reads it through the API, has
    /// `status`; returns the trade.
    pub async fn wait_for_trade_status(
        &self,
        token: &str,
        trade_id: &str,
        status: &str,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (code, body) = self
                .client()
                .get(&format!("/v1/trades/{trade_id}"), token)
                .await
                .expect("ingress reachable");
            assert_eq!(code, 200, "{body}");
            if body["status"] == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "trade {trade_id} never reached {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `keelctl` with these arguments against this stack's settlement database.
    pub fn keelctl(&self, args: &[&str]) -> std::process::Output {
        let binary = bin_dir(self.options.release).join("keelctl");
        Command::new(&binary)
            .args(args)
            .env("KEEL_SETTLEMENT__DATABASE_URL", &self.st_database_url)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.services) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut broker) = self.broker.take() {
            let _ = broker.kill();
            let _ = broker.wait();
        }
    }
}

pub fn participants() -> Vec<keel_generator::Credentials> {
    keel_generator::Credentials::load(&repo_root().join("deploy/local/participants.json"))
        .expect("participants file")
}

/// The UTC date `days` from today, as the API writes dates.
pub fn days_from_today(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

/// A valid block between IM-ALPHA and BR-NORTH (the example of DESIGN section 2), traded today for
/// settlement tomorrow: once MATCHED, its instructions wait in settlement for their date, so nothing
/// of it settles during a test. [`settling_block`] settles at once.
pub fn sample_block(trade_ref: &str) -> serde_json::Value {
    serde_json::json!({
        "trade_ref": trade_ref,
        "im_id": "IM-ALPHA",
        "broker_id": "BR-NORTH",
        "side": "BUY",
        "security": "US0378331005",
        "quantity": 1000,
        "price": "187.2500",
        "currency": "USD",
        "trade_date": days_from_today(0),
        "settlement_date": days_from_today(1),
        "allocations": [
            {"allocation_id": "1", "account": "IM-ALPHA-FUND-001", "quantity": 600},
            {"allocation_id": "2", "account": "IM-ALPHA-FUND-002", "quantity": 400}
        ]
    })
}

/// [`sample_block`] for settlement today: it settles as soon as it matches.
pub fn settling_block(trade_ref: &str) -> serde_json::Value {
    let mut block = sample_block(trade_ref);
    block["settlement_date"] = serde_json::json!(days_from_today(0));
    block
}

/// Submits `pairs` matching trades ([`sample_block`]s) between IM-ALPHA and BR-NORTH as a steady
/// stream: each request carries `per_request` legs of one side, with `pause` between rounds. Panics on
/// any refusal.
pub async fn stream_matching_pairs(
    client: Client,
    im: String,
    broker: String,
    prefix: String,
    pairs: usize,
    per_request: usize,
    pause: Duration,
) {
    stream_pairs(
        client,
        [im, broker],
        prefix,
        pairs,
        per_request,
        pause,
        sample_block,
    )
    .await
}

/// As [`stream_matching_pairs`], with each block made by `block` from its trade ref.
pub async fn stream_pairs(
    client: Client,
    [im, broker]: [String; 2],
    prefix: String,
    pairs: usize,
    per_request: usize,
    pause: Duration,
    block: fn(&str) -> serde_json::Value,
) {
    let blocks: Vec<serde_json::Value> = (0..pairs)
        .map(|i| block(&format!("{prefix}-{i:06}")))
        .collect();
    for chunk in blocks.chunks(per_request) {
        for token in [&im, &broker] {
            let (status, body) = client
                .submit_batch(token, chunk)
                .await
                .expect("ingress reachable");
            assert_eq!(status, 202, "{body}");
        }
        tokio::time::sleep(pause).await;
    }
}

/// Checks every store after `trades` matching pairs of [`sample_block`]s went through: every leg was
/// processed once at every stage, every trade has exactly its four history entries, each party got
/// exactly one notification per entry, and settlement holds exactly the trades' two instructions each,
/// waiting for their settlement date.
pub async fn assert_exactly_once(stack: &Stack, trades: i64) {
    let legs = trades * 2;
    let instructions = trades * 2;
    stack
        .wait_for_st_count(
            "SELECT count(*) FROM settlement.instructions",
            instructions,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let checks = [
        ("SELECT count(*) FROM ingress.submissions", legs),
        ("SELECT count(*) FROM ingress.outbox", legs),
        ("SELECT count(*) FROM ingestion.inbox", legs),
        ("SELECT count(*) FROM ingestion.outbox", legs),
        ("SELECT count(*) FROM matching.inbox", legs),
        ("SELECT count(*) FROM matching.trades WHERE status = 'MATCHED'", trades),
        ("SELECT count(*) FROM matching.status_history", trades * 4),
        (
            "SELECT count(*) FROM (SELECT trade_id FROM matching.status_history GROUP BY trade_id
              HAVING array_agg(status ORDER BY seq) <> ARRAY['RECEIVED','UNMATCHED','RECEIVED','MATCHED']) odd",
            0,
        ),
        ("SELECT count(*) FROM matching.outbox WHERE topic = 'tm.events'", trades * 4),
        ("SELECT count(*) FROM matching.outbox WHERE topic = 'st.instructions'", instructions),
        ("SELECT count(*) FROM notification.inbox", trades * 4),
        ("SELECT count(*) FROM notification.notifications", trades * 8),
        (
            "SELECT count(*) FROM (SELECT DISTINCT trade_id, body->>'history_seq', recipient FROM notification.notifications) d",
            trades * 8,
        ),
        ("SELECT count(*) FROM notification.notifications WHERE status = 'MATCHED'", trades * 2),
        ("SELECT count(*) FROM ingestion.dead_letters", 0),
        ("SELECT count(*) FROM matching.dead_letters", 0),
        ("SELECT count(*) FROM notification.dead_letters", 0),
    ];
    for (sql, expected) in checks {
        assert_eq!(stack.count(sql).await, expected, "{sql}");
    }
    let settlement_checks = [
        ("SELECT count(*) FROM settlement.inbox", instructions),
        (
            "SELECT count(*) FROM settlement.instructions WHERE status = 'PENDING'",
            instructions,
        ),
        ("SELECT count(*) FROM settlement.postings", 0),
        ("SELECT count(*) FROM settlement.dead_letters", 0),
    ];
    for (sql, expected) in settlement_checks {
        assert_eq!(stack.st_count(sql).await, expected, "{sql}");
    }
}

/// The seed for a randomized test: `KEEL_SEED` to replay one, otherwise fresh. Printed either way.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("KEEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("{test}: seed {seed} (replay with KEEL_SEED={seed})");
    seed
}
