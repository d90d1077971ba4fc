//! The alert rules and the dashboards against the code: every metric a rule or a dashboard queries
//! is one a Keel process exports, and the dashboards show every metric the rules watch. (The rules'
//! own behaviour is `promtool test rules`, which `make test` runs.)

use std::collections::BTreeSet;
use std::path::Path;

use keel_system_tests::repo_root;

/// Every `keel_…` name in `text`.
fn names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("keel_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        found.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    found
}

/// The metric names the code exports: the string literals naming `keel_` metrics in the Rust
/// sources of the crates and services (the macros' names, and the names handed to helpers).
fn exported() -> BTreeSet<String> {
    let mut exported = BTreeSet::new();
    for dir in ["crates", "services"] {
        visit(&repo_root().join(dir), &mut |path, text| {
            if path.extension().is_some_and(|e| e == "rs") {
                for line in text.lines().filter(|l| l.contains("\"keel_")) {
                    exported.extend(names(line));
                }
            }
        });
    }
    exported
}

fn visit(dir: &Path, each: &mut dyn FnMut(&Path, &str)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, each);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            each(&path, &text);
        }
    }
}

/// A queried name, as exported: summaries and histograms are queried through their series.
fn base(name: &str, exported: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(stem) = name.strip_suffix(suffix) {
            if exported.contains(stem) {
                return stem.to_owned();
            }
        }
    }
    name.to_owned()
}

fn queried_by_dashboards() -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    visit(&repo_root().join("dashboards"), &mut |path, text| {
        if path.extension().is_some_and(|e| e == "json") {
            let dashboard: serde_json::Value = serde_json::from_str(text).unwrap();
            for panel in dashboard["panels"].as_array().unwrap() {
                for target in panel["targets"].as_array().into_iter().flatten() {
                    used.extend(names(target["expr"].as_str().unwrap_or_default()));
                }
            }
        }
    });
    used
}

#[test]
fn every_metric_the_rules_and_dashboards_query_is_exported_and_shown() {
    let exported = exported();
    assert!(
        exported.contains("keel_consumer_lag") && exported.contains("keel_http_responses_total"),
        "the source scan found too little: {exported:?}"
    );
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml")).unwrap();
    let by_rules: BTreeSet<String> = names(&rules)
        .iter()
        .map(|name| base(name, &exported))
        .collect();
    let by_dashboards: BTreeSet<String> = queried_by_dashboards()
        .iter()
        .map(|name| base(name, &exported))
        .collect();
    assert!(by_rules.len() >= 10, "{by_rules:?}");

    let unknown: Vec<_> = by_rules
        .union(&by_dashboards)
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "queried but exported by nothing: {unknown:?}"
    );
    let unshown: Vec<_> = by_rules.difference(&by_dashboards).collect();
    assert!(
        unshown.is_empty(),
        "alert rules watch metrics no dashboard shows: {unshown:?}"
    );
}

#[test]
fn the_scan_finds_names_and_leaves_suffixes_to_their_metric() {
    let found = names("sum(rate(keel_a_total[1m])) / keel_b_seconds_count{x=\"keel_c\"}");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["keel_a_total", "keel_b_seconds_count", "keel_c"]
    );
    let exported = BTreeSet::from(["keel_b_seconds".to_owned()]);
    assert_eq!(base("keel_b_seconds_count", &exported), "keel_b_seconds");
    assert_eq!(base("keel_x_count", &exported), "keel_x_count");
}
