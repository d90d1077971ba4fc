//! The live parts of the page, each read afresh on every poll.

use axum::extract::State;
use keel_operations::status::Reading;
use maud::Markup;

use crate::app::AppState;
use crate::sessions::SignedIn;
use crate::views;

/// How many actions the trail shows.
const TRAIL: usize = 25;

pub async fn overview(State(state): State<AppState>, _: SignedIn) -> Markup {
    let status = keel_operations::status::gather(&state.ports, &state.regions).await;
    views::overview(&status, &state.regions)
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
