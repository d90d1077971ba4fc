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
    /// sum over its stages of how long a message now waits there (a consumer's newest finished
    /// message's age while more wait; a relay's oldest unpublished row's age). A leg goes through
    /// every stage, so this is about the wait a leg accepted now would have. It takes submissions
    /// again once the sum is under half of this. 0 turns it off.
    pub latency_budget_seconds: f64,
    /// And no stage more than this many messages behind, whatever the pace.
    pub max_backlog: i64,
    /// How often the backlog is read.
    pub check_interval_ms: u64,
    /// What a refusal's `Retry-After` says.
    pub retry_after_seconds: u64,
    /// Readings in a row under half the bounds before refusing stops: the backlog shows downstream
    /// only some time after legs are accepted, so opening at the first calm reading lets a burst of
    /// waiting clients in before the last one has drained.
    pub calm_readings: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            latency_budget_seconds: 1.5,
            max_backlog: 50_000,
            check_interval_ms: 200,
            retry_after_seconds: 1,
            calm_readings: 5,
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
    /// How long a message now waits at the stage (for a relay: how long its oldest unpublished row
    /// has waited; for a consumer, see [`Pace`]).
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

/// The verdict over time: [`decide`] on each reading, except that refusing stops only after
/// `calm_readings` open readings in a row.
#[derive(Debug, Clone)]
pub struct AdmissionGate {
    verdict: Verdict,
    calm: u32,
}

impl Default for AdmissionGate {
    fn default() -> Self {
        Self {
            verdict: Verdict::Open,
            calm: 0,
        }
    }
}

impl AdmissionGate {
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Takes one reading of the stages' backlogs; returns whether the verdict changed between open
    /// and refusing.
    pub fn read(&mut self, backlogs: &[Backlog], config: &AdmissionConfig) -> bool {
        let next = decide(&self.verdict, backlogs, config);
        let was_open = self.verdict == Verdict::Open;
        match (next, was_open) {
            (Verdict::Open, false) => {
                self.calm += 1;
                if self.calm >= config.calm_readings.max(1) {
                    self.verdict = Verdict::Open;
                    self.calm = 0;
                    return true;
                }
                false
            }
            (next, _) => {
                // While refusing, the reason given follows where the backlog is now.
                self.calm = 0;
                let changed = was_open != (next == Verdict::Open);
                self.verdict = next;
                changed
            }
        }
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
            let mut gate = AdmissionGate::default();
            loop {
                let backlogs = probe.read().await;
                for backlog in &backlogs {
                    metrics::gauge!("keel_ingress_backlog", "stage" => backlog.what.clone())
                        .set(backlog.messages as f64);
                    metrics::gauge!("keel_ingress_backlog_seconds", "stage" => backlog.what.clone())
                        .set(backlog.seconds);
                }
                if gate.read(&backlogs, &bounds) {
                    match gate.verdict() {
                        Verdict::Overloaded { reason } => {
                            tracing::warn!(reason, "overloaded: refusing submissions with 429")
                        }
                        Verdict::Open => tracing::info!("admission open again"),
                    }
                }
                metrics::gauge!("keel_ingress_admission_open")
                    .set(f64::from(u8::from(*gate.verdict() == Verdict::Open)));
                decided.send_replace(gate.verdict().clone());
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

/// One partition of a consumer, as read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PartitionReading {
    partition: i32,
    /// The next offset the consumer will take, as stored with its effects.
    next: i64,
    /// Messages past it in the broker.
    waiting: i64,
    /// How long ago the newest message it finished was produced, in seconds, if known.
    newest_age: Option<f64>,
}

/// How far behind a consumer is, from its positions over the last readings.
#[derive(Debug, Default)]
struct Pace {
    /// (when, the sum of its stored offsets, its lag then) over the last minute.
    readings: VecDeque<(Instant, i64, i64)>,
    /// When it last moved, or last had nothing to do.
    moved: Option<Instant>,
    /// When each partition was last seen with nothing waiting.
    caught_up: HashMap<i32, Instant>,
    /// The first reading: a partition never seen caught up counts from here.
    began: Option<Instant>,
}

/// Over how long a stretch a consumer's rate is measured (its position moves in jumps, one batch
/// at a time, so shorter stretches would see bursts).
const RATE_SPAN: Duration = Duration::from_secs(1);
/// How long a rate the consumer showed counts as what it can do.
const CAPACITY_MEMORY: Duration = Duration::from_secs(60);

impl Pace {
    /// Records a reading and returns how far behind the consumer is, in seconds. For a partition
    /// with messages waiting, how long ago the newest message it finished there was produced, but
    /// no longer than since that partition was last seen with nothing waiting (a stream that paused
    /// is not a consumer behind); the most of these. For waiting partitions without that age, the
    /// time the whole lag takes at the best rate the consumer showed over the last minute while it
    /// had work waiting: its recent pace alone would mislead, since a stage that keeps up works at
    /// the arrival rate, far below what it can do.
    fn seconds_for(&mut self, now: Instant, partitions: &[PartitionReading]) -> f64 {
        let began = *self.began.get_or_insert(now);
        let position: i64 = partitions.iter().map(|p| p.next).sum();
        let lag: i64 = partitions.iter().map(|p| p.waiting.max(0)).sum();
        if self
            .readings
            .back()
            .is_none_or(|(_, last, _)| *last != position)
            || lag <= 0
        {
            // Nothing waiting counts as keeping up: a stall is measured from when work arrives.
            self.moved = Some(now);
        }
        for reading in partitions.iter().filter(|p| p.waiting <= 0) {
            self.caught_up.insert(reading.partition, now);
        }
        self.readings.push_back((now, position, lag));
        while self
            .readings
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > CAPACITY_MEMORY)
        {
            self.readings.pop_front();
        }
        if lag <= 0 {
            return 0.0;
        }
        let mut timed: Option<f64> = None;
        let mut untimed = false;
        for reading in partitions.iter().filter(|p| p.waiting > 0) {
            match reading.newest_age {
                Some(age) => {
                    let since = self.caught_up.get(&reading.partition).unwrap_or(&began);
                    let behind = age.min(now.duration_since(*since).as_secs_f64()).max(0.0);
                    timed = Some(timed.map_or(behind, |t| t.max(behind)));
                }
                None => untimed = true,
            }
        }
        let by_rate = if untimed { self.by_rate(now, lag) } else { 0.0 };
        timed.unwrap_or(0.0).max(by_rate)
    }

    /// The time `lag` messages take at the best rate over any stretch of at least RATE_SPAN that
    /// began with work waiting; with no such rate, as long as the consumer has been still.
    fn by_rate(&self, now: Instant, lag: i64) -> f64 {
        // For each reading, the stretch from the latest reading at least RATE_SPAN before it.
        let readings: Vec<(Instant, i64, i64)> = self.readings.iter().copied().collect();
        let mut capacity: f64 = 0.0;
        let mut start = 0;
        for (end_at, end_position, _) in readings.iter().copied() {
            while start + 1 < readings.len()
                && end_at.saturating_duration_since(readings[start + 1].0) >= RATE_SPAN
            {
                start += 1;
            }
            let (start_at, start_position, start_lag) = readings[start];
            let seconds = end_at.saturating_duration_since(start_at);
            if seconds >= RATE_SPAN && start_lag > 0 {
                capacity =
                    capacity.max((end_position - start_position) as f64 / seconds.as_secs_f64());
            }
        }
        if capacity > 0.0 {
            lag as f64 / capacity
        } else {
            self.moved
                .map_or(0.0, |moved| now.duration_since(moved).as_secs_f64())
        }
    }
}

/// The stages' backlogs from the safe-stores and the brokers: each relay's unpublished rows (and the
/// age of the oldest), and each consumer's lag (the topic's high watermark minus the offset the
/// consumer stored with its effects, in the Kafka of the region where its application processes)
/// with how long its messages wait ([`Pace`]).
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
            let partitions: Vec<PartitionReading> = high
                .iter()
                .map(|(partition, high)| {
                    let (next, newest_age) = offsets.get(partition).copied().unwrap_or((0, None));
                    PartitionReading {
                        partition: *partition,
                        next,
                        waiting: (high - next).max(0),
                        newest_age,
                    }
                })
                .collect();
            let lag = partitions.iter().map(|p| p.waiting).sum();
            let what = format!("{}'s consumer of {}", hop.downstream.schema, hop.topic);
            // Per region: after a move, the positions are another cluster's.
            let seconds = self
                .paces
                .lock()
                .expect("paces")
                .entry(format!("{region}/{what}"))
                .or_default()
                .seconds_for(Instant::now(), &partitions);
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

    /// A start instant, and the instant `ms` milliseconds after it.
    fn clock() -> (Instant, impl Fn(u64) -> Instant) {
        let start = Instant::now();
        (start, move |ms| start + Duration::from_millis(ms))
    }

    /// A consumer of one partition.
    fn one(next: i64, waiting: i64, newest_age: Option<f64>) -> [PartitionReading; 1] {
        [PartitionReading {
            partition: 0,
            next,
            waiting,
            newest_age,
        }]
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
    fn a_consumer_s_backlog_in_seconds_is_its_lag_at_the_best_rate_it_showed() {
        let mut pace = Pace::default();
        let (start, later) = clock();
        // No rate shown yet, and it moved just now: nothing to go by, and no stall either.
        assert_eq!(pace.seconds_for(start, &one(0, 500, None)), 0.0);
        // Busy: 2,000 messages a second with work waiting throughout.
        pace.seconds_for(later(500), &one(1000, 500, None));
        let busy = pace.seconds_for(later(1000), &one(2000, 1000, None));
        assert!((busy - 0.5).abs() < 1e-9, "{busy}");
        // Later it keeps up at a trickle; a burst of 300 is 0.15 s of its work, not 300 / trickle.
        pace.seconds_for(later(20_000), &one(2100, 0, None));
        pace.seconds_for(later(21_000), &one(2110, 0, None));
        let burst = pace.seconds_for(later(21_200), &one(2110, 300, None));
        assert!((burst - 0.15).abs() < 1e-9, "{burst}");
    }

    #[test]
    fn a_consumer_behind_in_time_is_as_far_behind_as_its_newest_finished_message_is_old() {
        let mut pace = Pace::default();
        let (start, later) = clock();
        pace.seconds_for(start, &one(10, 0, Some(600.0)));
        // Work arrived 300 ms after it was last seen caught up: its newest finished message is
        // from a minute ago (the stream had paused), so it is 0.3 s behind, not 60 s.
        let paused = pace.seconds_for(later(300), &one(10, 5, Some(60.0)));
        assert!((paused - 0.3).abs() < 1e-9, "{paused}");
        // Long behind: as old as the newest message it finished.
        let behind = pace.seconds_for(later(9_000), &one(500, 4000, Some(2.5)));
        assert!((behind - 2.5).abs() < 1e-9, "{behind}");
    }

    #[test]
    fn each_partition_is_behind_from_when_it_last_had_nothing_waiting() {
        let mut pace = Pace::default();
        let (start, later) = clock();
        let reading = |partition, waiting, newest_age| PartitionReading {
            partition,
            next: 100,
            waiting,
            newest_age,
        };
        // Partition 0 stays busy; partition 1 is idle, its newest message long ago.
        pace.seconds_for(
            start,
            &[reading(0, 50, Some(0.2)), reading(1, 0, Some(90.0))],
        );
        // Work arrives on partition 1: it waits 0.4 s there, not 90 s, although the consumer as a
        // whole was never caught up.
        let resumed = pace.seconds_for(
            later(400),
            &[reading(0, 50, Some(0.3)), reading(1, 5, Some(90.0))],
        );
        assert!((resumed - 0.4).abs() < 1e-9, "{resumed}");
        // A partition without an age counts by the rate, and the worse of the two is taken.
        let untimed = pace.seconds_for(
            later(700),
            &[reading(0, 50, Some(0.3)), reading(1, 5, None)],
        );
        assert!((untimed - 0.7).abs() < 1e-9, "{untimed}");
    }

    #[test]
    fn a_stuck_consumer_counts_from_when_work_arrived() {
        let mut pace = Pace::default();
        let (start, later) = clock();
        pace.seconds_for(start, &one(7, 0, None));
        pace.seconds_for(later(200_000), &one(7, 0, None));
        let fresh = pace.seconds_for(later(200_100), &one(7, 40, None));
        assert!((fresh - 0.1).abs() < 1e-9, "{fresh}");
        let stuck = pace.seconds_for(later(204_100), &one(7, 40, None));
        assert!((stuck - 4.1).abs() < 1e-9, "{stuck}");
    }

    #[test]
    fn refusing_stops_only_after_calm_readings_in_a_row() {
        let config = AdmissionConfig {
            calm_readings: 3,
            ..bounds(1.0, 1000)
        };
        let (calm, busy) = (
            vec![behind("matching", 10, 0.1)],
            vec![behind("matching", 10, 2.0)],
        );
        let mut gate = AdmissionGate::default();
        assert!(gate.read(&busy, &config), "refusing is a change");
        assert!(!gate.read(&calm, &config));
        assert!(!gate.read(&calm, &config));
        assert!(!gate.read(&busy, &config), "still refusing");
        assert!(!gate.read(&calm, &config));
        assert!(!gate.read(&calm, &config));
        assert_ne!(*gate.verdict(), Verdict::Open);
        assert!(
            gate.read(&calm, &config),
            "three calm readings in a row open it"
        );
        assert_eq!(*gate.verdict(), Verdict::Open);
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
            calm_readings: 1,
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
