//! The settlement cycle: settles instructions whose settlement date has come, which arrived before it
//! (a trade matched today for settlement tomorrow waits here, and can be cancelled until then).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_ledger::ReferenceData;
use keel_messages::SettlementInstruction;
use keel_safestore::{Outgoing, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::book::Status;
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

async fn settle_due(pool: &PgPool, reference: &ReferenceData) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    ledger_store::lock(&mut tx).await?;
    let now = Utc::now();
    let rows: Vec<(sqlx::types::Json<SettlementInstruction>,)> = sqlx::query_as(
        "SELECT body FROM instructions
         WHERE status = 'PENDING' AND settlement_date <= $1
         ORDER BY received_at, instruction_id LIMIT $2 FOR UPDATE",
    )
    .bind(now.date_naive())
    .bind(BATCH as i64)
    .fetch_all(&mut *tx)
    .await?;
    let due: Vec<SettlementInstruction> = rows.into_iter().map(|(body,)| body.0).collect();
    if due.is_empty() {
        return Ok(0);
    }
    let mut settler =
        Settler::load(&mut tx, reference, due.iter().filter_map(|m| m.to_settle())).await?;

    let mut results = Vec::new();
    let mut ids: Vec<Uuid> = Vec::new();
    let mut statuses: Vec<&str> = Vec::new();
    let mut reasons: Vec<Option<String>> = Vec::new();
    for message in &due {
        let Some(instruction) = message.to_settle() else {
            continue;
        };
        let outcome = settler.settle(instruction);
        let (status, reason) = Status::of(&outcome);
        status.count();
        ids.push(instruction.instruction_id);
        statuses.push(status.as_str());
        reasons.push(reason);
        results.extend(message.result(outcome, now));
    }
    sqlx::query(
        "UPDATE instructions AS i SET status = u.s, reason = u.r, decided_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS u(id, s, r)
         WHERE i.instruction_id = u.id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&reasons)
    .execute(&mut *tx)
    .await?;
    settler.save(&mut tx).await?;
    let outgoing: Vec<Outgoing> = results.iter().map(Outgoing::of).collect();
    keel_safestore::enqueue(&mut tx, &outgoing).await?;
    tx.commit().await?;
    Ok(ids.len())
}
