//! Fuzzes the packet decoder and validator of logdist-core with arbitrary bytes.
//!
//! Every input goes to `decode_packet` as NDJSON and as JSON, and to `decode_message`.
//! None may panic, and each answer must hold up:
//! - an accepted packet's `ndjson` is one message object a line, each with the four
//!   required fields of the right types; decoded again as NDJSON it gives the very same
//!   bytes and count; the count is the number of non-blank lines (NDJSON) or of elements
//!   (JSON), and each forwarded message is the input's message, value for value;
//! - a rejection names a line or index inside the input, that line or element is bad on
//!   its own, and every one before it is blank or good: the first bad message;
//! - the same messages give the same count as NDJSON and as a JSON array;
//! - an error's text stays short whatever the input.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use logdist_core::message::Location;
use logdist_core::{Format, Packet, PacketError, decode_message, decode_packet};
use serde_json::Value;
use serde_json::value::RawValue;

/// The longest error text any input may produce (the decoder's own cap plus its context).
const MAX_ERROR_TEXT: usize = 512;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let ndjson = decode_packet(body.clone(), Format::Ndjson);
    check_ndjson(data, &ndjson);
    let json = decode_packet(body, Format::Json);
    check_json(data, &json);
    check_message(data, &json, &decode_message(data));
});

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The lines of an NDJSON body as the decoder numbers them, without a trailing `\r`.
fn lines(body: &[u8]) -> Vec<&[u8]> {
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

fn check_error(e: &PacketError) {
    assert!(!e.reason.is_empty());
    assert!(
        e.to_string().len() <= MAX_ERROR_TEXT,
        "error text too long: {e}"
    );
}

/// What every accepted packet must be, whatever it came from. Returns its messages.
fn check_forwarded(p: &Packet) -> Vec<Value> {
    assert!(p.messages >= 1);
    assert_eq!(
        p.ndjson.last(),
        Some(&b'\n'),
        "forwarded NDJSON ends in a newline"
    );
    let body = &p.ndjson[..p.ndjson.len() - 1];
    let values: Vec<Value> = body
        .split(|&b| b == b'\n')
        .map(|line| {
            let v: Value = serde_json::from_slice(line).expect("a forwarded line is JSON");
            let o = v.as_object().expect("a forwarded line is an object");
            assert!(o["timestamp"].is_i64(), "timestamp: {v}");
            assert!(!o["severity"].as_str().expect("severity").is_empty());
            assert!(!o["source"].as_str().expect("source").is_empty());
            assert!(o["message"].is_string(), "message: {v}");
            v
        })
        .collect();
    assert_eq!(values.len(), p.messages as usize);
    let again = decode_packet(p.ndjson.clone(), Format::Ndjson).expect("forwarded NDJSON decodes");
    assert_eq!(again, *p, "decoding the forwarded NDJSON is the identity");
    values
}

fn check_ndjson(data: &[u8], result: &Result<Packet, PacketError>) {
    let lines = lines(data);
    match result {
        Ok(p) => {
            let inputs: Vec<Value> = lines
                .iter()
                .filter(|l| !is_blank(l))
                .map(|l| serde_json::from_slice(l).expect("an accepted line is JSON"))
                .collect();
            assert_eq!(check_forwarded(p), inputs, "messages forwarded as sent");
            // The same messages as a JSON array: the same count.
            let array = format!(
                "[{}]",
                lines
                    .iter()
                    .filter(|l| !is_blank(l))
                    .map(|l| String::from_utf8_lossy(l))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let as_json = decode_packet(Bytes::from(array), Format::Json)
                .expect("accepted NDJSON is accepted as a JSON array");
            assert_eq!(as_json.messages, p.messages);
        }
        Err(e) => {
            check_error(e);
            match e.location {
                Location::Body => assert!(is_blank(data), "NDJSON body error: {e}"),
                Location::Line(n) => {
                    assert!(n >= 1 && n <= lines.len(), "line {n} of {}", lines.len());
                    first_bad(&lines, n - 1);
                }
                Location::Index(_) => panic!("an NDJSON error names an index: {e}"),
            }
        }
    }
}

/// `items[at]` is the first item that is not blank and not a valid message.
fn first_bad(items: &[&[u8]], at: usize) {
    for item in &items[..at] {
        assert!(is_blank(item) || decode_message(item).is_ok());
    }
    assert!(!is_blank(items[at]) && decode_message(items[at]).is_err());
}

fn check_json(data: &[u8], result: &Result<Packet, PacketError>) {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    let elements = if first == Some(&b'{') {
        None
    } else {
        serde_json::from_slice::<Vec<&RawValue>>(data).ok()
    };
    match result {
        Ok(p) => {
            let inputs: Vec<Value> = match &elements {
                None => vec![serde_json::from_slice(data).expect("an accepted object")],
                Some(items) => items
                    .iter()
                    .map(|i| serde_json::from_str(i.get()).unwrap())
                    .collect(),
            };
            assert_eq!(check_forwarded(p), inputs, "messages forwarded as sent");
        }
        Err(e) => {
            check_error(e);
            match e.location {
                Location::Body => match &elements {
                    // An array whose every element is a message cannot fail as a whole.
                    Some(items) if !items.is_empty() => {
                        panic!("a body error for a non-empty array: {e}")
                    }
                    _ => {}
                },
                Location::Index(i) => {
                    let items = elements.expect("an index error for a body that is no array");
                    assert!(i < items.len(), "index {i} of {}", items.len());
                    let raw: Vec<&[u8]> = items.iter().map(|r| r.get().as_bytes()).collect();
                    first_bad(&raw, i);
                }
                Location::Line(_) => panic!("a JSON error names a line: {e}"),
            }
        }
    }
}

fn check_message(
    data: &[u8],
    json: &Result<Packet, PacketError>,
    result: &Result<Packet, PacketError>,
) {
    match result {
        Ok(p) => {
            assert_eq!(p.messages, 1);
            check_forwarded(p);
            assert_eq!(
                json.as_ref().ok(),
                Some(p),
                "a lone object is a packet of one"
            );
        }
        Err(e) => {
            check_error(e);
            assert_eq!(e.location, Location::Body);
            let first = data.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'{') {
                assert_eq!(json.as_ref().err(), Some(e), "a lone object fails alike");
            }
        }
    }
}
