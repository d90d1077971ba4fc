use std::collections::{BTreeMap, HashMap, HashSet};

use keel_domain::AccountId;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::Asset;

/// A posting as stored: which instruction made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPosting {
    pub instruction_id: Uuid,
    pub account: AccountId,
    pub asset: Asset,
    pub amount: Decimal,
}

/// Everything the ledger stores, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct LedgerSnapshot {
    /// Every account, with whether it may go negative.
    pub accounts: HashMap<AccountId, bool>,
    pub openings: Vec<(AccountId, Asset, Decimal)>,
    /// In the order they were posted.
    pub postings: Vec<RecordedPosting>,
    pub positions: Vec<(AccountId, Asset, Decimal)>,
    /// The instructions recorded as settled, when known: then each must have postings, and no other
    /// instruction may have any.
    pub settled: Option<HashSet<Uuid>>,
}

/// A way the ledger is wrong. Its text names the place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("{place} names account {account}, which does not exist")]
    UnknownAccount { place: String, account: AccountId },
    #[error("instruction {instruction_id} has postings but is not recorded as settled")]
    PostedButNotSettled { instruction_id: Uuid },
    #[error("instruction {instruction_id} is recorded as settled but has no postings")]
    SettledWithoutPostings { instruction_id: Uuid },
    #[error("instruction {instruction_id} does not balance in {asset}: its postings net to {net}")]
    Unbalanced {
        instruction_id: Uuid,
        asset: Asset,
        net: Decimal,
    },
    #[error("position of {account} in {asset} is {recorded}, but its opening balance and postings sum to {expected}")]
    PositionMismatch {
        account: AccountId,
        asset: Asset,
        recorded: Decimal,
        expected: Decimal,
    },
    #[error("{asset} is not conserved: positions total {total}, opening balances total {opening}")]
    NotConserved {
        asset: Asset,
        total: Decimal,
        opening: Decimal,
    },
    #[error("position of {account} in {asset} is {amount}, and the account may not go negative")]
    Negative {
        account: AccountId,
        asset: Asset,
        amount: Decimal,
    },
}

/// What a clean verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub accounts: usize,
    pub instructions: usize,
    pub postings: usize,
    pub positions: usize,
    pub assets: usize,
}

/// Checks, in this order, and stops at the first violation:
/// 1. every opening, posting and position names a known account;
/// 2. postings belong to settled instructions, and every settled instruction has postings (when the
///    snapshot knows which settled);
/// 3. every instruction's postings net to zero per asset;
/// 4. every position equals its opening balance plus its postings;
/// 5. every asset is conserved: positions total what the opening balances total;
/// 6. no position is negative where its account does not allow it.
pub fn verify(snapshot: &LedgerSnapshot) -> Result<Verified, Violation> {
    let known = |place: &str, account: &AccountId| {
        if snapshot.accounts.contains_key(account) {
            Ok(())
        } else {
            Err(Violation::UnknownAccount {
                place: place.to_owned(),
                account: account.clone(),
            })
        }
    };
    for (account, asset, _) in &snapshot.openings {
        known(&format!("the opening balance in {asset}"), account)?;
    }
    for posting in &snapshot.postings {
        known(
            &format!("a posting of instruction {}", posting.instruction_id),
            &posting.account,
        )?;
    }
    for (account, asset, _) in &snapshot.positions {
        known(&format!("the position in {asset}"), account)?;
    }

    // Per instruction, per asset, in the order instructions first posted.
    let mut order: Vec<Uuid> = Vec::new();
    let mut nets: HashMap<Uuid, BTreeMap<&Asset, Decimal>> = HashMap::new();
    for posting in &snapshot.postings {
        let net = nets.entry(posting.instruction_id).or_insert_with(|| {
            order.push(posting.instruction_id);
            BTreeMap::new()
        });
        *net.entry(&posting.asset).or_default() += posting.amount;
    }
    if let Some(settled) = &snapshot.settled {
        if let Some(instruction_id) = order.iter().find(|id| !settled.contains(id)) {
            return Err(Violation::PostedButNotSettled {
                instruction_id: *instruction_id,
            });
        }
        let mut without: Vec<&Uuid> = settled.iter().filter(|id| !nets.contains_key(id)).collect();
        without.sort();
        if let Some(instruction_id) = without.first() {
            return Err(Violation::SettledWithoutPostings {
                instruction_id: **instruction_id,
            });
        }
    }
    for instruction_id in &order {
        if let Some((asset, net)) = nets[instruction_id].iter().find(|(_, net)| !net.is_zero()) {
            return Err(Violation::Unbalanced {
                instruction_id: *instruction_id,
                asset: (*asset).clone(),
                net: *net,
            });
        }
    }

    let mut expected: BTreeMap<(&AccountId, &Asset), Decimal> = BTreeMap::new();
    for (account, asset, amount) in &snapshot.openings {
        *expected.entry((account, asset)).or_default() += amount;
    }
    for posting in &snapshot.postings {
        *expected
            .entry((&posting.account, &posting.asset))
            .or_default() += posting.amount;
    }
    let mut recorded: BTreeMap<(&AccountId, &Asset), Decimal> = BTreeMap::new();
    for (account, asset, amount) in &snapshot.positions {
        *recorded.entry((account, asset)).or_default() += amount;
    }
    let keys: std::collections::BTreeSet<_> = expected.keys().chain(recorded.keys()).collect();
    for key in keys {
        let want = expected.get(key).copied().unwrap_or_default();
        let have = recorded.get(key).copied().unwrap_or_default();
        if want != have {
            return Err(Violation::PositionMismatch {
                account: key.0.clone(),
                asset: key.1.clone(),
                recorded: have,
                expected: want,
            });
        }
    }

    let mut totals: BTreeMap<&Asset, (Decimal, Decimal)> = BTreeMap::new();
    for (_, asset, amount) in &snapshot.positions {
        totals.entry(asset).or_default().0 += amount;
    }
    for (_, asset, amount) in &snapshot.openings {
        totals.entry(asset).or_default().1 += amount;
    }
    for (asset, (total, opening)) in &totals {
        if total != opening {
            return Err(Violation::NotConserved {
                asset: (*asset).clone(),
                total: *total,
                opening: *opening,
            });
        }
    }

    for ((account, asset), amount) in &recorded {
        if *amount < Decimal::ZERO && !snapshot.accounts[*account] {
            return Err(Violation::Negative {
                account: (*account).clone(),
                asset: (*asset).clone(),
                amount: *amount,
            });
        }
    }

    Ok(Verified {
        accounts: snapshot.accounts.len(),
        instructions: order.len(),
        postings: snapshot.postings.len(),
        positions: snapshot.positions.len(),
        assets: totals.len(),
    })
}
