//! `POST /v1/trade-blocks/batch`: any body. The envelope is refused with one named error or gives
//! between one and the limit of items, each of which parses or is refused without panicking.

#![no_main]

use keel_domain::{batch_items, ParticipantId, TradeBlock};
use libfuzzer_sys::fuzz_target;

const MAX_BATCH: usize = 1000;

fuzz_target!(|body: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    match batch_items(&raw, MAX_BATCH) {
        Ok(items) => {
            assert!((1..=MAX_BATCH).contains(&items.len()));
            let sender = ParticipantId::parse("IM-ALPHA").expect("a participant id");
            for item in items {
                let _ = TradeBlock::parse(item, &sender);
            }
        }
        Err(refusal) => assert_eq!(refusal.field, "trade_blocks"),
    }
});
