//! `keelctl reconcile`: compares every hop's two sides in each application's active database and
//! reports the gaps and the repair each needs (DESIGN section 7). It reads only; replaying the
//! repairs comes with `keelctl rotate` (issue 5).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::process::ExitCode;

use keel_reconcile::{diff, hops, hops_of, Hop, HopDiff, Record, Repair};
use keel_routing::App;
use keel_safestore::hop::{consumed, produced, produced_with_ids};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::status::active_databases;
use crate::Config;

/// How far back to look, and how much of the newest to leave out as still in flight.
pub struct Window {
    pub seconds: f64,
    pub settle_seconds: f64,
}

#[derive(Serialize)]
struct HopReport {
    hop: String,
    #[serde(flatten)]
    definition: Hop,
    produced: usize,
    #[serde(flatten)]
    diff: HopDiff,
    repairs: Vec<Repair>,
}

pub async fn reconcile(
    config: &Config,
    app: Option<App>,
    window: Window,
    json_out: bool,
) -> ExitCode {
    match run(config, app, &window).await {
        Ok(reports) => {
            let gaps: usize = reports.iter().map(|r| r.diff.gaps()).sum();
            if json_out {
                let out = serde_json::json!({
                    "window_seconds": window.seconds,
                    "settle_seconds": window.settle_seconds,
                    "gaps": gaps,
                    "hops": reports,
                });
                println!("{}", serde_json::to_string_pretty(&out).expect("json"));
            } else {
                print_table(&reports, &window, gaps);
            }
            if gaps == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: &Config, app: Option<App>, window: &Window) -> Result<Vec<HopReport>, String> {
    let chosen: Vec<&Hop> = match app {
        Some(app) => hops_of(app).collect(),
        None => hops().iter().collect(),
    };
    let apps: BTreeSet<App> = chosen
        .iter()
        .flat_map(|hop| [hop.upstream.app, hop.downstream.app])
        .collect();
    let mut pools: BTreeMap<App, PgPool> = BTreeMap::new();
    for (app, url) in active_databases(config, &apps.into_iter().collect::<Vec<_>>()).await? {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .map_err(|e| format!("{app}'s database: {e}"))?;
        pools.insert(app, pool);
    }
    let mut reports = Vec::new();
    for hop in chosen {
        reports.push(
            reconcile_hop(
                &pools[&hop.upstream.app],
                &pools[&hop.downstream.app],
                hop,
                window,
            )
            .await
            .map_err(|e| format!("{}: {e}", hop.name()))?,
        );
    }
    Ok(reports)
}

async fn reconcile_hop(
    upstream_pool: &PgPool,
    downstream_pool: &PgPool,
    hop: &Hop,
    window: &Window,
) -> Result<HopReport, sqlx::Error> {
    let (up, down) = (hop.upstream.schema, hop.downstream.schema);
    let mut upstream = produced(
        upstream_pool,
        up,
        hop.topic,
        window.seconds,
        window.settle_seconds,
    )
    .await?;
    let produced_in_window = upstream.len();
    let ids: Vec<Uuid> = upstream.iter().map(|(id, _)| *id).collect();
    let downstream = consumed(downstream_pool, down, hop.topic, window.seconds, &ids).await?;
    // Consumed in the window but produced before it: look those up upstream before calling them
    // orphans.
    let known: HashSet<Uuid> = ids.into_iter().collect();
    let unknown: Vec<Uuid> = downstream
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !known.contains(id))
        .collect();
    if !unknown.is_empty() {
        upstream.extend(produced_with_ids(upstream_pool, up, hop.topic, &unknown).await?);
    }
    let upstream_digests: HashMap<Uuid, String> = upstream.iter().cloned().collect();
    let upstream: Vec<Record> = upstream
        .into_iter()
        .map(|(id, digest)| Record { id, digest })
        .collect();
    // Rows consumed before inboxes kept payloads have no digest: compared by id only.
    let downstream: Vec<Record> = downstream
        .into_iter()
        .map(|(id, digest)| Record {
            id,
            digest: digest
                .or_else(|| upstream_digests.get(&id).cloned())
                .unwrap_or_default(),
        })
        .collect();
    let result = diff(&upstream, &downstream);
    Ok(HopReport {
        hop: hop.name(),
        definition: *hop,
        produced: produced_in_window,
        repairs: keel_reconcile::repairs(hop, &result),
        diff: result,
    })
}

fn print_table(reports: &[HopReport], window: &Window, gaps: usize) {
    println!(
        "{:<50} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "hop", "produced", "matched", "missing", "differing", "orphaned"
    );
    for report in reports {
        println!(
            "{:<50} {:>8} {:>8} {:>8} {:>9} {:>8}",
            report.hop,
            report.produced,
            report.diff.matched,
            report.diff.missing.len(),
            report.diff.differing.len(),
            report.diff.orphaned.len()
        );
        for repair in &report.repairs {
            match repair {
                Repair::Replay { id } => println!("  {id}: missing downstream; replay it"),
                Repair::Restore { id } => {
                    println!("  {id}: only downstream has it; restore it upstream")
                }
                Repair::Investigate { id, why } => println!("  {id}: {why}; investigate"),
            }
        }
    }
    println!(
        "{gaps} gap(s) over the last {:.0} s (the newest {:.0} s left out as in flight)",
        window.seconds, window.settle_seconds
    );
}
