//! The API contract against the running API: schemathesis (PyPI) reads the OpenAPI document the
//! live ingress serves, generates requests from it (examples, the schema's edges, then fuzzed
//! ones), sends them to that ingress as a signed-in participant, and checks every answer: no server
//! error, a documented status, a documented content type, a body that fits the documented schema.
//! Bounded by examples per operation; seeded, and the seed printed.

use std::process::Command;

use keel_system_tests::{seed, Stack, StackOptions};

/// As install.sh installs it (`make test`): `KEEL_SCHEMATHESIS_BIN`.
fn schemathesis() -> String {
    std::env::var("KEEL_SCHEMATHESIS_BIN")
        .expect("KEEL_SCHEMATHESIS_BIN is not set: run the system tests through `make test`")
}

#[tokio::test]
async fn the_live_api_answers_as_its_openapi_document_says() {
    let seed = seed("openapi_live") % (1 << 31);
    let stack = Stack::start("openapi_live", StackOptions::default())
        .await
        .unwrap();
    let token = stack.token("im-alpha").await;
    let schema = format!("{}/openapi.yaml", stack.ingress_url);
    // schemathesis keeps a cache of crashes in its working directory: the stack's, not the checkout.
    let workdir = stack.dir.clone();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
            .current_dir(workdir)
            .args(["run", &schema])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "10", "--workers", "1"])
            .args(["--seed", &seed.to_string()])
            .args(["--request-timeout", "10"])
            .output()
            .expect("running schemathesis")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the live API does not answer as documented (seed {seed}):\n{report}"
    );
    assert!(
        report.contains("generated"),
        "schemathesis ran no case:\n{report}"
    );
    // The summary's counts, for the log.
    if let Some(line) = report.lines().find(|l| l.contains("generated")) {
        println!("openapi_live: {}", line.trim());
    }
}
