//! Settlement's decisions about instructions and cancels, over what is known of a batch's trades.
//!
//! The settlement service loads a [`Book`] of the trades a batch touches, asks it what to do with
//! each arriving allocation ([`Book::arrival`]) and each cancel request ([`Book::cancel`]), settles
//! through [`crate::Ledger`] what is due, records the outcome ([`Book::record`]), and writes back
//! what changed. Today is passed in; nothing here reads a clock.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use keel_domain::TradeId;
use uuid::Uuid;

/// Where one allocation's instruction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstructionStatus {
    /// Dated later than it arrived: the settlement cycle settles it on its date.
    Pending,
    Settled,
    Failed,
    /// Withdrawn by a cancel before the ledger decided it.
    Cancelled,
}

impl InstructionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstructionStatus::Pending => "PENDING",
            InstructionStatus::Settled => "SETTLED",
            InstructionStatus::Failed => "FAILED",
            InstructionStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            InstructionStatus::Pending,
            InstructionStatus::Settled,
            InstructionStatus::Failed,
            InstructionStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }

    /// Settled or failed: the ledger has decided, and a cancel comes too late.
    pub fn is_decided(self) -> bool {
        matches!(self, InstructionStatus::Settled | InstructionStatus::Failed)
    }
}

/// What to do with an allocation's instruction that has just arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Already received (a replay or a duplicate): nothing to do, nothing to answer.
    Known,
    /// Its trade was cancelled: keep it as cancelled, never settle it.
    Cancelled,
    /// Dated later: keep it pending for the settlement cycle.
    Pending,
    /// Due: settle it now, and answer with the outcome.
    Due,
}

/// The answer to a cancel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    /// The trade was cancelled before: answered then.
    AlreadyCancelled,
    /// Every instruction of the trade, received or still to come, is withdrawn.
    Confirmed,
    /// The ledger already decided some of the trade's allocations; `decided` names them, as
    /// "allocation A1 SETTLED", in order.
    Refused { decided: Vec<String> },
}

impl CancelAnswer {
    /// The reason a refusal gives its requester.
    pub fn refusal_reason(decided: &[String]) -> String {
        format!("settlement has already decided {}", decided.join(", "))
    }
}

#[derive(Debug, Clone)]
struct Known {
    allocation_id: String,
    status: InstructionStatus,
}

/// What is known of some trades' instructions: each one's status, and which trades were cancelled.
#[derive(Debug, Clone, Default)]
pub struct Book {
    known: HashMap<Uuid, Known>,
    by_trade: HashMap<TradeId, Vec<Uuid>>,
    cancelled: HashSet<TradeId>,
}

impl Book {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an instruction with its status: one loaded from the store, or one just decided.
    pub fn record(
        &mut self,
        trade_id: TradeId,
        instruction_id: Uuid,
        allocation_id: &str,
        status: InstructionStatus,
    ) {
        if self.known.contains_key(&instruction_id) {
            return;
        }
        self.known.insert(
            instruction_id,
            Known {
                allocation_id: allocation_id.to_owned(),
                status,
            },
        );
        self.by_trade
            .entry(trade_id)
            .or_default()
            .push(instruction_id);
    }

    /// Records that `trade_id` was cancelled (loaded from the store).
    pub fn record_cancelled(&mut self, trade_id: TradeId) {
        self.cancelled.insert(trade_id);
    }

    pub fn status(&self, instruction_id: Uuid) -> Option<InstructionStatus> {
        self.known.get(&instruction_id).map(|known| known.status)
    }

    /// What to do with an instruction of `trade_id` dated `settlement_date` that arrives `today`.
    pub fn arrival(
        &self,
        trade_id: TradeId,
        instruction_id: Uuid,
        settlement_date: NaiveDate,
        today: NaiveDate,
    ) -> Arrival {
        if self.known.contains_key(&instruction_id) {
            Arrival::Known
        } else if self.cancelled.contains(&trade_id) {
            Arrival::Cancelled
        } else if settlement_date > today {
            Arrival::Pending
        } else {
            Arrival::Due
        }
    }

    /// Answers a cancel of `trade_id`. When it is confirmed, every pending instruction of the
    /// trade becomes cancelled (returned, so the store can be updated), and any that arrives later
    /// is cancelled on arrival.
    pub fn cancel(&mut self, trade_id: TradeId) -> (CancelAnswer, Vec<Uuid>) {
        if self.cancelled.contains(&trade_id) {
            return (CancelAnswer::AlreadyCancelled, Vec::new());
        }
        let ids = self.by_trade.get(&trade_id).map_or(&[][..], Vec::as_slice);
        let mut decided: Vec<String> = ids
            .iter()
            .map(|id| &self.known[id])
            .filter(|k| k.status.is_decided())
            .map(|k| format!("allocation {} {}", k.allocation_id, k.status.as_str()))
            .collect();
        if !decided.is_empty() {
            decided.sort();
            return (CancelAnswer::Refused { decided }, Vec::new());
        }
        let mut withdrawn = Vec::new();
        for id in ids {
            let known = self
                .known
                .get_mut(id)
                .expect("every id of a trade is known");
            if known.status == InstructionStatus::Pending {
                known.status = InstructionStatus::Cancelled;
                withdrawn.push(*id);
            }
        }
        self.cancelled.insert(trade_id);
        (CancelAnswer::Confirmed, withdrawn)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    fn trade(n: u128) -> TradeId {
        TradeId(Uuid::from_u128(n))
    }

    const TODAY: u32 = 20;

    #[test]
    fn an_instruction_is_due_on_or_after_its_date_and_pending_before() {
        let book = Book::new();
        let id = Uuid::from_u128(1);
        assert_eq!(
            book.arrival(trade(1), id, date(TODAY), date(TODAY)),
            Arrival::Due
        );
        assert_eq!(
            book.arrival(trade(1), id, date(TODAY - 1), date(TODAY)),
            Arrival::Due
        );
        assert_eq!(
            book.arrival(trade(1), id, date(TODAY + 1), date(TODAY)),
            Arrival::Pending
        );
    }

    #[test]
    fn a_known_instruction_is_not_decided_twice() {
        let mut book = Book::new();
        let id = Uuid::from_u128(1);
        book.record(trade(1), id, "A1", InstructionStatus::Settled);
        assert_eq!(
            book.arrival(trade(1), id, date(TODAY), date(TODAY)),
            Arrival::Known
        );
    }

    #[test]
    fn a_cancel_withdraws_pending_instructions_and_those_still_to_come() {
        let mut book = Book::new();
        let (pending, later) = (Uuid::from_u128(1), Uuid::from_u128(2));
        book.record(trade(1), pending, "A1", InstructionStatus::Pending);
        let (answer, withdrawn) = book.cancel(trade(1));
        assert_eq!(answer, CancelAnswer::Confirmed);
        assert_eq!(withdrawn, vec![pending]);
        assert_eq!(book.status(pending), Some(InstructionStatus::Cancelled));
        assert_eq!(
            book.arrival(trade(1), later, date(TODAY), date(TODAY)),
            Arrival::Cancelled
        );
        assert_eq!(book.cancel(trade(1)).0, CancelAnswer::AlreadyCancelled);
    }

    #[test]
    fn a_cancel_after_the_ledger_decided_is_refused_naming_what_it_decided() {
        let mut book = Book::new();
        book.record(
            trade(1),
            Uuid::from_u128(2),
            "A2",
            InstructionStatus::Failed,
        );
        book.record(
            trade(1),
            Uuid::from_u128(1),
            "A1",
            InstructionStatus::Settled,
        );
        book.record(
            trade(1),
            Uuid::from_u128(3),
            "A3",
            InstructionStatus::Pending,
        );
        let (answer, withdrawn) = book.cancel(trade(1));
        let CancelAnswer::Refused { decided } = answer else {
            panic!("not refused: {answer:?}");
        };
        assert_eq!(decided, ["allocation A1 SETTLED", "allocation A2 FAILED"]);
        assert_eq!(
            CancelAnswer::refusal_reason(&decided),
            "settlement has already decided allocation A1 SETTLED, allocation A2 FAILED"
        );
        assert!(withdrawn.is_empty());
        assert_eq!(
            book.status(Uuid::from_u128(3)),
            Some(InstructionStatus::Pending),
            "a refused cancel changes nothing"
        );
    }

    #[test]
    fn statuses_read_back_as_they_are_written() {
        for status in [
            InstructionStatus::Pending,
            InstructionStatus::Settled,
            InstructionStatus::Failed,
            InstructionStatus::Cancelled,
        ] {
            assert_eq!(InstructionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(InstructionStatus::parse("settled"), None);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Arrive { id: u8, day: u32, settles: bool },
        Cancel,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u8..6, 15u32..25, any::<bool>()).prop_map(|(id, day, settles)| Event::Arrive {
                id,
                day,
                settles
            }),
            Just(Event::Cancel),
        ]
    }

    proptest! {
        /// Whatever arrives and whenever cancels come, for one trade: nothing is decided after a
        /// confirmed cancel, a confirmed cancel leaves nothing pending, each instruction is decided
        /// at most once, and a refusal happens only once something was decided.
        #[test]
        fn a_cancel_and_the_ledger_never_both_win(events in proptest::collection::vec(event(), 0..30)) {
            let mut book = Book::new();
            let mut confirmed = false;
            let mut decided_any = false;
            let mut decisions: HashMap<Uuid, usize> = HashMap::new();
            for event in events {
                match event {
                    Event::Arrive { id, day, settles } => {
                        let id = Uuid::from_u128(u128::from(id));
                        let status = match book.arrival(trade(1), id, date(day), date(TODAY)) {
                            Arrival::Known => continue,
                            Arrival::Cancelled => {
                                prop_assert!(confirmed);
                                InstructionStatus::Cancelled
                            }
                            Arrival::Pending => InstructionStatus::Pending,
                            Arrival::Due => {
                                prop_assert!(!confirmed, "settled after a confirmed cancel");
                                *decisions.entry(id).or_default() += 1;
                                decided_any = true;
                                if settles { InstructionStatus::Settled } else { InstructionStatus::Failed }
                            }
                        };
                        book.record(trade(1), id, "A", status);
                    }
                    Event::Cancel => match book.cancel(trade(1)).0 {
                        CancelAnswer::Confirmed => {
                            prop_assert!(!decided_any);
                            confirmed = true;
                        }
                        CancelAnswer::AlreadyCancelled => prop_assert!(confirmed),
                        CancelAnswer::Refused { decided } => {
                            prop_assert!(decided_any && !decided.is_empty());
                        }
                    },
                }
            }
            prop_assert!(decisions.values().all(|n| *n == 1));
            if confirmed {
                for id in 0..6u128 {
                    prop_assert_ne!(book.status(Uuid::from_u128(id)), Some(InstructionStatus::Pending));
                }
            }
        }
    }
}
