//! The parts of messages that are Keel's own rather than the participants' (whose trade blocks are
//! the API's contract): legs, history entries, settlement instructions and their outcomes. The
//! domain crates convert to and from these, so a change to keel-lifecycle or keel-ledger reaches
//! the wire only through a change here, which the golden messages (`tests/golden/`) catch.

use chrono::{DateTime, Utc};
use keel_domain::{
    AccountId, Currency, Isin, LegId, ParticipantId, Price, Quantity, Side, TradeBlock, TradeStatus,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A leg that passed validation: its sender's block as accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    pub leg_id: LegId,
    pub sender: ParticipantId,
    pub block: TradeBlock,
    /// When ingress durably accepted this version of the leg.
    pub received_at: DateTime<Utc>,
}

impl From<&keel_lifecycle::Leg> for Leg {
    fn from(leg: &keel_lifecycle::Leg) -> Self {
        Leg {
            leg_id: leg.leg_id,
            sender: leg.sender.clone(),
            block: leg.block.clone(),
            received_at: leg.received_at,
        }
    }
}

impl From<Leg> for keel_lifecycle::Leg {
    fn from(leg: Leg) -> Self {
        keel_lifecycle::Leg {
            leg_id: leg.leg_id,
            sender: leg.sender,
            block: leg.block,
            received_at: leg.received_at,
        }
    }
}

/// One entry of a trade's status history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u32,
    pub status: TradeStatus,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
    pub recipients: Vec<ParticipantId>,
    /// For MISMATCHED: every field that differs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differing_fields: Vec<String>,
    /// For RECEIVED and REJECTED: the leg concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leg_id: Option<LegId>,
}

impl From<&keel_lifecycle::HistoryEntry> for HistoryEntry {
    fn from(entry: &keel_lifecycle::HistoryEntry) -> Self {
        HistoryEntry {
            seq: entry.seq,
            status: entry.status,
            at: entry.at,
            reason: entry.reason.clone(),
            recipients: entry.recipients.clone(),
            differing_fields: entry.differing_fields.clone(),
            leg_id: entry.leg_id,
        }
    }
}

impl From<HistoryEntry> for keel_lifecycle::HistoryEntry {
    fn from(entry: HistoryEntry) -> Self {
        keel_lifecycle::HistoryEntry {
            seq: entry.seq,
            status: entry.status,
            at: entry.at,
            reason: entry.reason,
            recipients: entry.recipients,
            differing_fields: entry.differing_fields,
            leg_id: entry.leg_id,
        }
    }
}

/// One allocation to settle, delivery versus payment; `side` is the IM's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instruction {
    pub instruction_id: Uuid,
    pub im_id: ParticipantId,
    pub broker_id: ParticipantId,
    pub side: Side,
    pub security: Isin,
    pub quantity: Quantity,
    pub price: Price,
    pub currency: Currency,
    pub fund_account: AccountId,
}

impl From<&keel_ledger::Instruction> for Instruction {
    fn from(i: &keel_ledger::Instruction) -> Self {
        Instruction {
            instruction_id: i.instruction_id,
            im_id: i.im_id.clone(),
            broker_id: i.broker_id.clone(),
            side: i.side,
            security: i.security.clone(),
            quantity: i.quantity,
            price: i.price,
            currency: i.currency.clone(),
            fund_account: i.fund_account.clone(),
        }
    }
}

impl From<&Instruction> for keel_ledger::Instruction {
    fn from(i: &Instruction) -> Self {
        keel_ledger::Instruction {
            instruction_id: i.instruction_id,
            im_id: i.im_id.clone(),
            broker_id: i.broker_id.clone(),
            side: i.side,
            security: i.security.clone(),
            quantity: i.quantity,
            price: i.price,
            currency: i.currency.clone(),
            fund_account: i.fund_account.clone(),
        }
    }
}

/// How one allocation's settlement ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AllocationOutcome {
    Settled,
    Failed { reason: String },
}

impl From<&keel_lifecycle::AllocationOutcome> for AllocationOutcome {
    fn from(outcome: &keel_lifecycle::AllocationOutcome) -> Self {
        match outcome {
            keel_lifecycle::AllocationOutcome::Settled => AllocationOutcome::Settled,
            keel_lifecycle::AllocationOutcome::Failed { reason } => AllocationOutcome::Failed {
                reason: reason.clone(),
            },
        }
    }
}

impl From<AllocationOutcome> for keel_lifecycle::AllocationOutcome {
    fn from(outcome: AllocationOutcome) -> Self {
        match outcome {
            AllocationOutcome::Settled => keel_lifecycle::AllocationOutcome::Settled,
            AllocationOutcome::Failed { reason } => {
                keel_lifecycle::AllocationOutcome::Failed { reason }
            }
        }
    }
}
