use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::proto::*;
use super::*;
use crate::{Format, decode_packet};

const NOW_MS: u64 = 1_796_553_000_000;
const LIMIT: usize = 1 << 20;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS)
}

fn decode(body: &[u8], encoding: LokiEncoding) -> Result<Decoded, PacketError> {
    decode_push(body, encoding, LIMIT, TimestampUnit::Milliseconds, now())
}

fn snappy(request: &PushRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

fn messages(decoded: &Decoded) -> Vec<Value> {
    std::str::from_utf8(&decoded.packet.ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn python_logging_loki() {
    // python-logging-loki's LokiHandler (version "1"): the tags, `severity` and `logger`
    // as labels, one entry per record, the time as a string of nanoseconds.
    let body = r#"{"streams": [{"stream": {"application": "my-app", "severity": "warning", "logger": "root"}, "values": [["1796552910306123456", "disk almost full"]]}]}"#;
    let decoded = decode(body.as_bytes(), LokiEncoding::Json).unwrap();
    assert_eq!(decoded.rejected, []);
    assert_eq!(
        messages(&decoded),
        [json!({
            "timestamp": 1_796_552_910_306_u64,
            "severity": "WARN",
            "source": "my-app",
            "message": "disk almost full",
            "severity_original": "warning",
            "labels": {"application": "my-app", "severity": "warning", "logger": "root"},
        })]
    );
}

#[test]
fn promtail_protobuf_with_structured_metadata() {
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{job="varlogs", service_name="api", filename="/var/log/api.log"}"#.into(),
            entries: vec![
                EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_796_552_910,
                        nanos: 306_000_000,
                    }),
                    line: "level=error msg=\"db down\"".into(),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "detected_level".into(),
                        value: "error".into(),
                    }],
                },
                EntryAdapter {
                    timestamp: None,
                    line: "no time".into(),
                    structured_metadata: vec![],
                },
            ],
        }],
    };
    let decoded = decode(&snappy(&request), LokiEncoding::Protobuf).unwrap();
    let got = messages(&decoded);
    assert_eq!(
        got[0],
        json!({
            "timestamp": 1_796_552_910_306_u64,
            "severity": "ERROR",
            "source": "api",
            "message": "level=error msg=\"db down\"",
            "severity_original": "error",
            "labels": {"job": "varlogs", "service_name": "api", "filename": "/var/log/api.log"},
            "metadata": {"detected_level": "error"},
        })
    );
    assert_eq!(
        (&got[1]["timestamp"], &got[1]["severity"]),
        (&json!(NOW_MS), &json!("INFO"))
    );
}

#[test]
fn pushes_refused_whole_or_by_entry() {
    let bad_labels = PushRequest {
        streams: vec![StreamAdapter {
            labels: "{job=api}".into(),
            entries: vec![],
        }],
    };
    let e = decode(&snappy(&bad_labels), LokiEncoding::Protobuf).unwrap_err();
    assert!(e.reason.starts_with("labels: expected `\"`"), "{e}");
    assert!(decode(b"not snappy", LokiEncoding::Protobuf).is_err());
    assert!(decode(b"{\"streams\":{}}", LokiEncoding::Json).is_err());

    let body = r#"{"streams":[{"stream":{"job":"a"},"values":[["1","ok"],["soon","bad time"],["2"],["3","m",{"trace_id":"t"}]]}]}"#;
    let decoded = decode(body.as_bytes(), LokiEncoding::Json).unwrap();
    assert_eq!(decoded.packet.messages, 2);
    let refused: Vec<String> = decoded.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(
        refused,
        [
            "message at index 1: the time \"soon\" is not epoch nanoseconds",
            "message at index 2: an entry is an array: [\"<epoch ns>\", \"line\"]",
        ]
    );
    assert_eq!(&decoded.rejected[0].record[..], br#"["soon","bad time"]"#);
    assert_eq!(messages(&decoded)[1]["metadata"], json!({"trace_id": "t"}));
}

#[test]
fn a_snappy_bomb_is_refused_before_it_is_inflated() {
    let big = PushRequest {
        streams: vec![StreamAdapter {
            labels: "{}".into(),
            entries: vec![EntryAdapter {
                timestamp: None,
                line: "x".repeat(LIMIT),
                structured_metadata: vec![],
            }],
        }],
    };
    let body = snappy(&big);
    assert!(body.len() < LIMIT / 10);
    let e = decode(&body, LokiEncoding::Protobuf).unwrap_err();
    assert!(e.reason.contains("more than the limit"), "{e}");
}

// === Properties ===

fn request() -> impl Strategy<Value = PushRequest> {
    let entry = (
        prop::option::of((0i64..4_000_000_000, 0i32..1_000_000_000)),
        "\\PC{0,16}",
        prop::collection::vec(("[a-z_]{1,6}", "\\PC{0,6}"), 0..2),
    )
        .prop_map(|(time, line, metadata)| EntryAdapter {
            timestamp: time.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
            line,
            structured_metadata: metadata
                .into_iter()
                .map(|(name, value)| LabelPairAdapter { name, value })
                .collect(),
        });
    let labels = prop::collection::vec(
        (
            prop_oneof![
                Just("level".to_owned()),
                Just("job".to_owned()),
                "[a-z_]{1,6}"
            ],
            prop_oneof![Just("warn".to_owned()), "\\PC{0,6}"],
        ),
        0..4,
    );
    let stream = (labels, prop::collection::vec(entry, 0..4));
    prop::collection::vec(stream, 0..3).prop_map(|streams| PushRequest {
        streams: streams
            .into_iter()
            .map(|(labels, entries)| StreamAdapter {
                labels: format!(
                    "{{{}}}",
                    labels
                        .iter()
                        .map(|(k, v)| format!(
                            "{k}=\"{}\"",
                            v.replace('\\', "\\\\").replace('"', "\\\"")
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                entries,
            })
            .collect(),
    })
}

/// An object of strings as JSON, in the pairs' order.
fn object<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let fields: Vec<String> = pairs
        .map(|(k, v)| format!("{}:{}", Value::from(k), Value::from(v)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The JSON form of a push, with times in nanoseconds.
fn to_json(request: &PushRequest) -> String {
    let streams: Vec<String> = request
        .streams
        .iter()
        .map(|s| {
            let labels = super::labels::parse(&s.labels).unwrap();
            let values: Vec<String> = s
                .entries
                .iter()
                .map(|e| {
                    let t = e.timestamp.as_ref().expect("JSON entries have a time");
                    let ns = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
                    let metadata = object(
                        e.structured_metadata
                            .iter()
                            .map(|p| (p.name.as_str(), p.value.as_str())),
                    );
                    format!("[\"{ns}\",{},{metadata}]", Value::from(e.line.as_str()))
                })
                .collect();
            format!(
                "{{\"stream\":{},\"values\":[{}]}}",
                object(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                values.join(",")
            )
        })
        .collect();
    format!("{{\"streams\":[{}]}}", streams.join(","))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every entry is one message or one refusal; the messages are lines the native decoder
    /// accepts; protobuf and JSON pushes of the same entries give the same messages.
    #[test]
    fn protobuf_and_json_give_the_same_messages(mut request in request()) {
        let entries: usize = request.streams.iter().map(|s| s.entries.len()).sum();
        let decoded = decode(&snappy(&request), LokiEncoding::Protobuf);
        let decoded = decoded.unwrap();
        prop_assert_eq!(decoded.packet.messages as usize + decoded.rejected.len(), entries);
        if decoded.packet.messages > 0 {
            let again = decode_packet(decoded.packet.ndjson.clone(), Format::Ndjson);
            prop_assert_eq!(again.as_ref(), Ok(&decoded.packet));
        }
        for entry in request.streams.iter_mut().flat_map(|s| &mut s.entries) {
            entry.timestamp.get_or_insert(Timestamp { seconds: 1_796_553_000, nanos: 0 });
        }
        let protobuf = decode(&snappy(&request), LokiEncoding::Protobuf).unwrap();
        let json = decode(to_json(&request).as_bytes(), LokiEncoding::Json).unwrap();
        prop_assert_eq!(json.packet, protobuf.packet);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        for encoding in [LokiEncoding::Protobuf, LokiEncoding::Json] {
            if let Ok(decoded) = decode(&body, encoding) && decoded.packet.messages > 0 {
                prop_assert!(decode_packet(decoded.packet.ndjson, Format::Ndjson).is_ok());
            }
        }
    }
}
