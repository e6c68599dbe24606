//! The forward encoder against `rmpv`, a MessagePack decoder that is not this crate's:
//! every message comes back, field for field, with its time.

use proptest::prelude::*;
use rmpv::Value as Mp;
use serde_json::{Map, Number, Value as Json};

use super::*;
use crate::mapping::TimestampUnit;

const NOW: EventTime = EventTime {
    seconds: 1_800_000_000,
    nanoseconds: 42,
};

/// A decoded PackedForward: its tag, its entries as (time, record), and its option.
struct Decoded {
    tag: String,
    entries: Vec<(EventTime, Json)>,
    option: Mp,
}

fn json_of(value: &Mp) -> Json {
    match value {
        Mp::Nil => Json::Null,
        Mp::Boolean(b) => Json::Bool(*b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::Number(u.into()),
            (_, Some(s)) => Json::Number(s.into()),
            _ => panic!("an integer that fits neither: {i}"),
        },
        Mp::F64(f) => Json::Number(Number::from_f64(*f).unwrap()),
        Mp::String(s) => Json::String(s.as_str().expect("UTF-8").to_owned()),
        Mp::Array(items) => Json::Array(items.iter().map(json_of).collect()),
        Mp::Map(pairs) => {
            let mut map = Map::new();
            for (k, v) in pairs {
                map.insert(k.as_str().expect("string keys").to_owned(), json_of(v));
            }
            Json::Object(map)
        }
        other => panic!("not from JSON: {other}"),
    }
}

fn decode(bytes: &[u8]) -> Decoded {
    let mut rd = bytes;
    let value = rmpv::decode::read_value(&mut rd).unwrap();
    assert!(rd.is_empty(), "one value, nothing after it");
    let Mp::Array(parts) = value else {
        panic!("not an array: {value}")
    };
    let [tag, entries, option] = <[Mp; 3]>::try_from(parts).unwrap();
    let Mp::Binary(entries) = entries else {
        panic!("entries are not a bin: {entries}")
    };
    let mut rd = &entries[..];
    let mut decoded = Vec::new();
    while !rd.is_empty() {
        let entry = rmpv::decode::read_value(&mut rd).unwrap();
        let Mp::Array(pair) = entry else {
            panic!("an entry is not an array: {entry}")
        };
        let [time, record] = <[Mp; 2]>::try_from(pair).unwrap();
        let Mp::Ext(0, data) = time else {
            panic!("the time is not an EventTime: {time}")
        };
        let time = EventTime::from_bytes(data.try_into().unwrap()).unwrap();
        decoded.push((time, json_of(&record)));
    }
    Decoded {
        tag: tag.as_str().unwrap().to_owned(),
        entries: decoded,
        option,
    }
}

#[test]
fn a_batch_is_one_packed_forward_with_its_chunk_and_size() {
    let messages = [
        r#"{"timestamp":1796553000123,"severity":"ERROR","source":"payments","message":"card declined","attempt":3,"ratio":0.5,"tags":["a","b"],"ctx":{"user":"u1","n":null}}"#,
        r#"{"severity":"INFO","source":"s","message":"no time"}"#,
        r#"{"timestamp":-5,"message":"before 1970"}"#,
        "not json at all",
    ];
    let bytes = encode_packed_forward(
        "logdist.test",
        messages,
        TimestampUnit::Milliseconds,
        NOW,
        "Y2h1bms=",
    );
    let decoded = decode(&bytes);
    assert_eq!(decoded.tag, "logdist.test");
    assert_eq!(
        decoded.option.to_string(),
        r#"{"chunk": "Y2h1bms=", "size": 4}"#
    );
    let times: Vec<EventTime> = decoded.entries.iter().map(|e| e.0).collect();
    assert_eq!(
        times,
        [
            EventTime {
                seconds: 1_796_553_000,
                nanoseconds: 123_000_000
            },
            NOW,
            NOW,
            NOW
        ]
    );
    for (message, (_, record)) in messages[..3].iter().zip(&decoded.entries) {
        let want: Json = serde_json::from_str(message).unwrap();
        assert_eq!(record, &want);
    }
    assert_eq!(
        decoded.entries[3].1,
        serde_json::json!({"message": "not json at all"})
    );
    // Field order is kept (serde_json's map here is sorted, so look at the bytes).
    let first = bytes.windows(9).position(|w| w == b"timestamp").unwrap();
    let severity = bytes.windows(8).position(|w| w == b"severity").unwrap();
    assert!(first < severity);
}

#[test]
fn times_are_read_in_the_configured_unit() {
    for (unit, timestamp, want) in [
        (TimestampUnit::Seconds, 1_700_000_001i64, (1_700_000_001, 0)),
        (
            TimestampUnit::Milliseconds,
            1_700_000_001_002,
            (1_700_000_001, 2_000_000),
        ),
        (
            TimestampUnit::Microseconds,
            1_700_000_001_000_003,
            (1_700_000_001, 3_000),
        ),
        (
            TimestampUnit::Nanoseconds,
            1_700_000_001_000_000_004,
            (1_700_000_001, 4),
        ),
        // After 2106 in seconds: no EventTime holds it.
        (
            TimestampUnit::Seconds,
            5_000_000_000,
            (NOW.seconds, NOW.nanoseconds),
        ),
    ] {
        let line = format!(r#"{{"timestamp":{timestamp},"message":"m"}}"#);
        let decoded = decode(&encode_packed_forward("t", [line], unit, NOW, "c"));
        let time = decoded.entries[0].0;
        assert_eq!((time.seconds, time.nanoseconds), want, "{unit:?}");
        assert_eq!(decoded.entries[0].1["timestamp"], timestamp, "kept as sent");
    }
}

#[test]
fn an_empty_batch_is_a_packed_forward_of_nothing() {
    let decoded = decode(&encode_packed_forward::<&[u8]>(
        "t",
        [],
        TimestampUnit::Milliseconds,
        NOW,
        "c",
    ));
    assert!(decoded.entries.is_empty());
    assert_eq!(decoded.option.to_string(), r#"{"chunk": "c", "size": 0}"#);
}

#[test]
fn acks_are_written_and_read() {
    let ack = encode_ack("Y2h1bms=");
    assert_eq!(
        rmpv::decode::read_value(&mut &ack[..]).unwrap().to_string(),
        r#"{"ack": "Y2h1bms="}"#
    );
    assert_eq!(
        read_ack(&ack),
        AckRead::Ack {
            chunk: "Y2h1bms=".to_owned(),
            len: ack.len()
        }
    );
    for cut in 0..ack.len() {
        assert_eq!(read_ack(&ack[..cut]), AckRead::Incomplete, "cut at {cut}");
    }
    let mut two = ack.clone();
    two.extend_from_slice(&ack);
    assert!(matches!(read_ack(&two), AckRead::Ack { len, .. } if len == ack.len()));
    // Other string pairs are allowed; anything else is not an ack.
    let mut w = msgpack::Writer::default();
    w.map_len(2);
    w.str("note");
    w.str("hi");
    w.str("ack");
    w.str("c");
    assert!(matches!(read_ack(&w.into_vec()), AckRead::Ack { chunk, .. } if chunk == "c"));
    for garbage in [
        &b"\x93\x01\x02\x03"[..],
        b"\x81\xa3ack\x05",
        b"\x80",
        b"HTTP/1.1 400",
    ] {
        assert!(
            matches!(read_ack(garbage), AckRead::Invalid(_)),
            "{garbage:?}"
        );
    }
}

/// JSON values as messages carry them: nested objects and arrays of strings, integers
/// over the whole `i64` and `u64` range, floats, booleans and nulls.
fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| Json::Number(n.into())),
        any::<u64>().prop_map(|n| Json::Number(n.into())),
        (-1e12f64..1e12).prop_map(|f| Json::Number(Number::from_f64(f).unwrap())),
        "\\PC{0,40}".prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::btree_map("\\PC{0,12}", inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// A message: the four fields, with a timestamp in or out of EventTime's range or none,
/// and other fields of any JSON.
fn message() -> impl Strategy<Value = (Option<i64>, Json)> {
    (
        prop_oneof![
            Just(None),
            (0i64..4_000_000_000_000).prop_map(Some),
            any::<i64>().prop_map(Some),
        ],
        prop::collection::btree_map("[a-z_]{1,10}", json_value(), 0..8),
        "\\PC{0,60}",
    )
        .prop_map(|(timestamp, extra, text)| {
            let mut object: Map<String, Json> = extra.into_iter().collect();
            object.insert("message".to_owned(), Json::String(text));
            object.insert("severity".to_owned(), Json::String("INFO".to_owned()));
            match timestamp {
                Some(t) => {
                    object.insert("timestamp".to_owned(), Json::Number(t.into()));
                }
                None => {
                    object.remove("timestamp");
                }
            }
            (timestamp, Json::Object(object))
        })
}

proptest! {
    #[test]
    fn rmpv_reads_back_every_message_and_its_time(
        messages in prop::collection::vec(message(), 0..40),
        tag in "[a-z.]{1,20}",
    ) {
        let lines: Vec<String> = messages.iter().map(|(_, m)| m.to_string()).collect();
        let unit = TimestampUnit::Milliseconds;
        let bytes = encode_packed_forward(&tag, &lines, unit, NOW, "chunk-id");
        let decoded = decode(&bytes);
        prop_assert_eq!(&decoded.tag, &tag);
        prop_assert_eq!(decoded.entries.len(), messages.len());
        prop_assert_eq!(
            decoded.option.to_string(),
            format!(r#"{{"chunk": "chunk-id", "size": {}}}"#, messages.len())
        );
        for (((timestamp, _), line), (time, record)) in messages.iter().zip(&lines).zip(&decoded.entries) {
            // As the encoder reads it (a float's last digit may be read otherwise than
            // it was meant, without serde_json's `float_roundtrip`).
            let want: Json = serde_json::from_str(line).unwrap();
            prop_assert_eq!(record, &want);
            let expected = timestamp
                .and_then(|t| EventTime::from_nanos(unit.to_nanos(t)))
                .unwrap_or(NOW);
            prop_assert_eq!(*time, expected);
        }
    }
}
