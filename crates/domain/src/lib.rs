//! Keel's trade vocabulary: the value types a trade block is made of, the block itself, the ids derived
//! from it and the statuses a trade goes through.
//!
//! Everything here is pure: no IO, no clock. Constructors are fallible ("parse, don't validate"), so a
//! value of one of these types is always valid.

mod ids;
mod status;
mod trade_block;
mod values;

pub use ids::{derive_id, LegId, MatchKey, TradeId};
pub use status::TradeStatus;
pub use trade_block::{
    batch_items, Allocation, FieldError, LegRole, TradeBlock, ValidationErrors, MAX_ALLOCATIONS,
};
pub use values::{
    AccountId, Currency, Isin, ParticipantId, Price, Quantity, Side, TradeRef, ValueError, Version,
};
