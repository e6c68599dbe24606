//! One routing decision: `Router::route`, a pick and a record, which the registry runs for
//! every packet under its lock (as `pick` and `record`). Measured over 3 analyzers
//! (weights 0.5/0.3/0.2) and over 20 (weights 1 to 20), with packets of one message and of
//! 1 to 1000 messages (a fixed pseudo-random sequence). The router's window grows through
//! the run, as it does between membership changes.
//!
//! `cargo bench -p logdist-core --bench routing`

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use logdist_core::Router;

/// How many packet sizes are drawn before the sequence repeats (a power of two).
const SIZES: usize = 4096;

fn route(c: &mut Criterion) {
    let mut rng = common::Lcg::new(3);
    let sizes: Vec<u64> = (0..SIZES).map(|_| rng.below(1000) + 1).collect();
    let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
    let mut group = c.benchmark_group("route");
    for weights in [&[0.5, 0.3, 0.2][..], &twenty] {
        let analyzers = format!("{}_analyzers", weights.len());
        group.bench_function(BenchmarkId::new(&analyzers, "size_1"), |b| {
            let mut router = Router::new(weights).expect("valid weights");
            b.iter(|| router.route(black_box(1)))
        });
        group.bench_function(BenchmarkId::new(&analyzers, "size_1-1000"), |b| {
            let mut router = Router::new(weights).expect("valid weights");
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % SIZES;
                router.route(black_box(sizes[i]))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = route
}
criterion_main!(benches);
