//! Fuzzes `decode_push`, the decoder of Loki pushes, with arbitrary bytes: as JSON, as a
//! snappy body, and snappy-compressed first, so that the protobuf decoder behind the
//! decompression gets arbitrary bytes too. None may panic, and each answer must hold up
//! (`common::check`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use logdist_core::{LokiEncoding, TimestampUnit, decode_push};

/// The decompressed size allowed: small, so that the bound is crossed too.
const MAX_LEN: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let compressed = snap::raw::Encoder::new()
        .compress_vec(data)
        .expect("any bytes compress");
    for (body, encoding) in [
        (data, LokiEncoding::Json),
        (data, LokiEncoding::Protobuf),
        (&compressed[..], LokiEncoding::Protobuf),
    ] {
        let result = decode_push(
            body,
            encoding,
            MAX_LEN,
            TimestampUnit::Milliseconds,
            common::now(),
        );
        common::check(&result);
    }
});
