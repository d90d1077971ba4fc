//! What a market utility cannot ship without, each against the running services: no default
//! secrets, secrets stored only hashed or sealed, webhook targets checked, operational endpoints
//! off the participants' port, scoped tokens, and a revoked participant refused within a bound.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_system_tests::{bin_dir, repo_root, sample_block, Stack, StackOptions};
use serde_json::{json, Value};

/// Starts `service` with the local configuration and `env`, and returns what it said if it
/// stopped by itself within 30 s (it is killed otherwise, and the test fails).
fn refused_start(service: &str, env: &[(&str, &str)]) -> String {
    let mut command = Command::new(bin_dir(false).join(format!("keel-{service}")));
    command
        .current_dir(repo_root())
        .env(
            "KEEL_CONFIG",
            repo_root().join("deploy/local/config/keel.toml"),
        )
        .env("KEEL_REGION", "us-east-1")
        .env("KEEL_LISTEN", "127.0.0.1:0")
        .env("KEEL_OPS_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("the service starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            assert!(
                !status.success(),
                "{service} exited cleanly instead of refusing"
            );
            return format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{service} did not refuse to start with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_service_starts_with_a_missing_or_example_secret_outside_the_local_stack() {
    let said = refused_start("ingress", &[("KEEL_TOKEN_SECRET", "")]);
    assert!(said.contains("token_secret is not set"), "{said}");
    let said = refused_start("ingress", &[("KEEL_ENVIRONMENT", "production")]);
    assert!(
        said.contains("token_secret is the local stack's example secret"),
        "{said}"
    );
    let said = refused_start(
        "ingress",
        &[
            ("KEEL_ENVIRONMENT", "production"),
            (
                "KEEL_TOKEN_SECRET",
                "a-production-secret-of-good-length-0123",
            ),
        ],
    );
    assert!(
        said.contains("webhook_key is the local stack's example secret"),
        "{said}"
    );
    let said = refused_start("notification", &[("KEEL_ENVIRONMENT", "production")]);
    assert!(
        said.contains("webhook_key is the local stack's example secret"),
        "{said}"
    );
    let said = refused_start("ingress", &[("KEEL_TOKEN_SECRET", "short")]);
    assert!(said.contains("at least 32"), "{said}");
}

/// A copy of the local credentials the test may edit, read again every 200 ms.
fn editable_credentials(stack_dir: &std::path::Path) -> std::path::PathBuf {
    let copy = stack_dir.join("credentials.json");
    std::fs::copy(
        repo_root().join("deploy/local/config/participant-credentials.json"),
        &copy,
    )
    .unwrap();
    copy
}

async fn token_with_scope(
    stack: &Stack,
    client_id: &str,
    secret: &str,
    scope: &str,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/oauth2/token", stack.ingress_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn participants_are_held_to_their_scopes_their_standing_and_their_own_port() {
    let dir = std::env::temp_dir().join(format!("keel-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let credentials = editable_credentials(&dir);
    let stack = Stack::start(
        "security",
        StackOptions {
            extra_env: vec![
                (
                    "KEEL_CREDENTIALS_FILE".into(),
                    credentials.display().to_string(),
                ),
                ("KEEL_CREDENTIALS_RELOAD_MS".into(), "200".into()),
                ("KEEL_WEBHOOKS__ALLOW_HTTP".into(), "false".into()),
                (
                    "KEEL_WEBHOOKS__ALLOW_PRIVATE_TARGETS".into(),
                    "false".into(),
                ),
            ],
            ..StackOptions::default()
        },
    )
    .await
    .unwrap();
    let client = stack.client();

    // Scopes: a read-only token reads and is refused anything that changes something.
    let (status, granted) =
        token_with_scope(&stack, "im-alpha", "im-alpha-local-secret", "read").await;
    assert_eq!(
        (status, granted["scope"].as_str()),
        (200, Some("read")),
        "{granted}"
    );
    let reader = granted["access_token"].as_str().unwrap().to_owned();
    let (status, body) = client
        .submit(&reader, &sample_block("T-SCOPE-1"))
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert_eq!(
        client.get("/v1/notifications", &reader).await.unwrap().0,
        200
    );
    let (status, body) =
        token_with_scope(&stack, "im-alpha", "im-alpha-local-secret", "read admin").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let full = stack.token("im-alpha").await;
    assert_eq!(
        client
            .submit(&full, &sample_block("T-SCOPE-2"))
            .await
            .unwrap()
            .0,
        202
    );

    // Webhook targets: outside the local stack's allowances, only public https.
    for (url, expected) in [
        ("http://hooks.example.com/keel", "scheme http"),
        ("https://127.0.0.1:9110/metrics", "internal address"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "internal address",
        ),
        ("https://localhost/", "names this machine"),
    ] {
        let (status, body) = client
            .put_json("/v1/webhook", &full, &json!({"url": url}))
            .await
            .unwrap();
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(
            body["error"]["fields"][0]["code"], "url_not_allowed",
            "{url}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{url}: {body}"
        );
    }
    let (status, registered) = client
        .put_json(
            "/v1/webhook",
            &full,
            &json!({"url": "https://hooks.example.com/keel"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{registered}");
    // The signing secret is stored sealed, never as given out.
    let secret = registered["secret"].as_str().unwrap();
    let stored: String = sqlx::query_scalar(
        "SELECT sealed_secret FROM ingress.webhooks WHERE participant_id = 'IM-ALPHA'",
    )
    .fetch_one(&stack.db)
    .await
    .unwrap();
    assert!(
        stored.starts_with("v1:") && !stored.contains(secret),
        "{stored}"
    );

    // Operational endpoints are on the ops port only.
    let http = reqwest::Client::new();
    for path in ["/metrics", "/readyz", "/healthz"] {
        let on_api = http
            .get(format!("{}{path}", stack.ingress_url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(on_api, 404, "{path} is not served to participants");
    }
    let on_ops = http
        .get(format!("{}/metrics", stack.ops_url("us-east-1", "ingress")))
        .send()
        .await
        .unwrap();
    assert_eq!(on_ops.status(), 200);
    assert!(on_ops
        .text()
        .await
        .unwrap()
        .contains("keel_http_responses_total"));

    // Revocation: within the reload bound, the participant's tokens and credentials stop working.
    let beta = stack.token("im-beta").await;
    assert_eq!(client.get("/v1/notifications", &beta).await.unwrap().0, 200);
    let mut entries: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&credentials).unwrap()).unwrap();
    for entry in &mut entries {
        if entry["client_id"] == "im-beta" {
            entry["revoked"] = json!(true);
        }
    }
    std::fs::write(&credentials, serde_json::to_string(&entries).unwrap()).unwrap();
    let revoked_at = Instant::now();
    let refused_after = loop {
        let (status, _) = client.get("/v1/notifications", &beta).await.unwrap();
        if status == 401 {
            break revoked_at.elapsed();
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "a revoked participant's token still works after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "security: a revoked participant was refused after {refused_after:?} (reload every 200 ms)"
    );
    let (status, body) = client
        .request_token("im-beta", "im-beta-local-secret")
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Everyone else is unaffected.
    assert_eq!(client.get("/v1/notifications", &full).await.unwrap().0, 200);
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_local_databases_require_the_password_kept_outside_the_repository() {
    use sqlx::postgres::PgConnectOptions;
    use sqlx::ConnectOptions;
    use std::str::FromStr;

    keel_localstack::credentials::use_local_pgpass();
    let url = std::env::var("KEEL_TEST_PG").expect("KEEL_TEST_PG, as make test sets it");
    let with_pgpass = PgConnectOptions::from_str(&url).unwrap();
    let port = with_pgpass.get_port();
    let bare = PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(port)
        .username("keel")
        .database("postgres");

    with_pgpass
        .connect()
        .await
        .expect("the local password file lets the stack in");
    let refused = bare.clone().connect().await.unwrap_err().to_string();
    assert!(refused.contains("password"), "no password: {refused}");
    let refused = bare
        .password("not-the-password")
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("password authentication failed"),
        "a wrong password: {refused}"
    );
    let method: String = sqlx::query_scalar(
        "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1",
    )
    .fetch_one(&mut with_pgpass.connect().await.unwrap())
    .await
    .unwrap();
    assert_eq!(method, "scram-sha-256");

    let password = keel_localstack::credentials::password().expect("a local password was made");
    for file in [
        "deploy/local/config/keel.toml",
        "deploy/local/participants.json",
        "deploy/local/config/participant-credentials.json",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        assert!(
            !text.contains(&password),
            "{file} holds the database password"
        );
    }
}
