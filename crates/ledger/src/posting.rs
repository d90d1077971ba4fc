use keel_domain::{AccountId, Currency, Isin, ParticipantId, Price, Quantity, Side};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AccountKind, Asset, ReferenceData, SettlementFailure};

/// Cash amounts are kept to this many decimals (cents). Consideration and commission are rounded to
/// it, half away from zero, before anything is posted.
pub const CASH_DECIMALS: u32 = 2;

/// One allocation of a matched trade, to settle delivery versus payment. `side` is the IM's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    pub instruction_id: Uuid,
    pub im_id: ParticipantId,
    pub broker_id: ParticipantId,
    pub side: Side,
    pub security: Isin,
    pub quantity: Quantity,
    pub price: Price,
    pub currency: Currency,
    pub fund_account: AccountId,
}

/// One line of the ledger: `amount` of `asset` into `account` (negative: out of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: AccountId,
    pub asset: Asset,
    pub amount: Decimal,
}

/// Price times quantity, in whole cents.
pub fn consideration(price: Price, quantity: Quantity) -> Decimal {
    (price.value() * Decimal::from(quantity.get()))
        .round_dp_with_strategy(CASH_DECIMALS, RoundingStrategy::MidpointAwayFromZero)
}

fn commission(consideration: Decimal, bps: Decimal) -> Decimal {
    (consideration * bps / Decimal::from(10_000))
        .round_dp_with_strategy(CASH_DECIMALS, RoundingStrategy::MidpointAwayFromZero)
}

/// The postings that settle `instruction`: securities one way and the consideration the other,
/// between the fund and the broker's settlement account, then the commission from the fund to the
/// broker's fee account. They net to zero per asset by construction: every amount is posted twice,
/// once with each sign.
pub fn postings_for(
    instruction: &Instruction,
    reference: &ReferenceData,
) -> Result<Vec<Posting>, SettlementFailure> {
    let fund = reference
        .account(&instruction.fund_account)
        .ok_or_else(|| SettlementFailure::UnknownAccount(instruction.fund_account.clone()))?;
    if fund.kind != AccountKind::Fund {
        return Err(SettlementFailure::NotAFund {
            account: fund.account.clone(),
            kind: fund.kind,
        });
    }
    if fund.owner != instruction.im_id {
        return Err(SettlementFailure::NotOwned {
            account: fund.account.clone(),
            owner: fund.owner.clone(),
            im: instruction.im_id.clone(),
        });
    }
    let broker = reference
        .broker(&instruction.broker_id)
        .ok_or_else(|| SettlementFailure::UnknownBroker(instruction.broker_id.clone()))?;

    let security = Asset::Security(instruction.security.clone());
    let cash = Asset::Cash(instruction.currency.clone());
    let shares = Decimal::from(instruction.quantity.get());
    let consideration = consideration(instruction.price, instruction.quantity);
    let fee = commission(consideration, broker.commission_bps);

    // (from, to, asset, amount)
    let (securities_from, securities_to) = match instruction.side {
        Side::Buy => (&broker.settlement_account, &fund.account),
        Side::Sell => (&fund.account, &broker.settlement_account),
    };
    let mut transfers = vec![
        (securities_from, securities_to, &security, shares),
        (securities_to, securities_from, &cash, consideration),
    ];
    if !fee.is_zero() {
        transfers.push((&fund.account, &broker.fee_account, &cash, fee));
    }
    Ok(transfers
        .into_iter()
        .flat_map(|(from, to, asset, amount)| {
            [
                Posting {
                    account: from.clone(),
                    asset: asset.clone(),
                    amount: -amount,
                },
                Posting {
                    account: to.clone(),
                    asset: asset.clone(),
                    amount,
                },
            ]
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_support::{instruction, reference};

    fn posted(postings: &[Posting], account: &str, asset: &Asset) -> Decimal {
        postings
            .iter()
            .filter(|p| p.account.as_str() == account && &p.asset == asset)
            .map(|p| p.amount)
            .sum()
    }

    #[test]
    fn a_buy_delivers_securities_to_the_fund_against_cash_and_pays_commission() {
        let reference = reference();
        // 600 at 187.25 = 112,350.00; 5 bps = 56.175 -> 56.18.
        let buy = instruction(Side::Buy, "IM-ALPHA-FUND-001", 600, "187.2500");
        let postings = postings_for(&buy, &reference).unwrap();
        let usd = Asset::Cash(Currency::parse("USD").unwrap());
        let apple = Asset::Security(Isin::parse("US0378331005").unwrap());
        assert_eq!(
            posted(&postings, "IM-ALPHA-FUND-001", &apple),
            Decimal::from(600)
        );
        assert_eq!(
            posted(&postings, "BR-NORTH-SETTLE", &apple),
            Decimal::from(-600)
        );
        assert_eq!(
            posted(&postings, "IM-ALPHA-FUND-001", &usd),
            "-112406.18".parse().unwrap()
        );
        assert_eq!(
            posted(&postings, "BR-NORTH-SETTLE", &usd),
            "112350.00".parse().unwrap()
        );
        assert_eq!(
            posted(&postings, "BR-NORTH-FEES", &usd),
            "56.18".parse().unwrap()
        );
    }

    #[test]
    fn a_sell_delivers_securities_to_the_broker_and_the_fund_still_pays_commission() {
        let reference = reference();
        let sell = instruction(Side::Sell, "IM-ALPHA-FUND-001", 100, "10.0000");
        let postings = postings_for(&sell, &reference).unwrap();
        let usd = Asset::Cash(Currency::parse("USD").unwrap());
        let apple = Asset::Security(Isin::parse("US0378331005").unwrap());
        assert_eq!(
            posted(&postings, "IM-ALPHA-FUND-001", &apple),
            Decimal::from(-100)
        );
        // 1,000.00 received less 0.50 commission.
        assert_eq!(
            posted(&postings, "IM-ALPHA-FUND-001", &usd),
            "999.50".parse().unwrap()
        );
        assert_eq!(
            posted(&postings, "BR-NORTH-FEES", &usd),
            "0.50".parse().unwrap()
        );
    }

    #[test]
    fn the_fund_must_be_the_ims_own_fund() {
        let reference = reference();
        let cases = [
            ("NO-SUCH-FUND", "unknown account NO-SUCH-FUND"),
            ("IM-BETA-FUND-001", "belongs to IM-BETA, not to IM-ALPHA"),
            (
                "BR-NORTH-SETTLE",
                "is a broker_settlement account, not a fund",
            ),
        ];
        for (fund, expected) in cases {
            let error =
                postings_for(&instruction(Side::Buy, fund, 1, "1"), &reference).unwrap_err();
            assert!(error.to_string().contains(expected), "{fund}: {error}");
        }
    }

    #[test]
    fn consideration_rounds_half_away_from_zero_to_cents() {
        let price = Price::parse("0.0050").unwrap();
        assert_eq!(
            consideration(price, Quantity::new(1).unwrap()),
            "0.01".parse().unwrap()
        );
        assert_eq!(
            consideration(price, Quantity::new(3).unwrap()),
            "0.02".parse().unwrap()
        );
    }
}
