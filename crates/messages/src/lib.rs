//! What flows between Keel's services: the fixed topic names (DESIGN section 3) and one message type
//! per topic, made of Keel's own wire types ([`wire`]: the domain crates convert to and from them). Every message carries a deterministic `message_id`, the key of exactly-once processing,
//! and is keyed by its trade's match key so both legs of a trade stay in one partition, in order.

use chrono::{DateTime, NaiveDate, Utc};
use keel_domain::{derive_id, LegId, MatchKey, ParticipantId, TradeId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod wire;

pub use wire::{AllocationOutcome, HistoryEntry, Instruction, Leg};

/// The topic names, declared with the rest of the topology.
pub use keel_topology::topics;

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

/// `tm.events`: the status history entries one batch of matching appended to one trade, in order
/// (one message per business fact: a leg that made a trade MATCHED carries its RECEIVED and its
/// MATCHED entry together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeEvents {
    pub trade_id: TradeId,
    pub match_key: MatchKey,
    /// Never empty; consecutive `seq`s.
    pub entries: Vec<HistoryEntry>,
}

impl TradeEvents {
    /// The id of one history entry: a trade's entry `seq` exists once, in every region. Notification
    /// ids derive from it, so an entry is notified once whichever message carried it.
    pub fn entry_id(trade_id: TradeId, seq: u32) -> Uuid {
        derive_id("trade-event", &[&trade_id.to_string(), &seq.to_string()])
    }
}

impl Message for TradeEvents {
    const TOPIC: &'static str = topics::EVENTS;
    fn message_id(&self) -> Uuid {
        // Entries are appended once each, so the first entry's seq and the count name the message.
        let first = self.entries.first().map_or(0, |e| e.seq);
        derive_id(
            "trade-events",
            &[
                &self.trade_id.to_string(),
                &first.to_string(),
                &self.entries.len().to_string(),
            ],
        )
    }
    fn key(&self) -> String {
        self.match_key.to_string()
    }
}

/// One allocation of a MATCHED trade to settle, delivery versus payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationInstruction {
    pub allocation_id: String,
    pub instruction: Instruction,
}

/// `st.instructions`: what matching asks of settlement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettlementInstruction {
    /// Settle every allocation of a MATCHED trade, delivery versus payment, on or after its
    /// settlement date: one message per trade.
    Settle {
        trade_id: TradeId,
        match_key: MatchKey,
        settlement_date: NaiveDate,
        allocations: Vec<AllocationInstruction>,
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
    /// The id of one allocation's instruction (a row of settlement's book, which its postings
    /// reference), the same in every region and on every retry.
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

    /// The ledger instructions to settle (none for a cancel).
    pub fn to_settle(&self) -> impl Iterator<Item = &Instruction> {
        let allocations: &[AllocationInstruction] = match self {
            SettlementInstruction::Settle { allocations, .. } => allocations,
            SettlementInstruction::Cancel { .. } => &[],
        };
        allocations.iter().map(|a| &a.instruction)
    }
}

impl Message for SettlementInstruction {
    const TOPIC: &'static str = topics::INSTRUCTIONS;
    fn message_id(&self) -> Uuid {
        match self {
            SettlementInstruction::Settle { trade_id, .. } => {
                derive_id("settlement-instructions", &[&trade_id.to_string()])
            }
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

/// How one allocation's instruction ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationResult {
    pub allocation_id: String,
    pub instruction_id: Uuid,
    #[serde(flatten)]
    pub outcome: AllocationOutcome,
}

/// `tm.settlement-results`: settlement's answers, back to matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettlementResult {
    /// The allocations of one trade that settlement decided together (all of them, whenever they
    /// arrive and come due together, as they do: one message per trade).
    Allocations {
        trade_id: TradeId,
        match_key: MatchKey,
        results: Vec<AllocationResult>,
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
            SettlementResult::Allocations { match_key, .. }
            | SettlementResult::CancelConfirmed { match_key, .. }
            | SettlementResult::CancelRefused { match_key, .. } => match_key,
        }
    }
}

impl Message for SettlementResult {
    const TOPIC: &'static str = topics::SETTLEMENT_RESULTS;
    fn message_id(&self) -> Uuid {
        match self {
            SettlementResult::Allocations {
                trade_id, results, ..
            } => {
                // Named by the instructions it answers, so an answer is the same message on every
                // retry and in every region.
                let mut parts = vec![trade_id.to_string()];
                parts.extend(results.iter().map(|r| r.instruction_id.to_string()));
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                derive_id("settlement-results", &parts)
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
        topics::EVENTS => key::<TradeEvents>(payload),
        topics::INSTRUCTIONS => key::<SettlementInstruction>(payload),
        topics::SETTLEMENT_RESULTS => key::<SettlementResult>(payload),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MatchKey {
        MatchKey {
            im_id: ParticipantId::parse("IM-ALPHA").unwrap(),
            broker_id: ParticipantId::parse("BR-NORTH").unwrap(),
            trade_ref: keel_domain::TradeRef::parse("T-1").unwrap(),
        }
    }

    #[test]
    fn settlement_results_round_trip_with_each_outcome_inline() {
        let key = key();
        let trade_id = key.trade_id();
        let result = |allocation_id: &str, outcome| AllocationResult {
            allocation_id: allocation_id.into(),
            instruction_id: SettlementInstruction::instruction_id(trade_id, allocation_id),
            outcome,
        };
        let answer = SettlementResult::Allocations {
            trade_id,
            match_key: key,
            results: vec![
                result("1", AllocationOutcome::Settled),
                result(
                    "2",
                    AllocationOutcome::Failed {
                        reason: "insufficient cash".into(),
                    },
                ),
            ],
            at: Utc::now(),
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["kind"], "allocations");
        assert_eq!(json["results"][0]["outcome"], "settled");
        assert_eq!(json["results"][1]["outcome"], "failed");
        assert_eq!(json["results"][1]["reason"], "insufficient cash");
        let back: SettlementResult = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, answer);
        assert_ne!(
            SettlementInstruction::instruction_id(trade_id, "1"),
            SettlementInstruction::instruction_id(trade_id, "2")
        );
        assert_eq!(
            key_of(topics::SETTLEMENT_RESULTS, &json),
            Some(answer.key())
        );
        assert_eq!(key_of(topics::INSTRUCTIONS, &json), None);
        assert_eq!(key_of("orders", &serde_json::json!({})), None);
    }

    #[test]
    fn an_events_message_is_named_by_the_entries_it_carries() {
        let key = key();
        let entry = |seq| HistoryEntry {
            seq,
            status: keel_domain::TradeStatus::Received,
            at: Utc::now(),
            reason: None,
            recipients: vec![],
            differing_fields: vec![],
            leg_id: None,
        };
        let events = |seqs: &[u32]| TradeEvents {
            trade_id: key.trade_id(),
            match_key: key.clone(),
            entries: seqs.iter().map(|s| entry(*s)).collect(),
        };
        assert_eq!(events(&[1, 2]).message_id(), events(&[1, 2]).message_id());
        assert_ne!(events(&[1, 2]).message_id(), events(&[1]).message_id());
        assert_ne!(events(&[1]).message_id(), events(&[2]).message_id());
        assert_eq!(events(&[1]).key(), key.to_string());
    }
}
