//! Loads the reference-data file into the ledger's tables. Accounts, brokers and participants follow
//! the file; opening balances are set once and can never change, because conservation is checked
//! against them. A new opening balance (a new account, or a new asset) is added to its position.

use std::collections::HashMap;

use keel_ledger::{Asset, ReferenceData, Role};
use rust_decimal::Decimal;
use sqlx::PgConnection;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        source: keel_ledger::ReferenceError,
    },
    #[error(
        "opening balance of {account} in {asset} is {stored} in the ledger but {file} in the \
         reference data; opening balances cannot change once loaded"
    )]
    OpeningChanged {
        account: String,
        asset: Asset,
        stored: Decimal,
        file: Decimal,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub fn read(path: &str) -> Result<ReferenceData, LoadError> {
    let raw = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    ReferenceData::from_json(&raw).map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// Writes `reference` into the ledger's tables, in the caller's transaction.
pub async fn load(conn: &mut PgConnection, reference: &ReferenceData) -> Result<(), LoadError> {
    crate::ledger_store::lock(conn).await?;
    for participant in reference.participants() {
        let role = match participant.role {
            Role::Im => "im",
            Role::Broker => "broker",
        };
        sqlx::query!(
            "INSERT INTO settlement.participants (participant_id, role) VALUES ($1, $2)
             ON CONFLICT (participant_id) DO UPDATE SET role = EXCLUDED.role",
            participant.participant_id.as_str(),
            role
        )
        .execute(&mut *conn)
        .await?;
    }
    let accounts = reference.accounts();
    let ids: Vec<String> = accounts.iter().map(|a| a.account.to_string()).collect();
    let owners: Vec<String> = accounts.iter().map(|a| a.owner.to_string()).collect();
    let kinds: Vec<&str> = accounts.iter().map(|a| a.kind.as_str()).collect();
    let allow_negative: Vec<bool> = accounts.iter().map(|a| a.allow_negative).collect();
    sqlx::query!(
        "INSERT INTO settlement.accounts (account_id, owner, kind, allow_negative)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[])
         ON CONFLICT (account_id) DO UPDATE
         SET owner = EXCLUDED.owner, kind = EXCLUDED.kind, allow_negative = EXCLUDED.allow_negative",
        &ids,
        &owners,
        &kinds as &[&str],
        &allow_negative
    )
    .execute(&mut *conn)
    .await?;
    for broker in reference.brokers() {
        sqlx::query!(
            "INSERT INTO settlement.brokers (participant_id, commission_bps, settlement_account, fee_account)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (participant_id) DO UPDATE
             SET commission_bps = EXCLUDED.commission_bps,
                 settlement_account = EXCLUDED.settlement_account,
                 fee_account = EXCLUDED.fee_account",
            broker.participant_id.as_str(),
            broker.commission_bps,
            broker.settlement_account.as_str(),
            broker.fee_account.as_str()
        )
        .execute(&mut *conn)
        .await?;
    }
    let stored: HashMap<(String, String, String), Decimal> = sqlx::query!(
        "SELECT account_id, asset_kind, asset_code, amount FROM settlement.opening_balances"
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| ((row.account_id, row.asset_kind, row.asset_code), row.amount))
    .collect();
    let mut added: Vec<(String, Asset, Decimal)> = Vec::new();
    for (account, asset, amount) in reference.openings() {
        let key = (
            account.to_string(),
            asset.kind().to_owned(),
            asset.code().to_owned(),
        );
        match stored.get(&key) {
            Some(stored) if *stored == amount => {}
            Some(stored) => {
                return Err(LoadError::OpeningChanged {
                    account: account.to_string(),
                    asset,
                    stored: *stored,
                    file: amount,
                })
            }
            None => added.push((account.to_string(), asset, amount)),
        }
    }
    // A new opening balance is added to its position, which may already hold postings.
    let accounts: Vec<&str> = added.iter().map(|(a, _, _)| a.as_str()).collect();
    let kinds: Vec<&str> = added.iter().map(|(_, asset, _)| asset.kind()).collect();
    let codes: Vec<&str> = added.iter().map(|(_, asset, _)| asset.code()).collect();
    let amounts: Vec<Decimal> = added.iter().map(|(_, _, amount)| *amount).collect();
    sqlx::query!(
        "WITH added AS (
             INSERT INTO settlement.opening_balances (account_id, asset_kind, asset_code, amount)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[])
             RETURNING account_id, asset_kind, asset_code, amount)
         INSERT INTO settlement.positions (account_id, asset_kind, asset_code, amount)
         SELECT * FROM added
         ON CONFLICT (account_id, asset_kind, asset_code)
         DO UPDATE SET amount = positions.amount + EXCLUDED.amount, updated_at = now()",
        &accounts as &[&str],
        &kinds as &[&str],
        &codes as &[&str],
        &amounts
    )
    .execute(&mut *conn)
    .await?;
    tracing::info!(
        accounts = reference.accounts().len(),
        brokers = reference.brokers().len(),
        new_opening_balances = added.len(),
        "reference data loaded"
    );
    Ok(())
}
