use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every status a trade can be in. The history of a trade is an append-only list of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeStatus {
    Received,
    Rejected,
    Unmatched,
    Matched,
    Mismatched,
    Settled,
    SettlementFailed,
    Cancelled,
    Expired,
}

impl TradeStatus {
    pub const ALL: [TradeStatus; 9] = [
        TradeStatus::Received,
        TradeStatus::Rejected,
        TradeStatus::Unmatched,
        TradeStatus::Matched,
        TradeStatus::Mismatched,
        TradeStatus::Settled,
        TradeStatus::SettlementFailed,
        TradeStatus::Cancelled,
        TradeStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TradeStatus::Received => "RECEIVED",
            TradeStatus::Rejected => "REJECTED",
            TradeStatus::Unmatched => "UNMATCHED",
            TradeStatus::Matched => "MATCHED",
            TradeStatus::Mismatched => "MISMATCHED",
            TradeStatus::Settled => "SETTLED",
            TradeStatus::SettlementFailed => "SETTLEMENT_FAILED",
            TradeStatus::Cancelled => "CANCELLED",
            TradeStatus::Expired => "EXPIRED",
        }
    }

    /// The nearest ISO 20022 status code (ExternalStatusReason / TransactionIndividualStatus family), as
    /// documented in `docs/statuses.md`.
    pub fn iso20022_code(self) -> &'static str {
        match self {
            TradeStatus::Received => "RCVD",
            TradeStatus::Rejected => "RJCT",
            TradeStatus::Unmatched => "NMAT",
            TradeStatus::Matched => "MACH",
            TradeStatus::Mismatched => "DMAT",
            TradeStatus::Settled => "SETT",
            TradeStatus::SettlementFailed => "PEND",
            TradeStatus::Cancelled => "CANC",
            TradeStatus::Expired => "EXPI",
        }
    }

    /// A trade in one of these statuses accepts no further legs, amendments or cancels.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TradeStatus::Settled
                | TradeStatus::SettlementFailed
                | TradeStatus::Cancelled
                | TradeStatus::Expired
        )
    }
}

impl fmt::Display for TradeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TradeStatus {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        TradeStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or_else(|| format!("unknown trade status {raw:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in TradeStatus::ALL {
            assert_eq!(status.as_str().parse::<TradeStatus>().unwrap(), status);
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
        }
    }
}
