//! The topic names (DESIGN section 3, fixed). Which service produces and consumes each is declared
//! in [`crate::SERVICES`].

/// Accepted submissions and cancel requests.
pub const SUBMISSIONS: &str = "tm.submissions";
/// Validated legs, rejections and cancels.
pub const TRADES: &str = "tm.trades";
/// The status history entries appended to a trade.
pub const EVENTS: &str = "tm.events";
/// Matched trades to settle.
pub const INSTRUCTIONS: &str = "st.instructions";
/// Settlement's answers.
pub const SETTLEMENT_RESULTS: &str = "tm.settlement-results";
/// Poison messages of the trade-matching application, with their origin in headers.
pub const TM_DEAD_LETTERS: &str = "tm.dead-letters";
/// Poison messages of the settlement application.
pub const ST_DEAD_LETTERS: &str = "st.dead-letters";
