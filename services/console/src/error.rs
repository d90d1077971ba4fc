//! Everything the console can answer with instead of what was asked, and the one mapping from each
//! to an HTTP status. The body is a notice fragment the page shows where the answer would go (the
//! page's htmx swaps 4xx answers in as well, so a refusal's reason is read, not lost).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use keel_operations::access::{Denied, SignInRejected};
use keel_operations::ports::{ControlsError, StoreError};
use keel_operations::RunbookError;
use maud::html;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("sign in first")]
    SignedOut { from_htmx: bool },
    #[error("sign-in refused: {0}")]
    SignIn(SignInRejected),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("nothing was done: the audit trail cannot be written: {0}")]
    Unrecorded(StoreError),
    #[error(transparent)]
    Runbook(#[from] RunbookError),
    #[error(transparent)]
    Controls(#[from] ControlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a run is in progress ({0}); wait for it to end")]
    RunInProgress(String),
    #[error("{0}")]
    BadRequest(String),
}

impl ConsoleError {
    /// Whether nothing was done because something said no, as the audit trail records it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ConsoleError::Denied(_)
                | ConsoleError::Runbook(RunbookError::Refused(_))
                | ConsoleError::Controls(ControlsError::Refused(_))
                | ConsoleError::RunInProgress(_)
        )
    }

    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::SignedOut { .. } | ConsoleError::SignIn(_) => StatusCode::UNAUTHORIZED,
            ConsoleError::Denied(_) => StatusCode::FORBIDDEN,
            ConsoleError::Runbook(RunbookError::Refused(_))
            | ConsoleError::Controls(ControlsError::Refused(_))
            | ConsoleError::RunInProgress(_) => StatusCode::CONFLICT,
            ConsoleError::BadRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ConsoleError::Unrecorded(_)
            | ConsoleError::Runbook(_)
            | ConsoleError::Controls(_)
            | ConsoleError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if let ConsoleError::SignedOut { from_htmx } = self {
            if !from_htmx {
                return Redirect::to("/login").into_response();
            }
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response
                .headers_mut()
                .insert("hx-redirect", HeaderValue::from_static("/login"));
            return response;
        }
        let title = if self.is_refusal() {
            "Refused"
        } else {
            "Failed"
        };
        let body = html! {
            div.notice.problem role="alert" {
                strong { (title) } " " (self.to_string())
            }
        };
        let mut response = (self.status(), body).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
