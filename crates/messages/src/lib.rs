//! What flows between Keel's services: the fixed topic names (DESIGN section 3) and one message type
//! per topic. Every message carries a deterministic `message_id`, the key of exactly-once processing,
//! and is keyed by its trade's match key so both legs of a trade stay in one partition, in order.

use chrono::{DateTime, NaiveDate, Utc};
use keel_domain::{derive_id, LegId, MatchKey, ParticipantId, TradeId};
use keel_ledger::Instruction;
use keel_lifecycle::{AllocationOutcome, HistoryEntry, Leg};
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

    /// Poison messages of the settlement application.
    pub const ST_DEAD_LETTERS: &str = "st.dead-letters";
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

/// `st.instructions`: what matching asks of settlement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettlementInstruction {
    /// Settle one allocation of a MATCHED trade, delivery versus payment, on or after its settlement
    /// date.
    Settle {
        trade_id: TradeId,
        match_key: MatchKey,
        allocation_id: String,
        settlement_date: NaiveDate,
        instruction: Instruction,
    },
    /// Withdraw every instruction of the trade, unless one has already settled or failed.
    Cancel {
        trade_id: TradeId,
        match_key: MatchKey,
        requested_by: ParticipantId,
        at: DateTime<Utc>,
    },
}

impl SettlementInstruction {
    /// The id of one allocation's instruction, the same in every region and on every retry.
    pub fn instruction_id(trade_id: TradeId, allocation_id: &str) -> Uuid {
        derive_id(
            "settlement-instruction",
            &[&trade_id.to_string(), allocation_id],
        )
    }

    pub fn trade_id(&self) -> TradeId {
        match self {
            SettlementInstruction::Settle { trade_id, .. }
            | SettlementInstruction::Cancel { trade_id, .. } => *trade_id,
        }
    }

    /// The ledger instruction to settle, unless this is a cancel.
    pub fn to_settle(&self) -> Option<&Instruction> {
        match self {
            SettlementInstruction::Settle { instruction, .. } => Some(instruction),
            SettlementInstruction::Cancel { .. } => None,
        }
    }

    /// Settlement's answer to this allocation's instruction, unless this is a cancel.
    pub fn result(
        &self,
        outcome: AllocationOutcome,
        at: DateTime<Utc>,
    ) -> Option<SettlementResult> {
        match self {
            SettlementInstruction::Settle {
                trade_id,
                match_key,
                allocation_id,
                instruction,
                ..
            } => Some(SettlementResult::Allocation {
                trade_id: *trade_id,
                match_key: match_key.clone(),
                allocation_id: allocation_id.clone(),
                instruction_id: instruction.instruction_id,
                outcome,
                at,
            }),
            SettlementInstruction::Cancel { .. } => None,
        }
    }
}

impl Message for SettlementInstruction {
    const TOPIC: &'static str = topics::INSTRUCTIONS;
    fn message_id(&self) -> Uuid {
        match self {
            SettlementInstruction::Settle { instruction, .. } => instruction.instruction_id,
            SettlementInstruction::Cancel {
                trade_id,
                requested_by,
                ..
            } => derive_id(
                "settlement-cancel",
                &[&trade_id.to_string(), requested_by.as_str()],
            ),
        }
    }
    fn key(&self) -> String {
        match self {
            SettlementInstruction::Settle { match_key, .. }
            | SettlementInstruction::Cancel { match_key, .. } => match_key.to_string(),
        }
    }
}

/// `tm.settlement-results`: settlement's answers, back to matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettlementResult {
    /// One allocation settled or failed.
    Allocation {
        trade_id: TradeId,
        match_key: MatchKey,
        allocation_id: String,
        instruction_id: Uuid,
        #[serde(flatten)]
        outcome: AllocationOutcome,
        at: DateTime<Utc>,
    },
    /// Every instruction of the trade was withdrawn; none will settle.
    CancelConfirmed {
        trade_id: TradeId,
        match_key: MatchKey,
        requested_by: ParticipantId,
        at: DateTime<Utc>,
    },
    /// Too late: some instruction had already settled or failed.
    CancelRefused {
        trade_id: TradeId,
        match_key: MatchKey,
        requested_by: ParticipantId,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl SettlementResult {
    pub fn match_key(&self) -> &MatchKey {
        match self {
            SettlementResult::Allocation { match_key, .. }
            | SettlementResult::CancelConfirmed { match_key, .. }
            | SettlementResult::CancelRefused { match_key, .. } => match_key,
        }
    }
}

impl Message for SettlementResult {
    const TOPIC: &'static str = topics::SETTLEMENT_RESULTS;
    fn message_id(&self) -> Uuid {
        match self {
            SettlementResult::Allocation { instruction_id, .. } => {
                derive_id("settlement-result", &[&instruction_id.to_string()])
            }
            SettlementResult::CancelConfirmed {
                trade_id,
                requested_by,
                ..
            }
            | SettlementResult::CancelRefused {
                trade_id,
                requested_by,
                ..
            } => derive_id(
                "settlement-cancel-result",
                &[&trade_id.to_string(), requested_by.as_str()],
            ),
        }
    }
    fn key(&self) -> String {
        self.match_key().to_string()
    }
}

/// The partitioning key of a message on `topic`, read from its JSON; None when the topic is not one
/// of Keel's or the JSON is not that topic's message. Reconciliation uses it to restore a lost
/// outbox row from the copy a consumer kept.
pub fn key_of(topic: &str, payload: &serde_json::Value) -> Option<String> {
    fn key<M: Message + serde::de::DeserializeOwned>(
        payload: &serde_json::Value,
    ) -> Option<String> {
        M::deserialize(payload).ok().map(|message| message.key())
    }
    match topic {
        topics::SUBMISSIONS => key::<Submission>(payload),
        topics::TRADES => key::<TradeCommand>(payload),
        topics::EVENTS => key::<TradeEvent>(payload),
        topics::INSTRUCTIONS => key::<SettlementInstruction>(payload),
        topics::SETTLEMENT_RESULTS => key::<SettlementResult>(payload),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settlement_results_round_trip_with_their_outcome_inline() {
        let key = MatchKey {
            im_id: ParticipantId::parse("IM-ALPHA").unwrap(),
            broker_id: ParticipantId::parse("BR-NORTH").unwrap(),
            trade_ref: keel_domain::TradeRef::parse("T-1").unwrap(),
        };
        let trade_id = key.trade_id();
        let failed = SettlementResult::Allocation {
            trade_id,
            match_key: key,
            allocation_id: "1".into(),
            instruction_id: SettlementInstruction::instruction_id(trade_id, "1"),
            outcome: AllocationOutcome::Failed {
                reason: "insufficient cash".into(),
            },
            at: Utc::now(),
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["kind"], "allocation");
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["reason"], "insufficient cash");
        let back: SettlementResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, failed);
        assert_ne!(
            SettlementInstruction::instruction_id(trade_id, "1"),
            SettlementInstruction::instruction_id(trade_id, "2")
        );
        assert_eq!(
            key_of(
                topics::SETTLEMENT_RESULTS,
                &serde_json::to_value(&failed).unwrap()
            ),
            Some(failed.key())
        );
        assert_eq!(
            key_of(
                topics::INSTRUCTIONS,
                &serde_json::to_value(&failed).unwrap()
            ),
            None
        );
        assert_eq!(key_of("orders", &serde_json::json!({})), None);
    }
}
