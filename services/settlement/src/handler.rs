use std::sync::Arc;

use chrono::Utc;
use keel_ledger::{Instruction, ReferenceData};
use keel_messages::{AllocationResult, SettlementInstruction, SettlementResult};
use keel_safestore::Outgoing;
use keel_streaming::{Handler, Inbound};
use sqlx::PgConnection;

use keel_ledger::desk::{Arrival, CancelAnswer, InstructionStatus};

use crate::book::{count, status_of, Book, BookedInstruction};
use crate::ledger_store::Settler;

/// `st.instructions`: settles due instructions at once, keeps later-dated ones for the settlement
/// cycle, and answers cancels.
pub struct Settlement {
    pub reference: Arc<ReferenceData>,
}

impl Handler for Settlement {
    type Message = SettlementInstruction;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[&Inbound<SettlementInstruction>],
    ) -> Result<Vec<Outgoing>, sqlx::Error> {
        // The ledger lock first, then the instruction rows: the settlement cycle takes them in the
        // same order.
        let to_settle: Vec<Instruction> = batch
            .iter()
            .flat_map(|m| m.body.to_settle())
            .map(Instruction::from)
            .collect();
        let mut settler = Settler::load(conn, &self.reference, to_settle.iter()).await?;
        let trades: Vec<_> = batch.iter().map(|m| m.body.trade_id()).collect();
        let mut book = Book::load(conn, &trades).await?;

        // The one clock reading of the batch: the desk decides against its date.
        let now = Utc::now();
        let today = now.date_naive();
        let mut results = Vec::new();
        for message in batch {
            match &message.body {
                SettlementInstruction::Settle {
                    trade_id,
                    match_key,
                    settlement_date,
                    allocations,
                } => {
                    let mut answered = Vec::new();
                    for allocation in allocations {
                        let booked = BookedInstruction {
                            trade_id: *trade_id,
                            match_key: match_key.clone(),
                            settlement_date: *settlement_date,
                            allocation: allocation.clone(),
                        };
                        let (status, reason) = match book.arrival(&booked, today) {
                            Arrival::Known => continue,
                            Arrival::Cancelled => (InstructionStatus::Cancelled, None),
                            Arrival::Pending => (InstructionStatus::Pending, None),
                            Arrival::Due => {
                                let instruction = Instruction::from(&allocation.instruction);
                                let outcome = settler.settle(&instruction);
                                let decided = status_of(&outcome);
                                answered.push(AllocationResult {
                                    allocation_id: allocation.allocation_id.clone(),
                                    instruction_id: instruction.instruction_id,
                                    outcome: (&outcome).into(),
                                });
                                decided
                            }
                        };
                        book.add(&booked, status, reason);
                        count(status);
                    }
                    if !answered.is_empty() {
                        results.push(SettlementResult::Allocations {
                            trade_id: *trade_id,
                            match_key: match_key.clone(),
                            results: answered,
                            at: now,
                        });
                    }
                }
                SettlementInstruction::Cancel {
                    trade_id,
                    match_key,
                    requested_by,
                    at,
                } => match book.cancel(*trade_id, requested_by.clone(), *at) {
                    CancelAnswer::AlreadyCancelled => {}
                    CancelAnswer::Confirmed => results.push(SettlementResult::CancelConfirmed {
                        trade_id: *trade_id,
                        match_key: match_key.clone(),
                        requested_by: requested_by.clone(),
                        at: now,
                    }),
                    CancelAnswer::Refused { decided } => {
                        results.push(SettlementResult::CancelRefused {
                            trade_id: *trade_id,
                            match_key: match_key.clone(),
                            requested_by: requested_by.clone(),
                            reason: CancelAnswer::refusal_reason(&decided),
                            at: now,
                        })
                    }
                },
            }
        }
        book.save(conn).await?;
        settler.save(conn).await?;
        Ok(results.iter().map(Outgoing::of).collect())
    }
}
