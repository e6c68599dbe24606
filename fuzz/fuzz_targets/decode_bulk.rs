//! Fuzzes `decode_bulk`, the decoder of Elasticsearch `_bulk` bodies, with arbitrary bytes.
//!
//! None may panic; an accepted body's packet holds up (`common::check`), it has one
//! message per item created, and its bad records are the items whose document failed.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use logdist_core::bulk::Outcome;
use logdist_core::{Schema, decode_bulk};

fuzz_target!(|data: &[u8]| {
    match decode_bulk(
        common::bytes(data),
        Some("logs"),
        &Schema::default(),
        common::now(),
    ) {
        Ok(bulk) => {
            common::check_decoded(&bulk.decoded);
            let created = bulk
                .items
                .iter()
                .filter(|i| i.outcome == Outcome::Created)
                .count();
            assert_eq!(created, bulk.decoded.packet.messages as usize);
            let failed = bulk
                .items
                .iter()
                .filter(|i| {
                    matches!(
                        i.outcome,
                        Outcome::Failed {
                            kind: "document_parsing_exception",
                            ..
                        }
                    )
                })
                .count();
            assert_eq!(failed, bulk.decoded.rejected.len());
        }
        Err(e) => common::check_error(&e),
    }
});
