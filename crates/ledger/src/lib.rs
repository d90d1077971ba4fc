//! Settlement's double-entry ledger, as pure functions over values.
//!
//! - [`Asset`]: cash in a currency or a security by ISIN; positions and postings are per asset.
//! - [`ReferenceData`]: who owns which account, which accounts may go negative, each broker's
//!   settlement and fee accounts and commission, and the opening balances.
//! - [`Instruction`]: one allocation of a matched trade to settle delivery versus payment.
//!   [`postings_for`] turns it into postings that net to zero per asset.
//! - [`Ledger`]: positions in memory; [`Ledger::settle`] applies an instruction's postings only if no
//!   position would go negative where that is not allowed, else it changes nothing and says why.
//! - [`verify`]: checks a whole ledger (openings, postings, positions) and names the first violation.
//! - [`desk`]: settlement's decisions over a batch's trades: settle an arriving instruction now,
//!   keep it pending for its date, or cancel it; confirm or refuse a cancel. Today is passed in.
//!
//! The settlement service loads the positions a batch touches, settles through [`Ledger`] and writes
//! back the postings and new positions in the same transaction; `keelctl ledger verify` runs
//! [`verify`] over the stored ledger.

mod asset;
pub mod desk;
mod ledger;
mod posting;
mod reference;
mod screening;
mod verify;

pub use asset::Asset;
pub use ledger::{Ledger, SettlementFailure};
pub use posting::{consideration, postings_for, Instruction, Posting, CASH_DECIMALS};
pub use reference::{
    Account, AccountKind, Broker, Opening, Participant, ReferenceData, ReferenceError, Role,
    Security,
};
pub use verify::{verify, LedgerSnapshot, RecordedPosting, Verified, Violation};

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests_support;
