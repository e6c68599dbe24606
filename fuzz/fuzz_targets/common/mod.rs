//! What every decoder of shippers' protocols must give, whatever the input: shared by the
//! targets of those decoders, each of which uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use logdist_core::{Decoded, Format, Packet, PacketError, decode_packet};
use serde_json::Value;

/// The longest error text any input may produce (the decoders' own cap plus context).
const MAX_ERROR_TEXT: usize = 512;

/// The arrival time the targets pass: a fixed one, so that a crash replays.
pub fn now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_553_000)
}

/// An accepted body's packet is NDJSON of messages the native decoder accepts as they are
/// (decoding them again is the identity), one a line, as many as it counts; its bad
/// records have short reasons and keep at most their bounded start.
pub fn check_decoded(decoded: &Decoded) {
    check_packet(&decoded.packet);
    for e in &decoded.rejected {
        assert!(!e.reason.is_empty());
        assert!(
            e.to_string().len() <= MAX_ERROR_TEXT,
            "error text too long: {e}"
        );
        assert!(e.record.len() <= logdist_core::decoded::MAX_RECORD_KEPT);
        assert!(e.record.len() <= e.record_len);
    }
}

pub fn check_packet(packet: &Packet) {
    if packet.messages == 0 {
        assert!(packet.ndjson.is_empty(), "an empty packet has no lines");
        return;
    }
    let again = decode_packet(packet.ndjson.clone(), Format::Ndjson).expect("the NDJSON decodes");
    assert_eq!(&again, packet, "decoding the NDJSON again is the identity");
    let lines = packet.ndjson[..packet.ndjson.len() - 1].split(|&b| b == b'\n');
    for line in lines {
        let v: Value = serde_json::from_slice(line).expect("a line is JSON");
        assert!(v["timestamp"].is_i64(), "timestamp: {v}");
        for field in ["severity", "source"] {
            assert!(!v[field].as_str().expect(field).is_empty(), "{field}: {v}");
        }
        assert!(v["message"].is_string(), "message: {v}");
    }
}

pub fn check_error(e: &PacketError) {
    assert!(!e.reason.is_empty());
    assert!(
        e.to_string().len() <= MAX_ERROR_TEXT,
        "error text too long: {e}"
    );
}

pub fn check(result: &Result<Decoded, PacketError>) {
    match result {
        Ok(decoded) => check_decoded(decoded),
        Err(e) => check_error(e),
    }
}

/// The body as `Bytes`, for the decoders that take it.
pub fn bytes(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(data)
}
