//! Fuzzes the syslog framer and decoder with arbitrary bytes: as a TCP stream (cut into
//! frames, with a small limit so that it is crossed too, and each frame decoded) and as
//! one UDP datagram. None may panic; a frame is within the stream and the limit and
//! moves forward; a decoded message is a line the native decoder takes as it is
//! (`common::check_packet`); an error is short.
#![no_main]

mod common;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use logdist_core::Packet;
use logdist_core::syslog::{Framer, SyslogOptions, decode_message};

/// The longest frame taken: small, so that the bound is crossed too.
const MAX_LEN: usize = 512;

/// The arrival time, 2026-12-06T10:00:00Z (RFC 3164's year comes from it).
const NOW_MS: i64 = 1_796_551_200_000;

fn decode(frame: &[u8], out: &mut Vec<u8>, messages: &mut u32) {
    let options = SyslogOptions {
        unit: logdist_core::TimestampUnit::Milliseconds,
        now_ms: NOW_MS,
    };
    let before = out.len();
    match decode_message(frame, &options, out) {
        Ok(()) => *messages += 1,
        Err(e) => {
            assert_eq!(out.len(), before, "nothing is written on an error");
            assert!(!e.0.is_empty() && e.0.len() <= 512, "error text: {e}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let framer = Framer { max_len: MAX_LEN };
    let (mut out, mut messages) = (Vec::new(), 0);
    let mut at = 0;
    loop {
        match framer.next(&data[at..]) {
            Ok(Some(frame)) => {
                assert!(frame.start <= frame.end && frame.end <= frame.consumed);
                assert!(frame.consumed > 0 && at + frame.consumed <= data.len());
                assert!(frame.end - frame.start <= MAX_LEN);
                decode(&data[at + frame.start..at + frame.end], &mut out, &mut messages);
                at += frame.consumed;
            }
            Ok(None) => {
                if let Ok(Some(frame)) = framer.last(&data[at..]) {
                    assert!(at + frame.end <= data.len());
                    decode(&data[at + frame.start..at + frame.end], &mut out, &mut messages);
                }
                break;
            }
            Err(e) => {
                assert!(!e.reason().is_empty() && e.to_string().len() <= 512);
                break;
            }
        }
    }
    decode(data, &mut out, &mut messages);
    common::check_packet(&Packet {
        ndjson: Bytes::from(out),
        messages,
    });
});
