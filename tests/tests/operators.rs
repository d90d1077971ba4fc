//! Operator sign-in and the audit trail from keelctl (DESIGN section 9): a command that changes Keel
//! is refused without an operator, to a viewer and with a wrong password, changes nothing then,
//! and every attempt by a name, and every action with its outcome, is in `keelctl audit`.

use keel_system_tests::keelctl::{Signed, OPERATOR, VIEWER};
use keel_system_tests::{Stack, StackOptions};
use serde_json::Value;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn keelctl_acts_only_for_a_signed_in_operator_and_audits_every_attempt() {
    let stack = Stack::start("operators", StackOptions::default())
        .await
        .unwrap();
    let arc = stack.arc_client();
    assert!(arc.get("generator").await.unwrap());

    let anonymous = stack.keelctl_as(Signed::Anonymous, &["generator", "stop"]);
    assert_eq!(anonymous.status.code(), Some(2), "{anonymous:?}");
    assert!(stderr(&anonymous).contains("--operator"), "{anonymous:?}");

    let viewer = stack.keelctl_as(VIEWER, &["generator", "stop"]);
    assert_eq!(viewer.status.code(), Some(2), "{viewer:?}");
    assert!(stderr(&viewer).contains("viewer is a viewer"), "{viewer:?}");

    let guessed = Signed::As {
        name: "ops",
        password: "not-the-password",
    };
    let wrong = stack.keelctl_as(guessed, &["generator", "stop"]);
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    assert!(stderr(&wrong).contains("sign-in refused"), "{wrong:?}");

    assert!(
        arc.get("generator").await.unwrap(),
        "a refused command changed the generator's control"
    );

    let stop = stack.keelctl_as(OPERATOR, &["generator", "stop"]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(!arc.get("generator").await.unwrap());
    let start = stack.keelctl_as(OPERATOR, &["generator", "start"]);
    assert!(start.status.success(), "{start:?}");
    assert!(arc.get("generator").await.unwrap());

    // Reading the trail needs no operator.
    let audit = stack.keelctl_as(Signed::Anonymous, &["--json", "audit"]);
    assert!(audit.status.success(), "{audit:?}");
    let trail: Vec<Value> = serde_json::from_slice(&audit.stdout).unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = trail
        .iter()
        .map(|entry| {
            (
                entry["operator"].as_str().unwrap(),
                entry["channel"].as_str().unwrap(),
                entry["action"]["kind"].as_str().unwrap(),
                entry["outcome"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ops", "keelctl", "start-generator", "succeeded"),
            ("ops", "keelctl", "stop-generator", "succeeded"),
            ("ops", "keelctl", "sign-in", "refused"),
            ("viewer", "keelctl", "stop-generator", "refused"),
        ],
        "{trail:#?}"
    );
    for entry in &trail {
        assert!(
            entry["at"].is_string() && entry["finished_at"].is_string(),
            "{entry}"
        );
    }
}

/// On AWS keelctl asks no password: the caller's identity (STS, moto's here) is the operator the
/// registry's `[[principal]]` tables map it to, and an identity mapped to nobody is refused.
#[tokio::test]
async fn on_aws_keelctl_acts_as_the_callers_identity() {
    let stack = Stack::start("operators_aws", StackOptions::default())
        .await
        .unwrap();
    let arc = stack.arc_client();
    let sts =
        std::env::var("KEEL_TEST_DYNAMODB").unwrap_or_else(|_| "http://127.0.0.1:18490".into());
    let with_principal = |arn: &str, name: &str| {
        let registry = stack.dir.join(format!("principals-{name}.toml"));
        std::fs::write(
            &registry,
            format!("[[principal]]\narn = \"{arn}\"\nname = \"{name}\"\nrole = \"operator\"\n"),
        )
        .unwrap();
        let config = stack.dir.join(format!("aws-{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[operators]\nidentity = \"aws\"\nsts_endpoint = \"{sts}\"\nregistry = \"{}\"\n",
                registry.display()
            ),
        )
        .unwrap();
        config
    };

    // moto answers GetCallerIdentity with this ARN.
    let stranger = with_principal("arn:aws:iam::123456789012:role/someone-else", "other");
    let refused = stack.keelctl_with_config(&stranger, &["generator", "stop"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        stderr(&refused).contains("arn:aws:sts::123456789012:user/moto is no operator"),
        "{refused:?}"
    );
    assert!(arc.get("generator").await.unwrap());

    let mapped = with_principal("arn:aws:sts::123456789012:user/moto", "cloud-sre");
    let stop = stack.keelctl_with_config(&mapped, &["generator", "stop"]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(!arc.get("generator").await.unwrap());

    let audit = stack.keelctl_as(Signed::Anonymous, &["--json", "audit"]);
    let trail: Vec<Value> = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(trail[0]["operator"], "cloud-sre", "{trail:#?}");
    assert_eq!(trail[0]["action"]["kind"], "stop-generator");
    assert_eq!(trail[1]["operator"], "arn:aws:sts::123456789012:user/moto");
    assert_eq!(trail[1]["outcome"]["outcome"], "refused");
}
