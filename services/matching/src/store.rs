//! The matching schema: trades (current state) and status_history (append-only).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use keel_domain::TradeId;
use keel_lifecycle::{Effects, ToSettlement, Trade};
use keel_messages::{AllocationInstruction, SettlementInstruction, TradeEvents};
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

/// What a batch changed: the trades touched, the history entries appended (per trade, in order) and
/// the requests to settlement, in order.
#[derive(Default)]
pub struct Changes {
    touched: BTreeSet<TradeId>,
    /// One `tm.events` message per trade the batch appended to, in the order trades first changed.
    events: Vec<TradeEvents>,
    events_of: BTreeMap<TradeId, usize>,
    instructions: Vec<SettlementInstruction>,
}

impl Changes {
    /// Records what applying one command did to `trade`.
    pub fn record(&mut self, trade: &Trade, effects: Effects) {
        if effects.changed {
            self.touched.insert(trade.trade_id);
        }
        if !effects.history.is_empty() {
            let index = *self.events_of.entry(trade.trade_id).or_insert_with(|| {
                self.events.push(TradeEvents {
                    trade_id: trade.trade_id,
                    match_key: trade.match_key.clone(),
                    entries: Vec::new(),
                });
                self.events.len() - 1
            });
            self.events[index].entries.extend(
                effects
                    .history
                    .iter()
                    .map(keel_messages::HistoryEntry::from),
            );
        }
        for request in effects.to_settlement {
            self.instructions.extend(instruction_for(trade, request));
        }
    }
}

/// The `st.instructions` message for one request to settlement.
fn instruction_for(trade: &Trade, request: ToSettlement) -> Option<SettlementInstruction> {
    let match_key = &trade.match_key;
    match request {
        ToSettlement::Settle { allocations } => {
            // A trade matches only with both legs; without the IM's there is nothing to settle.
            let im = &trade.im_leg.as_ref()?.block;
            let allocations = allocations
                .into_iter()
                .map(|allocation| AllocationInstruction {
                    instruction: keel_messages::Instruction {
                        instruction_id: SettlementInstruction::instruction_id(
                            trade.trade_id,
                            &allocation.allocation_id,
                        ),
                        im_id: im.im_id.clone(),
                        broker_id: im.broker_id.clone(),
                        side: im.side,
                        security: im.security.clone(),
                        quantity: allocation.quantity,
                        price: im.price,
                        currency: im.currency.clone(),
                        fund_account: allocation.account,
                    },
                    allocation_id: allocation.allocation_id,
                })
                .collect();
            Some(SettlementInstruction::Settle {
                trade_id: trade.trade_id,
                match_key: match_key.clone(),
                settlement_date: im.settlement_date,
                allocations,
            })
        }
        ToSettlement::Cancel { requested_by, at } => Some(SettlementInstruction::Cancel {
            trade_id: trade.trade_id,
            match_key: match_key.clone(),
            requested_by,
            at,
        }),
    }
}

/// Writes the touched trades and their new history; returns the events and instructions to publish.
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

    let entries: Vec<(TradeId, &keel_messages::HistoryEntry)> = changes
        .events
        .iter()
        .flat_map(|events| events.entries.iter().map(|e| (events.trade_id, e)))
        .collect();
    sqlx::query(
        "INSERT INTO status_history (trade_id, seq, status, at, reason, entry)
         SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::jsonb[])",
    )
    .bind(entries.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, e)| e.seq as i32).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, e)| e.status.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, e)| e.at).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, e)| e.reason.clone()).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, e)| serde_json::to_value(e).expect("entry serializes")).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;

    for (_, entry) in &entries {
        metrics::counter!("keel_trade_status_total", "status" => entry.status.as_str())
            .increment(1);
    }
    Ok(changes
        .events
        .iter()
        .map(Outgoing::of)
        .chain(changes.instructions.iter().map(Outgoing::of))
        .collect())
}
