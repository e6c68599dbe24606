//! Decoding and validating packets: what ingest does to every packet before routing it.
//!
//! Five inputs: a packet of 100 messages as NDJSON (fully validated, and with
//! `--validate framing`) and as a JSON array, a packet of one message, and one message as
//! `POST /message/send` takes it. Each is measured twice, once
//! reported in messages per second (`.../messages`) and once in bytes per second
//! (`.../bytes`): criterion 0.7 reports one throughput per benchmark.
//!
//! `cargo bench -p logdist-core --bench decode`

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use criterion::{criterion_group, criterion_main};
use logdist_core::{Format, Packet, Validation, decode_message, decode_packet_with};

/// One input and how it is decoded.
struct Case {
    name: &'static str,
    body: Bytes,
    messages: u32,
    /// `None` for `decode_message`, else the framing `decode_packet` is given.
    format: Option<Format>,
    /// How much of each message is checked.
    validation: Validation,
}

impl Case {
    /// Decodes as ingest does: the body is handed over (a reference count, no copy).
    fn decode(&self) -> Packet {
        match self.format {
            Some(format) => decode_packet_with(self.body.clone(), format, self.validation),
            None => decode_message(&self.body),
        }
        .expect("the bench inputs are valid")
    }
}

fn cases() -> Vec<Case> {
    let hundred = common::messages(1, 100);
    let one = common::messages(2, 1);
    vec![
        Case {
            name: "ndjson_100",
            body: common::ndjson(&hundred).into(),
            messages: 100,
            format: Some(Format::Ndjson),
            validation: Validation::Full,
        },
        Case {
            name: "ndjson_100_framing",
            body: common::ndjson(&hundred).into(),
            messages: 100,
            format: Some(Format::Ndjson),
            validation: Validation::Framing,
        },
        Case {
            name: "json_array_100",
            body: common::json_array(&hundred).into(),
            messages: 100,
            format: Some(Format::Json),
            validation: Validation::Full,
        },
        Case {
            name: "ndjson_1",
            body: common::ndjson(&one).into(),
            messages: 1,
            format: Some(Format::Ndjson),
            validation: Validation::Full,
        },
        Case {
            name: "message_1",
            body: one[0].clone().into(),
            messages: 1,
            format: None,
            validation: Validation::Full,
        },
    ]
}

fn bench(group: &mut BenchmarkGroup<'_, WallTime>, case: &Case, unit: &str) {
    group.bench_function(BenchmarkId::new(case.name, unit), |b| {
        b.iter(|| black_box(case).decode())
    });
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for case in cases() {
        // A bench that hit the error path would measure the wrong thing.
        assert_eq!(case.decode().messages, case.messages, "{}", case.name);
        println!(
            "decode/{}: {} messages in {} bytes",
            case.name,
            case.messages,
            case.body.len()
        );
        group.throughput(Throughput::Elements(case.messages.into()));
        bench(&mut group, &case, "messages");
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        bench(&mut group, &case, "bytes");
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = decode
}
criterion_main!(benches);
