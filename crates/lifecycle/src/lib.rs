//! The life of a trade, as a pure state machine.
//!
//! A [`Trade`] takes [`Command`]s (a leg, a rejected leg, a cancel, the passing of time, settlement's
//! answers) and answers with its [`Effects`]: the [`HistoryEntry`]s to append to its status history
//! and what to send to settlement. The caller persists the new state and
//! the entries in one transaction; nothing here does IO or reads a clock.

mod matching;
mod trade;

pub use matching::{compare_legs, MatchOutcome, MatchPolicy};
pub use trade::{
    AllocationOutcome, AllocationState, Command, Effects, HistoryEntry, Leg, SettlementProgress,
    ToSettlement, Trade,
};
