//! What the services' own metrics say about the pipeline, for the console: how much each stage has
//! processed and how fast, and the gaps per hop the continuous reconciler last found. Parsed from
//! the Prometheus text format each process serves at `/metrics` (read through the
//! [`crate::ports::Telemetry`] port), and turned into rates between two readings (the clock is the
//! caller's).

use std::collections::BTreeMap;

use serde::Serialize;

/// One sample: a metric's name, its labels and its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format: `name{label="value",...} value` lines; comments
/// and lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// The sum of `name`'s samples whose labels include every pair of `matching`.
pub fn sum(samples: &[Sample], name: &str, matching: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            matching
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// What one stage in one region has done: its count since it started, and its rate since the last
/// reading (none at the first, or after the process restarted and its counter went back).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageCount {
    pub region: String,
    pub service: String,
    /// Legs accepted for ingress; messages processed for a consuming stage.
    pub count: f64,
    pub per_second: Option<f64>,
}

/// The count a stage's metrics give: legs accepted (ingress) or messages processed (the others).
pub fn stage_count(service: &str, samples: &[Sample]) -> f64 {
    if service == "ingress" {
        sum(samples, "keel_ingress_legs_accepted_total", &[])
    } else {
        sum(
            samples,
            "keel_consumer_messages_total",
            &[("outcome", "processed")],
        )
    }
}

/// Rates between two readings `seconds` apart, matched by region and service.
#[allow(clippy::float_arithmetic)] // counters of messages, not money
pub fn rates(previous: &[StageCount], now: &mut [StageCount], seconds: f64) {
    for stage in now.iter_mut() {
        stage.per_second = previous
            .iter()
            .find(|p| p.region == stage.region && p.service == stage.service)
            .filter(|p| seconds > 0.0 && stage.count >= p.count)
            .map(|p| (stage.count - p.count) / seconds);
    }
}

/// Gaps per hop (every kind summed) as the continuous reconciler last exported them.
#[allow(clippy::float_arithmetic)] // counts of gaps, not money
pub fn gaps_per_hop(samples: &[Sample]) -> BTreeMap<String, f64> {
    let mut gaps = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.name == "keel_reconcile_gaps") {
        if let Some(hop) = sample.labels.get("hop") {
            *gaps.entry(hop.clone()).or_insert(0.0) += sample.value;
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE keel_consumer_messages_total counter
keel_consumer_messages_total{region="us-east-1",service="matching",topic="tm.trades",outcome="processed"} 120
keel_consumer_messages_total{region="us-east-1",service="matching",topic="tm.settlement-results",outcome="processed"} 30
keel_consumer_messages_total{region="us-east-1",service="matching",topic="tm.trades",outcome="duplicate"} 4
keel_reconcile_gaps{hop="ingress -> ingestion (tm.submissions)",kind="missing",service="reconciler"} 2
keel_reconcile_gaps{hop="ingress -> ingestion (tm.submissions)",kind="differing",service="reconciler"} 1
keel_reconcile_gaps{hop="a \"quoted\" hop",kind="missing"} 0
keel_ingress_legs_accepted_total 5000
not a sample
"#;

    #[test]
    fn the_text_format_is_read_with_its_labels() {
        let samples = parse(TEXT);
        assert_eq!(samples.len(), 7);
        assert_eq!(stage_count("matching", &samples), 150.0);
        assert_eq!(stage_count("ingress", &samples), 5000.0);
        let gaps = gaps_per_hop(&samples);
        assert_eq!(gaps["ingress -> ingestion (tm.submissions)"], 3.0);
        assert_eq!(gaps["a \"quoted\" hop"], 0.0);
    }

    #[test]
    fn rates_are_the_difference_over_the_time_between_readings() {
        let stage = |count| StageCount {
            region: "us-east-1".into(),
            service: "matching".into(),
            count,
            per_second: None,
        };
        let mut now = vec![stage(150.0)];
        rates(&[stage(100.0)], &mut now, 2.0);
        assert_eq!(now[0].per_second, Some(25.0));
        // A restarted process starts its counter again: no rate rather than a negative one.
        rates(&[stage(400.0)], &mut now, 2.0);
        assert_eq!(now[0].per_second, None);
        rates(&[], &mut now, 2.0);
        assert_eq!(now[0].per_second, None);
    }
}
