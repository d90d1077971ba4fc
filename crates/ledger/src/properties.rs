//! Any sequence of instructions keeps the ledger balanced and conserves every asset.

use std::collections::{BTreeMap, HashMap};

use keel_domain::{AccountId, Currency, Isin, ParticipantId, Price, Quantity, Side};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::tests_support::reference;
use crate::{verify, Asset, Instruction, Ledger, LedgerSnapshot, RecordedPosting, ReferenceData};

const IMS: [&str; 2] = ["IM-ALPHA", "IM-BETA"];
const BROKERS: [&str; 3] = ["BR-NORTH", "BR-SOUTH", "BR-NOWHERE"];
const FUNDS: [&str; 5] = [
    "IM-ALPHA-FUND-001",
    "IM-ALPHA-FUND-999",
    "IM-BETA-FUND-001",
    "BR-NORTH-SETTLE",
    "NO-SUCH-FUND",
];
const SECURITIES: [&str; 2] = ["US0378331005", "US5949181045"];
const CURRENCIES: [&str; 2] = ["USD", "EUR"];

/// Mostly instructions that can settle (an IM's own fund, a known broker, dollars), some that cannot.
fn instruction() -> impl Strategy<Value = Instruction> {
    let settleable = (
        0..IMS.len(),
        0..2usize,
        0..SECURITIES.len(),
        any::<bool>(),
        1u64..2_000,
        1u64..2_000_000,
    )
        .prop_map(|(im, broker, security, buy, quantity, price)| {
            let fund = if im == 0 { 0 } else { 2 };
            (im, broker, fund, security, 0, buy, quantity, price)
        });
    let anything = (
        0..IMS.len(),
        0..BROKERS.len(),
        0..FUNDS.len(),
        0..SECURITIES.len(),
        0..CURRENCIES.len(),
        any::<bool>(),
        1u64..20_000,
        1u64..5_000_000,
    );
    prop_oneof![3 => settleable, 1 => anything].prop_map(
        |(im, broker, fund, security, currency, buy, quantity, price)| Instruction {
            instruction_id: Uuid::new_v4(),
            im_id: ParticipantId::parse(IMS[im]).unwrap(),
            broker_id: ParticipantId::parse(BROKERS[broker]).unwrap(),
            side: if buy { Side::Buy } else { Side::Sell },
            security: Isin::parse(SECURITIES[security]).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
            price: Price::parse(&Decimal::new(price as i64, 4).to_string()).unwrap(),
            currency: Currency::parse(CURRENCIES[currency]).unwrap(),
            fund_account: AccountId::parse(FUNDS[fund]).unwrap(),
        },
    )
}

/// Settles every instruction in turn, checking each step, and returns the snapshot at the end.
fn run(reference: &ReferenceData, instructions: &[Instruction]) -> (Ledger, LedgerSnapshot) {
    let mut ledger = Ledger::opened(reference);
    let mut postings = Vec::new();
    let mut settled = std::collections::HashSet::new();
    for instruction in instructions {
        let before = ledger.clone();
        match ledger.settle(instruction, reference) {
            Ok(posted) => {
                let mut net: BTreeMap<&Asset, Decimal> = BTreeMap::new();
                for posting in &posted {
                    *net.entry(&posting.asset).or_default() += posting.amount;
                }
                assert!(net.values().all(Decimal::is_zero), "unbalanced: {posted:?}");
                settled.insert(instruction.instruction_id);
                postings.extend(posted.into_iter().map(|p| RecordedPosting {
                    instruction_id: instruction.instruction_id,
                    account: p.account,
                    asset: p.asset,
                    amount: p.amount,
                }));
            }
            Err(_) => assert_eq!(ledger, before, "a failed instruction changed the ledger"),
        }
    }
    let snapshot = LedgerSnapshot {
        accounts: reference
            .accounts()
            .iter()
            .map(|a| (a.account.clone(), a.allow_negative))
            .collect(),
        openings: reference
            .openings()
            .map(|(account, asset, amount)| (account.clone(), asset, amount))
            .collect(),
        postings,
        positions: ledger
            .positions()
            .map(|(account, asset, amount)| (account.clone(), asset.clone(), amount))
            .collect(),
        settled: Some(settled),
    };
    (ledger, snapshot)
}

proptest! {
    #[test]
    fn any_sequence_balances_conserves_and_verifies(
        instructions in prop::collection::vec(instruction(), 0..60)
    ) {
        let reference = reference();
        let (ledger, snapshot) = run(&reference, &instructions);

        let mut totals: HashMap<Asset, Decimal> = HashMap::new();
        for (_, asset, amount) in ledger.positions() {
            *totals.entry(asset.clone()).or_default() += amount;
        }
        let mut opening: HashMap<Asset, Decimal> = HashMap::new();
        for (_, asset, amount) in reference.openings() {
            *opening.entry(asset).or_default() += amount;
        }
        for (asset, total) in &totals {
            prop_assert_eq!(*total, opening.get(asset).copied().unwrap_or_default(), "{}", asset);
        }
        for (account, asset, amount) in ledger.positions() {
            prop_assert!(
                amount >= Decimal::ZERO || reference.allows_negative(account),
                "{} went negative in {}", account, asset
            );
        }
        prop_assert!(verify(&snapshot).is_ok(), "{:?}", verify(&snapshot));
    }

    #[test]
    fn verify_catches_any_tampered_position(
        instructions in prop::collection::vec(instruction(), 1..30),
        pick in any::<prop::sample::Index>(),
        delta in prop_oneof![-1_000_000i64..0, 1i64..1_000_000],
    ) {
        let reference = reference();
        let (_, mut snapshot) = run(&reference, &instructions);
        let i = pick.index(snapshot.positions.len());
        snapshot.positions[i].2 += Decimal::new(delta, 2);
        prop_assert!(verify(&snapshot).is_err());
    }

    #[test]
    fn verify_catches_a_dropped_or_doubled_posting(
        instructions in prop::collection::vec(instruction(), 1..30),
        pick in any::<prop::sample::Index>(),
        doubled in any::<bool>(),
    ) {
        let reference = reference();
        let (_, mut snapshot) = run(&reference, &instructions);
        prop_assume!(!snapshot.postings.is_empty());
        let i = pick.index(snapshot.postings.len());
        if doubled {
            let copy = snapshot.postings[i].clone();
            snapshot.postings.push(copy);
        } else {
            snapshot.postings.remove(i);
        }
        prop_assert!(verify(&snapshot).is_err());
    }

    #[test]
    fn verify_catches_postings_of_an_instruction_not_recorded_as_settled(
        instructions in prop::collection::vec(instruction(), 1..30),
        pick in any::<prop::sample::Index>(),
    ) {
        let reference = reference();
        let (_, mut snapshot) = run(&reference, &instructions);
        prop_assume!(!snapshot.postings.is_empty());
        let victim = snapshot.postings[pick.index(snapshot.postings.len())].instruction_id;
        snapshot.settled.as_mut().unwrap().remove(&victim);
        prop_assert_eq!(
            verify(&snapshot),
            Err(crate::Violation::PostedButNotSettled { instruction_id: victim })
        );
    }
}
