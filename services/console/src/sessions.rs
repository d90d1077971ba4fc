//! Sign-in sessions: a random token in an `HttpOnly`, `SameSite=Strict` cookie, mapped in memory
//! to the operator who signed in. A restart of the console signs everyone out, which is fine for a
//! console and keeps tokens out of any store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use keel_operations::Operator;

use crate::app::AppState;
use crate::error::ConsoleError;

pub const COOKIE: &str = "keel_session";

struct Session {
    operator: Operator,
    expires: Instant,
}

pub struct Sessions {
    lifetime: Duration,
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            lifetime,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session for `operator`; the cookie that carries it.
    pub fn open(&self, operator: Operator) -> Cookie<'static> {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let mut open = self.open.lock().expect("sessions lock");
        let now = Instant::now();
        open.retain(|_, session| session.expires > now);
        open.insert(
            token.clone(),
            Session {
                operator,
                expires: now + self.lifetime,
            },
        );
        Cookie::build((COOKIE, token))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(self.lifetime.try_into().unwrap_or_default())
            .build()
    }

    pub fn close(&self, token: &str) {
        self.open.lock().expect("sessions lock").remove(token);
    }

    fn operator(&self, token: &str) -> Option<Operator> {
        let open = self.open.lock().expect("sessions lock");
        open.get(token)
            .filter(|session| session.expires > Instant::now())
            .map(|session| session.operator.clone())
    }
}

/// The operator of the request's session; without one, the request is sent to sign in.
pub struct SignedIn(pub Operator);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        jar.get(COOKIE)
            .and_then(|cookie| state.sessions.operator(cookie.value()))
            .map(SignedIn)
            .ok_or(ConsoleError::SignedOut {
                from_htmx: parts.headers.contains_key("hx-request"),
            })
    }
}

#[cfg(test)]
mod tests {
    use keel_operations::Role;

    use super::*;

    fn ada() -> Operator {
        Operator {
            name: "ada".to_owned(),
            role: Role::Operator,
        }
    }

    #[test]
    fn a_session_names_its_operator_until_it_is_closed_or_expires() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let cookie = sessions.open(ada());
        assert!(cookie.http_only().unwrap_or(false));
        assert_eq!(cookie.same_site(), Some(SameSite::Strict));
        assert_eq!(sessions.operator(cookie.value()), Some(ada()));
        assert_eq!(sessions.operator("not-a-token"), None);
        sessions.close(cookie.value());
        assert_eq!(sessions.operator(cookie.value()), None);

        let brief = Sessions::new(Duration::ZERO);
        let cookie = brief.open(ada());
        assert_eq!(brief.operator(cookie.value()), None, "an expired session");
    }

    #[test]
    fn every_session_gets_a_token_of_its_own() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (a, b) = (sessions.open(ada()), sessions.open(ada()));
        assert_ne!(a.value(), b.value());
        assert_eq!(a.value().len(), 64);
    }
}
