//! The invariants a test checks over a stack's stores.

use std::time::Duration;

use crate::stack::Stack;

/// Checks every store after `trades` matching pairs of [`sample_block`]s went through: every leg was
/// processed once at every stage, every trade has exactly its four history entries, carried to
/// notification once each, each party got exactly one notification per entry, and settlement holds
/// exactly the trades' two instructions each (one message per trade), waiting for their settlement
/// date.
pub async fn assert_exactly_once(stack: &Stack, trades: i64) {
    let legs = trades * 2;
    let instructions = trades * 2;
    stack
        .wait_for_st_count(
            "SELECT count(*) FROM settlement.instructions",
            instructions,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    // A trade's entries travel in one `tm.events` message per matching batch that appended to it:
    // two messages when its legs came in different batches, one when they came together.
    let event_messages = stack
        .count("SELECT count(*) FROM matching.outbox WHERE topic = 'tm.events'")
        .await;
    assert!(
        (trades..=trades * 2).contains(&event_messages),
        "{event_messages} tm.events messages for {trades} trades"
    );
    let checks = [
        ("SELECT count(*) FROM ingress.submissions", legs),
        ("SELECT count(*) FROM ingress.outbox", legs),
        ("SELECT count(*) FROM ingestion.inbox", legs),
        ("SELECT count(*) FROM ingestion.outbox", legs),
        ("SELECT count(*) FROM matching.inbox", legs),
        ("SELECT count(*) FROM matching.trades WHERE status = 'MATCHED'", trades),
        ("SELECT count(*) FROM matching.status_history", trades * 4),
        (
            "SELECT count(*) FROM (SELECT trade_id FROM matching.status_history GROUP BY trade_id
              HAVING array_agg(status ORDER BY seq) <> ARRAY['RECEIVED','UNMATCHED','RECEIVED','MATCHED']) odd",
            0,
        ),
        (
            "SELECT coalesce(sum(jsonb_array_length(payload::jsonb->'entries')), 0)::bigint FROM matching.outbox WHERE topic = 'tm.events'",
            trades * 4,
        ),
        ("SELECT count(*) FROM matching.outbox WHERE topic = 'st.instructions'", trades),
        (
            "SELECT coalesce(sum(jsonb_array_length(payload::jsonb->'allocations')), 0)::bigint FROM matching.outbox WHERE topic = 'st.instructions'",
            instructions,
        ),
        ("SELECT count(*) FROM notification.inbox", event_messages),
        ("SELECT count(*) FROM notification.notifications", trades * 8),
        (
            "SELECT count(*) FROM (SELECT DISTINCT trade_id, body->>'history_seq', recipient FROM notification.notifications) d",
            trades * 8,
        ),
        ("SELECT count(*) FROM notification.notifications WHERE status = 'MATCHED'", trades * 2),
        // Each inbox keeps what it consumed, byte for byte what its producer's outbox holds.
        (
            "SELECT count(*) FROM ingress.outbox o JOIN ingestion.inbox i USING (message_id) WHERE o.payload = i.payload",
            legs,
        ),
        (
            "SELECT count(*) FROM ingestion.outbox o JOIN matching.inbox i USING (message_id) WHERE o.payload = i.payload",
            legs,
        ),
        (
            "SELECT count(*) FROM matching.outbox o JOIN notification.inbox i USING (message_id) WHERE o.payload = i.payload",
            event_messages,
        ),
        ("SELECT count(*) FROM ingestion.dead_letters", 0),
        ("SELECT count(*) FROM matching.dead_letters", 0),
        ("SELECT count(*) FROM notification.dead_letters", 0),
    ];
    for (sql, expected) in checks {
        assert_eq!(stack.count(sql).await, expected, "{sql}");
    }
    let settlement_checks = [
        ("SELECT count(*) FROM settlement.inbox", trades),
        (
            "SELECT count(*) FROM settlement.instructions WHERE status = 'PENDING'",
            instructions,
        ),
        ("SELECT count(*) FROM settlement.postings", 0),
        ("SELECT count(*) FROM settlement.dead_letters", 0),
    ];
    for (sql, expected) in settlement_checks {
        assert_eq!(stack.st_count(sql).await, expected, "{sql}");
    }
}
