//! Batching and encoding a delivery: the lane joins the NDJSON of the packets it took from
//! its queue into one body (`Batch`: packets of 100 messages, over 4 KiB, go by
//! reference), then builds the request as `lane::post` does
//! (URI, content type, deadline header). Writing the request to the socket is hyper's and
//! is not measured. Batches of 1, 16 and 64 packets of 100 messages each; 64 such packets
//! are about the default `--batch-bytes` of 1 MiB.
//!
//! `cargo bench -p logdist --bench delivery`

#[path = "../../logdist-core/benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hyper::{Request, Uri, header};
use logdist::api::{DEADLINE_HEADER, delivery_deadline};
use logdist::distributor::batch::Batch;
use logdist_core::{Format, decode_packet};

const BATCHES: [usize; 3] = [1, 16, 64];

/// `count` packets of 100 messages each, decoded as ingest hands them to the lanes.
fn packets(count: usize) -> Vec<Bytes> {
    (0..count as u64)
        .map(|seed| {
            let body = common::ndjson(&common::messages(seed, 100));
            let packet = decode_packet(body.into(), Format::Ndjson).expect("valid packet");
            packet.ndjson
        })
        .collect()
}

/// The request `lane::post` builds for a body.
fn request(uri: &Uri, body: Batch, timeout: Duration) -> Request<Batch> {
    Request::post(uri.clone())
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(DEADLINE_HEADER, delivery_deadline(timeout))
        .body(body)
        .expect("a valid request")
}

fn delivery(c: &mut Criterion) {
    let parts = packets(BATCHES[BATCHES.len() - 1]);
    let uri: Uri = "http://127.0.0.1:9001/packets"
        .parse()
        .expect("a valid URI");
    let timeout = Duration::from_secs(5);

    let mut group = c.benchmark_group("batch");
    for n in BATCHES {
        let batch = &parts[..n];
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        println!("batch/{n}_packets: {} messages in {bytes} bytes", n * 100);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{n}_packets")), |b| {
            b.iter(|| Batch::new(black_box(batch)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("delivery_request");
    for n in BATCHES {
        let batch = &parts[..n];
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{n}_packets")), |b| {
            b.iter(|| request(&uri, Batch::new(black_box(batch)), timeout))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = delivery
}
criterion_main!(benches);
