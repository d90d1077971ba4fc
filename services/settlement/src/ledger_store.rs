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
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LEDGER_LOCK)
        .execute(conn)
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
        let rows: Vec<(String, String, String, Decimal)> = sqlx::query_as(
            "SELECT account_id, asset_kind, asset_code, amount FROM positions WHERE account_id = ANY($1)",
        )
        .bind(&accounts)
        .fetch_all(&mut *conn)
        .await?;
        let mut positions = Vec::with_capacity(rows.len());
        for (account, kind, code, amount) in rows {
            let account = AccountId::parse(&account).map_err(|e| sqlx::Error::Decode(e.into()))?;
            let asset =
                Asset::from_parts(&kind, &code).map_err(|e| sqlx::Error::Decode(e.into()))?;
            positions.push((account, asset, amount));
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
        sqlx::query(
            "INSERT INTO postings (instruction_id, account_id, asset_kind, asset_code, amount)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[])",
        )
        .bind(postings.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            postings
                .iter()
                .map(|(_, p)| p.account.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            postings
                .iter()
                .map(|(_, p)| p.asset.kind())
                .collect::<Vec<_>>(),
        )
        .bind(
            postings
                .iter()
                .map(|(_, p)| p.asset.code().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(postings.iter().map(|(_, p)| p.amount).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;

        let touched: Vec<&(AccountId, Asset)> = self.touched.iter().collect();
        sqlx::query(
            "INSERT INTO positions (account_id, asset_kind, asset_code, amount)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[])
             ON CONFLICT (account_id, asset_kind, asset_code)
             DO UPDATE SET amount = EXCLUDED.amount, updated_at = now()",
        )
        .bind(
            touched
                .iter()
                .map(|(a, _)| a.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            touched
                .iter()
                .map(|(_, asset)| asset.kind())
                .collect::<Vec<_>>(),
        )
        .bind(
            touched
                .iter()
                .map(|(_, asset)| asset.code().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(
            touched
                .iter()
                .map(|(a, asset)| self.ledger.position(a, asset))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
