//! The settlement cycle: settles instructions whose settlement date has come, which arrived before it
//! (a trade matched today for settlement tomorrow waits here, and can be cancelled until then).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_domain::TradeId;
use keel_ledger::ReferenceData;
use keel_messages::{AllocationResult, SettlementResult};
use keel_safestore::{Outgoing, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::book::{count, status_of, BookedInstruction};
use crate::ledger_store::{self, Settler};

const BATCH: usize = 500;

pub async fn run(
    pool: PgPool,
    reference: Arc<ReferenceData>,
    every: Duration,
    relay_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    keel_service_kit::run_in_rounds(
        "settlement cycle",
        every,
        BATCH,
        relay_wake,
        shutdown,
        || settle_due(&pool, &reference),
    )
    .await
}

/// Settles the pending instructions of up to `BATCH` trades whose settlement date has come, whole
/// trades at a time, so each trade gets one answer.
async fn settle_due(pool: &PgPool, reference: &ReferenceData) -> Result<usize, sqlx::Error> {
    let now = Utc::now();
    // Most rounds find nothing due: look before taking the ledger lock, which would make the
    // consumer's next batch wait for nothing.
    let due = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM settlement.instructions
                          WHERE status = 'PENDING' AND settlement_date <= $1) AS "due!""#,
        now.date_naive()
    )
    .fetch_one(pool)
    .await?;
    if !due {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    ledger_store::lock(&mut tx).await?;
    let due: Vec<BookedInstruction> = sqlx::query_scalar!(
        r#"SELECT body AS "body: sqlx::types::Json<BookedInstruction>" FROM settlement.instructions
           WHERE status = 'PENDING' AND trade_id IN (
               SELECT DISTINCT trade_id FROM settlement.instructions
               WHERE status = 'PENDING' AND settlement_date <= $1 LIMIT $2)
           ORDER BY received_at, trade_id, instruction_id FOR UPDATE"#,
        now.date_naive(),
        BATCH as i64
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|body| body.0)
    .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let instructions: Vec<keel_ledger::Instruction> = due
        .iter()
        .map(|booked| keel_ledger::Instruction::from(&booked.allocation.instruction))
        .collect();
    let mut settler = Settler::load(&mut tx, reference, instructions.iter()).await?;

    let mut answers: Vec<SettlementResult> = Vec::new();
    let mut answer_of: HashMap<TradeId, usize> = HashMap::new();
    let mut ids: Vec<Uuid> = Vec::new();
    let mut statuses: Vec<&str> = Vec::new();
    let mut reasons: Vec<Option<String>> = Vec::new();
    for (booked, instruction) in due.iter().zip(&instructions) {
        let outcome = settler.settle(instruction);
        let (status, reason) = status_of(&outcome);
        count(status);
        ids.push(instruction.instruction_id);
        statuses.push(status.as_str());
        reasons.push(reason);
        let index = *answer_of.entry(booked.trade_id).or_insert_with(|| {
            answers.push(SettlementResult::Allocations {
                trade_id: booked.trade_id,
                match_key: booked.match_key.clone(),
                results: Vec::new(),
                at: now,
            });
            answers.len() - 1
        });
        if let SettlementResult::Allocations { results, .. } = &mut answers[index] {
            results.push(AllocationResult {
                allocation_id: booked.allocation.allocation_id.clone(),
                instruction_id: instruction.instruction_id,
                outcome: (&outcome).into(),
            });
        }
    }
    sqlx::query!(
        "UPDATE settlement.instructions AS i SET status = u.s, reason = u.r, decided_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS u(id, s, r)
         WHERE i.instruction_id = u.id",
        &ids,
        &statuses as &[&str],
        &reasons as &[Option<String>]
    )
    .execute(&mut *tx)
    .await?;
    settler.save(&mut tx).await?;
    let outgoing: Vec<Outgoing> = answers.iter().map(Outgoing::of).collect();
    keel_safestore::enqueue(&mut tx, &outgoing).await?;
    tx.commit().await?;
    Ok(answers.len())
}

/// Instructions still PENDING after their settlement date: the cycle should have settled or failed
/// them on it.
pub async fn pending_past_settlement_date(pool: PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "stuck!" FROM settlement.instructions
           WHERE status = 'PENDING' AND settlement_date < current_date"#
    )
    .fetch_one(&pool)
    .await
}
