use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

/// One participant's client credentials, as in `deploy/local/participants.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    pub participant_id: String,
    pub role: String,
    pub client_id: String,
    pub client_secret: String,
}

impl Credentials {
    pub fn load(path: &Path) -> anyhow::Result<Vec<Credentials>> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }
}

/// A small client of the ingress API that fetches and caches one token per participant.
///
/// It knows every region's ingress and talks to one at a time: it moves to the URL a refusing
/// ingress names as active ([`Client::follow`]), and to the next known ingress when the current one
/// cannot be reached ([`Client::fail_over`]). Tokens are valid in every region (one signing secret).
#[derive(Clone)]
pub struct Client {
    ingresses: Arc<[String]>,
    current: Arc<RwLock<String>>,
    http: reqwest::Client,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

/// An answer: HTTP status and JSON body (Null when the body is not JSON).
pub type Answer = (u16, Value);

impl Client {
    pub fn new(base: &str) -> Self {
        Self::with_ingresses(&[base])
    }

    /// A client that starts with the first of `ingresses` and may move to any of them.
    pub fn with_ingresses(ingresses: &[impl AsRef<str>]) -> Self {
        let ingresses: Arc<[String]> = ingresses
            .iter()
            .map(|url| url.as_ref().trim_end_matches('/').to_owned())
            .collect();
        assert!(!ingresses.is_empty(), "a client needs an ingress URL");
        // Bounded, so a stuck ingress costs a failed request rather than a hung client.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("HTTP client builds");
        Self {
            current: Arc::new(RwLock::new(ingresses[0].clone())),
            ingresses,
            http,
            tokens: Arc::default(),
        }
    }

    /// The ingress requests go to now.
    pub fn base(&self) -> String {
        self.current.read().expect("lock not poisoned").clone()
    }

    /// Sends further requests to `url`; says whether that is a change.
    pub fn follow(&self, url: &str) -> bool {
        let url = url.trim_end_matches('/');
        let mut current = self.current.write().expect("lock not poisoned");
        if *current == url {
            return false;
        }
        tracing::info!(from = %current, to = url, "following the active region's ingress");
        *current = url.to_owned();
        true
    }

    /// Moves to the known ingress after `unreachable` (the one a request failed to reach), unless
    /// another request has moved already.
    pub fn fail_over(&self, unreachable: &str) {
        let position = self.ingresses.iter().position(|url| url == unreachable);
        let next = &self.ingresses[position.map_or(0, |i| (i + 1) % self.ingresses.len())];
        let mut current = self.current.write().expect("lock not poisoned");
        if *current == unreachable && next != unreachable {
            tracing::warn!(from = unreachable, to = %next, "ingress unreachable; trying the next region's");
            *current = next.clone();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn answer(response: reqwest::Response) -> anyhow::Result<Answer> {
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `POST /oauth2/token` with form-encoded client credentials.
    pub async fn request_token(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> anyhow::Result<Answer> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ];
        Self::answer(
            self.http
                .post(self.url("/oauth2/token"))
                .form(&form)
                .send()
                .await?,
        )
        .await
    }

    /// A bearer token for `credentials`, fetched once.
    pub async fn token(&self, credentials: &Credentials) -> anyhow::Result<String> {
        if let Some(token) = self.tokens.lock().await.get(&credentials.client_id) {
            return Ok(token.clone());
        }
        let (status, body) = self
            .request_token(&credentials.client_id, &credentials.client_secret)
            .await?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "token request for {} answered {status}: {body}",
                    credentials.client_id
                )
            })?
            .to_owned();
        self.tokens
            .lock()
            .await
            .insert(credentials.client_id.clone(), token.clone());
        Ok(token)
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut request = self.http.post(self.url(path)).bearer_auth(token).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        Self::answer(request.send().await?).await
    }

    pub async fn post_raw(&self, path: &str, token: &str, body: &str) -> anyhow::Result<Answer> {
        let request = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json");
        Self::answer(request.body(body.to_owned()).send().await?).await
    }

    pub async fn submit(&self, token: &str, block: &Value) -> anyhow::Result<Answer> {
        self.post_json("/v1/trade-blocks", token, block, None).await
    }

    pub async fn submit_batch(&self, token: &str, blocks: &[Value]) -> anyhow::Result<Answer> {
        self.post_json(
            "/v1/trade-blocks/batch",
            token,
            &Value::Array(blocks.to_vec()),
            None,
        )
        .await
    }

    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Answer> {
        Self::answer(
            self.http
                .get(self.url(path))
                .bearer_auth(token)
                .send()
                .await?,
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> anyhow::Result<Answer> {
        Self::answer(
            self.http
                .delete(self.url(path))
                .bearer_auth(token)
                .send()
                .await?,
        )
        .await
    }

    pub async fn put_json(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<Answer> {
        Self::answer(
            self.http
                .put(self.url(path))
                .bearer_auth(token)
                .json(body)
                .send()
                .await?,
        )
        .await
    }
}
