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

// === Encoding: messages back to a push ===

fn encode(lines: &[&str]) -> PushRequest {
    super::encode_push(lines, TimestampUnit::Milliseconds, now())
}

/// The push `request` as the ingest reads it, through snappy as the delivery sends it.
fn decode_encoded(request: &PushRequest) -> Decoded {
    let body = super::push_body(request).unwrap();
    decode(&body, LokiEncoding::Protobuf).unwrap()
}

/// An entry's line, seconds and nanoseconds.
type Entry<'a> = (&'a str, i64, i32);

#[test]
fn a_message_is_its_json_in_a_stream_of_its_severity_and_source() {
    let error = r#"{"timestamp":1796553000123,"severity":"ERROR","source":"payments","message":"card declined","host":"web-1"}"#;
    let info = r#"{"severity":"INFO","source":"api","message":"no time","timestamp":"soon"}"#;
    let other =
        r#"{"timestamp":-1,"severity":"ERROR","source":"payments","message":"before 1970"}"#;
    let request = encode(&[error, info, other, "not json"]);
    let streams: Vec<(&str, Vec<Entry<'_>>)> = request
        .streams
        .iter()
        .map(|s| {
            let entries = s.entries.iter().map(|e| {
                let t = e.timestamp.as_ref().unwrap();
                (e.line.as_str(), t.seconds, t.nanos)
            });
            (s.labels.as_str(), entries.collect())
        })
        .collect();
    assert_eq!(
        streams,
        [
            (
                r#"{severity="ERROR", source="payments"}"#,
                vec![
                    (error, 1_796_553_000, 123_000_000),
                    (other, -1, 999_000_000)
                ]
            ),
            (
                r#"{severity="INFO", source="api"}"#,
                vec![(info, 1_796_553_000, 0)]
            ),
            (
                r#"{severity="INFO", source="unknown"}"#,
                vec![("not json", 1_796_553_000, 0)]
            ),
        ]
    );
    // Read back by the ingest: each logdist message as it was.
    let decoded = decode_encoded(&encode(&[error, other]));
    assert_eq!(
        std::str::from_utf8(&decoded.packet.ndjson).unwrap(),
        format!("{error}\n{other}\n")
    );
    // A line that is no message is the text of one.
    let decoded = decode_encoded(&encode(&["not json"]));
    assert_eq!(messages(&decoded)[0]["message"], "not json");
    assert_eq!(messages(&decoded)[0]["source"], "unknown");
}

#[test]
fn label_values_are_quoted_and_read_back() {
    let line = r#"{"timestamp":1,"severity":"WARN","source":"a \"b\"\\c\nd\u0001é","message":"m"}"#;
    let request = encode(&[line]);
    assert_eq!(
        request.streams[0].labels,
        r#"{severity="WARN", source="a \"b\"\\c\nd\u0001é"}"#
    );
    assert_eq!(
        super::labels::parse(&request.streams[0].labels).unwrap()[1].1,
        "a \"b\"\\c\nd\u{1}é"
    );
    assert_eq!(
        &decode_encoded(&request).packet.ndjson[..],
        format!("{line}\n").as_bytes()
    );
}

#[test]
fn loki_in_loki_out_keeps_labels_line_time_and_metadata() {
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{job="varlogs", service_name="api", level="warning", empty=""}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: 1_796_552_910,
                    nanos: 306_000_000,
                }),
                line: "{\"msg\":\"disk almost full\"}".into(),
                structured_metadata: vec![LabelPairAdapter {
                    name: "trace_id".into(),
                    value: "abc".into(),
                }],
            }],
        }],
    };
    let decoded = decode(&snappy(&request), LokiEncoding::Protobuf).unwrap();
    let lines: Vec<&str> = std::str::from_utf8(&decoded.packet.ndjson)
        .unwrap()
        .lines()
        .collect();
    let again = encode(&lines);
    assert_eq!(
        again.streams[0].labels,
        r#"{job="varlogs", service_name="api", level="warning", severity="WARN", source="api"}"#
    );
    assert_eq!(again.streams[0].entries, request.streams[0].entries);
    // And in once more: the same message.
    assert_eq!(messages(&decode_encoded(&again)), {
        let mut first = messages(&decoded);
        first[0]["labels"]["severity"] = json!("WARN");
        first[0]["labels"]["source"] = json!("api");
        first[0].as_object_mut().unwrap()["labels"]
            .as_object_mut()
            .unwrap()
            .remove("empty");
        first
    });
}

/// The labels a stream goes out with, of those it came in with: those with a value and a
/// name Loki takes (the generated ones are of `[a-z_]`), the first of each name.
fn kept_labels(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in labels {
        if !v.is_empty() && !k.starts_with("__") && !kept.iter().any(|(name, _)| name == k) {
            kept.push((k.clone(), v.clone()));
        }
    }
    kept
}

fn message() -> impl Strategy<Value = String> {
    (
        any::<i64>(),
        // Messages have a severity and a source that are not blank.
        prop_oneof![
            Just("INFO".to_owned()),
            Just("warning".to_owned()),
            "[a-z]\\PC{0,6}"
        ],
        "[a-z]\\PC{0,8}",
        "\\PC{0,16}",
        prop::option::of(any::<i32>()),
    )
        .prop_map(|(timestamp, severity, source, text, extra)| {
            let mut line = json!({
                "timestamp": timestamp,
                "severity": severity,
                "source": source,
                "message": text,
            });
            if let Some(extra) = extra {
                line["extra"] = json!(extra);
            }
            line.to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A logdist message pushed by the encoder is read back by the ingest as it was, byte
    /// for byte and in order, whatever its fields hold, and its labels are its severity
    /// and source.
    #[test]
    fn messages_pushed_are_read_back_as_they_were(lines in prop::collection::vec(message(), 1..8)) {
        let request = encode(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        for stream in &request.streams {
            let labels = super::labels::parse(&stream.labels).unwrap();
            let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            prop_assert_eq!(names, ["severity", "source"]);
        }
        let decoded = decode_encoded(&request);
        prop_assert_eq!(&decoded.rejected, &[]);
        // Streams group entries: compare as sets of lines, each once.
        let mut got: Vec<&str> = std::str::from_utf8(&decoded.packet.ndjson).unwrap().lines().collect();
        let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
        got.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got, want);
    }

    /// Loki in, Loki out: each entry of a push the ingest read goes out with its line,
    /// time (to the unit) and metadata, in a stream of its labels (those with a value)
    /// and `severity` and `source`.
    #[test]
    fn pushes_read_are_pushed_again_alike(request in request()) {
        let decoded = decode(&snappy(&request), LokiEncoding::Protobuf).unwrap();
        prop_assume!(decoded.rejected.is_empty());
        let lines: Vec<&str> = std::str::from_utf8(&decoded.packet.ndjson).unwrap().lines().collect();
        let again = encode(&lines);
        let sent: Vec<(Vec<(String, String)>, &EntryAdapter)> = request
            .streams
            .iter()
            .flat_map(|s| {
                let labels = super::labels::parse(&s.labels).unwrap();
                s.entries.iter().map(move |e| (labels.clone(), e))
            })
            .collect();
        let pushed: Vec<(Vec<(String, String)>, &EntryAdapter)> = again
            .streams
            .iter()
            .flat_map(|s| {
                let labels = super::labels::parse(&s.labels).unwrap();
                s.entries.iter().map(move |e| (labels.clone(), e))
            })
            .collect();
        prop_assert_eq!(sent.len(), pushed.len());
        let in_ms = |t: &Option<Timestamp>| {
            let t = t.as_ref().map_or(i128::from(NOW_MS) * 1_000_000, |t| {
                i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
            });
            t.div_euclid(1_000_000) * 1_000_000
        };
        for (want_labels, want) in &sent {
            // The entry pushed again with the same line and metadata (lines may repeat).
            let found = pushed.iter().find(|(labels, got)| {
                got.line == want.line
                    && got.structured_metadata == want.structured_metadata
                    && in_ms(&got.timestamp) == in_ms(&want.timestamp)
                    && {
                        let kept = kept_labels(want_labels);
                        labels.len() >= kept.len()
                            && labels[..kept.len()] == kept[..]
                            && labels[kept.len()..].iter().all(|(k, _)| k == "severity" || k == "source")
                    }
                    && labels.iter().any(|(k, _)| k == "severity")
                    && labels.iter().any(|(k, _)| k == "source")
            });
            prop_assert!(found.is_some(), "{:?} {:?} not in {:?}", want_labels, want, again);
        }
    }
}
