use std::collections::{BTreeSet, HashSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    AccountId, Currency, Isin, LegId, MatchKey, ParticipantId, Price, Quantity, Side, TradeRef,
    ValueError, Version,
};

/// At most this many allocations in one block.
pub const MAX_ALLOCATIONS: usize = 100;

const FIELDS: [&str; 12] = [
    "trade_ref",
    "im_id",
    "broker_id",
    "side",
    "security",
    "quantity",
    "price",
    "currency",
    "trade_date",
    "settlement_date",
    "allocations",
    "version",
];

/// One part of a block given to one fund account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Allocation {
    pub allocation_id: String,
    pub account: AccountId,
    pub quantity: Quantity,
}

/// One party's view of a block trade, valid in every field and across fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeBlock {
    pub trade_ref: TradeRef,
    pub im_id: ParticipantId,
    pub broker_id: ParticipantId,
    pub side: Side,
    pub security: Isin,
    pub quantity: Quantity,
    pub price: Price,
    pub currency: Currency,
    pub trade_date: NaiveDate,
    pub settlement_date: NaiveDate,
    pub version: Version,
    pub allocations: Vec<Allocation>,
}

/// Which party sent a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegRole {
    Im,
    Broker,
}

/// One thing wrong with one field. `field` is a path into the submitted JSON, such as
/// `allocations[1].quantity`; `code` is stable for machines, `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

/// Everything wrong with a submitted block (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), summarize(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    pub fn single(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self(vec![FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }])
    }
}

impl TradeBlock {
    /// Parses a submitted JSON block sent by `sender`, collecting every field error rather than the first.
    pub fn parse(raw: &Value, sender: &ParticipantId) -> Result<TradeBlock, ValidationErrors> {
        let Some(object) = raw.as_object() else {
            return Err(ValidationErrors::single(
                "",
                "not_an_object",
                "a trade block is a JSON object",
            ));
        };
        let mut fields = Fields {
            object,
            errors: Vec::new(),
        };

        for name in object.keys() {
            if !FIELDS.contains(&name.as_str()) {
                fields.push(name, "unknown_field", format!("unknown field {name:?}"));
            }
        }

        let trade_ref = fields.string("trade_ref", TradeRef::parse);
        let im_id = fields.string("im_id", ParticipantId::parse);
        let broker_id = fields.string("broker_id", ParticipantId::parse);
        let side = fields.string("side", str::parse::<Side>);
        let security = fields.string("security", Isin::parse);
        let quantity = fields.integer("quantity", Quantity::new);
        let price = fields.price();
        let currency = fields.string("currency", Currency::parse);
        let trade_date = fields.string("trade_date", parse_date);
        let settlement_date = fields.string("settlement_date", parse_date);
        let version = match object.get("version") {
            None | Some(Value::Null) => Some(Version::FIRST),
            Some(_) => fields.integer("version", |raw| {
                u32::try_from(raw)
                    .map_err(|_| ValueError::new("too_large", "version is too large"))
                    .and_then(Version::new)
            }),
        };
        let allocations = fields.allocations();

        let mut errors = fields.errors;
        if let (Some(im), Some(broker)) = (&im_id, &broker_id) {
            if im == broker {
                errors.push(error(
                    "broker_id",
                    "same_as_im",
                    "broker_id must differ from im_id",
                ));
            } else if sender != im && sender != broker {
                errors.push(error(
                    "sender",
                    "sender_not_party",
                    format!(
                        "the sender {sender} is neither the im_id nor the broker_id of this block"
                    ),
                ));
            }
        }
        if let (Some(trade), Some(settlement)) = (trade_date, settlement_date) {
            if settlement < trade {
                errors.push(error(
                    "settlement_date",
                    "before_trade_date",
                    "settlement_date is before trade_date",
                ));
            }
        }
        if let (Some(allocations), Some(quantity)) = (&allocations, quantity) {
            let allocated: u64 = allocations.iter().map(|a| a.quantity.get()).sum();
            if !allocations.is_empty() && allocated != quantity.get() {
                errors.push(error(
                    "allocations",
                    "quantity_mismatch",
                    format!(
                        "allocation quantities sum to {allocated}, the block quantity is {}",
                        quantity.get()
                    ),
                ));
            }
            if allocations.is_empty() && im_id.as_ref() == Some(sender) {
                errors.push(error(
                    "allocations",
                    "required",
                    "the investment manager must send allocations",
                ));
            }
        }

        match (
            errors.is_empty(),
            trade_ref,
            im_id,
            broker_id,
            side,
            security,
            quantity,
            price,
            currency,
            trade_date,
            settlement_date,
            version,
            allocations,
        ) {
            (
                true,
                Some(trade_ref),
                Some(im_id),
                Some(broker_id),
                Some(side),
                Some(security),
                Some(quantity),
                Some(price),
                Some(currency),
                Some(trade_date),
                Some(settlement_date),
                Some(version),
                Some(allocations),
            ) => Ok(TradeBlock {
                trade_ref,
                im_id,
                broker_id,
                side,
                security,
                quantity,
                price,
                currency,
                trade_date,
                settlement_date,
                version,
                allocations,
            }),
            _ => {
                debug_assert!(!errors.is_empty(), "a field failed without saying why");
                Err(ValidationErrors(errors))
            }
        }
    }

    pub fn match_key(&self) -> MatchKey {
        MatchKey {
            im_id: self.im_id.clone(),
            broker_id: self.broker_id.clone(),
            trade_ref: self.trade_ref.clone(),
        }
    }

    /// Which party `sender` is. Only meaningful for a block that `parse` accepted from that sender.
    pub fn role_of(&self, sender: &ParticipantId) -> LegRole {
        if *sender == self.im_id {
            LegRole::Im
        } else {
            LegRole::Broker
        }
    }

    pub fn leg_id(&self, sender: &ParticipantId) -> LegId {
        LegId::new(sender, &self.trade_ref, self.version)
    }

    /// The allocations as a set, for comparison regardless of order.
    pub fn allocation_set(&self) -> BTreeSet<(AccountId, Quantity)> {
        self.allocations
            .iter()
            .map(|a| (a.account.clone(), a.quantity))
            .collect()
    }
}

fn error(field: &str, code: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

/// A calendar date written exactly as `YYYY-MM-DD`, and only so: chrono alone also takes a signed
/// year (`-026-11-23`, year -26, found by the fuzzer), which then serializes as something else.
fn parse_date(raw: &str) -> Result<NaiveDate, ValueError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|date| date.format("%Y-%m-%d").to_string() == raw)
        .ok_or_else(|| ValueError::new("invalid_date", "dates are written YYYY-MM-DD"))
}

struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields<'_> {
    fn push(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.errors.push(error(field, code, message));
    }

    fn required(&mut self, name: &str) -> Option<&Value> {
        match self.object.get(name) {
            None | Some(Value::Null) => {
                self.push(name, "missing", format!("{name} is required"));
                None
            }
            Some(value) => Some(value),
        }
    }

    fn string<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        let value = self.required(name)?;
        let Some(raw) = value.as_str() else {
            self.push(name, "wrong_type", format!("{name} must be a string"));
            return None;
        };
        parse(raw)
            .map_err(|e| self.push(name, e.code, e.message))
            .ok()
    }

    fn integer<T>(
        &mut self,
        name: &str,
        make: impl FnOnce(u64) -> Result<T, ValueError>,
    ) -> Option<T> {
        let value = self.required(name)?.clone();
        integer_at(&value, name, make)
            .map_err(|e| self.errors.push(e))
            .ok()
    }

    fn price(&mut self) -> Option<Price> {
        let value = self.required("price")?;
        match value {
            Value::String(raw) => Price::parse(raw)
                .map_err(|e| self.push("price", e.code, e.message))
                .ok(),
            Value::Number(_) => {
                self.push(
                    "price",
                    "not_a_decimal_string",
                    "price must be a decimal string such as \"187.2500\", not a JSON number",
                );
                None
            }
            _ => {
                self.push("price", "wrong_type", "price must be a decimal string");
                None
            }
        }
    }

    /// A missing `allocations` is an empty list here; whether the sender may omit it is checked later.
    fn allocations(&mut self) -> Option<Vec<Allocation>> {
        let items = match self.object.get("allocations") {
            None | Some(Value::Null) => return Some(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.push("allocations", "wrong_type", "allocations must be an array");
                return None;
            }
        };
        if items.len() > MAX_ALLOCATIONS {
            self.push(
                "allocations",
                "too_many",
                format!("at most {MAX_ALLOCATIONS} allocations per block"),
            );
            return None;
        }
        let mut allocations = Vec::with_capacity(items.len());
        let mut ids = HashSet::new();
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            match parse_allocation(item, index) {
                Ok(allocation) => {
                    if !ids.insert(allocation.allocation_id.clone()) {
                        self.push(
                            &format!("allocations[{index}].allocation_id"),
                            "duplicate",
                            format!(
                                "allocation_id {:?} appears more than once",
                                allocation.allocation_id
                            ),
                        );
                        ok = false;
                    }
                    allocations.push(allocation);
                }
                Err(errors) => {
                    self.errors.extend(errors);
                    ok = false;
                }
            }
        }
        ok.then_some(allocations)
    }
}

fn integer_at<T>(
    value: &Value,
    path: &str,
    make: impl FnOnce(u64) -> Result<T, ValueError>,
) -> Result<T, FieldError> {
    match value {
        Value::Number(number) => {
            if let Some(raw) = number.as_u64() {
                make(raw).map_err(|e| error(path, e.code, e.message))
            } else if number.as_i64().is_some() {
                Err(error(
                    path,
                    "not_positive",
                    format!("{path} must be a positive integer"),
                ))
            } else {
                Err(error(
                    path,
                    "not_an_integer",
                    format!("{path} must be a whole number"),
                ))
            }
        }
        _ => Err(error(
            path,
            "wrong_type",
            format!("{path} must be an integer"),
        )),
    }
}

fn parse_allocation(item: &Value, index: usize) -> Result<Allocation, Vec<FieldError>> {
    let at = |field: &str| format!("allocations[{index}].{field}");
    let Some(object) = item.as_object() else {
        return Err(vec![error(
            &format!("allocations[{index}]"),
            "not_an_object",
            "an allocation is an object",
        )]);
    };
    let mut errors = Vec::new();
    for name in object.keys() {
        if !["allocation_id", "account", "quantity"].contains(&name.as_str()) {
            errors.push(error(
                &at(name),
                "unknown_field",
                format!("unknown field {name:?}"),
            ));
        }
    }
    let text = |name: &str, errors: &mut Vec<FieldError>| match object.get(name) {
        Some(Value::String(raw)) => Some(raw.clone()),
        None | Some(Value::Null) => {
            errors.push(error(&at(name), "missing", format!("{name} is required")));
            None
        }
        Some(_) => {
            errors.push(error(
                &at(name),
                "wrong_type",
                format!("{name} must be a string"),
            ));
            None
        }
    };
    let allocation_id = text("allocation_id", &mut errors).and_then(|raw| {
        TradeRef::parse(&raw)
            .map(String::from)
            .map_err(|e| errors.push(error(&at("allocation_id"), e.code, e.message)))
            .ok()
    });
    let account = text("account", &mut errors).and_then(|raw| {
        AccountId::parse(&raw)
            .map_err(|e| errors.push(error(&at("account"), e.code, e.message)))
            .ok()
    });
    let quantity = match object.get("quantity") {
        None | Some(Value::Null) => {
            errors.push(error(&at("quantity"), "missing", "quantity is required"));
            None
        }
        Some(value) => integer_at(value, &at("quantity"), Quantity::new)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    match (errors.is_empty(), allocation_id, account, quantity) {
        (true, Some(allocation_id), Some(account), Some(quantity)) => Ok(Allocation {
            allocation_id,
            account,
            quantity,
        }),
        _ => Err(errors),
    }
}

/// The trade blocks of a batch body: an array of blocks, or `{"trade_blocks": [...]}`, with at
/// least one and at most `max`. Each block is then parsed on its own.
pub fn batch_items(raw: &Value, max: usize) -> Result<&[Value], FieldError> {
    let refuse = |code: &str, message: String| FieldError {
        field: "trade_blocks".to_owned(),
        code: code.to_owned(),
        message,
    };
    let items = match raw {
        Value::Array(items) => items,
        Value::Object(object) => match object.get("trade_blocks") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(refuse(
                    "missing",
                    "trade_blocks must be an array of trade blocks".to_owned(),
                ))
            }
        },
        _ => {
            return Err(refuse(
                "wrong_type",
                "a batch is an array of trade blocks".to_owned(),
            ))
        }
    };
    if items.is_empty() {
        return Err(refuse(
            "empty",
            "a batch needs at least one trade block".to_owned(),
        ));
    }
    if items.len() > max {
        return Err(refuse(
            "too_many",
            format!(
                "a batch holds at most {max} trade blocks, this one has {}",
                items.len()
            ),
        ));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn im() -> ParticipantId {
        ParticipantId::parse("IM-ALPHA").unwrap()
    }
    fn broker() -> ParticipantId {
        ParticipantId::parse("BR-NORTH").unwrap()
    }

    fn sample() -> Value {
        json!({
            "trade_ref": "T-20261123-000123",
            "im_id": "IM-ALPHA",
            "broker_id": "BR-NORTH",
            "side": "BUY",
            "security": "US0378331005",
            "quantity": 1000,
            "price": "187.2500",
            "currency": "USD",
            "trade_date": "2026-11-23",
            "settlement_date": "2026-11-24",
            "allocations": [
                {"allocation_id": "1", "account": "FUND-001", "quantity": 600},
                {"allocation_id": "2", "account": "FUND-002", "quantity": 400}
            ]
        })
    }

    fn codes(raw: &Value, sender: &ParticipantId) -> Vec<(String, String)> {
        TradeBlock::parse(raw, sender)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    fn with(field: &str, value: Value) -> Value {
        let mut raw = sample();
        raw[field] = value;
        raw
    }

    #[test]
    fn the_design_sample_is_valid() {
        let block = TradeBlock::parse(&sample(), &im()).unwrap();
        assert_eq!(block.version, Version::FIRST);
        assert_eq!(block.role_of(&im()), LegRole::Im);
        assert_eq!(block.role_of(&broker()), LegRole::Broker);
        assert_eq!(block.allocations.len(), 2);
    }

    #[test]
    fn a_block_survives_a_serde_round_trip() {
        let block = TradeBlock::parse(&sample(), &im()).unwrap();
        let json = serde_json::to_value(&block).unwrap();
        assert_eq!(json["price"], "187.2500");
        assert_eq!(TradeBlock::parse(&json, &im()).unwrap(), block);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                with("security", json!("US0378331006")),
                "security",
                "invalid_isin_check_digit",
            ),
            (
                with("price", json!(187.25)),
                "price",
                "not_a_decimal_string",
            ),
            (with("price", json!("-1.00")), "price", "not_positive"),
            (with("quantity", json!(0)), "quantity", "not_positive"),
            (with("quantity", json!(-5)), "quantity", "not_positive"),
            (with("quantity", json!(10.5)), "quantity", "not_an_integer"),
            (with("quantity", json!("1000")), "quantity", "wrong_type"),
            (with("side", json!("HOLD")), "side", "invalid_side"),
            (
                with("trade_date", json!("23/11/2026")),
                "trade_date",
                "invalid_date",
            ),
            // A signed year (fuzzer, trade_block): chrono takes it; Keel does not.
            (
                with("trade_date", json!("-026-11-23")),
                "trade_date",
                "invalid_date",
            ),
            (
                with("trade_date", json!("+026-11-23")),
                "trade_date",
                "invalid_date",
            ),
            (
                with("settlement_date", json!("2026-11-4")),
                "settlement_date",
                "invalid_date",
            ),
            (
                with("settlement_date", json!("2026-11-22")),
                "settlement_date",
                "before_trade_date",
            ),
            (
                with("quantity", json!(999)),
                "allocations",
                "quantity_mismatch",
            ),
            (with("version", json!(0)), "version", "not_positive"),
            (with("quantiy", json!(1)), "quantiy", "unknown_field"),
            (
                with("broker_id", json!("IM-ALPHA")),
                "broker_id",
                "same_as_im",
            ),
        ];
        for (raw, field, code) in cases {
            let found = codes(&raw, &im());
            assert!(
                found.contains(&(field.to_owned(), code.to_owned())),
                "{field}/{code} not in {found:?}"
            );
        }
    }

    #[test]
    fn every_missing_field_is_reported_at_once() {
        let found = codes(&json!({}), &im());
        for field in [
            "trade_ref",
            "im_id",
            "broker_id",
            "side",
            "security",
            "quantity",
            "price",
            "currency",
        ] {
            assert!(
                found.contains(&(field.to_owned(), "missing".to_owned())),
                "{field} in {found:?}"
            );
        }
    }

    #[test]
    fn the_sender_must_be_a_party() {
        let stranger = ParticipantId::parse("BR-SOUTH").unwrap();
        assert_eq!(
            codes(&sample(), &stranger),
            vec![("sender".to_owned(), "sender_not_party".to_owned())]
        );
    }

    #[test]
    fn only_the_broker_may_omit_allocations() {
        let mut raw = sample();
        raw.as_object_mut().unwrap().remove("allocations");
        assert!(TradeBlock::parse(&raw, &broker()).is_ok());
        assert_eq!(
            codes(&raw, &im()),
            vec![("allocations".to_owned(), "required".to_owned())]
        );
    }

    #[test]
    fn allocation_errors_carry_their_index() {
        let mut raw = sample();
        raw["allocations"][1]["quantity"] = json!(0);
        raw["allocations"][0]["account"] = json!("");
        let found = codes(&raw, &im());
        assert!(
            found.contains(&(
                "allocations[1].quantity".to_owned(),
                "not_positive".to_owned()
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&("allocations[0].account".to_owned(), "empty".to_owned())),
            "{found:?}"
        );
    }

    #[test]
    fn a_non_object_is_refused() {
        assert_eq!(
            codes(&json!([1, 2]), &im()),
            vec![(String::new(), "not_an_object".to_owned())]
        );
    }

    proptest! {
        #[test]
        fn allocations_are_accepted_exactly_when_they_sum_to_the_block(
            parts in proptest::collection::vec(1u64..10_000, 1..10),
            delta in -2i64..=2,
        ) {
            let total: u64 = parts.iter().sum();
            let block_quantity = (total as i64 + delta).max(1) as u64;
            let mut raw = sample();
            raw["quantity"] = json!(block_quantity);
            raw["allocations"] = Value::Array(parts.iter().enumerate().map(|(i, q)| json!({
                "allocation_id": (i + 1).to_string(), "account": format!("FUND-{i:03}"), "quantity": q
            })).collect());
            prop_assert_eq!(TradeBlock::parse(&raw, &im()).is_ok(), block_quantity == total);
        }

        #[test]
        fn arbitrary_json_never_panics(raw in any::<String>()) {
            if let Ok(value) = serde_json::from_str::<Value>(&raw) {
                let _ = TradeBlock::parse(&value, &im());
            }
        }
    }
}
