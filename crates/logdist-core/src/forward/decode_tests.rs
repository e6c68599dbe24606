use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::forward::encode_ack;
use crate::shippers::Schema;

/// The bytes Python's msgpack 1.1.2 wrote for each mode (`testdata/forward_golden.py`).
const GOLDEN: &[(&str, &str)] = &[
    (
        "message_eventtime",
        "93a76170702e776562d7006b1538ce123d308182a76d657373616765a568656c6c6fa56c6576656ca47761726e",
    ),
    (
        "message_int_chunk",
        "94a76170702e776562ce6b1538ce82a76d657373616765a568656c6c6fa56c6576656ca47761726e81a56368756e6ba26331",
    ),
    (
        "forward",
        "93a76170702e7765629292d7006b1538ce123d308182a76d657373616765a568656c6c6fa56c6576656ca47761726e92ce6b1538cf83a36c6f67a67365636f6e64a773657276696365a3617069a16e0282a56368756e6ba26332a473697a6502",
    ),
    (
        "packed_forward",
        "93a76170702e776562c44692d7006b1538ce123d308182a76d657373616765a568656c6c6fa56c6576656ca47761726e92ce6b1538cf83a36c6f67a67365636f6e64a773657276696365a3617069a16e0282a56368756e6ba26333a473697a6502",
    ),
    (
        "compressed_packed_forward",
        "93a76170702e776562c45b1f8b08000000000002039b749d215bd4e29c90ad4163d3f2dcd4e2e2c4f4d4a519a93939f94b7352cb527396942716e54d3a075473be79714e7efab2e2d4e4fcbc94e5c5a9456599c9a98b130b3217e63101001ad456524600000083a56368756e6ba26334a473697a6502aa636f6d70726573736564a4677a6970",
    ),
    (
        "message_float",
        "93a76170702e776562cb41dac54e33a0000081a36d7367a166",
    ),
];

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn golden(name: &str) -> Vec<u8> {
    unhex(GOLDEN.iter().find(|(n, _)| *n == name).unwrap().1)
}

fn lines(events: &Events) -> Vec<Value> {
    std::str::from_utf8(&events.decoded.packet.ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The first entry of the golden frames, mapped: EventTime in milliseconds (rounded down),
/// `level` read as the severity, the tag as the source.
fn first() -> Value {
    json!({"timestamp": 1796552910306_i64, "severity": "WARN", "source": "app.web",
           "message": "hello", "severity_original": "warn"})
}

/// The second: integer seconds, `service` is the source, so the tag is kept as a field.
fn second() -> Value {
    json!({"timestamp": 1796552911000_i64, "severity": "INFO", "source": "api",
           "message": "second", "n": 2, "tag": "app.web"})
}

#[test]
fn every_mode_of_the_golden_bytes_decodes() {
    let options = DecodeOptions::default();
    let table: &[(&str, Option<&str>, Vec<Value>)] = &[
        ("message_eventtime", None, vec![first()]),
        ("message_int_chunk", Some("c1"), {
            let mut v = first();
            v["timestamp"] = json!(1796552910000_i64);
            vec![v]
        }),
        ("forward", Some("c2"), vec![first(), second()]),
        ("packed_forward", Some("c3"), vec![first(), second()]),
        (
            "compressed_packed_forward",
            Some("c4"),
            vec![first(), second()],
        ),
        (
            "message_float",
            None,
            vec![json!({"timestamp": 1796552910500_i64, "severity": "INFO",
                        "source": "app.web", "message": "f"})],
        ),
    ];
    assert_eq!(table.len(), GOLDEN.len());
    for (name, chunk, expected) in table {
        let bytes = golden(name);
        assert_eq!(
            frame(&bytes, 1 << 20),
            Ok(Frame::Complete(bytes.len())),
            "{name}"
        );
        let events = decode_forward(&bytes, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(events.tag, "app.web");
        assert_eq!(events.chunk.as_deref(), *chunk, "{name}");
        assert_eq!(events.entries, expected.len(), "{name}");
        assert!(events.decoded.rejected.is_empty(), "{name}");
        assert_eq!(events.decoded.packet.messages as usize, expected.len());
        assert_eq!(&lines(&events), expected, "{name}");
    }
}

#[test]
fn the_timestamp_is_written_in_the_configured_unit() {
    let mapping = crate::mapping::Mapping {
        unit: crate::TimestampUnit::Nanoseconds,
        ..Default::default()
    };
    let options = DecodeOptions {
        schema: std::sync::Arc::new(Schema::Map(mapping)),
        ..Default::default()
    };
    let events = decode_forward(&golden("message_eventtime"), &options).unwrap();
    assert_eq!(
        lines(&events)[0]["timestamp"],
        json!(1796552910306000001_i64)
    );
}

#[test]
fn every_prefix_of_a_frame_is_partial() {
    for (name, hex) in GOLDEN {
        let bytes = unhex(hex);
        for cut in 0..bytes.len() {
            match frame(&bytes[..cut], 1 << 20) {
                Ok(Frame::Partial { at_least }) => {
                    assert!(at_least > cut && at_least <= bytes.len(), "{name} at {cut}")
                }
                other => panic!("{name} cut at {cut}: {other:?}"),
            }
            assert!(decode_forward(&bytes[..cut], &DecodeOptions::default()).is_err());
        }
        // Two frames back to back: the first is cut off.
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(frame(&two, 1 << 20), Ok(Frame::Complete(bytes.len())));
    }
}

#[test]
fn hostile_frames_are_errors() {
    let limit = 1024;
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "a map",
            &[0x81, 0xa1, b'a', 0x01],
            "expected a forward frame",
        ),
        (
            "a string",
            &[0xa3, b'a', b'b', b'c'],
            "expected a forward frame",
        ),
        ("0xc1", &[0x91, 0xc1], "0xc1"),
        // An array that claims 4G elements, in 5 bytes.
        (
            "lying array",
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            "elements claimed",
        ),
        // A map that claims 4G pairs inside.
        (
            "lying map",
            &[0x91, 0xdf, 0xff, 0xff, 0xff, 0xff],
            "elements claimed",
        ),
        // A bin of 4 GB.
        (
            "lying bin",
            &[0x92, 0xa1, b't', 0xc6, 0xff, 0xff, 0xff, 0xff],
            "longer than the limit",
        ),
        (
            "lying str",
            &[0x92, 0xa1, b't', 0xdb, 0x00, 0x01, 0x00, 0x00],
            "longer than the limit",
        ),
        (
            "lying ext",
            &[0x92, 0xa1, b't', 0xc9, 0x00, 0x01, 0x00, 0x00, 0x00],
            "longer than the limit",
        ),
    ];
    for (name, bytes, reason) in cases {
        let e = frame(bytes, limit).expect_err(name);
        assert!(e.reason.contains(reason), "{name}: {e}");
    }
    // A frame longer than the limit, element by element.
    let mut long = vec![0xdc, 0x04, 0x00];
    long.extend(std::iter::repeat_n(0xc0, 1024));
    assert!(frame(&long, 1000).is_err());
    assert_eq!(frame(&long, 2000), Ok(Frame::Complete(long.len())));
}

/// Frames that frame but are no forward frame: wrong types and shapes.
#[test]
fn frames_of_the_wrong_shape_are_refused_whole() {
    let options = DecodeOptions::default();
    let cases: &[(&str, Vec<u8>, &str)] = &[
        ("empty array", vec![0x90], "array of 2 to 4"),
        ("tag not a string", vec![0x93, 0x01, 0x01, 0x80], "the tag"),
        (
            "time a string",
            pack(|w| {
                arr(w, 3);
                s(w, "t");
                s(w, "yesterday");
                map(w, 0);
            }),
            "",
        ),
        (
            "message mode of 5",
            pack(|w| {
                arr(w, 4);
                s(w, "t");
                int(w, 1);
                map(w, 0);
                int(w, 3);
            }),
            "the option: expected a map",
        ),
        (
            "forward entry not a pair",
            pack(|w| {
                arr(w, 2);
                s(w, "t");
                arr(w, 1);
                arr(w, 3);
                int(w, 1);
                map(w, 0);
                int(w, 2);
            }),
            "expected [time, record]",
        ),
        (
            "forward time a map",
            pack(|w| {
                arr(w, 2);
                s(w, "t");
                arr(w, 1);
                arr(w, 2);
                map(w, 0);
                map(w, 0);
            }),
            "expected a time",
        ),
        (
            "size disagrees",
            pack(|w| {
                arr(w, 3);
                s(w, "t");
                arr(w, 1);
                arr(w, 2);
                int(w, 1);
                map(w, 0);
                map(w, 1);
                s(w, "size");
                int(w, 2);
            }),
            "`size` says 2",
        ),
        (
            "chunk not a string",
            pack(|w| {
                arr(w, 4);
                s(w, "t");
                int(w, 1);
                map(w, 0);
                map(w, 1);
                s(w, "chunk");
                int(w, 2);
            }),
            "`chunk`",
        ),
        (
            "unknown compression",
            pack(|w| {
                arr(w, 3);
                s(w, "t");
                bin(w, &[]);
                map(w, 1);
                s(w, "compressed");
                s(w, "zstd");
            }),
            "`zstd`",
        ),
        (
            "gzip that is not",
            pack(|w| {
                arr(w, 3);
                s(w, "t");
                bin(w, b"plain");
                map(w, 1);
                s(w, "compressed");
                s(w, "gzip");
            }),
            "not gzip",
        ),
        (
            "packed entries cut",
            pack(|w| {
                arr(w, 2);
                s(w, "t");
                bin(w, &[0x92, 0x01]);
            }),
            "packed entries",
        ),
        (
            "eventtime of 2 s of nanoseconds",
            pack(|w| {
                arr(w, 3);
                s(w, "t");
                rmp::encode::write_ext_meta(w, 8, 0).unwrap();
                w.extend_from_slice(&[0, 0, 0, 1, 0x77, 0x35, 0x94, 0x00]);
                map(w, 0);
            }),
            "more than a second",
        ),
        (
            "bytes after",
            {
                let mut b = golden("message_eventtime");
                b.push(0xc0);
                b
            },
            "after the frame's end",
        ),
    ];
    for (name, bytes, reason) in cases {
        let e = decode_forward(bytes, &options).expect_err(name);
        assert_eq!(e.location, Location::Body, "{name}");
        assert!(e.reason.contains(reason), "{name}: {e}");
    }
}

#[test]
fn gzip_is_bounded_by_the_limit() {
    let entries: Vec<u8> = (0..2000)
        .flat_map(|i| {
            pack(|w| {
                arr(w, 2);
                int(w, 1);
                map(w, 1);
                s(w, "message");
                s(w, &format!("line {i} {}", "x".repeat(100)));
            })
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &entries).unwrap();
    let gz = gz.finish().unwrap();
    let bytes = pack(|w| {
        arr(w, 3);
        s(w, "t");
        bin(w, &gz);
        map(w, 1);
        s(w, "compressed");
        s(w, "gzip");
    });
    let small = DecodeOptions {
        max_len: entries.len() - 1,
        ..Default::default()
    };
    let e = decode_forward(&bytes, &small).unwrap_err();
    assert!(e.reason.contains("more than the limit"), "{e}");
    let fits = DecodeOptions {
        max_len: entries.len(),
        ..Default::default()
    };
    assert_eq!(
        decode_forward(&bytes, &fits)
            .unwrap()
            .decoded
            .packet
            .messages,
        2000
    );
    // Two gzip members, as Fluent Bit appends them, are one stream.
    let mut two = gz.clone();
    two.extend_from_slice(&gz);
    let bytes = pack(|w| {
        arr(w, 3);
        s(w, "t");
        bin(w, &two);
        map(w, 1);
        s(w, "compressed");
        s(w, "gzip");
    });
    assert_eq!(
        decode_forward(&bytes, &DecodeOptions::default())
            .unwrap()
            .entries,
        4000
    );
}

#[test]
fn a_bad_record_is_refused_alone() {
    let bytes = pack(|w| {
        arr(w, 2);
        s(w, "t");
        arr(w, 4);
        for record in 0..4 {
            arr(w, 2);
            int(w, 1796552910);
            match record {
                // Not UTF-8.
                0 => {
                    map(w, 1);
                    s(w, "message");
                    bin(w, &[0xff, 0xfe]);
                }
                // No message to map.
                1 => {
                    map(w, 1);
                    s(w, "other");
                    int(w, 1);
                }
                // Not a map.
                2 => s(w, "just text"),
                _ => {
                    map(w, 2);
                    s(w, "message");
                    s(w, "ok");
                    int(w, 7);
                    nil(w);
                }
            }
        }
    });
    let events = decode_forward(&bytes, &DecodeOptions::default()).unwrap();
    assert_eq!(events.entries, 4);
    let rejected = &events.decoded.rejected;
    assert_eq!(
        rejected.iter().map(|r| r.location).collect::<Vec<_>>(),
        [Location::Index(0), Location::Index(1), Location::Index(2)]
    );
    assert!(rejected[0].reason.contains("not UTF-8"), "{}", rejected[0]);
    assert!(rejected[1].reason.contains("message"), "{}", rejected[1]);
    assert!(rejected[2].reason.contains("a map"), "{}", rejected[2]);
    // The mapped JSON of a record the mapping refused is kept, for the dead-letter file.
    assert!(
        std::str::from_utf8(&rejected[1].record)
            .unwrap()
            .contains("\"other\":1")
    );
    assert_eq!(
        lines(&events),
        [
            json!({"timestamp": 1796552910000_i64, "severity": "INFO", "source": "t",
                "message": "ok", "7": null})
        ]
    );
}

#[test]
fn a_records_own_fields_come_first() {
    let bytes = pack(|w| {
        arr(w, 3);
        s(w, "the.tag");
        int(w, 1796552910);
        map(w, 5);
        s(w, "timestamp");
        int(w, 1000);
        s(w, "severity");
        s(w, "ERROR");
        s(w, "source");
        s(w, "mine");
        s(w, "message");
        s(w, "m");
        s(w, "nested");
        map(w, 1);
        s(w, "t");
        rmp::encode::write_ext_meta(w, 8, 0).unwrap();
        w.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 5]);
    });
    let events = decode_forward(&bytes, &DecodeOptions::default()).unwrap();
    // A message already: forwarded as sent, nothing added.
    assert_eq!(
        lines(&events),
        [
            json!({"timestamp": 1000, "severity": "ERROR", "source": "mine", "message": "m",
                "nested": {"t": 2.000000005}})
        ]
    );
}

#[test]
fn strict_schema_refuses_records_that_are_not_messages() {
    let options = DecodeOptions {
        schema: std::sync::Arc::new(Schema::Strict),
        ..Default::default()
    };
    let events = decode_forward(&golden("forward"), &options).unwrap();
    assert_eq!(events.decoded.packet.messages, 0);
    assert_eq!(events.decoded.rejected.len(), 2);
}

#[test]
fn fluent_bits_entries_with_metadata_are_read() {
    let bytes = pack(|w| {
        arr(w, 2);
        s(w, "fb");
        arr(w, 1);
        arr(w, 2);
        arr(w, 2);
        int(w, 1796552910);
        map(w, 1);
        s(w, "meta");
        s(w, "data");
        map(w, 1);
        s(w, "log");
        s(w, "line");
    });
    let events = decode_forward(&bytes, &DecodeOptions::default()).unwrap();
    assert_eq!(
        lines(&events),
        [
            json!({"timestamp": 1796552910000_i64, "severity": "INFO", "source": "fb",
                "message": "line"})
        ]
    );
}

#[test]
fn the_ack_is_a_map_of_the_chunk() {
    let ack = encode_ack("c3Vw");
    let value = rmpv::decode::read_value(&mut &ack[..]).unwrap();
    assert_eq!(
        value,
        rmpv::Value::Map(vec![(rmpv::Value::from("ack"), rmpv::Value::from("c3Vw"))])
    );
}

// === MessagePack written for the tests, with rmp ===

fn pack(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

fn arr(w: &mut Vec<u8>, n: u32) {
    rmp::encode::write_array_len(w, n).unwrap();
}

fn map(w: &mut Vec<u8>, n: u32) {
    rmp::encode::write_map_len(w, n).unwrap();
}

fn s(w: &mut Vec<u8>, text: &str) {
    rmp::encode::write_str(w, text).unwrap();
}

fn bin(w: &mut Vec<u8>, bytes: &[u8]) {
    rmp::encode::write_bin(w, bytes).unwrap();
}

fn int(w: &mut Vec<u8>, n: i64) {
    rmp::encode::write_sint(w, n).unwrap();
}

fn nil(w: &mut Vec<u8>) {
    rmp::encode::write_nil(w).unwrap();
}

fn event_time(w: &mut Vec<u8>, seconds: u32, nanos: u32) {
    rmp::encode::write_ext_meta(w, 8, 0).unwrap();
    w.extend_from_slice(&seconds.to_be_bytes());
    w.extend_from_slice(&nanos.to_be_bytes());
}

/// An entry of the round trip: a time, and a record's message and other fields.
fn entry_strategy() -> impl Strategy<Value = (u32, u32, String, Vec<(String, i64)>)> {
    (
        0u32..=u32::MAX,
        0u32..1_000_000_000,
        "\\PC{0,40}",
        proptest::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..4)
            .prop_map(|m| m.into_iter().collect()),
    )
}

fn write_entry(
    w: &mut Vec<u8>,
    (seconds, nanos, message, fields): &(u32, u32, String, Vec<(String, i64)>),
) {
    arr(w, 2);
    event_time(w, *seconds, *nanos);
    // Field names of the mapping's lists would be taken by it: prefixed, they are kept.
    map(w, 1 + fields.len() as u32);
    s(w, "message");
    s(w, message);
    for (name, value) in fields {
        s(w, &format!("x_{name}"));
        int(w, *value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_framer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), limit in 0usize..512) {
        match frame(&bytes, limit) {
            Ok(Frame::Complete(n)) => prop_assert!(n <= bytes.len() && n <= limit),
            Ok(Frame::Partial { at_least }) => prop_assert!(at_least > bytes.len()),
            Err(e) => prop_assert!(!e.reason.is_empty()),
        }
        let _ = decode_forward(&bytes, &DecodeOptions::default());
    }

    /// Arbitrary bytes after a valid start: the decoder refuses or reads, never panics.
    #[test]
    fn mangled_frames_never_panic(at in 0usize..200, byte in any::<u8>(), case in 0usize..6) {
        let mut bytes = unhex(GOLDEN[case].1);
        let at = at % bytes.len();
        bytes[at] = byte;
        let _ = frame(&bytes, 1 << 16);
        let _ = decode_forward(&bytes, &DecodeOptions::default());
    }

    /// Entries written in each mode come back as the same messages, times exact to the
    /// nanosecond.
    #[test]
    fn every_mode_round_trips(
        entries in proptest::collection::vec(entry_strategy(), 1..6),
        mode in 0usize..4,
    ) {
        let stream: Vec<u8> = entries.iter().flat_map(|e| pack(|w| write_entry(w, e))).collect();
        let bytes = pack(|w| match mode {
            0 => {
                arr(w, 3);
                s(w, "rt");
                arr(w, entries.len() as u32);
                w.extend_from_slice(&stream);
                map(w, 2);
                s(w, "chunk");
                s(w, "id");
                s(w, "size");
                int(w, entries.len() as i64);
            }
            1 => {
                arr(w, 3);
                s(w, "rt");
                bin(w, &stream);
                map(w, 1);
                s(w, "chunk");
                s(w, "id");
            }
            2 => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gz, &stream).unwrap();
                arr(w, 3);
                s(w, "rt");
                bin(w, &gz.finish().unwrap());
                map(w, 2);
                s(w, "chunk");
                s(w, "id");
                s(w, "compressed");
                s(w, "gzip");
            }
            _ => {
                // Message mode: the first entry alone.
                let e = pack(|w| write_entry(w, &entries[0]));
                arr(w, 4);
                s(w, "rt");
                w.extend_from_slice(&e[1..]);
                map(w, 1);
                s(w, "chunk");
                s(w, "id");
            }
        });
        prop_assert_eq!(frame(&bytes, 1 << 20), Ok(Frame::Complete(bytes.len())));
        let nanos = crate::mapping::Mapping { unit: crate::TimestampUnit::Nanoseconds, ..Default::default() };
        let options = DecodeOptions { schema: std::sync::Arc::new(Schema::Map(nanos)), ..Default::default() };
        let events = decode_forward(&bytes, &options).unwrap();
        prop_assert_eq!(events.chunk.as_deref(), Some("id"));
        let expected = if mode == 3 { &entries[..1] } else { &entries[..] };
        prop_assert!(events.decoded.rejected.is_empty(), "{:?}", events.decoded.rejected);
        let got = lines(&events);
        prop_assert_eq!(got.len(), expected.len());
        for (line, (seconds, nanos, message, fields)) in got.iter().zip(expected) {
            prop_assert_eq!(&line["timestamp"], &json!(i64::from(*seconds) * 1_000_000_000 + i64::from(*nanos)));
            prop_assert_eq!(&line["message"], &json!(message));
            prop_assert_eq!(&line["source"], &json!("rt"));
            for (name, value) in fields {
                prop_assert_eq!(&line[format!("x_{name}")], &json!(value));
            }
        }
    }
}
