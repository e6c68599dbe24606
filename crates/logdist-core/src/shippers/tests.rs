use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::decode_packet;
use crate::decoded::MAX_RECORD_KEPT;

const NOW_MS: u64 = 1_796_553_000_000;
const HELLO: &str =
    r#"{"timestamp":1020,"severity":"WARN","source":"app","message":"hello world!"}"#;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS)
}

fn decode(body: &str, format: Format) -> Result<Decoded, PacketError> {
    decode_records(
        Bytes::copy_from_slice(body.as_bytes()),
        format,
        Validation::Full,
        &Schema::default(),
        now(),
    )
}

fn messages(decoded: &Decoded) -> Vec<Value> {
    std::str::from_utf8(&decoded.packet.ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn fluent_bit_http_output_json_lines_and_json() {
    // `format json_lines` and `format json` with the default `json_date_key date` and
    // `json_date_format double`.
    let lines = "{\"date\":1796552910.306,\"log\":\"GET / 200\"}\n{\"date\":1796552910.412,\"log\":\"GET /favicon.ico 404\"}\n";
    let array = "[{\"date\":1796552910.306,\"log\":\"GET / 200\"},{\"date\":1796552910.412,\"log\":\"GET /favicon.ico 404\"}]";
    for (body, format) in [(lines, Format::Ndjson), (array, Format::Json)] {
        let decoded = decode(body, format).unwrap();
        assert_eq!(decoded.rejected, []);
        assert_eq!(decoded.packet.messages, 2);
        assert_eq!(
            messages(&decoded),
            [
                json!({"timestamp": 1_796_552_910_306_u64, "severity": "INFO", "source": "unknown", "message": "GET / 200"}),
                json!({"timestamp": 1_796_552_910_412_u64, "severity": "INFO", "source": "unknown", "message": "GET /favicon.ico 404"}),
            ]
        );
    }
}

#[test]
fn vector_http_sink_ndjson() {
    // Vector's `http` sink with `encoding.codec = "json"` and `framing.method =
    // "newline_delimited"`, of a `file` source.
    let body = concat!(
        r#"{"file":"/var/log/app.log","host":"web-1","message":"started","source_type":"file","timestamp":"2026-12-06T10:28:30.306Z"}"#,
        "\n",
        r#"{"file":"/var/log/app.log","host":"web-1","message":"ready","source_type":"file","timestamp":"2026-12-06T10:28:30.307123Z"}"#,
        "\n",
    );
    let decoded = decode(body, Format::Ndjson).unwrap();
    assert_eq!(decoded.rejected, []);
    let got = messages(&decoded);
    assert_eq!(got[0]["timestamp"], 1_796_552_910_306_u64);
    assert_eq!(got[1]["timestamp"], 1_796_552_910_307_u64);
    assert_eq!(got[1]["source"], "web-1");
    assert_eq!(got[1]["source_type"], "file");
}

#[test]
fn syslog_ng_http_with_format_json() {
    // `body("$(format-json ISODATE HOST PROGRAM MESSAGE)\n")` in a `http()` destination.
    let body = "{\"PROGRAM\":\"sshd\",\"MESSAGE\":\"Accepted publickey for ops\",\"ISODATE\":\"2026-12-06T10:28:30+00:00\",\"HOST\":\"bastion\"}\n";
    let decoded = decode(body, Format::Ndjson).unwrap();
    assert_eq!(decoded.rejected, []);
    let got = &messages(&decoded)[0];
    assert_eq!(got["message"], "Accepted publickey for ops");
    assert_eq!(got["timestamp"], 1_796_552_910_000_u64);
    assert_eq!(got["source"], "sshd");
    assert_eq!(got["HOST"], "bastion");
}

#[test]
fn winston_http_transport_batch() {
    // winston's Http transport with `batch: true` posts a JSON array of `info` objects.
    let body = r#"[{"level":"info","message":"listening","timestamp":"2026-12-06T10:28:30.306Z"},{"level":"error","message":"EADDRINUSE","timestamp":"2026-12-06T10:28:31.000Z","stack":"Error: ..."}]"#;
    let decoded = decode(body, Format::Json).unwrap();
    let got = messages(&decoded);
    assert_eq!(got[0]["severity"], "INFO");
    assert_eq!(got[1]["severity"], "ERROR");
    assert_eq!(got[1]["stack"], "Error: ...");
    // A lone object (batch off) is a packet of one.
    let one = decode(
        r#"{"level":"info","message":"listening","timestamp":"2026-12-06T10:28:30.306Z"}"#,
        Format::Json,
    )
    .unwrap();
    assert_eq!(one.packet.messages, 1);
}

#[test]
fn messages_already_are_forwarded_as_sent() {
    let body = Bytes::from(format!("{HELLO}\n{HELLO}\n"));
    let decoded = decode_records(
        body.clone(),
        Format::Ndjson,
        Validation::Full,
        &Schema::default(),
        now(),
    )
    .unwrap();
    assert_eq!(
        decoded.packet.ndjson.as_ptr(),
        body.as_ptr(),
        "not even copied"
    );
    // Among records to map, they are still written as sent.
    let mixed = format!("{HELLO}\n{{\"msg\":\"m\"}}\r\n\n{HELLO}");
    let decoded = decode(&mixed, Format::Ndjson).unwrap();
    let text = std::str::from_utf8(&decoded.packet.ndjson).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!((lines[0], lines[2]), (HELLO, HELLO));
}

#[test]
fn bad_records_do_not_fail_the_others() {
    let long = format!("{{\"text\":\"{}\"}}", "x".repeat(20_000));
    let body = format!("{HELLO}\n{{\"level\":\"info\"}}\nnot json\n{long}\n{{\"msg\":\"ok\"}}\n");
    let decoded = decode(&body, Format::Ndjson).unwrap();
    assert_eq!(decoded.packet.messages, 2);
    let rejected: Vec<(Location, &str)> = decoded
        .rejected
        .iter()
        .map(|e| (e.location, &e.reason[..e.reason.len().min(10)]))
        .collect();
    assert_eq!(
        rejected,
        [
            (Location::Line(2), "no message"),
            (Location::Line(3), "expected a"),
            (Location::Line(4), "no message")
        ]
    );
    assert_eq!(&decoded.rejected[0].record[..], b"{\"level\":\"info\"}");
    assert_eq!(
        decoded.rejected[1].to_string(),
        "line 3: expected a JSON object"
    );
    let cut = &decoded.rejected[2];
    assert!(cut.truncated());
    assert_eq!(
        (cut.record.len(), cut.record_len),
        (MAX_RECORD_KEPT, long.len())
    );
    let first = decode(&body, Format::Ndjson)
        .unwrap()
        .into_packet()
        .unwrap_err();
    assert_eq!(
        first.to_string(),
        "line 2: no message: none of message, msg, log, MESSAGE, body, event, @m is a field of the record"
    );

    let array = format!("[{HELLO}, 5, {{\"msg\":\"m\"}}]");
    let decoded = decode(&array, Format::Json).unwrap();
    assert_eq!(decoded.packet.messages, 2);
    assert_eq!(decoded.rejected[0].location, Location::Index(1));
    assert_eq!(&decoded.rejected[0].record[..], b"5");
}

#[test]
fn bodies_that_are_not_json_fail_whole() {
    for (body, format) in [
        ("hello\nworld\n", Format::Ndjson),
        ("<html></html>", Format::Json),
        ("[{\"msg\":1}", Format::Json),
        ("{\"msg\":", Format::Json),
        ("  \n", Format::Ndjson),
    ] {
        assert!(decode(body, format).is_err(), "{body:?}");
    }
    // A line of JSON among them makes it a body of records, some bad.
    let decoded = decode("hello\n[1]\n", Format::Ndjson).unwrap();
    assert_eq!((decoded.packet.messages, decoded.rejected.len()), (0, 2));
}

#[test]
fn strict_refuses_what_is_not_a_message() {
    let body = format!("{HELLO}\n{{\"msg\":\"m\"}}\n");
    let decoded = decode_records(
        Bytes::from(body),
        Format::Ndjson,
        Validation::Full,
        &Schema::Strict,
        now(),
    )
    .unwrap();
    assert_eq!(decoded.packet.messages, 1);
    assert_eq!(
        decoded.rejected[0].to_string(),
        "line 2: missing field `timestamp` (column 11)"
    );
}

// === Properties ===

/// Records of every kind: messages, shippers' objects, bad objects, not objects, blanks.
fn record() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(HELLO.to_owned()),
        1 => Just(format!(" {HELLO}\r")),
        3 => (0u32..2_000_000_000, "[a-z ]{0,12}").prop_map(|(s, m)| format!("{{\"date\":{s}.5,\"log\":\"{m}\"}}")),
        2 => ("[a-z]{1,5}", "\\PC{0,12}").prop_map(|(l, m)| json!({"level": l, "msg": m, "host": "h"}).to_string()),
        1 => Just(r#"{"timestamp":"2026-12-06T10:28:30Z","message":"m","severity":"","source":"s"}"#.to_owned()),
        1 => Just(r#"{"level":"info"}"#.to_owned()),
        1 => Just("{\"msg\":\"m\",\"n\":1e999}".to_owned()),
        1 => Just("[1]".to_owned()),
        1 => Just("{".to_owned()),
        1 => Just(String::new()),
        1 => "\\PC{0,16}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Every record of an accepted body is one line of the packet or one rejection; every
    /// line is a message the native decoder accepts; messages are forwarded as sent.
    #[test]
    fn every_record_is_a_message_or_a_rejection(
        records in prop::collection::vec(record(), 0..10),
        as_json in any::<bool>(),
    ) {
        let (body, format) = if as_json {
            (format!("[{}]", records.join(",")), Format::Json)
        } else {
            (records.join("\n"), Format::Ndjson)
        };
        let Ok(decoded) = decode(&body, format) else { return Ok(()) };
        let packet = &decoded.packet;
        if packet.messages > 0 {
            let again = decode_packet(packet.ndjson.clone(), Format::Ndjson);
            prop_assert_eq!(again.as_ref(), Ok(packet));
        } else {
            prop_assert!(packet.ndjson.is_empty());
        }
        let lines: Vec<&[u8]> = packet.ndjson.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        prop_assert_eq!(lines.len(), packet.messages as usize);
        if format == Format::Ndjson {
            let records: Vec<&str> = records.iter().flat_map(|r| r.split('\n')).map(|r| r.strip_suffix('\r').unwrap_or(r)).filter(|r| !r.trim().is_empty()).collect();
            prop_assert_eq!(records.len(), lines.len() + decoded.rejected.len());
            // Messages already are forwarded byte for byte, in order among the lines.
            let mut line = lines.iter();
            for record in records {
                if validate(record).is_ok() {
                    prop_assert_eq!(line.next().copied(), Some(record.trim().as_bytes()));
                } else if !decoded.rejected.iter().any(|e| &e.record[..] == record.as_bytes()) {
                    line.next();
                }
            }
        }
    }

    /// With the strict schema, refusing a body at its first bad record is today's decoder.
    #[test]
    fn strict_is_the_native_decoder(
        records in prop::collection::vec(record(), 0..8),
        as_json in any::<bool>(),
        bad in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let (body, format) = if as_json {
            (format!("[{}]", records.join(",")), Format::Json)
        } else {
            (records.join("\n"), Format::Ndjson)
        };
        let mut body = body.into_bytes();
        if let Some((at, byte)) = bad {
            body.insert(at.index(body.len() + 1), byte);
        }
        let body = Bytes::from(body);
        let strict = decode_records(body.clone(), format, Validation::Full, &Schema::Strict, now());
        prop_assert_eq!(strict.and_then(Decoded::into_packet), decode_packet(body, format));
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256), as_json in any::<bool>()) {
        let format = if as_json { Format::Json } else { Format::Ndjson };
        let decoded = decode_records(Bytes::from(body), format, Validation::Full, &Schema::default(), now());
        if let Ok(decoded) = decoded && decoded.packet.messages > 0 {
            prop_assert!(decode_packet(decoded.packet.ndjson, Format::Ndjson).is_ok());
        }
    }
}
