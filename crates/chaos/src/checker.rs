//! The invariants a chaos run must keep, checked over what the stores and the generator saw once
//! the run has healed and settled. Pure: the harness gathers a [`History`], [`check`] names every
//! violation with its ids.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use keel_domain::TradeStatus;
use serde::Serialize;

/// One entry of a trade's status history, as matching stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub status: String,
    /// Who is told of it.
    pub recipients: Vec<String>,
}

/// What a run left behind.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every leg the generator sent, whatever the answer: (sender, trade_ref).
    pub attempted: BTreeSet<(String, String)>,
    /// Every leg acknowledged with a 202: leg id to trade id.
    pub acknowledged: BTreeMap<String, String>,
    /// Every leg ingress recorded: leg id to (sender, trade_ref).
    pub recorded: BTreeMap<String, (String, String)>,
    /// Every trade's history, by trade id, as stored (in seq order).
    pub trades: BTreeMap<String, Vec<Entry>>,
    /// Every notification: (recipient, trade id, history seq), one per row.
    pub notifications: Vec<(String, String, i64)>,
    /// What `keelctl ledger verify` found wrong (nothing when the ledger verifies: every settled
    /// instruction has exactly its postings and every position equals its postings).
    pub ledger_problems: Vec<String>,
    /// What reconciliation left missing on a hop after settling.
    pub reconciliation_gaps: Vec<String>,
    /// Runs (rotations, failovers, re-protections) that neither finished nor refused cleanly when
    /// run again, as an operator would.
    pub runbook_problems: Vec<String>,
}

/// One violated invariant, with the ids that show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "anomaly", rename_all = "kebab-case")]
pub enum Anomaly {
    /// Acknowledged, but not recorded: lost.
    AcknowledgedNotRecorded {
        leg_id: String,
    },
    /// Recorded, but never sent by anyone: from nothing.
    RecordedNeverSent {
        leg_id: String,
        sender: String,
        trade_ref: String,
    },
    /// An acknowledged leg's trade has no history at all.
    TradeMissing {
        trade_id: String,
    },
    /// The trade of an acknowledged leg ended in no final status.
    NoFinalStatus {
        trade_id: String,
        last: String,
    },
    /// More than one final status.
    SeveralFinalStatuses {
        trade_id: String,
        finals: Vec<String>,
    },
    /// A status change after the final one: the trade went on after it ended. (A REJECTED
    /// entry records a refused request, a late leg or a cancel of a settled trade, told to its
    /// sender only; it leaves the trade as it was, so it may come after the end.)
    AfterFinal {
        trade_id: String,
        seq: i64,
        status: String,
    },
    /// The history's sequence numbers are not 1, 2, 3, … .
    HistoryGap {
        trade_id: String,
        expected: i64,
        found: i64,
    },
    /// A history entry a party was not told of.
    NotNotified {
        trade_id: String,
        seq: i64,
        recipient: String,
    },
    /// A party told of one entry more than once.
    NotifiedTwice {
        trade_id: String,
        seq: i64,
        recipient: String,
        times: usize,
    },
    /// A notification of no history entry, or to someone the entry does not name.
    NotifiedOfNothing {
        trade_id: String,
        seq: i64,
        recipient: String,
    },
    LedgerDoesNotVerify {
        problem: String,
    },
    ReconciliationGap {
        hop: String,
    },
    RunbookUnfinished {
        detail: String,
    },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::AcknowledgedNotRecorded { leg_id } => {
                write!(f, "leg {leg_id} was acknowledged but is not recorded")
            }
            Anomaly::RecordedNeverSent { leg_id, sender, trade_ref } => write!(
                f,
                "leg {leg_id} ({sender} {trade_ref}) is recorded but was never sent"
            ),
            Anomaly::TradeMissing { trade_id } => {
                write!(f, "trade {trade_id} of an acknowledged leg has no history")
            }
            Anomaly::NoFinalStatus { trade_id, last } => {
                write!(f, "trade {trade_id} ended in no final status (last {last})")
            }
            Anomaly::SeveralFinalStatuses { trade_id, finals } => {
                write!(f, "trade {trade_id} has several final statuses: {finals:?}")
            }
            Anomaly::AfterFinal { trade_id, seq, status } => {
                write!(f, "trade {trade_id} went on to {status} (entry {seq}) after its final status")
            }
            Anomaly::HistoryGap { trade_id, expected, found } => write!(
                f,
                "trade {trade_id}'s history jumps from entry {} to {found}",
                expected - 1
            ),
            Anomaly::NotNotified { trade_id, seq, recipient } => {
                write!(f, "{recipient} was not told of trade {trade_id}'s entry {seq}")
            }
            Anomaly::NotifiedTwice { trade_id, seq, recipient, times } => write!(
                f,
                "{recipient} was told of trade {trade_id}'s entry {seq} {times} times"
            ),
            Anomaly::NotifiedOfNothing { trade_id, seq, recipient } => write!(
                f,
                "{recipient} was told of trade {trade_id}'s entry {seq}, which names no such entry for them"
            ),
            Anomaly::LedgerDoesNotVerify { problem } => write!(f, "the ledger: {problem}"),
            Anomaly::ReconciliationGap { hop } => write!(f, "reconciliation left a gap: {hop}"),
            Anomaly::RunbookUnfinished { detail } => write!(f, "a runbook did not finish: {detail}"),
        }
    }
}

fn is_final(status: &str) -> bool {
    TradeStatus::from_str(status).is_ok_and(TradeStatus::is_final)
}

/// Every invariant `history` violates, in a stable order.
pub fn check(history: &History) -> Vec<Anomaly> {
    let mut anomalies = BTreeSet::new();

    for leg_id in history.acknowledged.keys() {
        if !history.recorded.contains_key(leg_id) {
            anomalies.insert(Anomaly::AcknowledgedNotRecorded {
                leg_id: leg_id.clone(),
            });
        }
    }
    for (leg_id, (sender, trade_ref)) in &history.recorded {
        if !history
            .attempted
            .contains(&(sender.clone(), trade_ref.clone()))
        {
            anomalies.insert(Anomaly::RecordedNeverSent {
                leg_id: leg_id.clone(),
                sender: sender.clone(),
                trade_ref: trade_ref.clone(),
            });
        }
    }

    let acknowledged_trades: BTreeSet<&String> = history.acknowledged.values().collect();
    for trade_id in &acknowledged_trades {
        match history.trades.get(*trade_id) {
            None => {
                anomalies.insert(Anomaly::TradeMissing {
                    trade_id: (*trade_id).clone(),
                });
            }
            Some(entries) => {
                let finals: Vec<String> = entries
                    .iter()
                    .filter(|e| is_final(&e.status))
                    .map(|e| e.status.clone())
                    .collect();
                match finals.len() {
                    0 => {
                        anomalies.insert(Anomaly::NoFinalStatus {
                            trade_id: (*trade_id).clone(),
                            last: entries
                                .last()
                                .map_or_else(String::new, |e| e.status.clone()),
                        });
                    }
                    1 => {}
                    _ => {
                        anomalies.insert(Anomaly::SeveralFinalStatuses {
                            trade_id: (*trade_id).clone(),
                            finals,
                        });
                    }
                }
            }
        }
    }

    let mut expected_notifications: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    for (trade_id, entries) in &history.trades {
        let mut ended = false;
        for (index, entry) in entries.iter().enumerate() {
            let expected = index as i64 + 1;
            if entry.seq != expected {
                anomalies.insert(Anomaly::HistoryGap {
                    trade_id: trade_id.clone(),
                    expected,
                    found: entry.seq,
                });
                break;
            }
            if ended && entry.status != "REJECTED" {
                anomalies.insert(Anomaly::AfterFinal {
                    trade_id: trade_id.clone(),
                    seq: entry.seq,
                    status: entry.status.clone(),
                });
            }
            ended |= is_final(&entry.status);
            for recipient in &entry.recipients {
                expected_notifications.insert((recipient.clone(), trade_id.clone(), entry.seq), 0);
            }
        }
    }
    for (recipient, trade_id, seq) in &history.notifications {
        let key = (recipient.clone(), trade_id.clone(), *seq);
        match expected_notifications.get_mut(&key) {
            Some(times) => *times += 1,
            None => {
                anomalies.insert(Anomaly::NotifiedOfNothing {
                    trade_id: trade_id.clone(),
                    seq: *seq,
                    recipient: recipient.clone(),
                });
            }
        }
    }
    for ((recipient, trade_id, seq), times) in expected_notifications {
        match times {
            1 => {}
            0 => {
                anomalies.insert(Anomaly::NotNotified {
                    trade_id,
                    seq,
                    recipient,
                });
            }
            times => {
                anomalies.insert(Anomaly::NotifiedTwice {
                    trade_id,
                    seq,
                    recipient,
                    times,
                });
            }
        }
    }

    for problem in &history.ledger_problems {
        anomalies.insert(Anomaly::LedgerDoesNotVerify {
            problem: problem.clone(),
        });
    }
    for hop in &history.reconciliation_gaps {
        anomalies.insert(Anomaly::ReconciliationGap { hop: hop.clone() });
    }
    for detail in &history.runbook_problems {
        anomalies.insert(Anomaly::RunbookUnfinished {
            detail: detail.clone(),
        });
    }
    anomalies.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IM: &str = "IM-ALPHA";
    const BROKER: &str = "BR-NORTH";

    fn entry(seq: i64, status: &str) -> Entry {
        Entry {
            seq,
            status: status.to_owned(),
            recipients: vec![IM.to_owned(), BROKER.to_owned()],
        }
    }

    /// `trades` trades that went as they should: both legs sent, acknowledged and recorded, four
    /// entries ending in SETTLED or SETTLEMENT_FAILED, each party told of each once.
    fn clean(trades: usize, failed_every: usize) -> History {
        let mut history = History::default();
        for t in 0..trades {
            let trade_id = format!("trade-{t}");
            for (sender, leg) in [(IM, "im"), (BROKER, "br")] {
                let trade_ref = format!("T-{t}");
                let leg_id = format!("{leg}-{t}");
                history
                    .attempted
                    .insert((sender.to_owned(), trade_ref.clone()));
                history
                    .acknowledged
                    .insert(leg_id.clone(), trade_id.clone());
                history
                    .recorded
                    .insert(leg_id, (sender.to_owned(), trade_ref));
            }
            let last = if failed_every > 0 && t % failed_every == 0 {
                "SETTLEMENT_FAILED"
            } else {
                "SETTLED"
            };
            let entries: Vec<Entry> = ["RECEIVED", "RECEIVED", "MATCHED", last]
                .iter()
                .enumerate()
                .map(|(i, s)| entry(i as i64 + 1, s))
                .collect();
            for e in &entries {
                for r in &e.recipients {
                    history
                        .notifications
                        .push((r.clone(), trade_id.clone(), e.seq));
                }
            }
            history.trades.insert(trade_id, entries);
        }
        history
    }

    proptest! {
        #[test]
        fn a_run_that_went_as_it_should_shows_no_anomaly(trades in 0usize..40, failed in 0usize..5) {
            prop_assert_eq!(check(&clean(trades, failed)), vec![]);
        }

        #[test]
        fn each_kind_of_damage_is_named_with_its_ids(trades in 1usize..20, pick in any::<prop::sample::Index>()) {
            let t = pick.index(trades);
            let trade_id = format!("trade-{t}");

            let mut lost = clean(trades, 0);
            lost.recorded.remove(&format!("im-{t}"));
            let lost_leg = Anomaly::AcknowledgedNotRecorded { leg_id: format!("im-{t}") };
            prop_assert!(check(&lost).contains(&lost_leg), "a lost leg is named");

            let mut invented = clean(trades, 0);
            invented.recorded.insert("ghost".into(), ("IM-BETA".into(), "T-NEVER".into()));
            prop_assert_eq!(check(&invented), vec![Anomaly::RecordedNeverSent {
                leg_id: "ghost".into(), sender: "IM-BETA".into(), trade_ref: "T-NEVER".into() }]);

            let mut unfinished = clean(trades, 0);
            unfinished.trades.get_mut(&trade_id).unwrap().pop();
            unfinished.notifications.retain(|(_, id, seq)| !(id == &trade_id && *seq == 4));
            prop_assert_eq!(check(&unfinished), vec![Anomaly::NoFinalStatus {
                trade_id: trade_id.clone(), last: "MATCHED".into() }]);

            let mut twice = clean(trades, 0);
            twice.notifications.push((IM.into(), trade_id.clone(), 3));
            prop_assert_eq!(check(&twice), vec![Anomaly::NotifiedTwice {
                trade_id: trade_id.clone(), seq: 3, recipient: IM.into(), times: 2 }]);

            let mut untold = clean(trades, 0);
            untold.notifications.retain(|(r, id, seq)| !(r == BROKER && id == &trade_id && *seq == 2));
            prop_assert_eq!(check(&untold), vec![Anomaly::NotNotified {
                trade_id: trade_id.clone(), seq: 2, recipient: BROKER.into() }]);

            let mut gap = clean(trades, 0);
            gap.trades.get_mut(&trade_id).unwrap()[2].seq = 4;
            let gapped = check(&gap).iter().any(|a| matches!(a, Anomaly::HistoryGap { .. }));
            prop_assert!(gapped, "a gap is named");

            let mut resumed = clean(trades, 0);
            resumed.trades.get_mut(&trade_id).unwrap().push(Entry { seq: 5, status: "CANCELLED".into(), recipients: vec![] });
            let found = check(&resumed);
            let after = Anomaly::AfterFinal { trade_id: trade_id.clone(), seq: 5, status: "CANCELLED".into() };
            prop_assert!(found.contains(&after), "an entry after the final one is named");
            let several = found.iter().any(|a| matches!(a, Anomaly::SeveralFinalStatuses { .. }));
            prop_assert!(several, "two final statuses are named");

            // A leg that arrives after the trade ended is refused to its sender: no status change.
            let mut late = clean(trades, 0);
            late.trades.get_mut(&trade_id).unwrap().push(Entry { seq: 5, status: "REJECTED".into(), recipients: vec![IM.into()] });
            late.notifications.push((IM.into(), trade_id.clone(), 5));
            prop_assert_eq!(check(&late), vec![]);
        }
    }

    #[test]
    fn ledger_reconciliation_and_runbook_problems_are_anomalies() {
        let mut history = clean(2, 0);
        history
            .ledger_problems
            .push("position of IM-ALPHA-FUND-001 in USD is off".into());
        history
            .reconciliation_gaps
            .push("ingestion -> matching (tm.trades): 3 missing".into());
        assert_eq!(check(&history).len(), 2);
    }
}
