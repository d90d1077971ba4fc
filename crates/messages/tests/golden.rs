//! Golden messages: see every_message_serializes_as_its_golden_copy.

/// A domain value as it goes on the wire.
fn w<T, U>(value: &T) -> U
where
    U: for<'a> From<&'a T>,
{
    U::from(value)
}

use chrono::{DateTime, NaiveDate, Utc};
use keel_domain::{
    AccountId, Currency, Isin, LegId, MatchKey, ParticipantId, Price, Quantity, Side, TradeBlock,
    TradeRef, TradeStatus,
};
use keel_messages::{
    AllocationInstruction, AllocationResult, Message, SettlementInstruction, SettlementResult,
    Submission, TradeCommand, TradeEvents,
};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + seconds, 0).expect("a fixed time")
}

fn participant(id: &str) -> ParticipantId {
    ParticipantId::parse(id).unwrap()
}

fn match_key() -> MatchKey {
    MatchKey {
        im_id: participant("IM-ALPHA"),
        broker_id: participant("BR-NORTH"),
        trade_ref: TradeRef::parse("T-GOLDEN-1").unwrap(),
    }
}

fn block_json() -> serde_json::Value {
    serde_json::json!({
        "trade_ref": "T-GOLDEN-1",
        "im_id": "IM-ALPHA",
        "broker_id": "BR-NORTH",
        "side": "BUY",
        "security": "US0378331005",
        "quantity": 1000,
        "price": "187.2500",
        "currency": "USD",
        "trade_date": "2026-11-27",
        "settlement_date": "2026-11-30",
        "allocations": [
            {"allocation_id": "1", "account": "IM-ALPHA-FUND-001", "quantity": 600},
            {"allocation_id": "2", "account": "IM-ALPHA-FUND-002", "quantity": 400}
        ]
    })
}

fn leg() -> keel_lifecycle::Leg {
    let sender = participant("IM-ALPHA");
    keel_lifecycle::Leg {
        leg_id: LegId(match_key().trade_id().0),
        block: TradeBlock::parse(&block_json(), &sender).unwrap(),
        sender,
        received_at: at(1),
    }
}

fn entry(seq: u32, status: TradeStatus) -> keel_lifecycle::HistoryEntry {
    keel_lifecycle::HistoryEntry {
        seq,
        status,
        at: at(seq as i64 + 10),
        reason: (status == TradeStatus::Mismatched).then(|| "fields differ".to_owned()),
        recipients: vec![participant("IM-ALPHA"), participant("BR-NORTH")],
        differing_fields: if status == TradeStatus::Mismatched {
            vec!["price".to_owned()]
        } else {
            vec![]
        },
        leg_id: (status == TradeStatus::Received).then(|| leg().leg_id),
    }
}

fn instruction() -> keel_ledger::Instruction {
    let trade_id = match_key().trade_id();
    keel_ledger::Instruction {
        instruction_id: SettlementInstruction::instruction_id(trade_id, "1"),
        im_id: participant("IM-ALPHA"),
        broker_id: participant("BR-NORTH"),
        side: Side::Buy,
        security: Isin::parse("US0378331005").unwrap(),
        quantity: Quantity::new(600).unwrap(),
        price: Price::parse("187.2500").unwrap(),
        currency: Currency::parse("USD").unwrap(),
        fund_account: AccountId::parse("IM-ALPHA-FUND-001").unwrap(),
    }
}

/// Every message, by a name for its golden file.
fn messages() -> Vec<(&'static str, serde_json::Value, String)> {
    let key = match_key();
    let trade_id = key.trade_id();
    let leg = leg();
    let mut out = Vec::new();
    let mut add = |name, message: serde_json::Value, id: String| out.push((name, message, id));
    let submission = Submission::Leg {
        leg_id: leg.leg_id,
        trade_id,
        match_key: key.clone(),
        sender: leg.sender.clone(),
        received_at: at(1),
        block: block_json(),
    };
    add(
        "submission-leg",
        json(&submission),
        submission.message_id().to_string(),
    );
    let cancel = Submission::Cancel {
        trade_id,
        match_key: key.clone(),
        requested_by: participant("BR-NORTH"),
        requested_at: at(2),
    };
    add(
        "submission-cancel",
        json(&cancel),
        cancel.message_id().to_string(),
    );
    let command = TradeCommand::Leg { leg: w(&leg) };
    add(
        "trade-command-leg",
        json(&command),
        command.message_id().to_string(),
    );
    let reject = TradeCommand::RejectLeg {
        leg_id: leg.leg_id,
        trade_id,
        match_key: key.clone(),
        sender: leg.sender.clone(),
        reasons: vec!["security: unknown ISIN".to_owned()],
        at: at(3),
    };
    add(
        "trade-command-reject-leg",
        json(&reject),
        reject.message_id().to_string(),
    );
    let events = TradeEvents {
        trade_id,
        match_key: key.clone(),
        entries: [
            entry(1, TradeStatus::Received),
            entry(2, TradeStatus::Mismatched),
        ]
        .iter()
        .map(w)
        .collect(),
    };
    add(
        "trade-events",
        json(&events),
        events.message_id().to_string(),
    );
    let settle = SettlementInstruction::Settle {
        trade_id,
        match_key: key.clone(),
        settlement_date: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        allocations: vec![AllocationInstruction {
            allocation_id: "1".to_owned(),
            instruction: w(&instruction()),
        }],
    };
    add(
        "settlement-instruction-settle",
        json(&settle),
        settle.message_id().to_string(),
    );
    let results = SettlementResult::Allocations {
        trade_id,
        match_key: key.clone(),
        results: [
            keel_lifecycle::AllocationOutcome::Settled,
            keel_lifecycle::AllocationOutcome::Failed {
                reason: "insufficient cash".to_owned(),
            },
        ]
        .iter()
        .enumerate()
        .map(|(index, outcome)| AllocationResult {
            allocation_id: (index + 1).to_string(),
            instruction_id: SettlementInstruction::instruction_id(
                trade_id,
                &(index + 1).to_string(),
            ),
            outcome: w(outcome),
        })
        .collect(),
        at: at(4),
    };
    add(
        "settlement-result-allocations",
        json(&results),
        results.message_id().to_string(),
    );
    let refused = SettlementResult::CancelRefused {
        trade_id,
        match_key: key,
        requested_by: participant("BR-NORTH"),
        reason: "already settled".to_owned(),
        at: at(5),
    };
    add(
        "settlement-result-cancel-refused",
        json(&refused),
        refused.message_id().to_string(),
    );
    out
}

fn json(message: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(message).expect("messages serialize")
}

/// One message of each kind against its JSON and its id as checked in (`tests/golden/`): a change
/// to what goes on the wire, or to a message's id, shows here as a difference. When the change is
/// meant, `KEEL_UPDATE_GOLDEN=1` writes the files again; say so in the commit.
#[test]
fn every_message_serializes_as_its_golden_copy() {
    // Read when the test runs (cargo sets it), not when it was built: the target dir is shared
    // between clones, and a binary built in another one would read that clone's files.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    let dir = std::path::Path::new(&manifest).join("tests/golden");
    let update = std::env::var_os("KEEL_UPDATE_GOLDEN").is_some();
    for (name, message, id) in messages() {
        let file = dir.join(format!("{name}.json"));
        let stored = serde_json::json!({"message_id": id, "message": message});
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            let text = serde_json::to_string_pretty(&stored).unwrap() + "\n";
            std::fs::write(&file, text).unwrap();
            continue;
        }
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        )
        .unwrap();
        assert_eq!(stored, golden, "{name} differs from {}", file.display());
    }
}
