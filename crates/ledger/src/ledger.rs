use std::collections::HashMap;

use keel_domain::{AccountId, ParticipantId};
use rust_decimal::Decimal;

use crate::{postings_for, AccountKind, Asset, Instruction, Posting, ReferenceData};

/// Why an instruction did not settle. Its text is the reason both parties are told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementFailure {
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    #[error("account {account} is a {kind} account, not a fund")]
    NotAFund {
        account: AccountId,
        kind: AccountKind,
    },
    #[error("account {account} belongs to {owner}, not to {im}")]
    NotOwned {
        account: AccountId,
        owner: ParticipantId,
        im: ParticipantId,
    },
    #[error("broker {0} has no settlement accounts in the reference data")]
    UnknownBroker(ParticipantId),
    #[error("insufficient {} in {account}: needs {needed} {}, has {available}", what(asset), asset.code())]
    Insufficient {
        account: AccountId,
        asset: Asset,
        needed: Decimal,
        available: Decimal,
    },
}

fn what(asset: &Asset) -> &'static str {
    match asset {
        Asset::Cash(_) => "cash",
        Asset::Security(_) => "securities",
    }
}

/// Positions by account and asset; an absent position is zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    positions: HashMap<(AccountId, Asset), Decimal>,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_positions(
        positions: impl IntoIterator<Item = (AccountId, Asset, Decimal)>,
    ) -> Self {
        Self {
            positions: positions
                .into_iter()
                .map(|(account, asset, amount)| ((account, asset), amount))
                .collect(),
        }
    }

    /// Opens every account at its opening balances.
    pub fn opened(reference: &ReferenceData) -> Self {
        Self::with_positions(
            reference
                .openings()
                .map(|(account, asset, amount)| (account.clone(), asset, amount)),
        )
    }

    pub fn position(&self, account: &AccountId, asset: &Asset) -> Decimal {
        self.positions
            .get(&(account.clone(), asset.clone()))
            .copied()
            .unwrap_or_default()
    }

    pub fn positions(&self) -> impl Iterator<Item = (&AccountId, &Asset, Decimal)> {
        self.positions
            .iter()
            .map(|((account, asset), amount)| (account, asset, *amount))
    }

    /// Settles one instruction: posts it if every position it lowers stays at or above zero (or its
    /// account may go negative), and returns the postings. Otherwise nothing changes.
    pub fn settle(
        &mut self,
        instruction: &Instruction,
        reference: &ReferenceData,
    ) -> Result<Vec<Posting>, SettlementFailure> {
        let postings = postings_for(instruction, reference)?;
        // Net effect per position, in posting order so the first shortfall named is the first posted.
        let mut effects: Vec<((AccountId, Asset), Decimal)> = Vec::new();
        for posting in &postings {
            let key = (posting.account.clone(), posting.asset.clone());
            match effects.iter_mut().find(|(k, _)| *k == key) {
                Some((_, net)) => *net += posting.amount,
                None => effects.push((key, posting.amount)),
            }
        }
        for ((account, asset), net) in &effects {
            let available = self.position(account, asset);
            if *net < Decimal::ZERO
                && available + net < Decimal::ZERO
                && !reference.allows_negative(account)
            {
                return Err(SettlementFailure::Insufficient {
                    account: account.clone(),
                    asset: asset.clone(),
                    needed: -*net,
                    available,
                });
            }
        }
        for (key, net) in effects {
            *self.positions.entry(key).or_default() += net;
        }
        Ok(postings)
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::Side;

    use super::*;
    use crate::tests_support::{instruction, reference};

    #[test]
    fn a_fund_without_cash_cannot_buy_and_nothing_moves() {
        let reference = reference();
        let mut ledger = Ledger::opened(&reference);
        let before = ledger.clone();
        let buy = instruction(Side::Buy, "IM-ALPHA-FUND-999", 10, "5.0000");
        let error = ledger.settle(&buy, &reference).unwrap_err();
        assert_eq!(
            error.to_string(),
            "insufficient cash in IM-ALPHA-FUND-999: needs 50.03 USD, has 0"
        );
        assert_eq!(ledger, before);
    }

    #[test]
    fn a_fund_without_the_security_cannot_sell() {
        let reference = reference();
        let mut ledger = Ledger::opened(&reference);
        let sell = instruction(Side::Sell, "IM-ALPHA-FUND-999", 10, "5.0000");
        let error = ledger.settle(&sell, &reference).unwrap_err();
        assert_eq!(
            error.to_string(),
            "insufficient securities in IM-ALPHA-FUND-999: needs 10 US0378331005, has 0"
        );
    }

    #[test]
    fn an_account_allowed_to_go_negative_may() {
        let reference = reference();
        let mut ledger = Ledger::opened(&reference);
        // BR-SOUTH-SETTLE holds no securities but may go short.
        let mut buy = instruction(Side::Buy, "IM-ALPHA-FUND-001", 10, "5.0000");
        buy.broker_id = ParticipantId::parse("BR-SOUTH").unwrap();
        ledger.settle(&buy, &reference).unwrap();
        let apple = Asset::Security(keel_domain::Isin::parse("US0378331005").unwrap());
        assert_eq!(
            ledger.position(&AccountId::parse("BR-SOUTH-SETTLE").unwrap(), &apple),
            Decimal::from(-10)
        );
    }

    #[test]
    fn settling_moves_exactly_the_postings() {
        let reference = reference();
        let mut ledger = Ledger::opened(&reference);
        let before = ledger.clone();
        let buy = instruction(Side::Buy, "IM-ALPHA-FUND-001", 600, "187.2500");
        let postings = ledger.settle(&buy, &reference).unwrap();
        for posting in &postings {
            let moved = ledger.position(&posting.account, &posting.asset)
                - before.position(&posting.account, &posting.asset);
            let expected: Decimal = postings
                .iter()
                .filter(|p| p.account == posting.account && p.asset == posting.asset)
                .map(|p| p.amount)
                .sum();
            assert_eq!(moved, expected);
        }
    }
}
