use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_arc::Reading;
use serde_json::Value;
use tokio::sync::{watch, Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Answer;
use crate::{Client, Credentials, LegKind, Mix, TradeFactory};

#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Legs per second.
    pub rate: f64,
    /// Stop after this long; `None` runs until cancelled.
    pub duration: Option<Duration>,
    /// Most legs in one batch request; 1 sends every leg on its own.
    pub batch: usize,
    /// Requests in flight at most.
    pub concurrency: usize,
    pub mix: Mix,
    pub seed: u64,
    /// Keeps trade refs unique across runs.
    pub prefix: String,
    /// The routing controls: when given, legs are generated only while the `generator` control is
    /// On and readable; the rate clock stops while paused.
    pub control: Option<watch::Receiver<Reading>>,
    /// How long one request keeps being retried while no region takes traffic or the ingress cannot
    /// be reached, before its legs count as failed.
    pub retry_for: Duration,
}

impl DriverOptions {
    /// `rate` legs/s of the default mix, one batch of up to 50 legs per request, until stopped.
    pub fn at_rate(rate: f64, seed: u64, prefix: &str) -> Self {
        Self {
            rate,
            duration: None,
            batch: 50,
            concurrency: 16,
            mix: Mix::default(),
            seed,
            prefix: prefix.to_owned(),
            control: None,
            retry_for: Duration::from_secs(60),
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub legs_sent: u64,
    pub legs_accepted: u64,
    /// Legs answered 4xx (the invalid ones are meant to be).
    pub legs_refused: u64,
    /// Those legs by the answer's status and error code (`422 invalid_field`), so that a refusal
    /// nobody meant shows.
    pub refusals: std::collections::BTreeMap<String, u64>,
    /// Legs whose request failed or got a 5xx, after retrying.
    pub legs_failed: u64,
    /// Times a request moved to the ingress a refusing one named as active.
    pub redirects: u64,
    /// Requests sent again because no region took traffic or an ingress was unreachable.
    pub retries: u64,
    /// Times ingress answered 429 (overloaded) and the request waited its `Retry-After` to go again.
    pub throttled: u64,
    /// How long the `generator` control held generation paused.
    pub paused: Duration,
    pub trades: HashMap<&'static str, u64>,
    /// Acknowledgement latency of each accepted leg's request (the answering attempt, without
    /// earlier 429 waits), in milliseconds.
    pub ack_ms: Vec<f64>,
    pub elapsed: Duration,
    /// Every leg sent, whatever its answer, as (sender, trade_ref): what the chaos checker holds
    /// the stores to ("nothing from nothing").
    pub attempted: Vec<(String, String)>,
    /// Every leg acknowledged (202), with the ids ingress gave it.
    pub acknowledged: Vec<Acknowledged>,
}

/// One leg ingress acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    pub sender: String,
    pub trade_ref: String,
    pub leg_id: String,
    pub trade_id: String,
}

impl Report {
    pub fn percentile(&self, p: f64) -> Option<f64> {
        percentile(&self.ack_ms, p)
    }
}

/// The `p` quantile (0..=1) of `samples`, nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn kind_name(kind: LegKind) -> &'static str {
    match kind {
        LegKind::Matching => "matching",
        LegKind::Failing => "failing",
        LegKind::Mismatching => "mismatching",
        LegKind::Unmatched => "unmatched",
        LegKind::Invalid => "invalid",
    }
}

/// Submits generated trades through `client` at `options.rate` legs per second until the duration
/// passes or `stop` is cancelled, then waits for the requests in flight and reports.
pub async fn run(
    client: Client,
    participants: &[Credentials],
    options: DriverOptions,
    stop: CancellationToken,
) -> anyhow::Result<Report> {
    let of_role = |role: &str| {
        participants
            .iter()
            .filter(|p| p.role == role)
            .map(|p| p.participant_id.clone())
            .collect::<Vec<_>>()
    };
    let mut tokens = HashMap::new();
    for credentials in participants {
        tokens.insert(
            credentials.participant_id.clone(),
            client.token(credentials).await?,
        );
    }
    let mut factory = TradeFactory::new(
        options.seed,
        options.mix,
        of_role("im"),
        of_role("broker"),
        &options.prefix,
    );

    let report = Arc::new(Mutex::new(Report::default()));
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut requests = JoinSet::new();
    let started = Instant::now();
    let tick = Duration::from_millis(20);
    let mut sent = 0u64;
    let mut paused = Duration::ZERO;
    let mut control = options.control.clone();
    loop {
        if stop.is_cancelled() || options.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if let Some(control) = control.as_mut() {
            paused += wait_while_paused(control, &stop).await;
            if stop.is_cancelled() {
                break;
            }
        }
        let due = (options.rate * (started.elapsed() - paused).as_secs_f64()) as u64;
        let mut batches: HashMap<String, Vec<Value>> = HashMap::new();
        let mut singles: Vec<(String, Value)> = Vec::new();
        while sent < due {
            let trade = factory.next_trade();
            *report
                .lock()
                .await
                .trades
                .entry(kind_name(trade.kind))
                .or_default() += 1;
            if trade.kind == LegKind::Invalid {
                singles.push((trade.im.clone(), trade.im_leg));
            } else {
                batches
                    .entry(trade.im.clone())
                    .or_default()
                    .push(trade.im_leg);
            }
            sent += 1;
            if let Some(leg) = trade.broker_leg {
                batches.entry(trade.broker.clone()).or_default().push(leg);
                sent += 1;
            }
        }
        let mut requests_due: Vec<(String, Vec<Value>, bool)> = singles
            .into_iter()
            .map(|(sender, leg)| (sender, vec![leg], true))
            .collect();
        for (sender, legs) in batches {
            for chunk in legs.chunks(options.batch.max(1)) {
                requests_due.push((sender.clone(), chunk.to_vec(), options.batch <= 1));
            }
        }
        for (sender, legs, single) in requests_due {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore open");
            let client = client.clone();
            let token = tokens[&sender].clone();
            let report = report.clone();
            let (stop, retry_for) = (stop.clone(), options.retry_for);
            requests.spawn(async move {
                let _permit = permit;
                let delivery = deliver(&client, &token, &legs, single, retry_for, &stop).await;
                let answer = delivery.answer;
                let ms = delivery.answered_in.as_secs_f64() * 1000.0;
                let count = legs.len() as u64;
                let mut report = report.lock().await;
                report.legs_sent += count;
                report.attempted.extend(legs.iter().map(|leg| {
                    (
                        sender.clone(),
                        leg["trade_ref"].as_str().unwrap_or_default().to_owned(),
                    )
                }));
                report.redirects += delivery.redirects;
                report.retries += delivery.retries;
                report.throttled += delivery.throttled;
                match answer {
                    Ok((202, body)) => {
                        report.legs_accepted += count;
                        let receipts: Vec<&Value> = match body["results"].as_array() {
                            Some(results) => results.iter().collect(),
                            None => vec![&body],
                        };
                        for (leg, receipt) in legs.iter().zip(receipts) {
                            report.acknowledged.push(Acknowledged {
                                sender: sender.clone(),
                                trade_ref: leg["trade_ref"].as_str().unwrap_or_default().to_owned(),
                                leg_id: receipt["leg_id"].as_str().unwrap_or_default().to_owned(),
                                trade_id: receipt["trade_id"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                            });
                        }
                        report
                            .ack_ms
                            .extend(std::iter::repeat_n(ms, count as usize));
                    }
                    Ok((status, body)) if (400..500).contains(&status) => {
                        report.legs_refused += count;
                        let code = body["error"]["code"].as_str().unwrap_or("?");
                        *report
                            .refusals
                            .entry(format!("{status} {code}"))
                            .or_default() += count;
                        tracing::debug!(status, %body, "legs refused");
                    }
                    Ok((status, body)) => {
                        report.legs_failed += count;
                        tracing::warn!(status, %body, "submission failed");
                    }
                    Err(error) => {
                        report.legs_failed += count;
                        tracing::warn!(%error, "submission failed");
                    }
                }
            });
        }
        while requests.try_join_next().is_some() {}
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
    while requests.join_next().await.is_some() {}
    let mut report = report.lock().await.clone();
    report.elapsed = started.elapsed();
    report.paused = paused;
    Ok(report)
}

/// Waits while the `generator` control is Off or cannot be read; returns how long it waited.
async fn wait_while_paused(
    control: &mut watch::Receiver<Reading>,
    stop: &CancellationToken,
) -> Duration {
    let begun = Instant::now();
    let mut logged = false;
    loop {
        let why = control
            .borrow_and_update()
            .allows(keel_routing::GENERATOR)
            .err();
        let Some(why) = why else { break };
        if !logged {
            tracing::info!(%why, "generator paused");
            logged = true;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = control.changed() => if changed.is_err() { break },
        }
    }
    if logged {
        tracing::info!(
            paused_ms = begun.elapsed().as_millis() as u64,
            "generator resumed"
        );
    }
    begun.elapsed()
}

/// What happened to one request.
struct Delivery {
    answer: anyhow::Result<Answer>,
    redirects: u64,
    retries: u64,
    throttled: u64,
    /// How long the answering attempt took: the acknowledgement latency, apart from any time spent
    /// waiting out 429s or redirects before it.
    answered_in: Duration,
}

/// Sends `legs` until an ingress answers other than "this region does not take traffic" or "too
/// busy", or no answer comes for longer than `retry_for`. A refusing ingress names the
/// active one, which is followed at once; with none active, or none reachable, it backs off and
/// tries again; an overloaded one (429) is asked again after its `Retry-After` plus up to as much
/// again at random. Resending is safe: ingress records a leg once and acknowledges identical
/// resubmissions.
async fn deliver(
    client: &Client,
    token: &str,
    legs: &[Value],
    single: bool,
    retry_for: Duration,
    stop: &CancellationToken,
) -> Delivery {
    let give_up = Instant::now() + retry_for;
    let mut backoff = Duration::from_millis(50);
    let (mut redirects, mut retries, mut throttled) = (0, 0, 0);
    // Regions learn of a control change at their next poll, so two may briefly name each other:
    // follow at most twice in a row before backing off.
    let mut hops = 0;
    loop {
        let base = client.base();
        let attempt = Instant::now();
        let answer = if single && legs.len() == 1 {
            client.submit(token, &legs[0]).await
        } else {
            client.submit_batch(token, legs).await
        };
        let mut wait = backoff;
        match &answer {
            Ok((429, body)) => {
                throttled += 1;
                let seconds = body["error"]["retry_after_seconds"].as_u64().unwrap_or(1);
                // Clients refused together would otherwise all come back in the same instant, and
                // the stack would take their whole backlog at once when it opens again.
                let spread = rand::random_range(0..=seconds.clamp(1, 30) * 1000);
                wait = Duration::from_secs(seconds.clamp(1, 30)) + Duration::from_millis(spread);
            }
            Ok((503, body)) if body["error"]["code"] == "region_not_active" => {
                if let Some(active) = body["error"]["active_url"].as_str() {
                    if (client.follow(active) || client.base() != base) && hops < 2 {
                        redirects += 1;
                        hops += 1;
                        continue;
                    }
                }
            }
            Err(error) if is_unreachable(error) => client.fail_over(&base),
            // Sent, but the answer was lost (the connection dropped, as when a region dies): the
            // legs may or may not be recorded, and sending them again settles which, since ingress
            // acknowledges an identical resubmission. Giving up here would leave them unknown.
            Err(_) => {}
            _ => {
                return Delivery {
                    answer,
                    redirects,
                    retries,
                    throttled,
                    answered_in: attempt.elapsed(),
                }
            }
        }
        if Instant::now() + wait > give_up || stop.is_cancelled() {
            return Delivery {
                answer,
                redirects,
                retries,
                throttled,
                answered_in: attempt.elapsed(),
            };
        }
        retries += 1;
        hops = 0;
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        if wait == backoff {
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// Whether the request never reached an ingress (so it certainly was not recorded).
fn is_unreachable(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_connect)
}
