use chrono::Duration;
use keel_domain::TradeBlock;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The tunable parts of matching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchPolicy {
    /// Largest absolute price difference that still matches. Zero (the default) means exact.
    pub price_tolerance: Decimal,
    /// How long a lone leg waits for its counterpart, from its own receipt, before it expires.
    #[serde(with = "seconds")]
    pub match_window: Duration,
}

impl Default for MatchPolicy {
    fn default() -> Self {
        Self {
            price_tolerance: Decimal::ZERO,
            match_window: Duration::hours(24),
        }
    }
}

mod seconds {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(value.num_seconds())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        i64::deserialize(deserializer).map(Duration::seconds)
    }
}

/// What comparing the two legs of a trade found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchOutcome {
    Matched,
    /// Names every field that differs, in a fixed order.
    Mismatched(Vec<&'static str>),
}

/// Compares the IM's leg with the broker's. Allocations count only where the broker sent some.
pub fn compare_legs(im: &TradeBlock, broker: &TradeBlock, policy: &MatchPolicy) -> MatchOutcome {
    let mut differing = Vec::new();
    if im.security != broker.security {
        differing.push("security");
    }
    if im.side != broker.side {
        differing.push("side");
    }
    if im.quantity != broker.quantity {
        differing.push("quantity");
    }
    if (im.price.value() - broker.price.value()).abs() > policy.price_tolerance {
        differing.push("price");
    }
    if im.currency != broker.currency {
        differing.push("currency");
    }
    if im.trade_date != broker.trade_date {
        differing.push("trade_date");
    }
    if im.settlement_date != broker.settlement_date {
        differing.push("settlement_date");
    }
    if !broker.allocations.is_empty() && im.allocation_set() != broker.allocation_set() {
        differing.push("allocations");
    }
    if differing.is_empty() {
        MatchOutcome::Matched
    } else {
        MatchOutcome::Mismatched(differing)
    }
}
