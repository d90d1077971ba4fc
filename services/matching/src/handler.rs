use std::collections::HashMap;

use keel_domain::{MatchKey, TradeId};
use keel_lifecycle::{Command, MatchPolicy, Trade};
use keel_messages::{SettlementResult, TradeCommand};
use keel_safestore::Outgoing;
use keel_streaming::{Handler, Inbound};
use sqlx::PgConnection;

use crate::store;

/// `tm.trades`: legs, rejected legs and cancels.
pub struct Matching {
    pub policy: MatchPolicy,
}

/// `tm.settlement-results`: settlement's answers for MATCHED trades.
pub struct SettlementResults {
    pub policy: MatchPolicy,
}

impl Handler for Matching {
    type Message = TradeCommand;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[&Inbound<TradeCommand>],
    ) -> Result<Vec<Outgoing>, sqlx::Error> {
        let commands = batch
            .iter()
            .map(|m| (m.body.match_key(), command_of(&m.body)))
            .collect();
        apply_all(conn, &self.policy, commands).await
    }
}

impl Handler for SettlementResults {
    type Message = SettlementResult;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[&Inbound<SettlementResult>],
    ) -> Result<Vec<Outgoing>, sqlx::Error> {
        let commands = batch
            .iter()
            .flat_map(|m| {
                let key = m.body.match_key();
                result_commands(&m.body)
                    .into_iter()
                    .map(move |command| (key.clone(), command))
            })
            .collect();
        apply_all(conn, &self.policy, commands).await
    }
}

/// Locks the trades concerned, applies each command in order and saves what changed.
async fn apply_all(
    conn: &mut PgConnection,
    policy: &MatchPolicy,
    commands: Vec<(MatchKey, Command)>,
) -> Result<Vec<Outgoing>, sqlx::Error> {
    let ids: Vec<TradeId> = commands.iter().map(|(key, _)| key.trade_id()).collect();
    let mut trades: HashMap<TradeId, Trade> = store::lock_trades(conn, &ids).await?;
    let mut changes = store::Changes::default();
    for (key, command) in commands {
        let trade = trades
            .entry(key.trade_id())
            .or_insert_with(|| Trade::new(key));
        let effects = trade.apply(command, policy);
        changes.record(trade, effects);
    }
    store::save(conn, &trades, &changes).await
}

fn command_of(message: &TradeCommand) -> Command {
    match message {
        TradeCommand::Leg { leg } => Command::Leg(leg.clone().into()),
        TradeCommand::RejectLeg {
            leg_id,
            sender,
            reasons,
            at,
            ..
        } => Command::RejectLeg {
            leg_id: *leg_id,
            sender: sender.clone(),
            reasons: reasons.clone(),
            at: *at,
        },
        TradeCommand::Cancel {
            requested_by, at, ..
        } => Command::Cancel {
            requested_by: requested_by.clone(),
            at: *at,
        },
    }
}

/// The lifecycle commands of one answer from settlement: one per allocation it decided.
fn result_commands(message: &SettlementResult) -> Vec<Command> {
    match message {
        SettlementResult::Allocations { results, at, .. } => results
            .iter()
            .map(|result| Command::SettlementResult {
                allocation_id: result.allocation_id.clone(),
                outcome: result.outcome.clone().into(),
                at: *at,
            })
            .collect(),
        SettlementResult::CancelConfirmed {
            requested_by, at, ..
        } => vec![Command::CancelConfirmed {
            requested_by: requested_by.clone(),
            at: *at,
        }],
        SettlementResult::CancelRefused {
            requested_by,
            reason,
            at,
            ..
        } => vec![Command::CancelRefused {
            requested_by: requested_by.clone(),
            reason: reason.clone(),
            at: *at,
        }],
    }
}
