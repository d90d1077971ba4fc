use std::fmt;

use keel_domain::{Currency, Isin, ValueError};
use serde::{Deserialize, Serialize};

/// What a position is held in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "code", rename_all = "lowercase")]
pub enum Asset {
    Cash(Currency),
    Security(Isin),
}

impl Asset {
    /// `"cash"` or `"security"`: how the asset's kind is stored and shown.
    pub fn kind(&self) -> &'static str {
        match self {
            Asset::Cash(_) => "cash",
            Asset::Security(_) => "security",
        }
    }

    /// The currency code or the ISIN.
    pub fn code(&self) -> &str {
        match self {
            Asset::Cash(currency) => currency.as_str(),
            Asset::Security(isin) => isin.as_str(),
        }
    }

    /// Rebuilds an asset from its stored kind and code.
    pub fn from_parts(kind: &str, code: &str) -> Result<Self, ValueError> {
        match kind {
            "cash" => Currency::parse(code).map(Asset::Cash),
            "security" => Isin::parse(code).map(Asset::Security),
            other => Err(ValueError {
                code: "invalid_asset_kind",
                message: format!("asset kind must be \"cash\" or \"security\", not {other:?}"),
            }),
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_round_trip_through_their_parts() {
        for asset in [
            Asset::Cash(Currency::parse("USD").unwrap()),
            Asset::Security(Isin::parse("US0378331005").unwrap()),
        ] {
            assert_eq!(
                Asset::from_parts(asset.kind(), asset.code()).unwrap(),
                asset
            );
        }
        assert!(Asset::from_parts("bond", "X").is_err());
        assert!(Asset::from_parts("security", "US0378331006").is_err());
    }
}
