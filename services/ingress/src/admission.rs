//! Admission control (DESIGN section 3): when the pipeline is too far behind, ingress refuses new
//! submissions with 429 and `Retry-After` instead of queueing them without bound. A monitor reads the
//! backlog of every stage (each relay's outbox, each consumer's lag) a few times a second; the
//! decision is a pure function of those readings. Refusing never touches what was already
//! acknowledged: those legs are in the safe-store and go on at the pipeline's pace.

// Floats here are seconds and rates, never amounts of money (the lint guards prices).
#![allow(clippy::float_arithmetic)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_routing::{App, Gate};
use keel_safestore::PgPool;
use keel_service_kit::Regional;
use keel_streaming::{KafkaOptions, Watermarks};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `[admission]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdmissionConfig {
    /// How far behind the pipeline may be, in seconds, before ingress refuses new submissions: the
    /// sum over its stages of each one's backlog in seconds of its own work (a consumer's lag
    /// divided by the pace it has kept over the last seconds; a relay's oldest unpublished row's
    /// age). A leg goes through every stage, so this is about the wait a leg accepted now would
    /// have. It takes submissions again once the sum is under half of this. 0 turns it off.
    pub latency_budget_seconds: f64,
    /// And no stage more than this many messages behind, whatever the pace.
    pub max_backlog: i64,
    /// How often the backlog is read.
    pub check_interval_ms: u64,
    /// What a refusal's `Retry-After` says.
    pub retry_after_seconds: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            latency_budget_seconds: 1.5,
            max_backlog: 50_000,
            check_interval_ms: 200,
            retry_after_seconds: 1,
        }
    }
}

impl AdmissionConfig {
    pub fn enabled(&self) -> bool {
        self.latency_budget_seconds > 0.0 || self.max_backlog > 0
    }
}

/// One stage's backlog as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    /// "matching's consumer of tm.trades", "ingress's outbox of tm.submissions".
    pub what: String,
    pub messages: i64,
    /// How long the stage needs to work it off at its recent pace (for a relay: how long its oldest
    /// row has waited).
    pub seconds: f64,
}

/// Whether ingress takes submissions now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Open,
    /// Refusing, and why.
    Overloaded {
        reason: String,
    },
}

/// The decision, given the last verdict and what the stages' backlogs are now: refuse when the
/// pipeline's backlog (the sum of its stages') is over the budget or a stage is over the message
/// bound; once refusing, keep refusing until both are under half, so the pipeline drains well
/// inside the budget before taking more (and the verdict does not flap).
pub fn decide(previous: &Verdict, backlogs: &[Backlog], config: &AdmissionConfig) -> Verdict {
    let share = match previous {
        Verdict::Open => 1.0,
        Verdict::Overloaded { .. } => 0.5,
    };
    let total: f64 = backlogs.iter().map(|b| b.seconds).sum();
    let deepest = backlogs.iter().max_by_key(|b| b.messages);
    let slowest = backlogs
        .iter()
        .max_by(|a, b| a.seconds.total_cmp(&b.seconds));
    if config.latency_budget_seconds > 0.0 && total > config.latency_budget_seconds * share {
        let slowest = slowest.expect("a positive sum has a part");
        return Verdict::Overloaded {
            reason: format!(
                "the pipeline is {total:.1} s behind (budget {:.1} s); most of it at {}, {} messages, {:.1} s",
                config.latency_budget_seconds, slowest.what, slowest.messages, slowest.seconds
            ),
        };
    }
    match deepest {
        Some(deepest)
            if config.max_backlog > 0
                && deepest.messages as f64 > config.max_backlog as f64 * share =>
        {
            Verdict::Overloaded {
                reason: format!(
                    "{} is {} messages behind (bound {})",
                    deepest.what, deepest.messages, config.max_backlog
                ),
            }
        }
        _ => Verdict::Open,
    }
}

/// Reads every stage's backlog.
pub trait BacklogProbe: Send + Sync + 'static {
    fn read(&self) -> impl std::future::Future<Output = Vec<Backlog>> + Send;
}

/// The verdict as last decided, shared with the request handlers.
#[derive(Clone)]
pub struct Admission {
    verdict: watch::Receiver<Verdict>,
    pub retry_after_seconds: u64,
}

impl Admission {
    /// Always open: for tests and for a disabled bound.
    pub fn open() -> Self {
        let (_, verdict) = watch::channel(Verdict::Open);
        Self {
            verdict,
            retry_after_seconds: 1,
        }
    }

    /// `Err(reason)` while submissions are refused.
    pub fn check(&self) -> Result<(), String> {
        match &*self.verdict.borrow() {
            Verdict::Open => Ok(()),
            Verdict::Overloaded { reason } => Err(reason.clone()),
        }
    }

    /// Starts the monitor: reads `probe` every `check_interval_ms` until `shutdown`.
    pub fn start(
        probe: impl BacklogProbe,
        config: &AdmissionConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let (decided, verdict) = watch::channel(Verdict::Open);
        let every = Duration::from_millis(config.check_interval_ms.max(10));
        let bounds = config.clone();
        tokio::spawn(async move {
            loop {
                let backlogs = probe.read().await;
                for backlog in &backlogs {
                    metrics::gauge!("keel_ingress_backlog", "stage" => backlog.what.clone())
                        .set(backlog.messages as f64);
                    metrics::gauge!("keel_ingress_backlog_seconds", "stage" => backlog.what.clone())
                        .set(backlog.seconds);
                }
                let next = decide(&decided.borrow(), &backlogs, &bounds);
                let was_open = *decided.borrow() == Verdict::Open;
                match (&next, was_open) {
                    (Verdict::Overloaded { reason }, true) => {
                        tracing::warn!(reason, "overloaded: refusing submissions with 429")
                    }
                    (Verdict::Open, false) => tracing::info!("admission open again"),
                    _ => {}
                }
                metrics::gauge!("keel_ingress_admission_open")
                    .set(f64::from(u8::from(next == Verdict::Open)));
                // While refusing, the reason given follows the stage furthest behind.
                decided.send_replace(next);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
        Self {
            verdict,
            retry_after_seconds: config.retry_after_seconds,
        }
    }
}

/// How fast a consumer has worked: its stored positions over the last readings.
#[derive(Debug, Default)]
struct Pace {
    /// (when, the sum of its stored offsets) over the last few seconds.
    readings: VecDeque<(Instant, i64)>,
    /// When it last moved, or last had nothing to do.
    moved: Option<Instant>,
}

/// How far back a consumer's pace is measured.
const PACE_WINDOW: Duration = Duration::from_secs(3);

impl Pace {
    /// Records a reading and returns the time the consumer needs for `lag` messages at its pace.
    fn seconds_for(&mut self, now: Instant, position: i64, lag: i64) -> f64 {
        if self
            .readings
            .back()
            .is_none_or(|(_, last)| *last != position)
        {
            self.moved = Some(now);
        }
        self.readings.push_back((now, position));
        while self
            .readings
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > PACE_WINDOW)
            && self.readings.len() > 2
        {
            self.readings.pop_front();
        }
        if lag <= 0 {
            // Nothing waiting counts as keeping up: a stall is measured from when work arrives.
            self.moved = Some(now);
            return 0.0;
        }
        let (first_at, first) = *self.readings.front().expect("just pushed");
        let elapsed = now.duration_since(first_at).as_secs_f64();
        let done = (position - first) as f64;
        if done > 0.0 && elapsed > 0.0 {
            lag as f64 / (done / elapsed)
        } else {
            // No progress in the window with work waiting: at least as long as it has been still.
            self.moved
                .map_or(0.0, |moved| now.duration_since(moved).as_secs_f64())
        }
    }
}

/// The stages' backlogs from the safe-stores and the brokers: each relay's unpublished rows (and the
/// age of the oldest), and each consumer's lag (the topic's high watermark minus the offset the
/// consumer stored with its effects, in the Kafka of the region where its application processes)
/// against the pace it keeps.
pub struct PipelineProbe {
    /// Each application's database in this region (a standby's copy serves for reading).
    databases: BTreeMap<App, PgPool>,
    regional: Regional,
    clusters: BTreeMap<String, KafkaOptions>,
    watermarks: Arc<Mutex<BTreeMap<String, Watermarks>>>,
    paces: Mutex<HashMap<String, Pace>>,
}

/// Unpublished rows counted at most, per relay.
const COUNT_CAP: i64 = 1_000_000;

impl PipelineProbe {
    pub fn new(
        databases: BTreeMap<App, PgPool>,
        regional: Regional,
        clusters: BTreeMap<String, KafkaOptions>,
    ) -> Self {
        Self {
            databases,
            regional,
            clusters,
            watermarks: Arc::default(),
            paces: Mutex::default(),
        }
    }

    async fn outboxes(&self, backlogs: &mut Vec<Backlog>) {
        for hop in keel_reconcile::hops() {
            let Some(pool) = self.databases.get(&hop.upstream.app) else {
                continue;
            };
            let read = tokio::time::timeout(
                Duration::from_secs(1),
                keel_safestore::hop::waiting(pool, hop.upstream.schema, hop.topic, COUNT_CAP),
            )
            .await;
            if let Ok(Ok((messages, seconds))) = read {
                backlogs.push(Backlog {
                    what: format!("{}'s outbox of {}", hop.upstream.schema, hop.topic),
                    messages,
                    seconds,
                });
            }
        }
    }

    /// Every partition's high watermark of `topic` in `kafka`, off the async threads.
    async fn high_watermarks(
        &self,
        kafka: &KafkaOptions,
        topic: &'static str,
    ) -> Option<BTreeMap<i32, i64>> {
        let watermarks = self.watermarks.clone();
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || {
            let mut clients = watermarks.lock().expect("watermark clients");
            let client = match clients.get(&kafka.brokers) {
                Some(client) => client,
                None => {
                    let client = Watermarks::new(&kafka).ok()?;
                    clients.entry(kafka.brokers.clone()).or_insert(client)
                }
            };
            client.high(topic, Duration::from_millis(500)).ok()
        })
        .await
        .ok()
        .flatten()
    }

    async fn consumers(&self, backlogs: &mut Vec<Backlog>) {
        for hop in keel_reconcile::hops() {
            let Some(pool) = self.databases.get(&hop.downstream.app) else {
                continue;
            };
            let Some(region) = self
                .regional
                .active_region(hop.downstream.app, Gate::Processing)
            else {
                continue;
            };
            let Some(kafka) = self.clusters.get(&region) else {
                continue;
            };
            let offsets = tokio::time::timeout(
                Duration::from_secs(1),
                keel_safestore::hop::consumer_offsets(
                    pool,
                    hop.downstream.schema,
                    &region,
                    hop.topic,
                ),
            )
            .await;
            let Ok(Ok(offsets)) = offsets else {
                continue;
            };
            let Some(high) = self.high_watermarks(kafka, hop.topic).await else {
                continue;
            };
            let lag: i64 = high
                .iter()
                .map(|(partition, high)| {
                    (high - offsets.get(partition).copied().unwrap_or(0)).max(0)
                })
                .sum();
            let what = format!("{}'s consumer of {}", hop.downstream.schema, hop.topic);
            let position: i64 = offsets.values().sum();
            let seconds = self
                .paces
                .lock()
                .expect("paces")
                .entry(what.clone())
                .or_default()
                .seconds_for(Instant::now(), position, lag);
            backlogs.push(Backlog {
                what,
                messages: lag,
                seconds,
            });
        }
    }
}

impl BacklogProbe for PipelineProbe {
    async fn read(&self) -> Vec<Backlog> {
        let mut backlogs = Vec::new();
        self.outboxes(&mut backlogs).await;
        self.consumers(&mut backlogs).await;
        backlogs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behind(what: &str, messages: i64, seconds: f64) -> Backlog {
        Backlog {
            what: what.to_owned(),
            messages,
            seconds,
        }
    }

    fn bounds(seconds: f64, messages: i64) -> AdmissionConfig {
        AdmissionConfig {
            latency_budget_seconds: seconds,
            max_backlog: messages,
            ..AdmissionConfig::default()
        }
    }

    #[test]
    fn refuses_when_the_stages_together_are_over_the_budget_naming_the_slowest() {
        let config = bounds(1.0, 1000);
        let calm = [behind("matching", 120, 0.2), behind("settlement", 90, 0.7)];
        assert_eq!(decide(&Verdict::Open, &calm, &config), Verdict::Open);
        let slow = [behind("matching", 120, 0.4), behind("settlement", 90, 0.7)];
        let Verdict::Overloaded { reason } = decide(&Verdict::Open, &slow, &config) else {
            panic!("over the budget together must refuse");
        };
        assert!(
            reason.contains("1.1 s behind") && reason.contains("settlement, 90 messages, 0.7 s"),
            "{reason}"
        );
        let deep = [behind("ingestion", 1500, 0.1)];
        let Verdict::Overloaded { reason } = decide(&Verdict::Open, &deep, &config) else {
            panic!("over the message bound must refuse");
        };
        assert!(
            reason.contains("ingestion is 1500 messages behind"),
            "{reason}"
        );
    }

    #[test]
    fn once_refusing_opens_only_under_half_of_the_bounds() {
        let config = bounds(1.0, 1000);
        let refusing = Verdict::Overloaded {
            reason: String::new(),
        };
        assert_ne!(
            decide(
                &refusing,
                &[behind("matching", 10, 0.3), behind("notification", 10, 0.3)],
                &config
            ),
            Verdict::Open
        );
        assert_ne!(
            decide(&refusing, &[behind("matching", 600, 0.1)], &config),
            Verdict::Open
        );
        assert_eq!(
            decide(&refusing, &[behind("matching", 400, 0.4)], &config),
            Verdict::Open
        );
        assert_eq!(decide(&refusing, &[], &config), Verdict::Open);
    }

    #[test]
    fn a_consumer_s_backlog_in_seconds_follows_its_pace() {
        let mut pace = Pace::default();
        let start = Instant::now();
        assert_eq!(pace.seconds_for(start, 0, 0), 0.0);
        // 1,000 messages a second, 500 waiting: half a second of work.
        let seconds = pace.seconds_for(start + Duration::from_secs(1), 1000, 500);
        assert!((seconds - 0.5).abs() < 1e-9, "{seconds}");
        // Stuck with work waiting: as long as it has been still.
        let stuck = pace.seconds_for(start + Duration::from_secs(5), 1000, 500);
        assert!((stuck - 4.0).abs() < 1e-9, "{stuck}");
        // Idle for long, then work arrives: the stall counts from when it had nothing to do.
        let mut idle = Pace::default();
        idle.seconds_for(start, 7, 0);
        idle.seconds_for(start + Duration::from_secs(200), 7, 0);
        let fresh = idle.seconds_for(start + Duration::from_millis(200_100), 7, 40);
        assert!((fresh - 0.1).abs() < 1e-9, "{fresh}");
    }

    struct Fixed(Vec<Backlog>);

    impl BacklogProbe for Fixed {
        async fn read(&self) -> Vec<Backlog> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn the_monitor_publishes_its_verdict_to_the_handlers() {
        let shutdown = CancellationToken::new();
        let config = AdmissionConfig {
            latency_budget_seconds: 1.0,
            max_backlog: 10,
            check_interval_ms: 10,
            retry_after_seconds: 2,
        };
        let admission = Admission::start(
            Fixed(vec![behind("ingestion", 11, 0.0)]),
            &config,
            shutdown.clone(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while admission.check().is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "never refused");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(admission.check().unwrap_err().contains("ingestion"));
        assert_eq!(admission.retry_after_seconds, 2);
        assert!(Admission::open().check().is_ok());
        shutdown.cancel();
    }
}
