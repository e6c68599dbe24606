//! Decoding the bodies log shippers send, against the native NDJSON of the same 100
//! messages: what mapping costs on the way in.
//!
//! Five inputs, each 100 records made from the same messages as the `decode` bench: native
//! NDJSON (`decode_records`, which takes the native path), Fluent Bit's `json_lines` (`date`
//! as decimal epoch seconds, `log`), Vector's NDJSON (RFC 3339 `timestamp`, `message`,
//! `host`, `source_type`), a Filebeat `_bulk` body (ECS documents), and an OTLP/JSON export.
//!
//! `cargo bench -p logdist-core --bench ingest`

mod common;

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logdist_core::{
    Format, OtlpEncoding, Schema, TimestampUnit, Validation, decode_bulk, decode_logs,
    decode_records,
};
use serde_json::{Value, json};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_553_000)
}

/// An RFC 3339 time for the `i`th record, within one hour.
fn rfc3339(i: usize) -> String {
    format!(
        "2026-12-06T10:{:02}:{:02}.{:03}Z",
        i / 60 % 60,
        i % 60,
        i * 7 % 1000
    )
}

fn lines(values: impl Iterator<Item = Value>) -> Vec<u8> {
    values
        .map(|v| format!("{v}\n"))
        .collect::<String>()
        .into_bytes()
}

/// What each input decodes to, and how many messages.
struct Case {
    name: &'static str,
    body: Bytes,
    decode: fn(&Bytes) -> u32,
}

fn cases() -> Vec<Case> {
    let messages: Vec<Value> = common::messages(1, 100)
        .iter()
        .map(|m| serde_json::from_str(m).unwrap())
        .collect();
    let text = |m: &Value| m["message"].as_str().unwrap().to_owned();
    let fluent_bit = lines(messages.iter().map(|m| {
        let ms = m["timestamp"].as_i64().unwrap();
        let date: Value = format!("{}.{:03}", ms / 1000, ms % 1000).parse().unwrap();
        json!({"date": date, "log": text(m)})
    }));
    let vector = lines(messages.iter().enumerate().map(|(i, m)| {
        json!({"file": "/var/log/app.log", "host": m["source"], "message": text(m),
               "source_type": "file", "timestamp": rfc3339(i)})
    }));
    let bulk = lines(messages.iter().enumerate().flat_map(|(i, m)| {
        [
            json!({"create": {"_index": "filebeat-8.17.0"}}),
            json!({"@timestamp": rfc3339(i), "message": text(m),
                   "log": {"level": m["severity"], "offset": i * 120},
                   "host": {"name": m["source"]}, "ecs": {"version": "8.0.0"}}),
        ]
    }));
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let ns = m["timestamp"].as_i64().unwrap() * 1_000_000;
            json!({"timeUnixNano": ns.to_string(), "severityNumber": 9, "severityText": m["severity"],
                   "body": {"stringValue": text(m)},
                   "attributes": [{"key": "code.lineno", "value": {"intValue": "42"}}]})
        })
        .collect();
    let otlp = json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeLogs": [{"scope": {"name": "app"}, "logRecords": records}]}]})
    .to_string()
    .into_bytes();

    let records = |body: &Bytes| {
        let d = decode_records(
            body.clone(),
            Format::Ndjson,
            Validation::Full,
            &Schema::default(),
            now(),
        );
        let d = d.expect("the bench inputs are valid");
        assert!(d.rejected.is_empty());
        d.packet.messages
    };
    vec![
        Case {
            name: "native_ndjson_100",
            body: common::ndjson(&common::messages(1, 100)).into(),
            decode: records,
        },
        Case {
            name: "fluent_bit_100",
            body: fluent_bit.into(),
            decode: records,
        },
        Case {
            name: "vector_100",
            body: vector.into(),
            decode: records,
        },
        Case {
            name: "bulk_filebeat_100",
            body: bulk.into(),
            decode: |body| {
                let b = decode_bulk(body.clone(), None, &Schema::default(), now());
                let b = b.expect("the bench inputs are valid");
                assert!(b.decoded.rejected.is_empty());
                b.decoded.packet.messages
            },
        },
        Case {
            name: "otlp_json_100",
            body: otlp.into(),
            decode: |body| {
                let d = decode_logs(body, OtlpEncoding::Json, TimestampUnit::Milliseconds, now());
                d.expect("the bench inputs are valid").packet.messages
            },
        },
    ]
}

fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest");
    for case in cases() {
        // A bench that hit the error path would measure the wrong thing.
        assert_eq!((case.decode)(&case.body), 100, "{}", case.name);
        group.throughput(Throughput::Elements(100));
        group.bench_function(case.name, |b| {
            b.iter(|| (case.decode)(black_box(&case.body)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = ingest
}
criterion_main!(benches);
