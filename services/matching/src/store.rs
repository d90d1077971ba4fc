//! The matching schema: trades (current state) and status_history (append-only).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use keel_domain::TradeId;
use keel_lifecycle::{Effects, ToSettlement, Trade};
use keel_messages::{AllocationInstruction, SettlementInstruction, TradeEvents};
use keel_safestore::Outgoing;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

/// Loads and row-locks the trades with these ids (those that exist).
pub async fn lock_trades(
    conn: &mut PgConnection,
    ids: &[TradeId],
) -> Result<HashMap<TradeId, Trade>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let states = sqlx::query_scalar!(
        r#"SELECT state AS "state: Json<Trade>" FROM matching.trades
           WHERE trade_id = ANY($1) ORDER BY trade_id FOR UPDATE"#,
        &ids
    )
    .fetch_all(conn)
    .await?;
    Ok(states
        .into_iter()
        .map(|Json(trade)| (trade.trade_id, trade))
        .collect())
}

/// Seconds from the trade's first leg accepted by ingress to `at` (its final status): the
/// end-to-end time the participants see. Trades that never had a leg (none) are left out.
fn submitted_to(trade: &Trade, at: DateTime<Utc>) -> Option<f64> {
    let first = [&trade.im_leg, &trade.broker_leg]
        .into_iter()
        .flatten()
        .map(|leg| leg.received_at)
        .min()?;
    Some((at - first).to_std().map_or(0.0, |d| d.as_secs_f64()))
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
    let trade_ids: Vec<Uuid> = touched.iter().map(|t| t.trade_id.0).collect();
    let im_ids: Vec<&str> = touched.iter().map(|t| t.match_key.im_id.as_str()).collect();
    let broker_ids: Vec<&str> = touched
        .iter()
        .map(|t| t.match_key.broker_id.as_str())
        .collect();
    let trade_refs: Vec<&str> = touched
        .iter()
        .map(|t| t.match_key.trade_ref.as_str())
        .collect();
    let statuses: Vec<Option<&str>> = touched
        .iter()
        .map(|t| t.status.map(|s| s.as_str()))
        .collect();
    let expiries: Vec<Option<DateTime<Utc>>> = touched.iter().map(|t| t.expires_at).collect();
    let states: Vec<Json<&Trade>> = touched.iter().map(|t| Json(*t)).collect();
    sqlx::query!(
        "INSERT INTO matching.trades (trade_id, im_id, broker_id, trade_ref, status, expires_at, state)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::jsonb[])
         ON CONFLICT (trade_id) DO UPDATE
         SET status = EXCLUDED.status, expires_at = EXCLUDED.expires_at, state = EXCLUDED.state, updated_at = now()",
        &trade_ids,
        &im_ids as &[&str],
        &broker_ids as &[&str],
        &trade_refs as &[&str],
        &statuses as &[Option<&str>],
        &expiries as &[Option<DateTime<Utc>>],
        &states as &[Json<&Trade>]
    )
    .execute(&mut *conn)
    .await?;

    let entries: Vec<(TradeId, &keel_messages::HistoryEntry)> = changes
        .events
        .iter()
        .flat_map(|events| events.entries.iter().map(|e| (events.trade_id, e)))
        .collect();
    let trade_ids: Vec<Uuid> = entries.iter().map(|(id, _)| id.0).collect();
    let seqs: Vec<i32> = entries.iter().map(|(_, e)| e.seq as i32).collect();
    let statuses: Vec<&str> = entries.iter().map(|(_, e)| e.status.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = entries.iter().map(|(_, e)| e.at).collect();
    let reasons: Vec<Option<&str>> = entries.iter().map(|(_, e)| e.reason.as_deref()).collect();
    let bodies: Vec<Json<&keel_messages::HistoryEntry>> =
        entries.iter().map(|(_, e)| Json(*e)).collect();
    sqlx::query!(
        "INSERT INTO matching.status_history (trade_id, seq, status, at, reason, entry)
         SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::jsonb[])",
        &trade_ids,
        &seqs,
        &statuses as &[&str],
        &ats,
        &reasons as &[Option<&str>],
        &bodies as &[Json<&keel_messages::HistoryEntry>]
    )
    .execute(&mut *conn)
    .await?;

    for (trade_id, entry) in &entries {
        metrics::counter!("keel_trade_status_total", "status" => entry.status.as_str())
            .increment(1);
        if entry.status.is_final() {
            if let Some(seconds) = trades.get(trade_id).and_then(|t| submitted_to(t, entry.at)) {
                metrics::histogram!("keel_trade_final_seconds", "status" => entry.status.as_str())
                    .record(seconds);
            }
        }
    }
    Ok(changes
        .events
        .iter()
        .map(Outgoing::of)
        .chain(changes.instructions.iter().map(Outgoing::of))
        .collect())
}

/// Trades MATCHED (their allocations with settlement) whose settlement date has passed: settlement
/// should have answered by now.
pub async fn matched_past_settlement_date(
    pool: keel_safestore::PgPool,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "stuck!" FROM matching.trades
           WHERE status = 'MATCHED'
             AND (state->'im_leg'->'block'->>'settlement_date')::date < current_date"#
    )
    .fetch_one(&pool)
    .await
}
