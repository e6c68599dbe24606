use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::{Format, decode_packet};

/// The arrival time the tests pass: 2026-12-06T10:30:00Z.
const NOW_MS: i64 = 1_796_553_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS as u64)
}

fn map_with(mapping: &Mapping, record: &str) -> Result<String, String> {
    let mut out = Vec::new();
    mapping.map(record, now(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn map(record: &str) -> Result<String, String> {
    map_with(&Mapping::default(), record)
}

/// The mapped line, checked by the native decoder, as a JSON value.
fn mapped(record: &str) -> Value {
    let line = map(record).unwrap_or_else(|e| panic!("{record}: {e}"));
    let packet = decode_packet(Bytes::from(line.clone()), Format::Ndjson).unwrap();
    assert_eq!((packet.messages, &packet.ndjson[..]), (1, line.as_bytes()));
    serde_json::from_str(&line).unwrap()
}

#[test]
fn fluent_bit_json_lines() {
    // Fluent Bit's `http` output, `format json_lines`, `json_date_key date` (its defaults),
    // of a tail input: the record is the line under `log`.
    let v = mapped(r#"{"date":1796552910.306,"log":"GET /index.html 200"}"#);
    assert_eq!(
        v,
        json!({"timestamp": 1_796_552_910_306_i64, "severity": "INFO", "source": "unknown",
               "message": "GET /index.html 200"})
    );
}

#[test]
fn vector_http_sink_ndjson() {
    let v = mapped(
        r#"{"host":"web-1","message":"disk 91% full","source_type":"file","file":"/var/log/app.log","timestamp":"2026-12-06T10:28:30.306Z"}"#,
    );
    assert_eq!(
        v,
        json!({"timestamp": 1_796_552_910_306_i64, "severity": "INFO", "source": "web-1",
               "message": "disk 91% full", "source_type": "file", "file": "/var/log/app.log"})
    );
}

#[test]
fn syslog_ng_format_json_of_its_macros() {
    // `$(format-json ISODATE HOST PROGRAM MESSAGE)`, and `--scope rfc5424` adds PRIORITY.
    let line = map(
        r#"{"PROGRAM":"sshd","PRIORITY":"info","MESSAGE":"Accepted publickey for ops","ISODATE":"2026-12-06T10:28:30+00:00","HOST":"bastion"}"#,
    )
    .unwrap();
    assert_eq!(
        line,
        "{\"timestamp\":1796552910000,\"severity\":\"INFO\",\"source\":\"sshd\",\"message\":\"Accepted publickey for ops\",\"severity_original\":\"info\",\"HOST\":\"bastion\"}\n"
    );
}

#[test]
fn journald_through_vector_or_fluent_bit() {
    let v = mapped(
        r#"{"__REALTIME_TIMESTAMP":"1796552910306123","PRIORITY":"3","SYSLOG_IDENTIFIER":"kernel","_HOSTNAME":"node-1","MESSAGE":"oom-kill"}"#,
    );
    assert_eq!(v["timestamp"], 1_796_552_910_306_i64);
    assert_eq!(
        (&v["severity"], &v["source"]),
        (&json!("ERROR"), &json!("kernel"))
    );
    assert_eq!(v["_HOSTNAME"], "node-1");
}

#[test]
fn winston_http_transport() {
    // winston's Http transport posts `info` as JSON: level, message, and the format's
    // timestamp (ISO 8601 from `format.timestamp()`), with the user's metadata.
    let v = mapped(
        r#"{"level":"warn","message":"cache miss","timestamp":"2026-12-06T10:28:30.306Z","service":"checkout","userId":42}"#,
    );
    assert_eq!(
        v,
        json!({"timestamp": 1_796_552_910_306_i64, "severity": "WARN", "source": "checkout",
               "message": "cache miss", "severity_original": "warn", "userId": 42})
    );
}

#[test]
fn ecs_and_otel_names_nested_or_dotted() {
    let nested = mapped(
        r#"{"@timestamp":"2026-12-06T10:28:30.306Z","log":{"level":"error","logger":"db"},"service":{"name":"api","version":"2"},"message":"timeout"}"#,
    );
    assert_eq!(nested["severity"], "ERROR");
    assert_eq!(nested["source"], "api");
    assert_eq!(nested["log"], json!({"logger": "db"}));
    assert_eq!(nested["service"], json!({"version": "2"}));
    let dotted = mapped(
        r#"{"@timestamp":"2026-12-06T10:28:30.306Z","log.level":"error","service.name":"api","message":"timeout"}"#,
    );
    assert_eq!(dotted["severity"], "ERROR");
    assert_eq!(dotted["source"], "api");
}

#[test]
fn loggers_own_severities() {
    for (record, severity, original) in [
        (r#"{"level":30,"msg":"pino"}"#, "INFO", Some(json!(30))),
        (
            r#"{"PRIORITY":"3","MESSAGE":"journald"}"#,
            "ERROR",
            Some(json!("3")),
        ),
        (
            r#"{"severityNumber":17,"body":"otel"}"#,
            "ERROR",
            Some(json!(17)),
        ),
        (
            r#"{"levelname":"CRITICAL","msg":"python"}"#,
            "FATAL",
            Some(json!("CRITICAL")),
        ),
        (r#"{"severity":"ERROR","msg":"as is"}"#, "ERROR", None),
        (
            r#"{"lvl":"chatty","msg":"unknown"}"#,
            "INFO",
            Some(json!("chatty")),
        ),
        (r#"{"msg":"none"}"#, "INFO", None),
    ] {
        let v = mapped(record);
        assert_eq!(v["severity"], severity, "{record}");
        assert_eq!(v.get("severity_original"), original.as_ref(), "{record}");
    }
}

#[test]
fn messages_of_any_type() {
    assert_eq!(
        mapped(r#"{"event":{"action":"login","user":"u"}}"#)["message"],
        r#"{"action":"login","user":"u"}"#
    );
    assert_eq!(mapped(r#"{"body":[1, 2]}"#)["message"], "[1, 2]");
    assert_eq!(mapped(r#"{"msg":12.5}"#)["message"], "12.5");
    assert_eq!(
        mapped(r#"{"message":null,"msg":"second"}"#)["message"],
        "second"
    );
    let err = map(r#"{"level":"info","text":"no message here"}"#).unwrap_err();
    assert!(err.starts_with("no message"), "{err}");
}

#[test]
fn fields_of_the_model_not_used_are_kept_renamed() {
    let v = mapped(r#"{"timestamp":"yesterday","ts":1796552910,"msg":"m","source":""}"#);
    assert_eq!(v["timestamp"], 1_796_552_910_000_i64);
    assert_eq!(v["timestamp_original"], "yesterday");
    assert_eq!(v["source"], "unknown");
    assert_eq!(v["source_original"], "");
    let mapping = Mapping {
        aliases: "message=payload".parse().unwrap(),
        ..Mapping::default()
    };
    let line = map_with(&mapping, r#"{"message":"short","payload":{"k":1}}"#).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["message"], r#"{"k":1}"#);
    assert_eq!(v["message_original"], "short");
}

#[test]
fn values_kept_are_kept_as_sent() {
    let line =
        map("{\"msg\":\"m\",\"n\":1.50,\"u\":\"\\u00e9\",\"pretty\":{\n  \"a\": [1,\n 2]\n}}")
            .unwrap();
    assert_eq!(
        line,
        "{\"timestamp\":1796553000000,\"severity\":\"INFO\",\"source\":\"unknown\",\"message\":\"m\",\"n\":1.50,\"u\":\"\\u00e9\",\"pretty\":{   \"a\": [1,  2] }}\n"
    );
}

#[test]
fn messages_already_are_kept_as_sent() {
    for record in [
        r#"{"message":"\u00e9","timestamp":1,"severity":"warning","source":"s","x":1.50}"#,
        "{\"time\\u0073tamp\":-5, \"severity\":\"I\",\n \"source\":\"s\",\"message\":\"\"}",
    ] {
        let line = map(record).unwrap();
        assert_eq!(line, format!("{}\n", record.replace('\n', " ")));
    }
    // Not quite a message (a duplicate field): mapped.
    let line =
        map(r#"{"timestamp":1,"severity":"I","source":"s","message":"m","source":"t"}"#).unwrap();
    assert!(line.contains("\"source_original\":\"t\""), "{line}");
}

#[test]
fn timestamp_units() {
    for (unit, want) in [
        (TimestampUnit::Seconds, 1_796_552_910_i64),
        (TimestampUnit::Milliseconds, 1_796_552_910_306),
        (TimestampUnit::Microseconds, 1_796_552_910_306_000),
        (TimestampUnit::Nanoseconds, 1_796_552_910_306_000_000),
    ] {
        let mapping = Mapping {
            unit,
            ..Mapping::default()
        };
        let line = map_with(&mapping, r#"{"time":"2026-12-06T10:28:30.306Z","msg":"m"}"#).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"], want, "{unit}");
    }
}

#[test]
fn records_that_cannot_be_mapped() {
    for (record, reason) in [
        ("[1]", "expected a JSON object"),
        ("\"text\"", "expected a JSON object"),
        ("{\"msg\":", "EOF while parsing"),
        (
            &format!(
                "{{\"msg\":\"m\",\"deep\":{}{}}}",
                "[".repeat(200),
                "]".repeat(200)
            ),
            "recursion limit",
        ),
        ("{\"msg\":\"m\",\"n\":1e999}", "number out of range"),
    ] {
        let mut out = b"kept".to_vec();
        let err = Mapping::default().map(record, now(), &mut out).unwrap_err();
        assert!(err.contains(reason), "{record}: {err}");
        assert_eq!(out, b"kept", "nothing appended on an error");
    }
}

#[test]
fn aliases_parse_and_refuse() {
    let aliases: Aliases = "message=payload, source=kubernetes.pod_name\n# a comment\nlevel=lvl2"
        .parse()
        .unwrap();
    assert_eq!(
        aliases.to_string(),
        "severity=lvl2,source=kubernetes.pod_name,message=payload"
    );
    assert_eq!("".parse::<Aliases>(), Ok(Aliases::default()));
    for bad in ["message", "body=x", "message=", "source=a..b", "source=.a"] {
        assert!(bad.parse::<Aliases>().is_err(), "{bad}");
    }
    let mapping = Mapping {
        aliases: "source=kubernetes.pod_name".parse().unwrap(),
        ..Mapping::default()
    };
    let line = map_with(
        &mapping,
        r#"{"log":"x","host":"node-1","kubernetes":{"pod_name":"web-7","namespace_name":"prod"}}"#,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["source"], "web-7");
    assert_eq!(v["host"], "node-1");
    assert_eq!(v["kubernetes"], json!({"namespace_name": "prod"}));
}

// === Properties ===

/// Field names a mapping looks for, and others.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            [
                TIME_NAMES,
                SEVERITY_NAMES,
                OTLP_SEVERITY_NAMES,
                SOURCE_NAMES,
                MESSAGE_NAMES
            ]
            .concat()
        )
        .prop_map(str::to_owned),
        Just("service".to_owned()),
        Just("log".to_owned()),
        "[a-z@._]{1,6}",
    ]
}

/// JSON values of the kinds shippers send, times and levels among them.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (any::<u32>(), 0u32..1000).prop_map(|(s, ms)| format!("{s}.{ms:03}")),
        (2000u32..2100, 1u32..13, 1u32..29, 0u32..24)
            .prop_map(|(y, m, d, h)| format!("\"{y}-{m:02}-{d:02}T{h:02}:00:00.5Z\"")),
        prop::sample::select(vec![
            "\"warning\"",
            "\"INFO\"",
            "\"\"",
            "null",
            "true",
            "30",
            "1e5",
            "\"a\\\"b\"",
            "\"\\ud800\""
        ])
        .prop_map(str::to_owned),
        "\\PC{0,8}".prop_map(|s| Value::from(s).to_string()),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop::collection::vec((name(), inner), 0..4).prop_map(|fields| {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
    })
}

fn record() -> impl Strategy<Value = String> {
    prop::collection::vec((name(), value()), 0..8).prop_map(|fields| {
        let fields: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
            .collect();
        format!("{{{}}}", fields.join(" , "))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever is mapped is one line the native decoder takes as one message (a message
    /// already is kept as sent); what is not mapped has a reason and leaves the output as
    /// it was.
    #[test]
    fn mapped_records_are_messages(record in record(), unit in prop::sample::select(vec![
        TimestampUnit::Seconds, TimestampUnit::Milliseconds, TimestampUnit::Nanoseconds,
    ])) {
        let mapping = Mapping { unit, ..Mapping::default() };
        let mut out = b"x\n".to_vec();
        match mapping.map(&record, now(), &mut out) {
            Ok(()) => {
                if crate::message::validate(&record).is_ok() {
                    let sent = format!("{}\n", record.trim());
                    prop_assert_eq!(&out[2..], sent.as_bytes(), "kept as sent");
                }
                let line = Bytes::copy_from_slice(&out[2..]);
                prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
                let packet = decode_packet(line.clone(), Format::Ndjson);
                prop_assert_eq!(packet.map(|p| (p.messages, p.ndjson)), Ok((1, line)));
            }
            Err(reason) => {
                prop_assert!(!reason.is_empty());
                prop_assert_eq!(&out[..], b"x\n");
            }
        }
    }

    /// Every top-level field that is none of the usual names is kept, its value as sent.
    #[test]
    fn other_fields_are_kept_as_sent(record in record(), extra in "[A-Z]{1,4}", value in value()) {
        let Ok(object) = serde_json::from_str::<serde_json::Map<String, Value>>(&record) else {
            return Ok(());
        };
        prop_assume!(!object.contains_key(&extra));
        let record = format!("{{\"{extra}\":{value},{}", &record[1..]);
        if let Ok(line) = map(&record) {
            let kept = format!(",\"{extra}\":{value}");
            prop_assert!(line.contains(&kept), "{} lost {}", line, kept);
        }
    }

    #[test]
    fn no_text_panics(text in "\\PC{0,64}") {
        let _ = map(&text);
    }
}
