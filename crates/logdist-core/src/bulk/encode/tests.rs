use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::bulk::{BulkAction, Outcome, decode_bulk};
use crate::mapping::parse_rfc3339;
use crate::shippers::Schema;

const MS: TimestampUnit = TimestampUnit::Milliseconds;

/// 2026-12-06T10:30:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_553_000)
}

fn lines(body: &[u8]) -> Vec<Value> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn each_message_is_a_create_and_its_document() {
    let messages = [
        r#"{"timestamp":1796553000306,"severity":"INFO","source":"web","message":"a"}"#,
        // Its own `@timestamp` is kept, and no other added.
        r#"{"@timestamp":"2020-01-01T00:00:00Z","timestamp":1796553000307,"severity":"INFO","source":"web","message":"b"}"#,
        // The next day, an hour before midnight UTC on the first.
        r#" {"timestamp":1796684399999,"severity":"WARN","source":"web","message":"c"} "#,
    ];
    let body = encode_bulk(messages, &IndexTemplate::default(), MS, now());
    let text = String::from_utf8(body.clone()).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            r#"{"create":{"_index":"logdist-2026.12.06"}}"#,
            r#"{"@timestamp":"2026-12-06T10:30:00.306Z","timestamp":1796553000306,"severity":"INFO","source":"web","message":"a"}"#,
            r#"{"create":{"_index":"logdist-2026.12.06"}}"#,
            messages[1],
            r#"{"create":{"_index":"logdist-2026.12.07"}}"#,
            r#"{"@timestamp":"2026-12-07T22:59:59.999Z","timestamp":1796684399999,"severity":"WARN","source":"web","message":"c"}"#,
        ]
    );
    assert!(text.ends_with('\n'));
}

#[test]
fn messages_without_a_time_are_dated_now() {
    let body = encode_bulk(
        [&b"{}"[..], b"{ \"x\": 1 }", br#"{"timestamp":"yesterday"}"#],
        &"app-%Y-%m-%d-%H".parse().unwrap(),
        TimestampUnit::Seconds,
        now(),
    );
    let got = lines(&body);
    assert_eq!(got[0], json!({"create": {"_index": "app-2026-12-06-10"}}));
    assert_eq!(got[1], json!({"@timestamp": "2026-12-06T10:30:00Z"}));
    assert_eq!(
        got[3],
        json!({"@timestamp": "2026-12-06T10:30:00Z", "x": 1})
    );
    assert_eq!(
        got[5],
        json!({"@timestamp": "2026-12-06T10:30:00Z", "timestamp": "yesterday"})
    );
}

#[test]
fn a_line_that_is_no_object_goes_as_it_is() {
    let body = encode_bulk(
        [&b"[1,2]"[..], b"not json"],
        &IndexTemplate::default(),
        MS,
        now(),
    );
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        text,
        "{\"create\":{\"_index\":\"logdist-2026.12.06\"}}\n[1,2]\n{\"create\":{\"_index\":\"logdist-2026.12.06\"}}\nnot json\n"
    );
}

#[test]
fn times_are_written_in_the_unit() {
    let one = |unit, timestamp: i64| {
        let message = format!(r#"{{"timestamp":{timestamp}}}"#);
        let body = encode_bulk([message], &IndexTemplate::default(), unit, now());
        lines(&body)[1]["@timestamp"].as_str().unwrap().to_owned()
    };
    assert_eq!(one(TimestampUnit::Seconds, 0), "1970-01-01T00:00:00Z");
    assert_eq!(one(MS, -1), "1969-12-31T23:59:59.999Z");
    assert_eq!(
        one(TimestampUnit::Microseconds, 1_796_553_000_000_001),
        "2026-12-06T10:30:00.000001Z"
    );
    assert_eq!(
        one(TimestampUnit::Nanoseconds, 1_796_553_000_000_000_007),
        "2026-12-06T10:30:00.000000007Z"
    );
    // A leap day.
    assert_eq!(
        one(TimestampUnit::Seconds, 1_709_164_800),
        "2024-02-29T00:00:00Z"
    );
}

#[test]
fn templates_take_only_the_date_codes_and_names_elasticsearch_takes() {
    let at = 1_796_553_000_000_000_000; // 2026-12-06T10:30:00Z
    let render = |text: &str| text.parse::<IndexTemplate>().map(|t| t.render(at));
    assert_eq!(render("logdist-%Y.%m.%d").unwrap(), "logdist-2026.12.06");
    assert_eq!(render("logs").unwrap(), "logs");
    assert_eq!(render("%Y%m%d%H").unwrap(), "2026120610");
    assert_eq!(render("a%%b-%H").unwrap(), "a%b-10");
    assert_eq!(render("logs-ü").unwrap(), "logs-ü");
    assert_eq!(IndexTemplate::default().to_string(), DEFAULT_INDEX);
    for (bad, says) in [
        ("logs-%j", "`%j` is not a date code"),
        ("logs-%", "lone `%`"),
        ("Logs", "lower case"),
        ("logs/%Y", "'/'"),
        ("logs %Y", "' '"),
        ("lo\"gs", "'\"'"),
        ("lo\u{7}gs", "'\\u{7}'"),
        ("_logs", "starting with"),
        ("", "needs a name"),
        ("..", "needs a name"),
    ] {
        let error = render(bad).unwrap_err();
        assert!(error.contains(says), "{bad:?}: {error}");
        assert!(error.contains(&format!("`{bad}`")), "{bad:?}: {error}");
    }
    assert!(render(&"a".repeat(256)).unwrap_err().contains("255 bytes"));
}

/// A message with what logdist messages carry, a few other fields, and sometimes its own
/// `@timestamp`, written with varying spacing.
fn message(unit: TimestampUnit) -> impl Strategy<Value = (Value, String)> {
    (
        // Years 1811 to 2128: what every unit writes in an `i64`.
        (-5_000_000_000i128..5_000_000_000, 0i128..1_000_000_000)
            .prop_map(move |(s, ns)| unit.from_nanos(s * 1_000_000_000 + ns).unwrap()),
        prop::sample::select(vec!["INFO", "WARN", "ERROR", "debug"]),
        "[a-z][a-z0-9.-]{0,12}",
        "\\PC{0,30}",
        proptest::option::of(any::<i32>()),
        proptest::option::of("\\PC{0,10}"),
        any::<bool>(),
    )
        .prop_map(|(timestamp, severity, source, text, extra, at, spaced)| {
            let mut object = serde_json::Map::new();
            if let Some(at) = at {
                object.insert("@timestamp".into(), json!(at));
            }
            object.insert("timestamp".into(), json!(timestamp));
            object.insert("severity".into(), json!(severity));
            object.insert("source".into(), json!(source));
            object.insert("message".into(), json!(text));
            if let Some(extra) = extra {
                object.insert("ctx".into(), json!({"n": extra, "tags": ["x", "y"]}));
            }
            let value = Value::Object(object);
            let line = if spaced {
                serde_json::to_string_pretty(&value)
                    .unwrap()
                    .replace('\n', " ")
            } else {
                value.to_string()
            };
            (value, line)
        })
}

proptest! {
    /// The body reads back with logdist's own bulk decoder (`POST /_bulk`) as the same
    /// messages, each a `create` of the index of its own date, each with an `@timestamp`:
    /// its own, or its `timestamp` as RFC 3339.
    #[test]
    fn the_body_decodes_back_to_the_messages(
        (unit, messages) in prop::sample::select(vec![TimestampUnit::Seconds, MS, TimestampUnit::Microseconds, TimestampUnit::Nanoseconds])
            .prop_flat_map(|unit| (Just(unit), proptest::collection::vec(message(unit), 1..20))),
    ) {
        let template: IndexTemplate = "logs-%Y.%m.%d-%H".parse().unwrap();
        let body = encode_bulk(messages.iter().map(|(_, line)| line), &template, unit, now());
        let bulk = decode_bulk(Bytes::from(body), None, &Schema::default(), now()).unwrap();
        prop_assert_eq!(&bulk.decoded.rejected, &[]);
        prop_assert_eq!(bulk.decoded.packet.messages as usize, messages.len());
        prop_assert_eq!(bulk.items.len(), messages.len());
        let decoded = lines(&bulk.decoded.packet.ndjson);
        for ((sent, _), (item, got)) in messages.iter().zip(bulk.items.iter().zip(&decoded)) {
            let time = unit.to_nanos(sent["timestamp"].as_i64().unwrap());
            prop_assert_eq!(item.action, BulkAction::Create);
            prop_assert_eq!(&item.outcome, &Outcome::Created);
            prop_assert_eq!(item.index.clone(), Some(template.render(time)));
            let mut got = got.clone();
            if sent.get("@timestamp").is_none() {
                let at = got.as_object_mut().unwrap().remove("@timestamp").unwrap();
                prop_assert_eq!(parse_rfc3339(at.as_str().unwrap()), Some(time));
            }
            prop_assert_eq!(&got, sent);
        }
    }

    /// Whatever a line holds, encoding it does not panic and gives one item.
    #[test]
    fn no_line_panics(line in "\\PC{0,60}") {
        let body = encode_bulk([line.as_bytes()], &IndexTemplate::default(), MS, now());
        prop_assert!(body.starts_with(b"{\"create\":{\"_index\":\"logdist-"), "{:?}", body);
    }

    /// Every template that parses renders names of the date it is given.
    #[test]
    fn templates_render_the_date(nanos in -62_135_596_800_000_000_000i128..253_402_300_799_999_999_999) {
        let name = "x-%Y-%m-%d-%H".parse::<IndexTemplate>().unwrap().render(nanos);
        let mut rfc = Vec::new();
        format_rfc3339(nanos, TimestampUnit::Seconds, &mut rfc);
        let rfc = String::from_utf8(rfc).unwrap();
        let want = format!("x-{}-{}-{}-{}", &rfc[0..4], &rfc[5..7], &rfc[8..10], &rfc[11..13]);
        prop_assert_eq!(name, want);
    }
}
