//! The live parts of the page, each read afresh on every poll.

use axum::extract::State;
use std::time::Instant;

use keel_operations::status::Reading;
use keel_operations::telemetry::{self, StageCount};
use maud::Markup;

use crate::app::AppState;
use crate::sessions::SignedIn;
use crate::views;

/// How many actions the trail shows.
const TRAIL: usize = 25;

pub async fn overview(State(state): State<AppState>, _: SignedIn) -> Markup {
    let status = keel_operations::status::gather(&state.ports, &state.regions).await;
    let stages = stages(&state).await;
    let gaps = match state.telemetry.reconciler().await {
        Ok(samples) => Reading::Read(telemetry::gaps_per_hop(&samples)),
        Err(error) => Reading::Unreadable(error.to_string()),
    };
    views::overview(&status, &state.regions, &stages, &gaps)
}

/// Every stage's count in every region, with its rate since the previous reading; a stage that does
/// not answer is left out.
async fn stages(state: &AppState) -> Vec<StageCount> {
    let mut counts = Vec::new();
    for region in state.regions.iter() {
        for service in &keel_topology::SERVICES {
            if let Ok(samples) = state.telemetry.samples(region, service.name).await {
                counts.push(StageCount {
                    region: region.clone(),
                    service: service.name.to_owned(),
                    count: telemetry::stage_count(service.name, &samples),
                    per_second: None,
                });
            }
        }
    }
    let now = Instant::now();
    let mut last = state.last_counts.lock().expect("counts lock");
    if let Some((at, previous)) = last.as_ref() {
        telemetry::rates(previous, &mut counts, now.duration_since(*at).as_secs_f64());
    }
    *last = Some((now, counts.clone()));
    counts
}

pub async fn run(State(state): State<AppState>, _: SignedIn) -> Markup {
    views::run(state.runs.latest().as_ref())
}

pub async fn audit(State(state): State<AppState>, _: SignedIn) -> Markup {
    let entries = match state.trail.recent(TRAIL).await {
        Ok(entries) => Reading::Read(entries),
        Err(error) => Reading::Unreadable(error.to_string()),
    };
    views::audit(&entries)
}
