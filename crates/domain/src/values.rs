use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Why a raw value is not a valid domain value. `code` is stable and machine-readable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValueError {
    pub code: &'static str,
    pub message: String,
}

impl ValueError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ValueError> {
                parse_identifier(raw, $what).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = ValueError;
            fn try_from(raw: String) -> Result<Self, ValueError> {
                Self::parse(&raw)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

const MAX_IDENTIFIER_LEN: usize = 64;

fn parse_identifier(raw: &str, what: &str) -> Result<String, ValueError> {
    if raw.is_empty() {
        return Err(ValueError::new(
            "empty",
            format!("{what} must not be empty"),
        ));
    }
    if raw.len() > MAX_IDENTIFIER_LEN {
        return Err(ValueError::new(
            "too_long",
            format!("{what} must be at most {MAX_IDENTIFIER_LEN} characters"),
        ));
    }
    // `|` is excluded on purpose: it separates the parts of a match key.
    if !raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
    {
        return Err(ValueError::new(
            "invalid_characters",
            format!("{what} may contain only ASCII letters, digits and - _ . : /"),
        ));
    }
    Ok(raw.to_owned())
}

identifier!(
    /// A participant (an investment manager or a broker) as it authenticates.
    ParticipantId, "participant id"
);
identifier!(
    /// A fund, settlement or fee account.
    AccountId, "account"
);
identifier!(
    /// The parties' own reference for a block trade; both legs carry the same one.
    TradeRef, "trade_ref"
);

/// The IM's side of the trade (the same on both legs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    Buy,
    Sell,
}

impl FromStr for Side {
    type Err = ValueError;
    fn from_str(raw: &str) -> Result<Self, ValueError> {
        match raw {
            "BUY" => Ok(Side::Buy),
            "SELL" => Ok(Side::Sell),
            _ => Err(ValueError::new(
                "invalid_side",
                "side must be \"BUY\" or \"SELL\"",
            )),
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        })
    }
}

/// An ISIN (ISO 6166): two-letter country, nine alphanumerics, one Luhn check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Isin(String);

impl Isin {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let bytes = raw.as_bytes();
        if bytes.len() != 12 {
            return Err(ValueError::new(
                "invalid_isin",
                "an ISIN has exactly 12 characters",
            ));
        }
        if !bytes[..2].iter().all(u8::is_ascii_uppercase) {
            return Err(ValueError::new(
                "invalid_isin",
                "an ISIN starts with a two-letter country code",
            ));
        }
        if !bytes[2..11]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(ValueError::new(
                "invalid_isin",
                "characters 3 to 11 of an ISIN are upper-case letters or digits",
            ));
        }
        if !bytes[11].is_ascii_digit() {
            return Err(ValueError::new(
                "invalid_isin",
                "the last character of an ISIN is its check digit",
            ));
        }
        let expected = Self::check_digit(&raw[..11]);
        if bytes[11] - b'0' != expected {
            return Err(ValueError::new(
                "invalid_isin_check_digit",
                format!(
                    "ISIN check digit is {}, expected {expected}",
                    bytes[11] - b'0'
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The Luhn check digit over the ISIN body, with letters expanded to two digits (A = 10 … Z = 35).
    pub fn check_digit(body: &str) -> u8 {
        let digits: Vec<u8> = body
            .bytes()
            .flat_map(|b| {
                let value = if b.is_ascii_digit() {
                    b - b'0'
                } else {
                    b - b'A' + 10
                };
                if value >= 10 {
                    vec![value / 10, value % 10]
                } else {
                    vec![value]
                }
            })
            .collect();
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| {
                let d = u32::from(d);
                if i % 2 == 0 {
                    let doubled = d * 2;
                    doubled / 10 + doubled % 10
                } else {
                    d
                }
            })
            .sum();
        ((10 - sum % 10) % 10) as u8
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Isin {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, ValueError> {
        Self::parse(&raw)
    }
}
impl From<Isin> for String {
    fn from(value: Isin) -> String {
        value.0
    }
}
impl fmt::Display for Isin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive whole number of shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Quantity(u64);

impl Quantity {
    /// Large enough for any real block, small enough that a sum of allocations cannot overflow.
    pub const MAX: u64 = 1_000_000_000_000;

    pub fn new(raw: u64) -> Result<Self, ValueError> {
        if raw == 0 {
            return Err(ValueError::new(
                "not_positive",
                "quantity must be a positive integer",
            ));
        }
        if raw > Self::MAX {
            return Err(ValueError::new(
                "too_large",
                format!("quantity must be at most {}", Self::MAX),
            ));
        }
        Ok(Self(raw))
    }
    pub fn get(self) -> u64 {
        self.0
    }
}
impl TryFrom<u64> for Quantity {
    type Error = ValueError;
    fn try_from(raw: u64) -> Result<Self, ValueError> {
        Self::new(raw)
    }
}
impl From<Quantity> for u64 {
    fn from(value: Quantity) -> u64 {
        value.0
    }
}

/// A positive price per share, as an exact decimal. Parsed from a string only: a JSON number is a
/// float on the wire, and floats are never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Price(Decimal);

impl Price {
    pub const MAX_SCALE: u32 = 8;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let well_formed = !raw.is_empty()
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            && raw.bytes().filter(|&b| b == b'.').count() <= 1
            && !raw.starts_with('.')
            && !raw.ends_with('.');
        let value = if well_formed {
            Decimal::from_str_exact(raw).ok()
        } else {
            None
        };
        let Some(value) = value else {
            return Err(ValueError::new(
                "not_a_decimal_string",
                "price must be a decimal string such as \"187.2500\"",
            ));
        };
        if value <= Decimal::ZERO {
            return Err(ValueError::new(
                "not_positive",
                "price must be greater than zero",
            ));
        }
        if value.scale() > Self::MAX_SCALE {
            return Err(ValueError::new(
                "too_many_decimals",
                format!("price may have at most {} decimal places", Self::MAX_SCALE),
            ));
        }
        Ok(Self(value))
    }
    pub fn value(self) -> Decimal {
        self.0
    }
}
impl TryFrom<String> for Price {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, ValueError> {
        Self::parse(&raw)
    }
}
impl From<Price> for String {
    fn from(value: Price) -> String {
        value.0.to_string()
    }
}
impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::new(
                "invalid_currency",
                "currency must be three upper-case letters (ISO 4217)",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Currency {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, ValueError> {
        Self::parse(&raw)
    }
}
impl From<Currency> for String {
    fn from(value: Currency) -> String {
        value.0
    }
}

/// The version of a leg: 1 for the first submission, higher for each amendment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Version(u32);

impl Version {
    pub const FIRST: Version = Version(1);

    pub fn new(raw: u32) -> Result<Self, ValueError> {
        if raw == 0 {
            Err(ValueError::new(
                "not_positive",
                "version must be a positive integer",
            ))
        } else {
            Ok(Self(raw))
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}
impl TryFrom<u32> for Version {
    type Error = ValueError;
    fn try_from(raw: u32) -> Result<Self, ValueError> {
        Self::new(raw)
    }
}
impl From<Version> for u32 {
    fn from(value: Version) -> u32 {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_isins_pass_their_check_digit() {
        for isin in [
            "US0378331005",
            "US5949181045",
            "GB0002634946",
            "DE0007164600",
            "JP3633400001",
        ] {
            assert!(Isin::parse(isin).is_ok(), "{isin}");
        }
    }

    #[test]
    fn a_wrong_check_digit_is_named() {
        let err = Isin::parse("US0378331006").unwrap_err();
        assert_eq!(err.code, "invalid_isin_check_digit");
        assert!(err.message.contains("expected 5"), "{}", err.message);
    }

    #[test]
    fn malformed_isins_are_refused() {
        for bad in [
            "",
            "US037833100",
            "us0378331005",
            "US03783310051",
            "120378331005",
            "US037833100X",
        ] {
            assert!(Isin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prices_are_exact_positive_decimal_strings() {
        assert_eq!(Price::parse("187.2500").unwrap().to_string(), "187.2500");
        for (raw, code) in [
            ("0", "not_positive"),
            ("-1.5", "not_positive"),
            ("1e3", "not_a_decimal_string"),
            ("", "not_a_decimal_string"),
            ("1.2.3", "not_a_decimal_string"),
            (".5", "not_a_decimal_string"),
            ("NaN", "not_a_decimal_string"),
            ("1.123456789", "too_many_decimals"),
        ] {
            assert_eq!(Price::parse(raw).unwrap_err().code, code, "{raw}");
        }
    }

    #[test]
    fn quantities_are_positive_and_bounded() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(Quantity::MAX + 1).is_err());
        assert_eq!(Quantity::new(7).unwrap().get(), 7);
    }

    #[test]
    fn identifiers_refuse_the_match_key_separator() {
        assert!(ParticipantId::parse("IM-ALPHA").is_ok());
        assert!(ParticipantId::parse("IM|ALPHA").is_err());
        assert!(TradeRef::parse("").is_err());
    }

    proptest! {
        #[test]
        fn every_body_has_exactly_one_valid_check_digit(body in "[A-Z]{2}[A-Z0-9]{9}") {
            let valid: Vec<u8> = (0..10u8)
                .filter(|d| Isin::parse(&format!("{body}{d}")).is_ok())
                .collect();
            prop_assert_eq!(valid, vec![Isin::check_digit(&body)]);
        }

        #[test]
        fn a_price_round_trips_through_its_string(units in 1u64..10_000_000, scale in 0u32..=8) {
            let price = Price(Decimal::from_i128_with_scale(i128::from(units), scale));
            let reparsed = Price::parse(&String::from(price)).unwrap();
            prop_assert_eq!(reparsed, price);
        }
    }
}
