//! Reference data and instructions shared by the unit and property tests.

use keel_domain::{AccountId, Currency, Isin, ParticipantId, Price, Quantity, Side};
use uuid::Uuid;

use crate::{Instruction, ReferenceData};

pub const REFERENCE: &str = r#"{
  "participants": [
    {"participant_id": "IM-ALPHA", "role": "im"},
    {"participant_id": "IM-BETA", "role": "im"},
    {"participant_id": "BR-NORTH", "role": "broker"},
    {"participant_id": "BR-SOUTH", "role": "broker"}
  ],
  "securities": [
    {"isin": "US0378331005", "name": "Apple Inc."},
    {"isin": "US5949181045", "name": "Microsoft Corp."}
  ],
  "brokers": [
    {"participant_id": "BR-NORTH", "commission_bps": "5", "settlement_account": "BR-NORTH-SETTLE", "fee_account": "BR-NORTH-FEES"},
    {"participant_id": "BR-SOUTH", "commission_bps": "0", "settlement_account": "BR-SOUTH-SETTLE", "fee_account": "BR-SOUTH-FEES"}
  ],
  "accounts": [
    {"account": "IM-ALPHA-FUND-001", "owner": "IM-ALPHA", "kind": "fund",
     "opening": {"cash": {"USD": "1000000.00"}, "securities": {"US0378331005": "10000"}}},
    {"account": "IM-ALPHA-FUND-999", "owner": "IM-ALPHA", "kind": "fund"},
    {"account": "IM-BETA-FUND-001", "owner": "IM-BETA", "kind": "fund",
     "opening": {"cash": {"USD": "500000.00", "EUR": "1000.00"}, "securities": {"US5949181045": "500"}}},
    {"account": "BR-NORTH-SETTLE", "owner": "BR-NORTH", "kind": "broker_settlement",
     "opening": {"cash": {"USD": "10000000.00"}, "securities": {"US0378331005": "100000", "US5949181045": "100000"}}},
    {"account": "BR-NORTH-FEES", "owner": "BR-NORTH", "kind": "broker_fees"},
    {"account": "BR-SOUTH-SETTLE", "owner": "BR-SOUTH", "kind": "broker_settlement", "allow_negative": true},
    {"account": "BR-SOUTH-FEES", "owner": "BR-SOUTH", "kind": "broker_fees"}
  ]
}"#;

pub fn reference() -> ReferenceData {
    ReferenceData::from_json(REFERENCE).expect("test reference data is valid")
}

/// IM-ALPHA buys or sells Apple through BR-NORTH, in USD.
pub fn instruction(side: Side, fund: &str, quantity: u64, price: &str) -> Instruction {
    Instruction {
        instruction_id: Uuid::new_v4(),
        im_id: ParticipantId::parse("IM-ALPHA").unwrap(),
        broker_id: ParticipantId::parse("BR-NORTH").unwrap(),
        side,
        security: Isin::parse("US0378331005").unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        price: Price::parse(price).unwrap(),
        currency: Currency::parse("USD").unwrap(),
        fund_account: AccountId::parse(fund).unwrap(),
    }
}
