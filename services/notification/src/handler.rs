use chrono::{DateTime, Utc};
use keel_domain::derive_id;
use keel_messages::HistoryEntry;
use keel_messages::TradeEvents;
use keel_safestore::Outgoing;
use keel_streaming::{Handler, Inbound};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

pub struct Notification;

struct Row<'a> {
    notification_id: Uuid,
    event_id: Uuid,
    recipient: String,
    trade: &'a TradeEvents,
    entry: &'a HistoryEntry,
}

impl Handler for Notification {
    type Message = TradeEvents;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[&Inbound<TradeEvents>],
    ) -> Result<Vec<Outgoing>, sqlx::Error> {
        let rows: Vec<Row> = batch
            .iter()
            .flat_map(|message| {
                let trade = &message.body;
                trade.entries.iter().flat_map(move |entry| {
                    // One notification per party per history entry, whichever message carried it.
                    let event_id = TradeEvents::entry_id(trade.trade_id, entry.seq);
                    entry.recipients.iter().map(move |recipient| Row {
                        notification_id: derive_id(
                            "notification",
                            &[&event_id.to_string(), recipient.as_str()],
                        ),
                        event_id,
                        recipient: recipient.to_string(),
                        trade,
                        entry,
                    })
                })
            })
            .collect();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let bodies: Vec<serde_json::Value> = rows.iter().map(body).collect();
        let notification_ids: Vec<Uuid> = rows.iter().map(|r| r.notification_id).collect();
        let event_ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let recipients: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
        let trade_ids: Vec<Uuid> = rows.iter().map(|r| r.trade.trade_id.0).collect();
        let statuses: Vec<&str> = rows.iter().map(|r| r.entry.status.as_str()).collect();
        let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| r.entry.at).collect();
        sqlx::query!(
            "INSERT INTO notification.notifications (notification_id, event_id, recipient, trade_id, status, at, body)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::timestamptz[], $7::jsonb[])
             ON CONFLICT (notification_id) DO NOTHING",
            &notification_ids,
            &event_ids,
            &recipients as &[&str],
            &trade_ids,
            &statuses as &[&str],
            &ats,
            &bodies
        )
        .execute(conn)
        .await?;
        metrics::counter!("keel_notifications_total").increment(rows.len() as u64);
        Ok(Vec::new())
    }
}

/// What the participant receives, in the feed and in a webhook.
fn body(row: &Row) -> serde_json::Value {
    let entry = row.entry;
    let key = &row.trade.match_key;
    let mut body = json!({
        "notification_id": row.notification_id,
        "trade_id": row.trade.trade_id,
        "trade_ref": key.trade_ref,
        "im_id": key.im_id,
        "broker_id": key.broker_id,
        "status": entry.status,
        "iso20022_status": entry.status.iso20022_code(),
        "at": entry.at,
        "history_seq": entry.seq,
    });
    if let Some(reason) = &entry.reason {
        body["reason"] = json!(reason);
    }
    if !entry.differing_fields.is_empty() {
        body["differing_fields"] = json!(entry.differing_fields);
    }
    if let Some(leg_id) = entry.leg_id {
        body["leg_id"] = json!(leg_id);
    }
    body
}
