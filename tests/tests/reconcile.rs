//! `keelctl reconcile` (DESIGN section 7): a clean pipeline reports no gap; records deleted or
//! altered in the stores are each found on the right hop, with the right repair; `--repair` replays
//! and restores what it can, audited, and changes nothing it must not.

use std::time::Duration;

use keel_system_tests::{
    assert_exactly_once, count_in, published_sql, stream_matching_pairs, Stack, StackOptions,
};
use serde_json::Value;

const PAIRS: usize = 20;

fn reconcile(stack: &Stack, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["--json", "reconcile", "--settle-seconds", "0"];
    args.extend_from_slice(extra);
    let output = stack.keelctl(&args);
    let report =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"));
    (output.status.code(), report)
}

fn hop<'a>(report: &'a Value, topic: &str) -> &'a Value {
    report["hops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|hop| hop["topic"] == topic)
        .unwrap_or_else(|| panic!("no hop for {topic}: {report}"))
}

async fn one_id(stack: &Stack, sql: &str) -> String {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_one(&stack.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn reconcile_finds_each_gap_on_its_hop_with_its_repair() {
    let stack = Stack::start("reconcile", StackOptions::default())
        .await
        .unwrap();
    let (im, broker) = (stack.token("im-alpha").await, stack.token("br-north").await);
    stream_matching_pairs(
        stack.client(),
        im,
        broker,
        "T-RECON".into(),
        PAIRS,
        10,
        Duration::ZERO,
    )
    .await;
    stack
        .wait_for_count(
            "SELECT count(*) FROM notification.notifications",
            PAIRS as i64 * 8,
            Duration::from_secs(90),
        )
        .await
        .unwrap();
    assert_exactly_once(&stack, PAIRS as i64).await;

    let (code, clean) = reconcile(&stack, &[]);
    assert_eq!(code, Some(0), "{clean}");
    assert_eq!(clean["left"], 0);
    let submissions = hop(&clean, "tm.submissions");
    assert_eq!(submissions["produced"], PAIRS * 2);
    assert_eq!(submissions["left"]["matched"], PAIRS * 2);
    assert_eq!(hop(&clean, "st.instructions")["left"]["matched"], PAIRS);

    // A submission ingestion never saw; an event notification saw with other content; an event
    // matching no longer has; an instruction settlement has but matching lost.
    let lost = one_id(&stack, "DELETE FROM ingestion.inbox WHERE message_id = (SELECT message_id FROM ingestion.inbox LIMIT 1) RETURNING message_id::text").await;
    let altered = one_id(&stack, "UPDATE notification.inbox SET payload = jsonb_set(payload::jsonb, '{trade_ref}', '\"TAMPERED\"')::text WHERE message_id = (SELECT message_id FROM notification.inbox ORDER BY message_id LIMIT 1) RETURNING message_id::text").await;
    let forgotten = one_id(&stack, "DELETE FROM matching.outbox WHERE message_id = (SELECT message_id FROM matching.outbox WHERE topic = 'tm.events' ORDER BY message_id DESC LIMIT 1) RETURNING message_id::text").await;
    let lost_upstream = one_id(&stack, "DELETE FROM matching.outbox WHERE message_id = (SELECT message_id FROM matching.outbox WHERE topic = 'st.instructions' LIMIT 1) RETURNING message_id::text").await;
    assert_eq!(
        count_in(
            &stack.db,
            "SELECT count(*) FROM notification.inbox WHERE payload::jsonb->>'trade_ref' = 'TAMPERED'"
        )
        .await,
        1
    );

    let (code, report) = reconcile(&stack, &[]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["found"], 4, "{report}");
    assert_eq!(report["left"], 4, "{report}");

    let submissions = hop(&report, "tm.submissions");
    assert_eq!(submissions["found"]["missing"], serde_json::json!([lost]));
    assert_eq!(submissions["repairs"][0]["action"], "replay");

    let events = hop(&report, "tm.events");
    assert_eq!(events["found"]["differing"][0]["id"], altered.as_str());
    assert_eq!(events["found"]["orphaned"], serde_json::json!([forgotten]));
    let actions: Vec<&str> = events["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["investigate", "investigate"], "{events}");

    // Across applications, what only the downstream has is restored upstream.
    let instructions = hop(&report, "st.instructions");
    assert_eq!(
        instructions["found"]["orphaned"],
        serde_json::json!([lost_upstream])
    );
    assert_eq!(instructions["repairs"][0]["action"], "restore");
    assert_eq!(
        hop(&report, "tm.trades")["found"]["missing"],
        serde_json::json!([])
    );
    assert_eq!(hop(&report, "tm.settlement-results")["produced"], 0);

    // Repair: the missing submission is replayed into the region where trade matching processes
    // and consumed; the lost instruction is restored upstream from settlement's copy; the content
    // difference and the intra-application orphan are left for investigation, untouched.
    let (code, repaired) = reconcile(&stack, &["--repair"]);
    assert_eq!(code, Some(1), "two gaps need investigation: {repaired}");
    assert_eq!(
        hop(&repaired, "tm.submissions")["replayed"],
        1,
        "{repaired}"
    );
    assert_eq!(
        hop(&repaired, "st.instructions")["restored"],
        1,
        "{repaired}"
    );
    assert_eq!(repaired["left"], 2, "{repaired}");
    assert_eq!(
        count_in(
            &stack.db,
            &format!("SELECT count(*) FROM ingestion.inbox WHERE message_id = '{lost}'")
        )
        .await,
        1
    );
    assert_eq!(
        count_in(
            &stack.db,
            &format!(
                "{} AND o.message_id = '{lost_upstream}'",
                published_sql("matching", "st.instructions")
            )
        )
        .await,
        1,
        "restored as already published"
    );
    assert_eq!(
        count_in(
            &stack.db,
            "SELECT count(*) FROM notification.inbox WHERE payload::jsonb->>'trade_ref' = 'TAMPERED'"
        )
        .await,
        1,
        "a differing record is never overwritten"
    );
    // Nothing was processed twice downstream of the replay.
    assert_eq!(
        count_in(&stack.db, "SELECT count(*) FROM matching.inbox").await,
        PAIRS as i64 * 2
    );
    // Every repaired id is in the audit, under the run.
    let run = repaired["run_id"].as_str().unwrap();
    let audit = stack.keelctl(&["--json", "audit", run]);
    assert!(audit.status.success(), "{audit:?}");
    let audit: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(
        audit[format!("ingress -> ingestion (tm.submissions)#{lost}")],
        "replay",
        "{audit}"
    );
    assert_eq!(
        audit[format!("matching -> settlement (st.instructions)#{lost_upstream}")],
        "restore",
        "{audit}"
    );
    assert!(audit["run"].is_string(), "the run's summary: {audit}");

    let (_, after) = reconcile(&stack, &[]);
    assert_eq!(after["left"], 2, "{after}");

    // The continuous mode exports the two gaps left, per hop and kind.
    let listen = format!("127.0.0.1:{}", keel_system_tests::free_port());
    let mut watcher = stack.spawn_keelctl(&[
        "reconcile",
        "--watch",
        "--settle-seconds",
        "0",
        "--interval-seconds",
        "1",
        "--rounds",
        "30",
        "--metrics-listen",
        &listen,
    ]);
    let events = r#"hop="matching -> notification (tm.events)""#;
    let wanted = [
        format!(r#"{events},kind="differing"}} 1"#),
        format!(r#"{events},kind="orphaned"}} 1"#),
        format!(r#"{events},kind="missing"}} 0"#),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = match reqwest::get(format!("http://{listen}/metrics")).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if wanted.iter().all(|line| metrics.contains(line.as_str())) {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watch mode did not export the gaps within 30 s: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(
        metrics.contains(
            r#"keel_reconcile_runs_total{service="reconciler",region="global",outcome="ok"}"#
        ),
        "{metrics}"
    );
}
