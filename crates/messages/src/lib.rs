//! What flows between Keel's services: the fixed topic names (DESIGN section 3) and one message type
//! per topic. Every message carries a deterministic `message_id`, the key of exactly-once processing,
//! and is keyed by its trade's match key so both legs of a trade stay in one partition, in order.

use chrono::{DateTime, Utc};
use keel_domain::{derive_id, LegId, MatchKey, ParticipantId, TradeId};
use keel_lifecycle::{HistoryEntry, Leg};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod topics {
    /// ingress -> ingestion: accepted submissions and cancel requests.
    pub const SUBMISSIONS: &str = "tm.submissions";
    /// ingestion -> matching: validated legs, rejections and cancels.
    pub const TRADES: &str = "tm.trades";
    /// matching -> notification: every appended status history entry.
    pub const EVENTS: &str = "tm.events";
    /// matching -> settlement.
    pub const INSTRUCTIONS: &str = "st.instructions";
    /// settlement -> matching.
    pub const SETTLEMENT_RESULTS: &str = "tm.settlement-results";
    /// Poison messages of the trade-matching application, with their origin in headers.
    pub const TM_DEAD_LETTERS: &str = "tm.dead-letters";

    /// Every topic of the trade-matching application.
    pub const TRADE_MATCHING: [&str; 4] = [SUBMISSIONS, TRADES, EVENTS, TM_DEAD_LETTERS];
}

/// A message that can go through an outbox: it knows its id and its partitioning key.
pub trait Message: Serialize {
    const TOPIC: &'static str;
    fn message_id(&self) -> Uuid;
    fn key(&self) -> String;
}

/// `tm.submissions`: what ingress accepted, exactly as the participant sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Submission {
    Leg {
        leg_id: LegId,
        trade_id: TradeId,
        match_key: MatchKey,
        sender: ParticipantId,
        received_at: DateTime<Utc>,
        /// The submitted block; ingestion validates it again before anything downstream sees it.
        block: serde_json::Value,
    },
    Cancel {
        trade_id: TradeId,
        match_key: MatchKey,
        requested_by: ParticipantId,
        requested_at: DateTime<Utc>,
    },
}

impl Message for Submission {
    const TOPIC: &'static str = topics::SUBMISSIONS;
    fn message_id(&self) -> Uuid {
        match self {
            Submission::Leg { leg_id, .. } => leg_id.0,
            Submission::Cancel {
                trade_id,
                requested_by,
                ..
            } => derive_id("cancel", &[&trade_id.to_string(), requested_by.as_str()]),
        }
    }
    fn key(&self) -> String {
        match self {
            Submission::Leg { match_key, .. } | Submission::Cancel { match_key, .. } => {
                match_key.to_string()
            }
        }
    }
}

/// `tm.trades`: what matching acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TradeCommand {
    Leg {
        leg: Leg,
    },
    RejectLeg {
        leg_id: LegId,
        trade_id: TradeId,
        match_key: MatchKey,
        sender: ParticipantId,
        reasons: Vec<String>,
        at: DateTime<Utc>,
    },
    Cancel {
        trade_id: TradeId,
        match_key: MatchKey,
        requested_by: ParticipantId,
        at: DateTime<Utc>,
    },
}

impl TradeCommand {
    pub fn match_key(&self) -> MatchKey {
        match self {
            TradeCommand::Leg { leg } => leg.block.match_key(),
            TradeCommand::RejectLeg { match_key, .. } | TradeCommand::Cancel { match_key, .. } => {
                match_key.clone()
            }
        }
    }
}

impl Message for TradeCommand {
    const TOPIC: &'static str = topics::TRADES;
    fn message_id(&self) -> Uuid {
        // One command per submission, so the submission's id, re-derived for this hop.
        match self {
            TradeCommand::Leg { leg } => derive_id("trade-command", &[&leg.leg_id.to_string()]),
            TradeCommand::RejectLeg { leg_id, .. } => {
                derive_id("trade-command", &[&leg_id.to_string()])
            }
            TradeCommand::Cancel {
                trade_id,
                requested_by,
                ..
            } => derive_id(
                "trade-command-cancel",
                &[&trade_id.to_string(), requested_by.as_str()],
            ),
        }
    }
    fn key(&self) -> String {
        self.match_key().to_string()
    }
}

/// `tm.events`: one appended line of a trade's status history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeEvent {
    pub trade_id: TradeId,
    pub match_key: MatchKey,
    pub entry: HistoryEntry,
}

impl TradeEvent {
    /// Also the id of the history entry: a trade's entry `seq` exists once, in every region.
    pub fn event_id(trade_id: TradeId, seq: u32) -> Uuid {
        derive_id("trade-event", &[&trade_id.to_string(), &seq.to_string()])
    }
}

impl Message for TradeEvent {
    const TOPIC: &'static str = topics::EVENTS;
    fn message_id(&self) -> Uuid {
        Self::event_id(self.trade_id, self.entry.seq)
    }
    fn key(&self) -> String {
        self.match_key.to_string()
    }
}
