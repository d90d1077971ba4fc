use chrono::{Duration, TimeZone, Utc};
use keel_domain::{ParticipantId, TradeBlock, TradeStatus};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn raw_block() -> Value {
    json!({
        "trade_ref": "T-1", "im_id": "IM-ALPHA", "broker_id": "BR-NORTH", "side": "BUY",
        "security": "US0378331005", "quantity": 1000, "price": "187.2500", "currency": "USD",
        "trade_date": "2026-11-23", "settlement_date": "2026-11-24",
        "allocations": [
            {"allocation_id": "1", "account": "FUND-001", "quantity": 600},
            {"allocation_id": "2", "account": "FUND-002", "quantity": 400}
        ]
    })
}

fn leg(sender: &str, raw: Value, at: DateTime<Utc>) -> Leg {
    let sender = ParticipantId::parse(sender).unwrap();
    let block = TradeBlock::parse(&raw, &sender).unwrap();
    Leg {
        leg_id: block.leg_id(&sender),
        sender,
        block,
        received_at: at,
    }
}

fn im_leg(at: DateTime<Utc>) -> Leg {
    leg("IM-ALPHA", raw_block(), at)
}

fn broker_leg(at: DateTime<Utc>) -> Leg {
    leg("BR-NORTH", raw_block(), at)
}

fn new_trade() -> Trade {
    Trade::new(im_leg(t0()).block.match_key())
}

fn statuses(entries: &[HistoryEntry]) -> Vec<TradeStatus> {
    entries.iter().map(|e| e.status).collect()
}

#[test]
fn two_equal_legs_match() {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    let first = trade.apply(Command::Leg(im_leg(t0())), &policy).history;
    assert_eq!(
        statuses(&first),
        [TradeStatus::Received, TradeStatus::Unmatched]
    );
    let second = trade
        .apply(
            Command::Leg(broker_leg(t0() + Duration::seconds(1))),
            &policy,
        )
        .history;
    assert_eq!(
        statuses(&second),
        [TradeStatus::Received, TradeStatus::Matched]
    );
    assert_eq!(trade.status, Some(TradeStatus::Matched));
    assert_eq!(second[1].recipients.len(), 2);
    assert_eq!(second[1].seq, 4);
    assert_eq!(trade.expires_at, None);
}

#[test]
fn mismatched_legs_name_every_differing_field() {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    trade.apply(Command::Leg(im_leg(t0())), &policy);
    let mut raw = raw_block();
    raw["price"] = json!("187.2600");
    raw["settlement_date"] = json!("2026-11-25");
    raw["allocations"][0]["quantity"] = json!(500);
    raw["allocations"][1]["quantity"] = json!(500);
    let entries = trade
        .apply(Command::Leg(leg("BR-NORTH", raw, t0())), &policy)
        .history;
    let mismatch = entries.last().unwrap();
    assert_eq!(mismatch.status, TradeStatus::Mismatched);
    assert_eq!(
        mismatch.differing_fields,
        ["price", "settlement_date", "allocations"]
    );
}

#[test]
fn a_price_within_tolerance_matches() {
    let policy = MatchPolicy {
        price_tolerance: "0.01".parse().unwrap(),
        ..MatchPolicy::default()
    };
    let mut trade = new_trade();
    trade.apply(Command::Leg(im_leg(t0())), &policy);
    let mut raw = raw_block();
    raw["price"] = json!("187.2600");
    let entries = trade
        .apply(Command::Leg(leg("BR-NORTH", raw, t0())), &policy)
        .history;
    assert_eq!(entries.last().unwrap().status, TradeStatus::Matched);
}

#[test]
fn a_broker_without_allocations_still_matches() {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    trade.apply(Command::Leg(im_leg(t0())), &policy);
    let mut raw = raw_block();
    raw.as_object_mut().unwrap().remove("allocations");
    let entries = trade
        .apply(Command::Leg(leg("BR-NORTH", raw, t0())), &policy)
        .history;
    assert_eq!(entries.last().unwrap().status, TradeStatus::Matched);
}

#[test]
fn a_lone_leg_expires_after_its_own_window() {
    let policy = MatchPolicy {
        match_window: Duration::seconds(30),
        ..MatchPolicy::default()
    };
    let mut trade = new_trade();
    trade.apply(Command::Leg(im_leg(t0())), &policy);
    assert!(trade
        .apply(
            Command::Expire {
                now: t0() + Duration::seconds(29)
            },
            &policy
        )
        .history
        .is_empty());
    let expired = trade
        .apply(
            Command::Expire {
                now: t0() + Duration::seconds(45),
            },
            &policy,
        )
        .history;
    assert_eq!(statuses(&expired), [TradeStatus::Expired]);
    assert_eq!(
        expired[0].at,
        t0() + Duration::seconds(30),
        "expiry is stamped at the window's end"
    );
    let late = trade
        .apply(
            Command::Leg(broker_leg(t0() + Duration::seconds(60))),
            &policy,
        )
        .history;
    assert_eq!(statuses(&late), [TradeStatus::Rejected]);
    assert_eq!(
        late[0].recipients,
        [ParticipantId::parse("BR-NORTH").unwrap()]
    );
}

#[test]
fn an_amendment_restarts_the_window_and_can_fix_a_mismatch() {
    let policy = MatchPolicy {
        match_window: Duration::seconds(30),
        ..MatchPolicy::default()
    };
    let mut trade = new_trade();
    trade.apply(Command::Leg(im_leg(t0())), &policy);
    let mut amended = raw_block();
    amended["version"] = json!(2);
    trade.apply(
        Command::Leg(leg("IM-ALPHA", amended, t0() + Duration::seconds(20))),
        &policy,
    );
    assert_eq!(trade.expires_at, Some(t0() + Duration::seconds(50)));

    let mut wrong = raw_block();
    wrong["quantity"] = json!(900);
    wrong.as_object_mut().unwrap().remove("allocations");
    let entries = trade
        .apply(
            Command::Leg(leg("BR-NORTH", wrong, t0() + Duration::seconds(21))),
            &policy,
        )
        .history;
    assert_eq!(entries.last().unwrap().status, TradeStatus::Mismatched);
    let mut fixed = raw_block();
    fixed["version"] = json!(2);
    let entries = trade
        .apply(
            Command::Leg(leg("BR-NORTH", fixed, t0() + Duration::seconds(22))),
            &policy,
        )
        .history;
    assert_eq!(
        statuses(&entries),
        [TradeStatus::Received, TradeStatus::Matched]
    );
}

#[test]
fn stale_versions_and_changes_after_matching_are_rejected_to_the_sender_only() {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    let mut v2 = raw_block();
    v2["version"] = json!(2);
    trade.apply(Command::Leg(leg("IM-ALPHA", v2, t0())), &policy);
    let stale = trade.apply(Command::Leg(im_leg(t0())), &policy).history;
    assert_eq!(statuses(&stale), [TradeStatus::Rejected]);
    assert!(stale[0].reason.as_deref().unwrap().contains("not newer"));

    trade.apply(Command::Leg(broker_leg(t0())), &policy);
    let mut v3 = raw_block();
    v3["version"] = json!(3);
    let after_match = trade
        .apply(Command::Leg(leg("IM-ALPHA", v3, t0())), &policy)
        .history;
    assert_eq!(statuses(&after_match), [TradeStatus::Rejected]);
    assert_eq!(
        after_match[0].recipients,
        [ParticipantId::parse("IM-ALPHA").unwrap()]
    );
    assert_eq!(trade.status, Some(TradeStatus::Matched));
}

#[test]
fn a_redelivered_leg_changes_nothing() {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    trade.apply(Command::Leg(im_leg(t0())), &policy);
    let before = trade.clone();
    assert!(trade
        .apply(Command::Leg(im_leg(t0())), &policy)
        .history
        .is_empty());
    assert_eq!(trade, before);
}

#[test]
fn cancel_is_allowed_until_final() {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    trade.apply(Command::Leg(im_leg(t0())), &policy);
    let by = ParticipantId::parse("IM-ALPHA").unwrap();
    let cancel = || Command::Cancel {
        requested_by: by.clone(),
        at: t0(),
    };
    let cancelled = trade.apply(cancel(), &policy);
    assert_eq!(statuses(&cancelled.history), [TradeStatus::Cancelled]);
    assert!(cancelled.to_settlement.is_empty());
    let again = trade.apply(cancel(), &policy).history;
    assert_eq!(statuses(&again), [TradeStatus::Rejected]);
    assert_eq!(again[0].recipients, [by]);
    assert_eq!(trade.status, Some(TradeStatus::Cancelled));
}

fn matched_trade() -> Trade {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    trade.apply(Command::Leg(im_leg(t0())), &policy);
    trade.apply(Command::Leg(broker_leg(t0())), &policy);
    trade
}

fn result(allocation_id: &str, failure: Option<&str>) -> Command {
    Command::SettlementResult {
        allocation_id: allocation_id.to_owned(),
        outcome: match failure {
            None => AllocationOutcome::Settled,
            Some(reason) => AllocationOutcome::Failed {
                reason: reason.to_owned(),
            },
        },
        at: t0() + Duration::seconds(5),
    }
}

#[test]
fn matching_sends_every_allocation_of_the_im_leg_to_settlement_once() {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    assert!(trade
        .apply(Command::Leg(im_leg(t0())), &policy)
        .to_settlement
        .is_empty());
    let mut raw = raw_block();
    raw.as_object_mut().unwrap().remove("allocations");
    let matched = trade.apply(Command::Leg(leg("BR-NORTH", raw, t0())), &policy);
    let [ToSettlement::Settle { allocations }] = matched.to_settlement.as_slice() else {
        panic!(
            "expected one settle request, got {:?}",
            matched.to_settlement
        );
    };
    let ids: Vec<&str> = allocations
        .iter()
        .map(|a| a.allocation_id.as_str())
        .collect();
    assert_eq!(ids, ["1", "2"]);
    // A redelivered leg sends nothing again.
    let again = trade.apply(Command::Leg(broker_leg(t0())), &policy);
    assert!(again.to_settlement.is_empty());
}

#[test]
fn a_trade_settles_once_every_allocation_has() {
    let policy = MatchPolicy::default();
    let mut trade = matched_trade();
    assert!(trade.apply(result("1", None), &policy).history.is_empty());
    assert!(trade.apply(result("1", None), &policy).history.is_empty());
    let settled = trade.apply(result("2", None), &policy).history;
    assert_eq!(statuses(&settled), [TradeStatus::Settled]);
    assert_eq!(settled[0].recipients.len(), 2);
    assert_eq!(settled[0].reason.as_deref(), Some("2 allocations settled"));
    assert!(trade.apply(result("2", None), &policy).history.is_empty());
    assert!(trade.apply(result("9", None), &policy).history.is_empty());
}

#[test]
fn one_failed_allocation_fails_the_trade_naming_it_once_all_are_in() {
    let policy = MatchPolicy::default();
    let mut trade = matched_trade();
    let first = trade.apply(
        result("2", Some("insufficient cash in F: needs 5 USD, has 0")),
        &policy,
    );
    assert!(first.history.is_empty(), "waits for the other allocation");
    let failed = trade.apply(result("1", None), &policy).history;
    assert_eq!(statuses(&failed), [TradeStatus::SettlementFailed]);
    assert_eq!(
        failed[0].reason.as_deref(),
        Some(
            "allocation 2: insufficient cash in F: needs 5 USD, has 0; 1 of 2 allocations settled"
        )
    );
    let cancel = trade.apply(
        Command::Cancel {
            requested_by: ParticipantId::parse("IM-ALPHA").unwrap(),
            at: t0(),
        },
        &policy,
    );
    assert_eq!(statuses(&cancel.history), [TradeStatus::Rejected]);
    assert!(cancel.to_settlement.is_empty());
}

#[test]
fn a_matched_trade_is_cancelled_only_when_settlement_confirms() {
    let policy = MatchPolicy::default();
    let mut trade = matched_trade();
    let im = ParticipantId::parse("IM-ALPHA").unwrap();
    let broker = ParticipantId::parse("BR-NORTH").unwrap();
    let asked = trade.apply(
        Command::Cancel {
            requested_by: im.clone(),
            at: t0(),
        },
        &policy,
    );
    assert!(asked.history.is_empty());
    assert_eq!(
        asked.to_settlement,
        [ToSettlement::Cancel {
            requested_by: im.clone(),
            at: t0()
        }]
    );
    assert_eq!(trade.status, Some(TradeStatus::Matched));
    let second = trade.apply(
        Command::Cancel {
            requested_by: broker.clone(),
            at: t0(),
        },
        &policy,
    );
    assert_eq!(statuses(&second.history), [TradeStatus::Rejected]);
    assert_eq!(second.history[0].recipients, [broker]);
    assert!(second.to_settlement.is_empty());

    let confirmed = trade
        .apply(
            Command::CancelConfirmed {
                requested_by: im.clone(),
                at: t0(),
            },
            &policy,
        )
        .history;
    assert_eq!(statuses(&confirmed), [TradeStatus::Cancelled]);
    assert_eq!(confirmed[0].recipients.len(), 2);
    assert!(trade
        .apply(
            Command::CancelConfirmed {
                requested_by: im,
                at: t0()
            },
            &policy
        )
        .history
        .is_empty());
    assert!(trade.apply(result("1", None), &policy).history.is_empty());
    assert_eq!(trade.status, Some(TradeStatus::Cancelled));
}

#[test]
fn a_refused_cancel_is_told_to_its_requester_and_settlement_goes_on() {
    let policy = MatchPolicy::default();
    let mut trade = matched_trade();
    let broker = ParticipantId::parse("BR-NORTH").unwrap();
    trade.apply(
        Command::Cancel {
            requested_by: broker.clone(),
            at: t0(),
        },
        &policy,
    );
    trade.apply(result("1", None), &policy);
    let settled = trade.apply(result("2", None), &policy).history;
    assert_eq!(statuses(&settled), [TradeStatus::Settled]);
    let refused = trade
        .apply(
            Command::CancelRefused {
                requested_by: broker.clone(),
                reason: "already settled".into(),
                at: t0(),
            },
            &policy,
        )
        .history;
    assert_eq!(statuses(&refused), [TradeStatus::Rejected]);
    assert_eq!(refused[0].recipients, [broker]);
    assert_eq!(
        refused[0].reason.as_deref(),
        Some("cannot cancel: already settled")
    );
    assert_eq!(trade.status, Some(TradeStatus::Settled));
}

#[test]
fn a_rejected_first_leg_leaves_a_rejected_trade_that_a_valid_leg_revives() {
    let policy = MatchPolicy::default();
    let mut trade = new_trade();
    let im = im_leg(t0());
    let sender = im.sender.clone();
    let rejected = trade
        .apply(
            Command::RejectLeg {
                leg_id: im.leg_id,
                sender,
                reasons: vec!["bad".into()],
                at: t0(),
            },
            &policy,
        )
        .history;
    assert_eq!(statuses(&rejected), [TradeStatus::Rejected]);
    assert_eq!(trade.status, Some(TradeStatus::Rejected));
    let mut v2 = raw_block();
    v2["version"] = json!(2);
    trade.apply(Command::Leg(leg("IM-ALPHA", v2, t0())), &policy);
    assert_eq!(trade.status, Some(TradeStatus::Unmatched));
}

fn arbitrary_command() -> impl Strategy<Value = Command> {
    let at = (0i64..120).prop_map(|s| t0() + Duration::seconds(s));
    prop_oneof![
        (at.clone(), 1u32..4, any::<bool>(), any::<bool>()).prop_map(
            |(at, version, is_im, differs)| {
                let mut raw = raw_block();
                raw["version"] = json!(version);
                if differs {
                    raw["price"] = json!("1.0000");
                }
                Command::Leg(leg(if is_im { "IM-ALPHA" } else { "BR-NORTH" }, raw, at))
            }
        ),
        at.clone().prop_map(|at| Command::Cancel {
            requested_by: ParticipantId::parse("IM-ALPHA").unwrap(),
            at
        }),
        at.clone().prop_map(|now| Command::Expire { now }),
        (at.clone(), 1u8..4, any::<bool>()).prop_map(|(at, allocation, settled)| {
            Command::SettlementResult {
                allocation_id: allocation.to_string(),
                outcome: if settled {
                    AllocationOutcome::Settled
                } else {
                    AllocationOutcome::Failed {
                        reason: "short".into(),
                    }
                },
                at,
            }
        }),
        (at, any::<bool>()).prop_map(|(at, confirmed)| {
            let requested_by = ParticipantId::parse("IM-ALPHA").unwrap();
            if confirmed {
                Command::CancelConfirmed { requested_by, at }
            } else {
                Command::CancelRefused {
                    requested_by,
                    reason: "settled".into(),
                    at,
                }
            }
        }),
    ]
}

proptest! {
    #[test]
    fn history_is_append_only_with_gapless_sequence_numbers(
        commands in proptest::collection::vec(arbitrary_command(), 0..30)
    ) {
        let policy = MatchPolicy { match_window: Duration::seconds(30), ..MatchPolicy::default() };
        let mut trade = new_trade();
        let mut history = Vec::new();
        let mut settle_requests = 0;
        for command in commands {
            let before = trade.clone();
            let effects = trade.apply(command, &policy);
            prop_assert_eq!(effects.changed, trade != before, "changed says whether the state moved");
            if let Some(final_status) = before.status.filter(|s| s.is_final()) {
                prop_assert_eq!(trade.status, Some(final_status), "a final status never changes");
            }
            settle_requests += effects
                .to_settlement
                .iter()
                .filter(|r| matches!(r, ToSettlement::Settle { .. }))
                .count();
            history.extend(effects.history);
        }
        prop_assert!(settle_requests <= 1, "a trade goes to settlement at most once");
        let settled: Vec<_> = history.iter().filter(|e| e.status == TradeStatus::Settled).collect();
        prop_assert!(settled.len() <= 1);
        if !settled.is_empty() {
            let progress = trade.settlement.as_ref().expect("settled trades went to settlement");
            prop_assert!(progress.allocations.values().all(|s| *s == AllocationState::Settled));
        }
        for (i, entry) in history.iter().enumerate() {
            prop_assert_eq!(entry.seq as usize, i + 1);
            prop_assert!(!entry.recipients.is_empty());
            if entry.status == TradeStatus::Rejected {
                prop_assert_eq!(entry.recipients.len(), 1);
            }
        }
        prop_assert_eq!(trade.next_seq as usize, history.len() + 1);
    }

    #[test]
    fn the_outcome_does_not_depend_on_which_leg_arrives_first(differs in any::<bool>()) {
        let policy = MatchPolicy::default();
        let mut raw = raw_block();
        if differs {
            raw["quantity"] = json!(999);
            raw.as_object_mut().unwrap().remove("allocations");
        }
        let broker = leg("BR-NORTH", raw, t0());
        let mut one = new_trade();
        one.apply(Command::Leg(im_leg(t0())), &policy);
        one.apply(Command::Leg(broker.clone()), &policy);
        let mut other = new_trade();
        other.apply(Command::Leg(broker), &policy);
        other.apply(Command::Leg(im_leg(t0())), &policy);
        prop_assert_eq!(one.status, other.status);
        let expected = if differs { TradeStatus::Mismatched } else { TradeStatus::Matched };
        prop_assert_eq!(one.status, Some(expected));
    }
}
