//! The console's routes: sign-in, the page and its live fragments, and the actions.

mod actions;
mod fragments;
mod sign_in;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;

use crate::app::AppState;
use crate::sessions::SignedIn;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/login", get(sign_in::form).post(sign_in::sign_in))
        .route("/logout", post(sign_in::sign_out))
        .route("/fragments/overview", get(fragments::overview))
        .route("/fragments/run", get(fragments::run))
        .route("/fragments/audit", get(fragments::audit))
        .route("/actions/generator", post(actions::generator))
        .route("/actions/plan", post(actions::plan))
        .route("/actions/run", post(actions::run))
        .route("/actions/reprotect", post(actions::reprotect))
        .route("/assets/htmx.min.js", get(htmx))
        .route("/assets/console.css", get(css))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn page(
    axum::extract::State(state): axum::extract::State<AppState>,
    SignedIn(operator): SignedIn,
) -> Markup {
    crate::views::page(&operator, &state.regions, state.refresh)
}

async fn htmx() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/htmx.min.js"),
    )
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/console.css"),
    )
}
