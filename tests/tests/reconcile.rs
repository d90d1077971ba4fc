//! `keelctl reconcile` (DESIGN section 7): a clean pipeline reports no gap; records deleted or
//! altered in the stores are each found on the right hop, with the right repair.

use std::time::Duration;

use keel_system_tests::{
    assert_exactly_once, count_in, stream_matching_pairs, Stack, StackOptions,
};
use serde_json::Value;

const PAIRS: usize = 20;

fn reconcile(stack: &Stack) -> (Option<i32>, Value) {
    let output = stack.keelctl(&["--json", "reconcile", "--settle-seconds", "0"]);
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

    let (code, clean) = reconcile(&stack);
    assert_eq!(code, Some(0), "{clean}");
    assert_eq!(clean["gaps"], 0);
    let submissions = hop(&clean, "tm.submissions");
    assert_eq!(submissions["produced"], PAIRS * 2);
    assert_eq!(submissions["matched"], PAIRS * 2);
    assert_eq!(hop(&clean, "st.instructions")["matched"], PAIRS * 2);

    // A submission ingestion never saw; an event notification saw with other content; an event
    // matching no longer has; an instruction settlement has but matching lost.
    let lost = one_id(&stack, "DELETE FROM ingestion.inbox WHERE message_id = (SELECT message_id FROM ingestion.inbox LIMIT 1) RETURNING message_id::text").await;
    let altered = one_id(&stack, "UPDATE notification.inbox SET payload = jsonb_set(payload, '{trade_ref}', '\"TAMPERED\"') WHERE message_id = (SELECT message_id FROM notification.inbox ORDER BY message_id LIMIT 1) RETURNING message_id::text").await;
    let forgotten = one_id(&stack, "DELETE FROM matching.outbox WHERE message_id = (SELECT message_id FROM matching.outbox WHERE topic = 'tm.events' ORDER BY message_id DESC LIMIT 1) RETURNING message_id::text").await;
    let lost_upstream = one_id(&stack, "DELETE FROM matching.outbox WHERE message_id = (SELECT message_id FROM matching.outbox WHERE topic = 'st.instructions' LIMIT 1) RETURNING message_id::text").await;
    assert_eq!(
        count_in(
            &stack.db,
            "SELECT count(*) FROM notification.inbox WHERE payload->>'trade_ref' = 'TAMPERED'"
        )
        .await,
        1
    );

    let (code, report) = reconcile(&stack);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["gaps"], 4, "{report}");

    let submissions = hop(&report, "tm.submissions");
    assert_eq!(submissions["missing"], serde_json::json!([lost]));
    assert_eq!(submissions["repairs"][0]["action"], "replay");

    let events = hop(&report, "tm.events");
    assert_eq!(events["differing"][0]["id"], altered.as_str());
    assert_eq!(events["orphaned"], serde_json::json!([forgotten]));
    let actions: Vec<&str> = events["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["investigate", "investigate"], "{events}");

    // Across applications, what only the downstream has is restored upstream.
    let instructions = hop(&report, "st.instructions");
    assert_eq!(instructions["orphaned"], serde_json::json!([lost_upstream]));
    assert_eq!(instructions["repairs"][0]["action"], "restore");
    assert_eq!(hop(&report, "tm.trades")["missing"], serde_json::json!([]));
    assert_eq!(hop(&report, "tm.settlement-results")["produced"], 0);

    // The runbook's manual replay: mark the outbox row unpublished; the relay sends it again and
    // ingestion consumes it; the gap is gone, and matching's inbox still has each trade leg once.
    sqlx::query("UPDATE ingress.outbox SET published_at = NULL WHERE message_id = $1::uuid")
        .bind(&lost)
        .execute(&stack.db)
        .await
        .unwrap();
    stack
        .wait_for_count(
            &format!("SELECT count(*) FROM ingestion.inbox WHERE message_id = '{lost}'"),
            1,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, after) = reconcile(&stack);
    assert_eq!(
        hop(&after, "tm.submissions")["missing"],
        serde_json::json!([]),
        "{after}"
    );
    assert_eq!(after["gaps"], 3, "{after}");
    assert_eq!(
        count_in(&stack.db, "SELECT count(*) FROM matching.inbox").await,
        PAIRS as i64 * 2
    );
}
