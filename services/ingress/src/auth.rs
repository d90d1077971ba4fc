//! OAuth 2.0 client credentials (RFC 6749 section 4.4): participants trade their client id and secret
//! for a short-lived HS256 bearer token naming them; every `/v1` call presents it.

use std::collections::HashMap;
use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use keel_domain::ParticipantId;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::api_error::ApiError;
use crate::app::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Im,
    Broker,
}

#[derive(Debug, Clone, Deserialize)]
struct ParticipantRecord {
    participant_id: ParticipantId,
    role: Role,
    client_id: String,
    client_secret: String,
}

/// The participants and their credentials (`deploy/local/participants.json` locally).
pub struct Participants {
    by_client_id: HashMap<String, ParticipantRecord>,
    roles: HashMap<ParticipantId, Role>,
}

impl Participants {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading participants file {}: {e}", path.display()))?;
        let records: Vec<ParticipantRecord> = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("participants file {}: {e}", path.display()))?;
        Ok(Self::new(records))
    }

    fn new(records: Vec<ParticipantRecord>) -> Self {
        let roles = records
            .iter()
            .map(|r| (r.participant_id.clone(), r.role))
            .collect();
        let by_client_id = records
            .into_iter()
            .map(|r| (r.client_id.clone(), r))
            .collect();
        Self {
            by_client_id,
            roles,
        }
    }

    /// The participant whose credentials these are, compared in constant time.
    pub fn authenticate(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Option<(&ParticipantId, Role)> {
        let record = self.by_client_id.get(client_id)?;
        bool::from(
            record
                .client_secret
                .as_bytes()
                .ct_eq(client_secret.as_bytes()),
        )
        .then_some((&record.participant_id, record.role))
    }

    pub fn role(&self, participant: &ParticipantId) -> Option<Role> {
        self.roles.get(participant).copied()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
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

    pub fn issue(&self, participant: &ParticipantId, role: Role) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: participant.to_string(),
            role,
            iat: now,
            exp: now + self.ttl_seconds,
            iss: ISSUER.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "the access token has expired".to_owned()
                }
                _ => "the access token is not valid".to_owned(),
            })
    }
}

/// The authenticated caller of a `/v1` route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: ParticipantId,
    pub role: Role,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
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
        let claims = state
            .tokens
            .verify(token.trim())
            .map_err(|m| unauthorized(&m))?;
        let id = ParticipantId::parse(&claims.sub)
            .map_err(|_| unauthorized("the access token is not valid"))?;
        // A participant removed since the token was issued is refused.
        let role = state
            .participants
            .role(&id)
            .ok_or_else(|| unauthorized("unknown participant"))?;
        Ok(Caller { id, role })
    }
}
