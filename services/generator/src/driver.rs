use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub legs_sent: u64,
    pub legs_accepted: u64,
    /// Legs answered 4xx (the invalid ones are meant to be).
    pub legs_refused: u64,
    /// Legs whose request failed or got a 5xx.
    pub legs_failed: u64,
    pub trades: HashMap<&'static str, u64>,
    /// Acknowledgement latency of each accepted leg's request, in milliseconds.
    pub ack_ms: Vec<f64>,
    pub elapsed: Duration,
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
    loop {
        if stop.is_cancelled() || options.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let due = (options.rate * started.elapsed().as_secs_f64()) as u64;
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
            requests.spawn(async move {
                let _permit = permit;
                let begun = Instant::now();
                let answer = if single && legs.len() == 1 {
                    client.submit(&token, &legs[0]).await
                } else {
                    client.submit_batch(&token, &legs).await
                };
                let ms = begun.elapsed().as_secs_f64() * 1000.0;
                let count = legs.len() as u64;
                let mut report = report.lock().await;
                report.legs_sent += count;
                match answer {
                    Ok((202, _)) => {
                        report.legs_accepted += count;
                        report
                            .ack_ms
                            .extend(std::iter::repeat_n(ms, count as usize));
                    }
                    Ok((status, body)) if (400..500).contains(&status) => {
                        report.legs_refused += count;
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
    Ok(report)
}
