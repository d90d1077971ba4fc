//! A trade block screened against the reference data before it is accepted: a trade that could
//! only fail at settlement for its reference data (an unknown security, an unknown account, a fund
//! the IM does not own, a broker with no settlement accounts) is refused at the door with a 422
//! naming the field, instead of being matched and then failed days later.

use keel_domain::{FieldError, TradeBlock};

use crate::{AccountKind, ReferenceData};

impl ReferenceData {
    /// Everything in `block` the reference data does not allow, each naming its field (empty when
    /// the block may be accepted). Balances are not screened: a fund short of cash or securities
    /// fails at settlement, on the positions of that day.
    pub fn screen(&self, block: &TradeBlock) -> Vec<FieldError> {
        let mut refusals = Vec::new();
        let mut refuse = |field: String, code: &str, message: String| {
            refusals.push(FieldError {
                field,
                code: code.to_owned(),
                message,
            })
        };
        if self.security(&block.security).is_none() {
            refuse(
                "security".to_owned(),
                "unknown_security",
                format!("{} is not a security in the reference data", block.security),
            );
        }
        if self.broker(&block.broker_id).is_none() {
            refuse(
                "broker_id".to_owned(),
                "no_settlement_accounts",
                format!(
                    "{} has no settlement accounts in the reference data",
                    block.broker_id
                ),
            );
        }
        for (index, allocation) in block.allocations.iter().enumerate() {
            let field = format!("allocations[{index}].account");
            match self.account(&allocation.account) {
                None => refuse(
                    field,
                    "unknown_account",
                    format!(
                        "{} is not an account in the reference data",
                        allocation.account
                    ),
                ),
                Some(account) if account.owner != block.im_id => refuse(
                    field,
                    "foreign_account",
                    format!(
                        "{} belongs to {}, not to {}",
                        allocation.account, account.owner, block.im_id
                    ),
                ),
                Some(account) if account.kind != AccountKind::Fund => refuse(
                    field,
                    "not_a_fund",
                    format!(
                        "{} is a {} account; allocations go to funds",
                        allocation.account, account.kind
                    ),
                ),
                Some(_) => {}
            }
        }
        refusals
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::{ParticipantId, TradeBlock};
    use serde_json::json;

    use crate::tests_support::reference;

    fn block(edit: impl FnOnce(&mut serde_json::Value)) -> TradeBlock {
        let mut raw = json!({
            "trade_ref": "T-1", "im_id": "IM-ALPHA", "broker_id": "BR-NORTH", "side": "BUY",
            "security": "US0378331005", "quantity": 1000, "price": "187.25", "currency": "USD",
            "trade_date": "2026-11-23", "settlement_date": "2026-11-24",
            "allocations": [
                {"allocation_id": "1", "account": "IM-ALPHA-FUND-001", "quantity": 600},
                {"allocation_id": "2", "account": "IM-ALPHA-FUND-999", "quantity": 400}
            ]
        });
        edit(&mut raw);
        TradeBlock::parse(&raw, &ParticipantId::parse("IM-ALPHA").unwrap()).unwrap()
    }

    fn refusals(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<(String, String)> {
        reference()
            .screen(&block(edit))
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    fn pair(field: &str, code: &str) -> (String, String) {
        (field.to_owned(), code.to_owned())
    }

    #[test]
    fn a_block_within_the_reference_data_passes() {
        assert!(refusals(|_| {}).is_empty());
        // An unfunded fund is the IM's own: it fails at settlement, on that day's positions.
        assert!(
            refusals(|b| b["allocations"][0]["account"] = "IM-ALPHA-FUND-999".into()).is_empty()
        );
    }

    #[test]
    fn each_reference_problem_names_its_field() {
        assert_eq!(
            refusals(|b| b["security"] = "US88160R1014".into()),
            [pair("security", "unknown_security")]
        );
        assert_eq!(
            refusals(|b| b["allocations"][1]["account"] = "IM-BETA-FUND-001".into()),
            [pair("allocations[1].account", "foreign_account")]
        );
        assert_eq!(
            refusals(|b| b["allocations"][0]["account"] = "NO-SUCH-FUND".into()),
            [pair("allocations[0].account", "unknown_account")]
        );
        assert_eq!(
            refusals(|b| b["allocations"][0]["account"] = "BR-NORTH-FEES".into()),
            [pair("allocations[0].account", "foreign_account")]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = refusals(|b| {
            b["security"] = "US88160R1014".into();
            b["allocations"][0]["account"] = "NO-SUCH-FUND".into();
            b["allocations"][1]["account"] = "IM-BETA-FUND-001".into();
        });
        assert_eq!(
            found,
            [
                pair("security", "unknown_security"),
                pair("allocations[0].account", "unknown_account"),
                pair("allocations[1].account", "foreign_account"),
            ]
        );
    }
}
