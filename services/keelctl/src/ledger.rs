use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use anyhow::Context;
use keel_domain::AccountId;
use keel_ledger::{Asset, LedgerSnapshot, RecordedPosting};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

pub async fn verify(database_url: &str, as_json: bool) -> ExitCode {
    let snapshot = match read_snapshot(database_url).await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            if as_json {
                println!("{}", json!({"ok": false, "error": format!("{error:#}")}));
            } else {
                eprintln!("keelctl: cannot check the ledger: {error:#}");
            }
            return ExitCode::from(2);
        }
    };
    match keel_ledger::verify(&snapshot) {
        Ok(verified) => {
            if as_json {
                println!("{}", json!({"ok": true, "verified": verified}));
            } else {
                println!(
                    "ledger verified: {} accounts, {} settled instructions, {} postings, {} positions, {} assets; \
                     every instruction balances, every position equals its opening balance plus its postings, \
                     every asset is conserved, nothing is negative where not allowed",
                    verified.accounts, verified.instructions, verified.postings, verified.positions, verified.assets
                );
            }
            ExitCode::SUCCESS
        }
        Err(violation) => {
            if as_json {
                println!(
                    "{}",
                    json!({"ok": false, "violation": violation.to_string()})
                );
            } else {
                eprintln!("ledger violation: {violation}");
            }
            ExitCode::from(1)
        }
    }
}

/// The ledger check as one line: what was verified, or the first violation.
pub async fn check(database_url: &str) -> Result<String, String> {
    let snapshot = read_snapshot(database_url)
        .await
        .map_err(|e| format!("cannot check the ledger: {e:#}"))?;
    keel_ledger::verify(&snapshot)
        .map(|v| {
            format!(
                "ledger balances: {} settled instructions, {} postings, {} positions",
                v.instructions, v.postings, v.positions
            )
        })
        .map_err(|violation| format!("ledger violation: {violation}"))
}

/// Reads the whole ledger in one repeatable-read, read-only transaction, so the parts agree.
async fn read_snapshot(database_url: &str) -> anyhow::Result<LedgerSnapshot> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(database_url)
        .await
        .with_context(|| format!("connecting to {}", redact(database_url)))?;
    let mut conn = pool.acquire().await?;
    let conn: &mut PgConnection = &mut conn;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;

    let accounts: Vec<(String, bool)> =
        sqlx::query_as("SELECT account_id, allow_negative FROM settlement.accounts")
            .fetch_all(&mut *tx)
            .await
            .context("reading settlement.accounts (has the settlement service ever started?)")?;
    let openings: Vec<(String, String, String, Decimal)> = sqlx::query_as(
        "SELECT account_id, asset_kind, asset_code, amount FROM settlement.opening_balances",
    )
    .fetch_all(&mut *tx)
    .await?;
    let postings: Vec<(Uuid, String, String, String, Decimal)> = sqlx::query_as(
        "SELECT instruction_id, account_id, asset_kind, asset_code, amount
         FROM settlement.postings ORDER BY posting_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let positions: Vec<(String, String, String, Decimal)> = sqlx::query_as(
        "SELECT account_id, asset_kind, asset_code, amount FROM settlement.positions",
    )
    .fetch_all(&mut *tx)
    .await?;
    let settled: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT instruction_id FROM settlement.instructions WHERE status = 'SETTLED'",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let line = |account: &str, kind: &str, code: &str| -> anyhow::Result<(AccountId, Asset)> {
        Ok((
            AccountId::parse(account).with_context(|| format!("stored account {account:?}"))?,
            Asset::from_parts(kind, code).with_context(|| format!("stored asset {kind} {code}"))?,
        ))
    };
    let mut snapshot = LedgerSnapshot {
        accounts: HashMap::new(),
        openings: Vec::with_capacity(openings.len()),
        postings: Vec::with_capacity(postings.len()),
        positions: Vec::with_capacity(positions.len()),
        settled: Some(settled.into_iter().map(|(id,)| id).collect::<HashSet<_>>()),
    };
    for (account, allow_negative) in accounts {
        snapshot.accounts.insert(
            AccountId::parse(&account).with_context(|| format!("stored account {account:?}"))?,
            allow_negative,
        );
    }
    for (account, kind, code, amount) in openings {
        let (account, asset) = line(&account, &kind, &code)?;
        snapshot.openings.push((account, asset, amount));
    }
    for (instruction_id, account, kind, code, amount) in postings {
        let (account, asset) = line(&account, &kind, &code)?;
        snapshot.postings.push(RecordedPosting {
            instruction_id,
            account,
            asset,
            amount,
        });
    }
    for (account, kind, code, amount) in positions {
        let (account, asset) = line(&account, &kind, &code)?;
        snapshot.positions.push((account, asset, amount));
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
