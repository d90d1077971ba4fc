//! The instructions table as a batch sees it: what is known of each trade in the batch, what the
//! batch adds or changes, and which trades were cancelled.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use keel_domain::{MatchKey, ParticipantId, TradeId};
use keel_lifecycle::AllocationOutcome;
use keel_messages::AllocationInstruction;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Settled,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Settled => "SETTLED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }

    fn parse(raw: &str) -> Result<Self, sqlx::Error> {
        Ok(match raw {
            "PENDING" => Status::Pending,
            "SETTLED" => Status::Settled,
            "FAILED" => Status::Failed,
            "CANCELLED" => Status::Cancelled,
            other => {
                return Err(sqlx::Error::Decode(
                    format!("unknown instruction status {other:?}").into(),
                ))
            }
        })
    }

    /// The status an outcome leaves its instruction in, with the failure's reason.
    pub fn of(outcome: &AllocationOutcome) -> (Self, Option<String>) {
        match outcome {
            AllocationOutcome::Settled => (Status::Settled, None),
            AllocationOutcome::Failed { reason } => (Status::Failed, Some(reason.clone())),
        }
    }

    pub fn count(self) {
        metrics::counter!("keel_settlement_instructions_total", "status" => self.as_str())
            .increment(1);
    }

    /// Settled or failed: the ledger has decided, and a cancel comes too late.
    pub fn is_decided(self) -> bool {
        matches!(self, Status::Settled | Status::Failed)
    }
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

struct Known {
    instruction_id: Uuid,
    allocation_id: String,
    status: Status,
    changed: bool,
}

struct New {
    instruction_id: Uuid,
    trade_id: TradeId,
    allocation_id: String,
    settlement_date: chrono::NaiveDate,
    status: Status,
    reason: Option<String>,
    body: serde_json::Value,
}

#[derive(Default)]
pub struct Book {
    by_trade: HashMap<TradeId, Vec<Known>>,
    ids: HashSet<Uuid>,
    cancelled: HashSet<TradeId>,
    new: Vec<New>,
    new_cancellations: Vec<(TradeId, ParticipantId, DateTime<Utc>)>,
}

impl Book {
    /// Loads (and row-locks) the instructions of these trades, and which of them were cancelled.
    pub async fn load(conn: &mut PgConnection, trades: &[TradeId]) -> Result<Self, sqlx::Error> {
        let ids: Vec<Uuid> = trades.iter().map(|t| t.0).collect();
        let rows: Vec<(Uuid, Uuid, String, String)> = sqlx::query_as(
            "SELECT instruction_id, trade_id, allocation_id, status FROM instructions
             WHERE trade_id = ANY($1) ORDER BY instruction_id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut book = Book::default();
        for (instruction_id, trade_id, allocation_id, status) in rows {
            book.ids.insert(instruction_id);
            book.by_trade
                .entry(TradeId(trade_id))
                .or_default()
                .push(Known {
                    instruction_id,
                    allocation_id,
                    status: Status::parse(&status)?,
                    changed: false,
                });
        }
        let cancelled: Vec<(Uuid,)> =
            sqlx::query_as("SELECT trade_id FROM cancellations WHERE trade_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?;
        book.cancelled = cancelled.into_iter().map(|(id,)| TradeId(id)).collect();
        Ok(book)
    }

    pub fn knows(&self, instruction_id: Uuid) -> bool {
        self.ids.contains(&instruction_id)
    }

    pub fn is_cancelled(&self, trade_id: TradeId) -> bool {
        self.cancelled.contains(&trade_id)
    }

    /// Records a newly received allocation's instruction with what became of it.
    pub fn add(&mut self, booked: &BookedInstruction, status: Status, reason: Option<String>) {
        let instruction_id = booked.allocation.instruction.instruction_id;
        let allocation_id = booked.allocation.allocation_id.clone();
        self.ids.insert(instruction_id);
        self.by_trade
            .entry(booked.trade_id)
            .or_default()
            .push(Known {
                instruction_id,
                allocation_id: allocation_id.clone(),
                status,
                changed: false,
            });
        self.new.push(New {
            instruction_id,
            trade_id: booked.trade_id,
            allocation_id,
            settlement_date: booked.settlement_date,
            status,
            reason,
            body: serde_json::to_value(booked).expect("instruction serializes"),
        });
    }

    /// The allocations of a trade the ledger has already decided, as "allocation 1 SETTLED".
    pub fn decided(&self, trade_id: TradeId) -> Vec<String> {
        let mut decided: Vec<String> = self
            .by_trade
            .get(&trade_id)
            .into_iter()
            .flatten()
            .filter(|k| k.status.is_decided())
            .map(|k| format!("allocation {} {}", k.allocation_id, k.status.as_str()))
            .collect();
        decided.sort();
        decided
    }

    /// Withdraws every pending instruction of the trade, and any that arrives later.
    pub fn cancel(&mut self, trade_id: TradeId, requested_by: ParticipantId, at: DateTime<Utc>) {
        for known in self.by_trade.get_mut(&trade_id).into_iter().flatten() {
            if known.status == Status::Pending {
                known.status = Status::Cancelled;
                known.changed = true;
            }
        }
        for new in self.new.iter_mut().filter(|n| n.trade_id == trade_id) {
            if new.status == Status::Pending {
                new.status = Status::Cancelled;
            }
        }
        self.cancelled.insert(trade_id);
        self.new_cancellations.push((trade_id, requested_by, at));
    }

    /// Writes new instructions, changed statuses and cancellations.
    pub async fn save(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let new = &self.new;
        if !new.is_empty() {
            sqlx::query(
                "INSERT INTO instructions
                   (instruction_id, trade_id, allocation_id, settlement_date, status, reason, body, decided_at)
                 SELECT i, t, a, d, s, r, b, CASE WHEN s = 'PENDING' THEN NULL ELSE now() END
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::date[], $5::text[], $6::text[], $7::jsonb[])
                   AS u(i, t, a, d, s, r, b)",
            )
            .bind(new.iter().map(|n| n.instruction_id).collect::<Vec<_>>())
            .bind(new.iter().map(|n| n.trade_id.0).collect::<Vec<_>>())
            .bind(new.iter().map(|n| n.allocation_id.clone()).collect::<Vec<_>>())
            .bind(new.iter().map(|n| n.settlement_date).collect::<Vec<_>>())
            .bind(new.iter().map(|n| n.status.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|n| n.reason.clone()).collect::<Vec<_>>())
            .bind(new.iter().map(|n| n.body.clone()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        let withdrawn: Vec<Uuid> = self
            .by_trade
            .values()
            .flatten()
            .filter(|k| k.changed)
            .map(|k| k.instruction_id)
            .collect();
        if !withdrawn.is_empty() {
            sqlx::query(
                "UPDATE instructions SET status = 'CANCELLED', decided_at = now()
                 WHERE instruction_id = ANY($1) AND status = 'PENDING'",
            )
            .bind(&withdrawn)
            .execute(&mut *conn)
            .await?;
        }
        if !self.new_cancellations.is_empty() {
            let cancellations = &self.new_cancellations;
            sqlx::query(
                "INSERT INTO cancellations (trade_id, requested_by, at)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[])
                 ON CONFLICT (trade_id) DO NOTHING",
            )
            .bind(
                cancellations
                    .iter()
                    .map(|(t, _, _)| t.0)
                    .collect::<Vec<_>>(),
            )
            .bind(
                cancellations
                    .iter()
                    .map(|(_, by, _)| by.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                cancellations
                    .iter()
                    .map(|(_, _, at)| *at)
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}
