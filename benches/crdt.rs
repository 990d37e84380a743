//! Convergent-type benchmarks against the `crdts` crate (issue: "convergent types").
//!
//! Run: `cargo bench --bench crdt` (about two minutes). It prints encoded sizes first,
//! then criterion's timings. The workload (`Workload`) is two replicas of a set written by
//! 16 actors: 90k shared members, then each replica adds 10k of its own and removes 1k of
//! the shared ones, so each holds about 99k members and their merge holds 108k.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use cairn_crdt::{Crdt, Set, SetOp, Value};
use crdts::CvRDT;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

#[path = "workload.rs"]
mod workload;

use workload::{at, member, Workload, ACTORS};

fn report_sizes(w: &Workload) {
    let ours = cairn_proto::encode_value(&Value::Set(w.ours.0.clone())).len();
    let theirs = postcard::to_allocvec(&w.theirs.0).unwrap().len();
    println!(
        "encoded size of a {}-member set: cairn {ours} B, crdts+postcard {theirs} B, ratio {:.3}",
        w.ours.0.len(),
        ours as f64 / theirs as f64
    );
    let mut source = w.ours.0.clone();
    let delta = source
        .apply(&SetOp::Add(vec![b"new-member".to_vec()]), at(3))
        .unwrap();
    let bytes = cairn_proto::encode_value(&Value::Set(delta)).len();
    println!(
        "encoded add delta on a {}-member set: {bytes} B",
        w.ours.0.len()
    );
}

fn merge(c: &mut Criterion) {
    let w = Workload::new();
    report_sizes(&w);
    let mut g = c.benchmark_group("set_merge_100k");
    g.sample_size(20);
    g.bench_function("cairn", |b| {
        b.iter_batched(
            || w.ours.0.clone(),
            |mut a| {
                a.merge(black_box(&w.ours.1));
                a
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("crdts", |b| {
        b.iter_batched(
            || (w.theirs.0.clone(), w.theirs.1.clone()),
            |(mut a, other)| {
                a.merge(black_box(other));
                a
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn delta(c: &mut Criterion) {
    let w = Workload::new();
    let mut g = c.benchmark_group("set_add");
    let mut next = 0usize;
    let mut source = w.ours.0.clone();
    let mut target = w.ours.1.clone();
    g.bench_function("merge_add_delta_into_100k", |b| {
        b.iter_batched(
            || {
                next += 1;
                source
                    .apply(&SetOp::Add(vec![member("new", next)]), at(5))
                    .unwrap()
            },
            |delta| target.merge(black_box(&delta)),
            BatchSize::SmallInput,
        )
    });
    let mut small = Set::default();
    for i in 0..10 {
        small
            .apply(&SetOp::Add(vec![member("item", i)]), at(i as u64 % ACTORS))
            .unwrap();
    }
    let mut n = 0usize;
    g.bench_function("add_to_10", |b| {
        b.iter_batched(
            || {
                n += 1;
                (small.clone(), SetOp::Add(vec![member("new", n)]))
            },
            |(mut s, op)| {
                let delta = s.apply(black_box(&op), at(7)).unwrap();
                (s, delta)
            },
            BatchSize::SmallInput,
        )
    });
    let mut big = w.ours.0.clone();
    let mut k = 0usize;
    g.bench_function("add_to_100k", |b| {
        b.iter_batched(
            || {
                k += 1;
                SetOp::Add(vec![member("new", k)])
            },
            |op| big.apply(black_box(&op), at(7)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, merge, delta);
criterion_main!(benches);
