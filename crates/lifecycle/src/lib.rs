//! The life of a trade, as a pure state machine.
//!
//! A [`Trade`] takes [`Command`]s (a leg, a rejected leg, a cancel, the passing of time) and answers
//! with the [`HistoryEntry`]s to append to its status history. The caller persists the new state and
//! the entries in one transaction; nothing here does IO or reads a clock.

mod matching;
mod trade;

pub use matching::{compare_legs, MatchOutcome, MatchPolicy};
pub use trade::{Command, HistoryEntry, Leg, Trade};
