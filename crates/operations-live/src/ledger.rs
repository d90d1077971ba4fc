//! The settlement ledger as stored, read whole in one consistent snapshot for keel-ledger's checks.

use std::collections::{HashMap, HashSet};

use keel_domain::AccountId;
use keel_ledger::{Asset, LedgerSnapshot, RecordedPosting, Verified, Violation};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum LedgerReadError {
    #[error("connecting to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("reading {what}: {source}")]
    Query {
        what: &'static str,
        source: sqlx::Error,
    },
    #[error("stored {0} is not valid")]
    Stored(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerCheckError {
    #[error("cannot check the ledger: {0}")]
    Read(#[from] LedgerReadError),
    #[error("ledger violation: {0}")]
    Violation(#[from] Violation),
}

/// Reads the ledger and checks it whole: what was verified, or the first violation.
pub async fn check(database_url: &str) -> Result<Verified, LedgerCheckError> {
    let snapshot = read_snapshot(database_url).await?;
    Ok(keel_ledger::verify(&snapshot)?)
}

/// Reads the whole ledger in one repeatable-read, read-only transaction, so the parts agree.
pub async fn read_snapshot(database_url: &str) -> Result<LedgerSnapshot, LedgerReadError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(database_url)
        .await
        .map_err(|source| LedgerReadError::Connect {
            url: redact(database_url),
            source,
        })?;
    let query = |what: &'static str| move |source| LedgerReadError::Query { what, source };
    let mut conn = pool.acquire().await.map_err(query("a connection"))?;
    let conn: &mut PgConnection = &mut conn;
    let mut tx = conn.begin().await.map_err(query("a transaction"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(query("a transaction"))?;

    let accounts = sqlx::query!("SELECT account_id, allow_negative FROM settlement.accounts")
        .fetch_all(&mut *tx)
        .await
        .map_err(query(
            "settlement.accounts (has the settlement service ever started?)",
        ))?;
    let openings = sqlx::query!(
        "SELECT account_id, asset_kind, asset_code, amount FROM settlement.opening_balances"
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(query("settlement.opening_balances"))?;
    let postings = sqlx::query!(
        "SELECT instruction_id, account_id, asset_kind, asset_code, amount
         FROM settlement.postings ORDER BY posting_id"
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(query("settlement.postings"))?;
    let positions =
        sqlx::query!("SELECT account_id, asset_kind, asset_code, amount FROM settlement.positions")
            .fetch_all(&mut *tx)
            .await
            .map_err(query("settlement.positions"))?;
    let settled = sqlx::query_scalar!(
        "SELECT instruction_id FROM settlement.instructions WHERE status = 'SETTLED'"
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(query("settlement.instructions"))?;
    tx.commit().await.map_err(query("a transaction"))?;

    let account_id = |account: &str| {
        AccountId::parse(account)
            .map_err(|e| LedgerReadError::Stored(format!("account {account:?}: {e}")))
    };
    let line =
        |account: &str, kind: &str, code: &str| -> Result<(AccountId, Asset), LedgerReadError> {
            Ok((
                account_id(account)?,
                Asset::from_parts(kind, code)
                    .map_err(|e| LedgerReadError::Stored(format!("asset {kind} {code}: {e}")))?,
            ))
        };
    let mut snapshot = LedgerSnapshot {
        accounts: HashMap::new(),
        openings: Vec::with_capacity(openings.len()),
        postings: Vec::with_capacity(postings.len()),
        positions: Vec::with_capacity(positions.len()),
        settled: Some(settled.into_iter().collect::<HashSet<Uuid>>()),
    };
    for account in accounts {
        snapshot
            .accounts
            .insert(account_id(&account.account_id)?, account.allow_negative);
    }
    for opening in openings {
        let (account, asset) = line(
            &opening.account_id,
            &opening.asset_kind,
            &opening.asset_code,
        )?;
        snapshot.openings.push((account, asset, opening.amount));
    }
    for posting in postings {
        let (account, asset) = line(
            &posting.account_id,
            &posting.asset_kind,
            &posting.asset_code,
        )?;
        snapshot.postings.push(RecordedPosting {
            instruction_id: posting.instruction_id,
            account,
            asset,
            amount: posting.amount,
        });
    }
    for position in positions {
        let (account, asset) = line(
            &position.account_id,
            &position.asset_kind,
            &position.asset_code,
        )?;
        snapshot.positions.push((account, asset, position.amount));
    }
    Ok(snapshot)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
