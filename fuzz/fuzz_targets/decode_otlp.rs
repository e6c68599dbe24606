//! Fuzzes `decode_logs`, the decoder of OTLP logs exports, with arbitrary bytes as
//! protobuf and as OTLP/JSON, in milliseconds and in nanoseconds (where times can fall out
//! of range). None may panic, and each answer must hold up (`common::check`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use logdist_core::{OtlpEncoding, TimestampUnit, decode_logs, export_logs_response};

fuzz_target!(|data: &[u8]| {
    for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
        for unit in [TimestampUnit::Milliseconds, TimestampUnit::Nanoseconds] {
            let result = decode_logs(data, encoding, unit, common::now());
            common::check(&result);
            if let Ok(decoded) = &result {
                export_logs_response(&decoded.rejected, encoding);
            }
        }
    }
});
