use std::collections::HashMap;

use keel_domain::TradeId;
use keel_lifecycle::{Command, MatchPolicy, Trade};
use keel_messages::TradeCommand;
use keel_safestore::Outgoing;
use keel_streaming::{Handler, Inbound};
use sqlx::PgConnection;

use crate::store;

pub struct Matching {
    pub policy: MatchPolicy,
}

impl Handler for Matching {
    type Message = TradeCommand;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[&Inbound<TradeCommand>],
    ) -> Result<Vec<Outgoing>, sqlx::Error> {
        let ids: Vec<TradeId> = batch
            .iter()
            .map(|m| m.body.match_key().trade_id())
            .collect();
        let mut trades: HashMap<TradeId, Trade> = store::lock_trades(conn, &ids).await?;
        let mut changes = store::Changes::default();
        for message in batch {
            let key = message.body.match_key();
            let trade = trades
                .entry(key.trade_id())
                .or_insert_with(|| Trade::new(key));
            let entries = trade.apply(command_of(&message.body), &self.policy);
            changes.record(trade, entries);
        }
        store::save(conn, &trades, &changes).await
    }
}

fn command_of(message: &TradeCommand) -> Command {
    match message {
        TradeCommand::Leg { leg } => Command::Leg(leg.clone()),
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
