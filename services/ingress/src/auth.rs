//! OAuth 2.0 client credentials (RFC 6749 section 4.4): participants trade their client id and secret
//! for a short-lived HS256 bearer token naming them and its scopes; every `/v1` call presents it.
//!
//! Client secrets are kept only as argon2id hashes (`keelctl operators hash` makes one). The
//! credentials file is read again every `credentials_reload_ms`, so a participant revoked or past its
//! `expires_at` there is refused, token or not, within that bound.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use keel_domain::ParticipantId;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::api_error::ApiError;
use crate::app::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Im,
    Broker,
}

/// What a token lets its holder do: `read` its trades, notifications, positions and reference data;
/// `submit` trade blocks, cancels and webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Submit,
}

impl Scope {
    const ALL: [Scope; 2] = [Scope::Read, Scope::Submit];

    fn parse(word: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == word)
    }

    fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scopes as OAuth writes them: space-separated.
fn scope_text(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn all_scopes() -> BTreeSet<Scope> {
    Scope::ALL.into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialRecord {
    participant_id: ParticipantId,
    role: Role,
    client_id: String,
    /// An argon2id PHC string of the client secret.
    client_secret_hash: String,
    /// What tokens may be issued for; every scope unless said.
    #[serde(default = "all_scopes")]
    scopes: BTreeSet<Scope>,
    /// Refused from the next reload on, tokens already issued included.
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

impl CredentialRecord {
    fn active(&self, now: DateTime<Utc>) -> bool {
        !self.revoked && self.expires_at.is_none_or(|at| now < at)
    }
}

/// A credentials file that cannot be used; names the entry.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading participants' credentials {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("participants' credentials {path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

/// A token was asked for and is not issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown client, wrong secret, revoked or expired: not told apart.
    InvalidClient,
    /// A scope that does not exist or this client may not have.
    InvalidScope(String),
}

/// What a token is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub participant: ParticipantId,
    pub role: Role,
    pub scopes: BTreeSet<Scope>,
}

/// The participants and their credentials.
pub struct Participants {
    by_client_id: HashMap<String, CredentialRecord>,
    by_participant: HashMap<ParticipantId, CredentialRecord>,
}

impl Participants {
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|detail| CredentialsError::Invalid {
            path: path.to_owned(),
            detail,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let raw: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut by_client_id = HashMap::new();
        let mut by_participant = HashMap::new();
        for (index, entry) in raw.into_iter().enumerate() {
            if entry.get("client_secret").is_some() {
                return Err(format!(
                    "entry {index} holds a plaintext client_secret; store only client_secret_hash \
                     (an argon2id hash, `keelctl operators hash` makes one)"
                ));
            }
            let record: CredentialRecord =
                serde_json::from_value(entry).map_err(|e| format!("entry {index}: {e}"))?;
            keel_security::check_hash(&record.client_secret_hash).map_err(|e| {
                format!(
                    "{}: client_secret_hash is not an argon2 PHC string ({e})",
                    record.client_id
                )
            })?;
            if by_participant
                .insert(record.participant_id.clone(), record.clone())
                .is_some()
            {
                return Err(format!("{} is listed twice", record.participant_id));
            }
            if by_client_id
                .insert(record.client_id.clone(), record.clone())
                .is_some()
            {
                return Err(format!("client_id {} is listed twice", record.client_id));
            }
        }
        Ok(Self {
            by_client_id,
            by_participant,
        })
    }

    /// The grant for these credentials and `requested` scopes (every scope the client may have
    /// when none is asked for). Costs one argon2 check whether or not the client exists.
    pub fn authenticate(
        &self,
        client_id: &str,
        client_secret: &str,
        requested: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Grant, Refusal> {
        let Some(record) = self.by_client_id.get(client_id) else {
            keel_security::verify_unknown(client_secret);
            return Err(Refusal::InvalidClient);
        };
        if !keel_security::verify(&record.client_secret_hash, client_secret) || !record.active(now)
        {
            return Err(Refusal::InvalidClient);
        }
        let scopes = match requested.map(str::trim).filter(|r| !r.is_empty()) {
            None => record.scopes.clone(),
            Some(requested) => {
                let mut scopes = BTreeSet::new();
                for word in requested.split_whitespace() {
                    match Scope::parse(word) {
                        Some(scope) if record.scopes.contains(&scope) => {
                            scopes.insert(scope);
                        }
                        Some(_) => {
                            return Err(Refusal::InvalidScope(format!(
                                "{client_id} may not have scope {word}"
                            )))
                        }
                        None => {
                            return Err(Refusal::InvalidScope(format!(
                                "unknown scope {word:?}; scopes are read and submit"
                            )))
                        }
                    }
                }
                scopes
            }
        };
        Ok(Grant {
            participant: record.participant_id.clone(),
            role: record.role,
            scopes,
        })
    }

    /// The role of a participant that is registered (for a counterparty).
    pub fn role(&self, participant: &ParticipantId) -> Option<Role> {
        self.by_participant.get(participant).map(|r| r.role)
    }

    /// The role of a participant that may act now: registered, not revoked, not expired.
    pub fn active_role(&self, participant: &ParticipantId, now: DateTime<Utc>) -> Option<Role> {
        self.by_participant
            .get(participant)
            .filter(|r| r.active(now))
            .map(|r| r.role)
    }
}

/// The participants as last read, re-read every interval (a revocation takes effect within it).
#[derive(Clone)]
pub struct ParticipantsHandle {
    current: Arc<RwLock<Arc<Participants>>>,
}

impl ParticipantsHandle {
    pub fn new(participants: Participants) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(participants))),
        }
    }

    pub fn current(&self) -> Arc<Participants> {
        self.current.read().expect("never poisoned").clone()
    }

    /// Re-reads `path` every `every` until `shutdown`; a file that does not load keeps the last
    /// good one in force and is logged.
    pub fn reload_every(&self, path: PathBuf, every: Duration, shutdown: CancellationToken) {
        let current = self.current.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let read = path.clone();
                match tokio::task::spawn_blocking(move || Participants::load(&read)).await {
                    Ok(Ok(fresh)) => *current.write().expect("never poisoned") = Arc::new(fresh),
                    Ok(Err(error)) => {
                        tracing::error!(%error, "participants' credentials not reloaded; the last good ones stay in force")
                    }
                    Err(error) => tracing::error!(%error, "reloading participants' credentials"),
                }
            }
        });
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    /// Space-separated scopes, as OAuth writes them; a token without any grants nothing.
    #[serde(default)]
    scope: String,
    iat: i64,
    exp: i64,
    iss: String,
}

const ISSUER: &str = "keel";

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_seconds: i64,
}

impl TokenIssuer {
    pub fn new(secret: &str, ttl_seconds: i64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            ttl_seconds,
        }
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    /// The token for `grant`, and its scopes as text.
    pub fn issue(&self, grant: &Grant) -> (String, String) {
        let now = chrono::Utc::now().timestamp();
        let scope = scope_text(&grant.scopes);
        let claims = Claims {
            sub: grant.participant.to_string(),
            role: grant.role,
            scope: scope.clone(),
            iat: now,
            exp: now + self.ttl_seconds,
            iss: ISSUER.into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        (token, scope)
    }

    fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the access token has expired",
                _ => "the access token is not valid",
            })
    }
}

/// The authenticated caller of a `/v1` route that reads (scope `read`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: ParticipantId,
    pub role: Role,
}

/// The authenticated caller of a `/v1` route that changes something (scope `submit`).
#[derive(Debug, Clone)]
pub struct Submitter(pub Caller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(parts, state, Scope::Read)
    }
}

impl FromRequestParts<AppState> for Submitter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(parts, state, Scope::Submit).map(Submitter)
    }
}

/// The bearer token's participant, if the token is valid, holds `needed`, and the participant is
/// still active.
fn authorize(parts: &Parts, state: &AppState, needed: Scope) -> Result<Caller, ApiError> {
    let unauthorized = |message: &str| ApiError::Unauthorized {
        message: message.to_owned(),
    };
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <token> header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be \"Bearer <token>\""))?;
    let claims = state.tokens.verify(token.trim()).map_err(unauthorized)?;
    let id = ParticipantId::parse(&claims.sub)
        .map_err(|_| unauthorized("the access token is not valid"))?;
    // A participant removed, revoked or expired since the token was issued is refused.
    let role = state
        .participants
        .current()
        .active_role(&id, Utc::now())
        .ok_or_else(|| unauthorized("the participant is not active"))?;
    if !claims
        .scope
        .split_whitespace()
        .any(|word| word == needed.as_str())
    {
        return Err(ApiError::InsufficientScope { needed });
    }
    Ok(Caller { id, role })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn participants(extra: &str) -> Participants {
        let hash = keel_security::hash("alpha-secret");
        Participants::parse(&format!(
            r#"[{{"participant_id": "IM-ALPHA", "role": "im", "client_id": "im-alpha",
                 "client_secret_hash": "{hash}"{extra}}}]"#
        ))
        .unwrap()
    }

    #[test]
    fn a_client_gets_the_scopes_it_may_have() {
        let now = Utc::now();
        let all = participants("");
        let grant = all
            .authenticate("im-alpha", "alpha-secret", None, now)
            .unwrap();
        assert_eq!(grant.scopes, all_scopes());
        let read = all
            .authenticate("im-alpha", "alpha-secret", Some("read"), now)
            .unwrap();
        assert_eq!(scope_text(&read.scopes), "read");
        assert!(matches!(
            all.authenticate("im-alpha", "alpha-secret", Some("admin"), now),
            Err(Refusal::InvalidScope(_))
        ));
        let reader = participants(r#", "scopes": ["read"]"#);
        assert!(matches!(
            reader.authenticate("im-alpha", "alpha-secret", Some("read submit"), now),
            Err(Refusal::InvalidScope(_))
        ));
        assert_eq!(
            scope_text(
                &reader
                    .authenticate("im-alpha", "alpha-secret", None, now)
                    .unwrap()
                    .scopes
            ),
            "read"
        );
    }

    #[test]
    fn wrong_unknown_revoked_and_expired_clients_are_refused_alike() {
        let now = Utc::now();
        let all = participants("");
        for (client, secret) in [("im-alpha", "beta-secret"), ("nobody", "alpha-secret")] {
            assert_eq!(
                all.authenticate(client, secret, None, now),
                Err(Refusal::InvalidClient)
            );
        }
        let alpha = ParticipantId::parse("IM-ALPHA").unwrap();
        let revoked = participants(r#", "revoked": true"#);
        assert_eq!(
            revoked.authenticate("im-alpha", "alpha-secret", None, now),
            Err(Refusal::InvalidClient)
        );
        assert_eq!(revoked.active_role(&alpha, now), None);
        assert_eq!(revoked.role(&alpha), Some(Role::Im));
        let expiring = participants(r#", "expires_at": "2026-12-01T00:00:00Z""#);
        let before = "2026-11-30T23:59:59Z".parse().unwrap();
        let after = "2026-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(expiring.active_role(&alpha, before), Some(Role::Im));
        assert_eq!(expiring.active_role(&alpha, after), None);
    }

    /// The local clients' secrets (public, in participants.json) are the ones whose hashes the
    /// local ingress holds.
    #[test]
    fn the_local_credentials_are_hashes_of_the_local_clients_secrets() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let hashed =
            Participants::load(&root.join("deploy/local/config/participant-credentials.json"))
                .unwrap();
        let clients: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(root.join("deploy/local/participants.json")).unwrap(),
        )
        .unwrap();
        assert!(!clients.is_empty());
        for client in clients {
            let grant = hashed
                .authenticate(
                    client["client_id"].as_str().unwrap(),
                    client["client_secret"].as_str().unwrap(),
                    None,
                    Utc::now(),
                )
                .unwrap();
            assert_eq!(grant.participant.as_str(), client["participant_id"]);
        }
    }

    #[test]
    fn a_plaintext_secret_or_a_bad_hash_is_refused_when_loaded() {
        let plain = Participants::parse(
            r#"[{"participant_id": "IM-ALPHA", "role": "im", "client_id": "im-alpha", "client_secret": "x"}]"#,
        )
        .err()
        .unwrap();
        assert!(plain.contains("plaintext client_secret"), "{plain}");
        let bad = Participants::parse(
            r#"[{"participant_id": "IM-ALPHA", "role": "im", "client_id": "im-alpha", "client_secret_hash": "x"}]"#,
        )
        .err()
        .unwrap();
        assert!(bad.contains("im-alpha: client_secret_hash"), "{bad}");
    }
}
