//! Fuzzes `decode_records`, the decoder of shippers' JSON (`POST /packets`), with
//! arbitrary bytes as NDJSON and as JSON, mapped and strict.
//!
//! None may panic, and each answer must hold up (`common::check`): an accepted body's
//! packet is NDJSON of valid messages that decodes again to itself, its bad records have
//! short reasons. Besides:
//! - a body the native decoder accepts is that very packet, with no bad record (messages
//!   already in the model are forwarded as sent);
//! - with the strict schema, refusing at the first bad record is the native decoder's
//!   answer, error for error;
//! - with the mapping, every non-blank NDJSON line is a message or a bad record.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use logdist_core::{Decoded, Format, Schema, Validation, decode_packet, decode_records};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Ndjson, Format::Json] {
        let native = decode_packet(common::bytes(data), format);
        let mapped = decode_records(
            common::bytes(data),
            format,
            Validation::Full,
            &Schema::default(),
            common::now(),
        );
        common::check(&mapped);
        if let Ok(packet) = &native {
            let decoded = mapped
                .as_ref()
                .expect("what the native decoder takes is taken");
            assert_eq!(&decoded.packet, packet, "messages are forwarded as sent");
            assert!(decoded.rejected.is_empty());
        }
        if let (Ok(decoded), Format::Ndjson) = (&mapped, format) {
            let records = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count();
            assert_eq!(
                decoded.packet.messages as usize + decoded.rejected.len(),
                records
            );
        }
        let strict = decode_records(
            common::bytes(data),
            format,
            Validation::Full,
            &Schema::Strict,
            common::now(),
        );
        common::check(&strict);
        assert_eq!(
            strict.and_then(Decoded::into_packet),
            native,
            "strict is native"
        );
    }
});
