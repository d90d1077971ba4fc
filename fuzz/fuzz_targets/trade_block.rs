//! `POST /v1/trade-blocks`: any body. Parsing never panics; a block that parses serializes to a
//! canonical form that parses back to itself (what ingress stores and digests); screening it
//! against the local reference data never panics and names only fields of the block.

#![no_main]

use keel_domain::{ParticipantId, TradeBlock};
use keel_ledger::ReferenceData;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    check(&raw);
});

fn check(raw: &serde_json::Value) {
    thread_local! {
        static REFERENCE: ReferenceData =
            ReferenceData::from_json(include_str!("../../deploy/local/reference-data.json"))
                .expect("the local reference data is valid");
    }
    for sender in ["IM-ALPHA", "BR-NORTH"] {
        let sender = ParticipantId::parse(sender).expect("a participant id");
        match TradeBlock::parse(raw, &sender) {
            Ok(block) => {
                let canonical = serde_json::to_value(&block).expect("a block serializes");
                let again = TradeBlock::parse(&canonical, &sender)
                    .expect("the canonical form of a valid block is valid");
                assert_eq!(again, block, "the canonical form parses back to the block");
                REFERENCE.with(|reference| {
                    for refusal in reference.screen(&block) {
                        assert!(
                            refusal.field == "security"
                                || refusal.field == "broker_id"
                                || refusal.field.starts_with("allocations["),
                            "a screen names a field of the block: {refusal:?}"
                        );
                    }
                });
            }
            Err(errors) => assert!(!errors.0.is_empty(), "a refusal names what is wrong"),
        }
    }
}
