//! The matching schema: trades (current state) and status_history (append-only).

use std::collections::{BTreeSet, HashMap};

use keel_domain::TradeId;
use keel_lifecycle::{HistoryEntry, Trade};
use keel_messages::TradeEvent;
use keel_safestore::Outgoing;
use sqlx::PgConnection;
use uuid::Uuid;

/// Loads and row-locks the trades with these ids (those that exist).
pub async fn lock_trades(
    conn: &mut PgConnection,
    ids: &[TradeId],
) -> Result<HashMap<TradeId, Trade>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let rows: Vec<(sqlx::types::Json<Trade>,)> = sqlx::query_as(
        "SELECT state FROM trades WHERE trade_id = ANY($1) ORDER BY trade_id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(state,)| (state.0.trade_id, state.0))
        .collect())
}

/// What a batch changed: the trades touched and the history entries appended, in order.
#[derive(Default)]
pub struct Changes {
    touched: BTreeSet<TradeId>,
    events: Vec<TradeEvent>,
}

impl Changes {
    pub fn record(&mut self, trade: &Trade, entries: Vec<HistoryEntry>) {
        if entries.is_empty() {
            return;
        }
        self.touched.insert(trade.trade_id);
        self.events
            .extend(entries.into_iter().map(|entry| TradeEvent {
                trade_id: trade.trade_id,
                match_key: trade.match_key.clone(),
                entry,
            }));
    }
}

/// Writes the touched trades and their new history; returns the events to publish.
pub async fn save(
    conn: &mut PgConnection,
    trades: &HashMap<TradeId, Trade>,
    changes: &Changes,
) -> Result<Vec<Outgoing>, sqlx::Error> {
    if changes.touched.is_empty() {
        return Ok(Vec::new());
    }
    let touched: Vec<&Trade> = changes.touched.iter().map(|id| &trades[id]).collect();
    sqlx::query(
        "INSERT INTO trades (trade_id, im_id, broker_id, trade_ref, status, expires_at, state)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::jsonb[])
         ON CONFLICT (trade_id) DO UPDATE
         SET status = EXCLUDED.status, expires_at = EXCLUDED.expires_at, state = EXCLUDED.state, updated_at = now()",
    )
    .bind(touched.iter().map(|t| t.trade_id.0).collect::<Vec<_>>())
    .bind(touched.iter().map(|t| t.match_key.im_id.to_string()).collect::<Vec<_>>())
    .bind(touched.iter().map(|t| t.match_key.broker_id.to_string()).collect::<Vec<_>>())
    .bind(touched.iter().map(|t| t.match_key.trade_ref.to_string()).collect::<Vec<_>>())
    .bind(touched.iter().map(|t| t.status.map(|s| s.as_str().to_owned())).collect::<Vec<_>>())
    .bind(touched.iter().map(|t| t.expires_at).collect::<Vec<_>>())
    .bind(touched.iter().map(|t| serde_json::to_value(t).expect("trade serializes")).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;

    let events = &changes.events;
    sqlx::query(
        "INSERT INTO status_history (trade_id, seq, status, at, reason, entry)
         SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::jsonb[])",
    )
    .bind(events.iter().map(|e| e.trade_id.0).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.entry.seq as i32).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.entry.status.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.entry.at).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.entry.reason.clone()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| serde_json::to_value(&e.entry).expect("entry serializes")).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;

    for event in events {
        metrics::counter!("keel_trade_status_total", "status" => event.entry.status.as_str())
            .increment(1);
    }
    Ok(events.iter().map(Outgoing::of).collect())
}
