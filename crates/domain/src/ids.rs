use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ParticipantId, TradeRef, Version};

/// Namespace of every id Keel derives (UUIDv5). Fixed forever: ids must come out the same in every
/// region and on every retry.
const KEEL_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_656c_0000_4000_8000_7472_6164_6573);

/// Derives a deterministic id from its parts. Parts are joined with `|`, which no identifier may contain.
pub fn derive_id(kind: &str, parts: &[&str]) -> Uuid {
    let mut name = String::from(kind);
    for part in parts {
        name.push('|');
        name.push_str(part);
    }
    Uuid::new_v5(&KEEL_NAMESPACE, name.as_bytes())
}

/// What both legs of one trade share: the IM, the broker and their trade reference. Every message
/// about a trade is keyed by it, so both legs meet in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MatchKey {
    pub im_id: ParticipantId,
    pub broker_id: ParticipantId,
    pub trade_ref: TradeRef,
}

impl MatchKey {
    pub fn trade_id(&self) -> TradeId {
        TradeId(derive_id(
            "trade",
            &[
                self.im_id.as_str(),
                self.broker_id.as_str(),
                self.trade_ref.as_str(),
            ],
        ))
    }
}

impl fmt::Display for MatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}|{}", self.im_id, self.broker_id, self.trade_ref)
    }
}

/// A trade: the same for both legs, derived from the match key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TradeId(pub Uuid);

impl fmt::Display for TradeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One version of one party's leg, identified by `(sender, trade_ref, version)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LegId(pub Uuid);

impl LegId {
    pub fn new(sender: &ParticipantId, trade_ref: &TradeRef, version: Version) -> Self {
        LegId(derive_id(
            "leg",
            &[
                sender.as_str(),
                trade_ref.as_str(),
                &version.get().to_string(),
            ],
        ))
    }
}

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(im: &str, broker: &str, trade_ref: &str) -> MatchKey {
        MatchKey {
            im_id: ParticipantId::parse(im).unwrap(),
            broker_id: ParticipantId::parse(broker).unwrap(),
            trade_ref: TradeRef::parse(trade_ref).unwrap(),
        }
    }

    #[test]
    fn trade_ids_depend_only_on_the_match_key() {
        assert_eq!(
            key("IM-A", "BR-N", "T-1").trade_id(),
            key("IM-A", "BR-N", "T-1").trade_id()
        );
        assert_ne!(
            key("IM-A", "BR-N", "T-1").trade_id(),
            key("IM-A", "BR-N", "T-2").trade_id()
        );
        assert_ne!(
            key("IM-A", "BR-N", "T-1").trade_id(),
            key("BR-N", "IM-A", "T-1").trade_id()
        );
    }

    #[test]
    fn leg_ids_differ_by_sender_and_version() {
        let trade_ref = TradeRef::parse("T-1").unwrap();
        let im = ParticipantId::parse("IM-A").unwrap();
        let broker = ParticipantId::parse("BR-N").unwrap();
        let v1 = Version::FIRST;
        let v2 = Version::new(2).unwrap();
        assert_ne!(
            LegId::new(&im, &trade_ref, v1),
            LegId::new(&broker, &trade_ref, v1)
        );
        assert_ne!(
            LegId::new(&im, &trade_ref, v1),
            LegId::new(&im, &trade_ref, v2)
        );
        assert_eq!(
            LegId::new(&im, &trade_ref, v1),
            LegId::new(&im, &trade_ref, v1)
        );
    }
}
