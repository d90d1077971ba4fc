//! Where the CPU goes: every process of the stack (its services, its broker, the ARC endpoint), every
//! Postgres backend named by whom it works for (a Keel service by its connections' application
//! name, a broker's storage by its database, Postgres's own background work), and the bench process
//! itself (the generator), sampled from `/proc` at the start and end of a window.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use keel_system_tests::Stack;
use sqlx::PgPool;

/// CPU time per process at one moment.
pub struct CpuSample {
    at: Instant,
    /// pid → (what it is, CPU ticks so far).
    processes: HashMap<u32, (String, u64)>,
    /// The machine's busy and total ticks.
    machine: (u64, u64),
}

/// Shares of the machine over a window, per kind of process, largest first; and the machine's own
/// busy share.
#[derive(Debug)]
pub struct CpuShares {
    pub seconds: f64,
    pub machine_busy: f64,
    pub shares: Vec<(String, f64)>,
}

fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// utime + stime of `pid`, in clock ticks.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let values: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle and iowait
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// What each Postgres process of the cluster behind `admin` works for.
async fn postgres_processes(admin: &PgPool) -> anyhow::Result<Vec<(String, u32)>> {
    type Backend = (i32, Option<String>, Option<String>, Option<String>);
    let rows: Vec<Backend> = sqlx::query_as(
        "SELECT pid, datname::text, application_name, backend_type FROM pg_stat_activity",
    )
    .fetch_all(admin)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(pid, database, application, kind)| {
            let database = database.unwrap_or_default();
            let application = application.unwrap_or_default();
            let label = if database.contains("_kafka_") {
                "postgres: broker storage".to_owned()
            } else if application.starts_with("keel-") {
                format!("postgres: {application}")
            } else if kind.as_deref() == Some("client backend") {
                "postgres: other clients (bench, reconciler)".to_owned()
            } else {
                "postgres: background (WAL, checkpoints, vacuum)".to_owned()
            };
            (label, pid as u32)
        })
        .collect())
}

/// Samples every process of `stack`, of the Postgres clusters behind `clusters` (one connection
/// to each), and this process.
pub async fn sample(stack: &Stack, clusters: &[PgPool]) -> anyhow::Result<CpuSample> {
    let mut labelled: Vec<(String, u32)> = stack
        .processes()
        .into_iter()
        .map(|(name, pid)| {
            // "matching us-east-1" → "matching"; instances keep their number.
            let kind = name.split(' ').next().unwrap_or(&name).to_owned();
            let kind = if kind == "broker" {
                "broker (nisshi)".to_owned()
            } else {
                format!("keel-{kind}")
            };
            (kind, pid)
        })
        .collect();
    for cluster in clusters {
        labelled.extend(postgres_processes(cluster).await?);
    }
    labelled.push(("bench process (generator)".to_owned(), std::process::id()));
    let processes = labelled
        .into_iter()
        .filter_map(|(label, pid)| ticks(pid).map(|t| (pid, (label, t))))
        .collect();
    Ok(CpuSample {
        at: Instant::now(),
        processes,
        machine: machine_ticks(),
    })
}

pub fn shares(before: &CpuSample, after: &CpuSample, cores: usize) -> CpuShares {
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let per_second = clock_ticks_per_second();
    let capacity = seconds * cores as f64 * per_second;
    let mut grouped: BTreeMap<String, f64> = BTreeMap::new();
    for (pid, (label, end)) in &after.processes {
        let start = before.processes.get(pid).map_or(0, |(_, t)| *t);
        *grouped.entry(label.clone()).or_default() += end.saturating_sub(start) as f64;
    }
    let mut shares: Vec<(String, f64)> = grouped
        .into_iter()
        .map(|(label, ticks)| (label, ticks / capacity))
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    let busy = after.machine.0.saturating_sub(before.machine.0) as f64;
    let total = after.machine.1.saturating_sub(before.machine.1).max(1) as f64;
    CpuShares {
        seconds,
        machine_busy: busy / total,
        shares,
    }
}

/// Each consumer's and ingress's own counters, read from their `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StageCounters {
    /// (service, topic) → (batches, seconds in batches, messages processed).
    consumers: std::collections::BTreeMap<(String, String), (f64, f64, f64)>,
    /// Ingress's group commits: (commits, seconds in commits, requests).
    commits: (f64, f64, f64),
}

/// One stage over a window: what its time went to.
#[derive(Debug, Clone)]
pub struct StageTime {
    pub stage: String,
    /// Share of the window the stage spent in its commits (consumer batches or ingress's group
    /// commits): near 1, the stage is the bottleneck.
    pub busy: f64,
    pub per_commit: f64,
    pub millis_per_commit: f64,
}

/// Sums of `metric` lines (counters, or a histogram's `_sum`/`_count`) whose labels contain
/// `label`, in Prometheus text.
fn metric(text: &str, metric: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(metric) && line[metric.len()..].starts_with('{'))
        .filter(|line| line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn stage_counters(stack: &keel_system_tests::Stack) -> anyhow::Result<StageCounters> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()?;
    let mut counters = StageCounters::default();
    let region = keel_system_tests::EAST;
    for (service, topics) in [
        ("ingestion", &["tm.submissions"][..]),
        ("matching", &["tm.trades", "tm.settlement-results"][..]),
        ("notification", &["tm.events"][..]),
        ("settlement", &["st.instructions"][..]),
    ] {
        let text = http
            .get(format!("{}/metrics", stack.ops_url(region, service)))
            .send()
            .await?
            .text()
            .await?;
        for topic in topics {
            let label = format!("topic=\"{topic}\"");
            counters.consumers.insert(
                (service.to_owned(), (*topic).to_owned()),
                (
                    metric(&text, "keel_consumer_batch_seconds_count", &label),
                    metric(&text, "keel_consumer_batch_seconds_sum", &label),
                    metric(
                        &text,
                        "keel_consumer_messages_total",
                        &format!("{label},outcome=\"processed\""),
                    ),
                ),
            );
        }
    }
    let text = http
        .get(format!("{}/metrics", stack.ops_url(region, "ingress")))
        .send()
        .await?
        .text()
        .await?;
    counters.commits = (
        metric(&text, "keel_ingress_commit_seconds_count", ""),
        metric(&text, "keel_ingress_commit_seconds_sum", ""),
        metric(&text, "keel_ingress_commit_requests_sum", ""),
    );
    Ok(counters)
}

pub fn stage_times(before: &StageCounters, after: &StageCounters, seconds: f64) -> Vec<StageTime> {
    let time = |stage: String, (b0, s0, m0): (f64, f64, f64), (b1, s1, m1): (f64, f64, f64)| {
        let batches = (b1 - b0).max(1.0);
        StageTime {
            stage,
            busy: (s1 - s0) / seconds,
            per_commit: (m1 - m0) / batches,
            millis_per_commit: 1000.0 * (s1 - s0) / batches,
        }
    };
    let mut times = vec![time(
        "ingress: group commits (requests per commit)".to_owned(),
        before.commits,
        after.commits,
    )];
    for (key, end) in &after.consumers {
        let start = before.consumers.get(key).copied().unwrap_or_default();
        times.push(time(
            format!("{}: consumer of {} (messages per batch)", key.0, key.1),
            start,
            *end,
        ));
    }
    times
}
