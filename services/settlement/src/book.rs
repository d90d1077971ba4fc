//! The instructions table as a batch sees it: the ledger crate's [`Book`] of the batch's trades
//! (what is known, what it decides), plus what the batch adds or changes, to write back.

use chrono::{DateTime, Utc};
use keel_domain::{MatchKey, ParticipantId, TradeId};
use keel_ledger::desk::{self, Arrival, CancelAnswer, InstructionStatus};
use keel_lifecycle::AllocationOutcome;
use keel_messages::AllocationInstruction;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

/// The status an outcome leaves its instruction in, with the failure's reason.
pub fn status_of(outcome: &AllocationOutcome) -> (InstructionStatus, Option<String>) {
    match outcome {
        AllocationOutcome::Settled => (InstructionStatus::Settled, None),
        AllocationOutcome::Failed { reason } => (InstructionStatus::Failed, Some(reason.clone())),
    }
}

pub fn count(status: InstructionStatus) {
    metrics::counter!("keel_settlement_instructions_total", "status" => status.as_str())
        .increment(1);
}

/// One allocation's instruction as the book keeps it (the `body` column): what the settlement cycle
/// needs to settle it later and to answer for its trade.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookedInstruction {
    pub trade_id: TradeId,
    pub match_key: MatchKey,
    pub settlement_date: chrono::NaiveDate,
    #[serde(flatten)]
    pub allocation: AllocationInstruction,
}

struct New {
    instruction_id: Uuid,
    trade_id: TradeId,
    allocation_id: String,
    settlement_date: chrono::NaiveDate,
    reason: Option<String>,
    body: serde_json::Value,
}

#[derive(Default)]
pub struct Book {
    desk: desk::Book,
    new: Vec<New>,
    /// Instructions a cancel withdrew.
    withdrawn: Vec<Uuid>,
    new_cancellations: Vec<(TradeId, ParticipantId, DateTime<Utc>)>,
}

impl Book {
    /// Loads (and row-locks) the instructions of these trades, and which of them were cancelled.
    pub async fn load(conn: &mut PgConnection, trades: &[TradeId]) -> Result<Self, sqlx::Error> {
        let ids: Vec<Uuid> = trades.iter().map(|t| t.0).collect();
        let rows = sqlx::query!(
            "SELECT instruction_id, trade_id, allocation_id, status FROM settlement.instructions
             WHERE trade_id = ANY($1) ORDER BY instruction_id FOR UPDATE",
            &ids
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut book = Book::default();
        for row in rows {
            let status = InstructionStatus::parse(&row.status).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown instruction status {:?}", row.status).into())
            })?;
            book.desk.record(
                TradeId(row.trade_id),
                row.instruction_id,
                &row.allocation_id,
                status,
            );
        }
        let cancelled = sqlx::query_scalar!(
            "SELECT trade_id FROM settlement.cancellations WHERE trade_id = ANY($1)",
            &ids
        )
        .fetch_all(&mut *conn)
        .await?;
        for trade_id in cancelled {
            book.desk.record_cancelled(TradeId(trade_id));
        }
        Ok(book)
    }

    /// What to do with a newly arrived allocation's instruction `today` (keel_ledger::desk).
    pub fn arrival(&self, booked: &BookedInstruction, today: chrono::NaiveDate) -> Arrival {
        self.desk.arrival(
            booked.trade_id,
            booked.allocation.instruction.instruction_id,
            booked.settlement_date,
            today,
        )
    }

    /// Records a newly received allocation's instruction with what became of it.
    pub fn add(
        &mut self,
        booked: &BookedInstruction,
        status: InstructionStatus,
        reason: Option<String>,
    ) {
        let instruction_id = booked.allocation.instruction.instruction_id;
        let allocation_id = booked.allocation.allocation_id.clone();
        self.desk
            .record(booked.trade_id, instruction_id, &allocation_id, status);
        self.new.push(New {
            instruction_id,
            trade_id: booked.trade_id,
            allocation_id,
            settlement_date: booked.settlement_date,
            reason,
            body: serde_json::to_value(booked).expect("instruction serializes"),
        });
    }

    /// Answers a cancel of the trade (keel_ledger::desk); a confirmed one is written back.
    pub fn cancel(
        &mut self,
        trade_id: TradeId,
        requested_by: ParticipantId,
        at: DateTime<Utc>,
    ) -> CancelAnswer {
        let (answer, withdrawn) = self.desk.cancel(trade_id);
        if answer == CancelAnswer::Confirmed {
            // Rows of this batch are inserted with their final status, which the update (of rows
            // still PENDING) then leaves alone; stored ones are updated.
            self.withdrawn.extend(withdrawn);
            self.new_cancellations.push((trade_id, requested_by, at));
        }
        answer
    }

    /// Writes new instructions, changed statuses and cancellations.
    pub async fn save(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let new = &self.new;
        if !new.is_empty() {
            let status = |n: &New| {
                self.desk
                    .status(n.instruction_id)
                    .expect("a new instruction is in the book")
                    .as_str()
            };
            let instruction_ids: Vec<Uuid> = new.iter().map(|n| n.instruction_id).collect();
            let trade_ids: Vec<Uuid> = new.iter().map(|n| n.trade_id.0).collect();
            let allocation_ids: Vec<&str> = new.iter().map(|n| n.allocation_id.as_str()).collect();
            let dates: Vec<chrono::NaiveDate> = new.iter().map(|n| n.settlement_date).collect();
            let statuses: Vec<&str> = new.iter().map(status).collect();
            let reasons: Vec<Option<&str>> = new.iter().map(|n| n.reason.as_deref()).collect();
            let bodies: Vec<&serde_json::Value> = new.iter().map(|n| &n.body).collect();
            sqlx::query!(
                "INSERT INTO settlement.instructions
                   (instruction_id, trade_id, allocation_id, settlement_date, status, reason, body, decided_at)
                 SELECT i, t, a, d, s, r, b, CASE WHEN s = 'PENDING' THEN NULL ELSE now() END
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::date[], $5::text[], $6::text[], $7::jsonb[])
                   AS u(i, t, a, d, s, r, b)",
                &instruction_ids,
                &trade_ids,
                &allocation_ids as &[&str],
                &dates,
                &statuses as &[&str],
                &reasons as &[Option<&str>],
                &bodies as &[&serde_json::Value]
            )
            .execute(&mut *conn)
            .await?;
        }
        if !self.withdrawn.is_empty() {
            sqlx::query!(
                "UPDATE settlement.instructions SET status = 'CANCELLED', decided_at = now()
                 WHERE instruction_id = ANY($1) AND status = 'PENDING'",
                &self.withdrawn
            )
            .execute(&mut *conn)
            .await?;
        }
        if !self.new_cancellations.is_empty() {
            let cancellations = &self.new_cancellations;
            let trade_ids: Vec<Uuid> = cancellations.iter().map(|(t, _, _)| t.0).collect();
            let requested_by: Vec<&str> =
                cancellations.iter().map(|(_, by, _)| by.as_str()).collect();
            let ats: Vec<DateTime<Utc>> = cancellations.iter().map(|(_, _, at)| *at).collect();
            sqlx::query!(
                "INSERT INTO settlement.cancellations (trade_id, requested_by, at)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[])
                 ON CONFLICT (trade_id) DO NOTHING",
                &trade_ids,
                &requested_by as &[&str],
                &ats
            )
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}
