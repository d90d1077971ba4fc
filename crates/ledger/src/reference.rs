use std::collections::{BTreeMap, HashMap};
use std::fmt;

use keel_domain::{AccountId, Currency, Isin, ParticipantId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Asset, CASH_DECIMALS};

/// A participant's role, as in `participants.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Im,
    Broker,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub participant_id: ParticipantId,
    pub role: Role,
}

/// What an account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// An IM's fund: allocations settle into it.
    Fund,
    /// A broker's account that delivers and receives against funds.
    BrokerSettlement,
    /// Where a broker's commission is paid.
    BrokerFees,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Fund => "fund",
            AccountKind::BrokerSettlement => "broker_settlement",
            AccountKind::BrokerFees => "broker_fees",
        }
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account's opening balances: cash per currency, securities per ISIN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Opening {
    pub cash: BTreeMap<Currency, Decimal>,
    pub securities: BTreeMap<Isin, Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub account: AccountId,
    pub owner: ParticipantId,
    pub kind: AccountKind,
    /// May any position of this account go below zero? Off unless said.
    #[serde(default)]
    pub allow_negative: bool,
    #[serde(default)]
    pub opening: Opening,
}

/// A security participants may trade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    pub isin: Isin,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broker {
    pub participant_id: ParticipantId,
    /// Commission in basis points of the consideration, paid by the fund to `fee_account`.
    pub commission_bps: Decimal,
    pub settlement_account: AccountId,
    pub fee_account: AccountId,
}

/// Why reference data cannot be used. Names the first thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference data is not valid JSON of the expected shape: {0}")]
    Shape(String),
    #[error("{what} {id} appears more than once")]
    Duplicate { what: &'static str, id: String },
    #[error("{context}: {participant} is not a participant")]
    UnknownParticipant {
        context: String,
        participant: ParticipantId,
    },
    #[error("{context}: {participant} is not {role}")]
    WrongRole {
        context: String,
        participant: ParticipantId,
        role: &'static str,
    },
    #[error("{context}: account {account} {problem}")]
    BadAccount {
        context: String,
        account: AccountId,
        problem: String,
    },
    #[error("account {account}: opening position in {security}, which is not in securities")]
    UnlistedSecurity { account: AccountId, security: Isin },
    #[error("broker {broker}: commission_bps {bps} is not between 0 and 10000")]
    BadCommission { broker: ParticipantId, bps: Decimal },
    #[error("account {account}: opening {asset} of {amount} {problem}")]
    BadOpening {
        account: AccountId,
        asset: Asset,
        amount: Decimal,
        problem: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReferenceData {
    participants: Vec<Participant>,
    securities: Vec<Security>,
    brokers: Vec<Broker>,
    accounts: Vec<Account>,
}

/// Checked reference data: every owner is a participant of the right role, every broker has its two
/// accounts, opening balances are whole shares and whole cents and not negative where not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawReferenceData")]
pub struct ReferenceData {
    participants: Vec<Participant>,
    securities: Vec<Security>,
    brokers: Vec<Broker>,
    accounts: Vec<Account>,
    #[serde(skip)]
    security_index: HashMap<Isin, usize>,
    #[serde(skip)]
    account_index: HashMap<AccountId, usize>,
    #[serde(skip)]
    broker_index: HashMap<ParticipantId, usize>,
}

impl ReferenceData {
    pub fn from_json(raw: &str) -> Result<Self, ReferenceError> {
        serde_json::from_str(raw).map_err(|error| ReferenceError::Shape(error.to_string()))
    }

    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }
    pub fn brokers(&self) -> &[Broker] {
        &self.brokers
    }
    pub fn securities(&self) -> &[Security] {
        &self.securities
    }
    pub fn security(&self, isin: &Isin) -> Option<&Security> {
        self.security_index.get(isin).map(|&i| &self.securities[i])
    }
    /// The accounts `owner` owns, in reference-data order.
    pub fn accounts_of<'a>(
        &'a self,
        owner: &'a ParticipantId,
    ) -> impl Iterator<Item = &'a Account> {
        self.accounts.iter().filter(move |a| a.owner == *owner)
    }
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.account_index.get(id).map(|&i| &self.accounts[i])
    }
    pub fn broker(&self, id: &ParticipantId) -> Option<&Broker> {
        self.broker_index.get(id).map(|&i| &self.brokers[i])
    }
    pub fn allows_negative(&self, id: &AccountId) -> bool {
        self.account(id).is_some_and(|a| a.allow_negative)
    }

    /// Every opening balance, as (account, asset, amount).
    pub fn openings(&self) -> impl Iterator<Item = (&AccountId, Asset, Decimal)> {
        self.accounts.iter().flat_map(|account| {
            let cash = account
                .opening
                .cash
                .iter()
                .map(|(c, amount)| (Asset::Cash(c.clone()), *amount));
            let securities = account
                .opening
                .securities
                .iter()
                .map(|(s, amount)| (Asset::Security(s.clone()), *amount));
            cash.chain(securities)
                .map(move |(asset, amount)| (&account.account, asset, amount))
        })
    }
}

impl TryFrom<RawReferenceData> for ReferenceData {
    type Error = ReferenceError;

    fn try_from(raw: RawReferenceData) -> Result<Self, ReferenceError> {
        let mut roles = HashMap::new();
        for p in &raw.participants {
            if roles.insert(p.participant_id.clone(), p.role).is_some() {
                return Err(ReferenceError::Duplicate {
                    what: "participant",
                    id: p.participant_id.to_string(),
                });
            }
        }
        let check_role = |context: String, participant: &ParticipantId, role: Role| match roles
            .get(participant)
        {
            None => Err(ReferenceError::UnknownParticipant {
                context,
                participant: participant.clone(),
            }),
            Some(found) if *found != role => Err(ReferenceError::WrongRole {
                context,
                participant: participant.clone(),
                role: match role {
                    Role::Im => "an investment manager",
                    Role::Broker => "a broker",
                },
            }),
            Some(_) => Ok(()),
        };

        let mut security_index = HashMap::new();
        for (i, security) in raw.securities.iter().enumerate() {
            if security_index.insert(security.isin.clone(), i).is_some() {
                return Err(ReferenceError::Duplicate {
                    what: "security",
                    id: security.isin.to_string(),
                });
            }
        }

        let mut account_index = HashMap::new();
        for (i, account) in raw.accounts.iter().enumerate() {
            if account_index.insert(account.account.clone(), i).is_some() {
                return Err(ReferenceError::Duplicate {
                    what: "account",
                    id: account.account.to_string(),
                });
            }
            let role = match account.kind {
                AccountKind::Fund => Role::Im,
                AccountKind::BrokerSettlement | AccountKind::BrokerFees => Role::Broker,
            };
            check_role(
                format!("owner of account {}", account.account),
                &account.owner,
                role,
            )?;
            if let Some(security) = account
                .opening
                .securities
                .keys()
                .find(|isin| !security_index.contains_key(*isin))
            {
                return Err(ReferenceError::UnlistedSecurity {
                    account: account.account.clone(),
                    security: security.clone(),
                });
            }
        }

        let mut broker_index = HashMap::new();
        for (i, broker) in raw.brokers.iter().enumerate() {
            let id = &broker.participant_id;
            if broker_index.insert(id.clone(), i).is_some() {
                return Err(ReferenceError::Duplicate {
                    what: "broker",
                    id: id.to_string(),
                });
            }
            check_role(format!("broker {id}"), id, Role::Broker)?;
            if broker.commission_bps < Decimal::ZERO
                || broker.commission_bps > Decimal::from(10_000)
            {
                return Err(ReferenceError::BadCommission {
                    broker: id.clone(),
                    bps: broker.commission_bps,
                });
            }
            for (account, kind) in [
                (&broker.settlement_account, AccountKind::BrokerSettlement),
                (&broker.fee_account, AccountKind::BrokerFees),
            ] {
                let context = format!("broker {id}");
                let problem = match account_index.get(account).map(|&i| &raw.accounts[i]) {
                    None => Some("is not in accounts".to_owned()),
                    Some(found) if found.owner != *id => {
                        Some(format!("belongs to {}", found.owner))
                    }
                    Some(found) if found.kind != kind => {
                        Some(format!("is a {} account, not {kind}", found.kind))
                    }
                    Some(_) => None,
                };
                if let Some(problem) = problem {
                    return Err(ReferenceError::BadAccount {
                        context,
                        account: account.clone(),
                        problem,
                    });
                }
            }
        }

        let data = ReferenceData {
            participants: raw.participants,
            securities: raw.securities,
            brokers: raw.brokers,
            accounts: raw.accounts,
            security_index,
            account_index,
            broker_index,
        };
        for (account, asset, amount) in data.openings() {
            let problem = match &asset {
                Asset::Cash(_) if amount.round_dp(CASH_DECIMALS) != amount => {
                    Some("has more than two decimals")
                }
                Asset::Security(_) if !amount.fract().is_zero() => Some("is not a whole number"),
                _ if amount < Decimal::ZERO && !data.allows_negative(account) => {
                    Some("is negative, and the account does not allow negative positions")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(ReferenceError::BadOpening {
                    account: account.clone(),
                    asset,
                    amount,
                    problem,
                });
            }
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_support::REFERENCE;

    fn broken(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut raw: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
        edit(&mut raw);
        ReferenceData::from_json(&raw.to_string())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_test_reference_data_is_valid_and_indexed() {
        let data = ReferenceData::from_json(REFERENCE).unwrap();
        let north = data
            .broker(&ParticipantId::parse("BR-NORTH").unwrap())
            .unwrap();
        assert_eq!(north.commission_bps, Decimal::from(5));
        assert!(data.allows_negative(&AccountId::parse("BR-SOUTH-SETTLE").unwrap()));
        assert!(!data.allows_negative(&AccountId::parse("BR-NORTH-SETTLE").unwrap()));
        assert_eq!(data.openings().count(), 8);
    }

    #[test]
    fn bad_reference_data_is_refused_naming_what_is_wrong() {
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|r| {
                    let first = r["accounts"][0].clone();
                    r["accounts"].as_array_mut().unwrap().push(first);
                }),
                "account IM-ALPHA-FUND-001 appears more than once",
            ),
            (
                Box::new(|r| r["accounts"][0]["owner"] = "BR-NORTH".into()),
                "owner of account IM-ALPHA-FUND-001: BR-NORTH is not an investment manager",
            ),
            (
                Box::new(|r| r["accounts"][0]["owner"] = "IM-NOBODY".into()),
                "IM-NOBODY is not a participant",
            ),
            (
                Box::new(|r| r["brokers"][0]["fee_account"] = "BR-NORTH-SETTLE".into()),
                "account BR-NORTH-SETTLE is a broker_settlement account, not broker_fees",
            ),
            (
                Box::new(|r| r["brokers"][1]["settlement_account"] = "BR-NORTH-SETTLE".into()),
                "account BR-NORTH-SETTLE belongs to BR-NORTH",
            ),
            (
                Box::new(|r| r["brokers"][0]["commission_bps"] = "-1".into()),
                "commission_bps -1 is not between 0 and 10000",
            ),
            (
                Box::new(|r| r["accounts"][0]["opening"]["cash"]["USD"] = "-5.00".into()),
                "is negative",
            ),
            (
                Box::new(|r| {
                    r["accounts"][0]["opening"]["securities"]["US0378331005"] = "1.5".into()
                }),
                "is not a whole number",
            ),
            (
                Box::new(|r| r["accounts"][0]["opening"]["cash"]["USD"] = "1.005".into()),
                "has more than two decimals",
            ),
            (
                Box::new(|r| {
                    r["accounts"][0]["opening"]["securities"]["US0378331006"] = "1".into()
                }),
                "check digit",
            ),
            (
                Box::new(|r| {
                    r["accounts"][0]["opening"]["securities"]["US88160R1014"] = "1".into()
                }),
                "opening position in US88160R1014, which is not in securities",
            ),
            (
                Box::new(|r| {
                    let first = r["securities"][0].clone();
                    r["securities"].as_array_mut().unwrap().push(first);
                }),
                "security US0378331005 appears more than once",
            ),
        ];
        for (edit, expected) in cases {
            let error = broken(edit);
            assert!(
                error.contains(expected),
                "expected {expected:?} in {error:?}"
            );
        }
    }
}
