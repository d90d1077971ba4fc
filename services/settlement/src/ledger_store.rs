//! The ledger's tables: positions in, postings and positions out. Every writer holds one
//! transaction-scoped advisory lock first, so the consumer and the settlement cycle never interleave
//! their funds checks and position writes.

use std::collections::BTreeSet;

use keel_domain::AccountId;
use keel_ledger::{Asset, Instruction, Ledger, Posting, ReferenceData};
use keel_lifecycle::AllocationOutcome;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// The ledger lock's key ("keeledg" in ASCII), the same in every writer.
const LEDGER_LOCK: i64 = 0x6b65_656c_6c65_6467;

pub async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK)
        .fetch_one(conn)
        .await?;
    Ok(())
}

/// Settles instructions against the positions it loaded, and writes back what it posted.
pub struct Settler<'r> {
    reference: &'r ReferenceData,
    ledger: Ledger,
    postings: Vec<(Uuid, Posting)>,
    touched: BTreeSet<(AccountId, Asset)>,
}

impl<'r> Settler<'r> {
    /// Takes the ledger lock and loads every position of the accounts these instructions can touch.
    pub async fn load<'i>(
        conn: &mut PgConnection,
        reference: &'r ReferenceData,
        instructions: impl Iterator<Item = &'i Instruction>,
    ) -> Result<Self, sqlx::Error> {
        lock(conn).await?;
        let mut accounts = BTreeSet::new();
        for instruction in instructions {
            accounts.insert(instruction.fund_account.to_string());
            if let Some(broker) = reference.broker(&instruction.broker_id) {
                accounts.insert(broker.settlement_account.to_string());
                accounts.insert(broker.fee_account.to_string());
            }
        }
        let accounts: Vec<String> = accounts.into_iter().collect();
        let rows = sqlx::query!(
            "SELECT account_id, asset_kind, asset_code, amount FROM settlement.positions
             WHERE account_id = ANY($1)",
            &accounts
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut positions = Vec::with_capacity(rows.len());
        for row in rows {
            let account =
                AccountId::parse(&row.account_id).map_err(|e| sqlx::Error::Decode(e.into()))?;
            let asset = Asset::from_parts(&row.asset_kind, &row.asset_code)
                .map_err(|e| sqlx::Error::Decode(e.into()))?;
            positions.push((account, asset, row.amount));
        }
        Ok(Self {
            reference,
            ledger: Ledger::with_positions(positions),
            postings: Vec::new(),
            touched: BTreeSet::new(),
        })
    }

    /// Settles one instruction, or says why it cannot, as matching is told.
    pub fn settle(&mut self, instruction: &Instruction) -> AllocationOutcome {
        match self.ledger.settle(instruction, self.reference) {
            Ok(postings) => {
                for posting in postings {
                    self.touched
                        .insert((posting.account.clone(), posting.asset.clone()));
                    self.postings.push((instruction.instruction_id, posting));
                }
                AllocationOutcome::Settled
            }
            Err(failure) => AllocationOutcome::Failed {
                reason: failure.to_string(),
            },
        }
    }

    /// Inserts the postings and writes the new value of every position they moved. Call after the
    /// instructions themselves are stored (postings reference them).
    pub async fn save(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.postings.is_empty() {
            return Ok(());
        }
        let postings = &self.postings;
        let instruction_ids: Vec<Uuid> = postings.iter().map(|(id, _)| *id).collect();
        let accounts: Vec<String> = postings
            .iter()
            .map(|(_, p)| p.account.to_string())
            .collect();
        let kinds: Vec<&str> = postings.iter().map(|(_, p)| p.asset.kind()).collect();
        let codes: Vec<&str> = postings.iter().map(|(_, p)| p.asset.code()).collect();
        let amounts: Vec<Decimal> = postings.iter().map(|(_, p)| p.amount).collect();
        sqlx::query!(
            "INSERT INTO settlement.postings (instruction_id, account_id, asset_kind, asset_code, amount)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[])",
            &instruction_ids,
            &accounts,
            &kinds as &[&str],
            &codes as &[&str],
            &amounts
        )
        .execute(&mut *conn)
        .await?;

        let touched: Vec<&(AccountId, Asset)> = self.touched.iter().collect();
        let accounts: Vec<String> = touched.iter().map(|(a, _)| a.to_string()).collect();
        let kinds: Vec<&str> = touched.iter().map(|(_, asset)| asset.kind()).collect();
        let codes: Vec<&str> = touched.iter().map(|(_, asset)| asset.code()).collect();
        let amounts: Vec<Decimal> = touched
            .iter()
            .map(|(a, asset)| self.ledger.position(a, asset))
            .collect();
        sqlx::query!(
            "INSERT INTO settlement.positions (account_id, asset_kind, asset_code, amount)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[])
             ON CONFLICT (account_id, asset_kind, asset_code)
             DO UPDATE SET amount = EXCLUDED.amount, updated_at = now()",
            &accounts,
            &kinds as &[&str],
            &codes as &[&str],
            &amounts
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
