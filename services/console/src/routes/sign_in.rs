//! Signing in and out. A sign-in, accepted or refused, is recorded in the audit trail.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::CookieJar;
use maud::Markup;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ConsoleError;
use crate::sessions::COOKIE;
use crate::views;

pub async fn form() -> Markup {
    views::sign_in(None)
}

#[derive(Deserialize)]
pub struct Credentials {
    name: String,
    password: String,
}

pub async fn sign_in(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(credentials): Form<Credentials>,
) -> Result<Response, ConsoleError> {
    // Checking a password is deliberately slow: off the request threads.
    let registry = state.registry.clone();
    let name = credentials.name.clone();
    let outcome =
        tokio::task::spawn_blocking(move || registry.authenticate(&name, &credentials.password))
            .await
            .expect("authentication does not panic");
    state
        .auditor()
        .sign_in(&credentials.name, outcome.is_ok())
        .await
        .map_err(ConsoleError::Unrecorded)?;
    match outcome {
        Ok(operator) => {
            tracing::info!(operator = %operator.name, "signed in");
            let cookie = state.sessions.open(operator);
            Ok((jar.add(cookie), Redirect::to("/")).into_response())
        }
        Err(rejected) => Ok((
            StatusCode::UNAUTHORIZED,
            views::sign_in(Some(&ConsoleError::SignIn(rejected).to_string())),
        )
            .into_response()),
    }
}

pub async fn sign_out(State(state): State<AppState>, jar: CookieJar) -> impl IntoResponse {
    if let Some(cookie) = jar.get(COOKIE) {
        state.sessions.close(cookie.value());
    }
    (jar.remove(COOKIE), Redirect::to("/login"))
}
