//! Convergent-type benchmarks against the `crdts` crate (issue: "convergent types").
//!
//! Run: `cargo bench --bench crdt` (about two minutes). It prints encoded sizes first,
//! then criterion's timings. The workload (`Workload`) is two replicas of a set written by
//! 16 actors: 90k shared members, then each replica adds 10k of its own and removes 1k of
//! the shared ones, so each holds about 99k members and their merge holds 108k.

// Indices in a bench stay below `CHUNK`, so `as usize` never truncates.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

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

/// Largest run of operations on one copy of a workload set before it is cloned afresh,
/// so sets stay near 100k members (and under `SET_MEMBERS_MAX`) however many iterations
/// criterion asks for.
const CHUNK: u64 = 50_000;

/// Times `iters` calls of `step`, on fresh state from `fresh` every `CHUNK` calls; the
/// setup of each chunk (`prepare`) is not timed.
fn chunked<S, P>(
    iters: u64,
    fresh: impl Fn() -> S,
    prepare: impl Fn(&mut S, u64) -> P,
    step: impl Fn(&mut S, &mut P),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let mut state = fresh();
        let mut inputs: Vec<P> = (0..n).map(|i| prepare(&mut state, i)).collect();
        let started = Instant::now();
        for input in &mut inputs {
            step(&mut state, input);
        }
        total += started.elapsed();
        done += n;
    }
    total
}

fn delta(c: &mut Criterion) {
    let w = Workload::new();
    let mut g = c.benchmark_group("set_add");
    // A replica that missed other writes of the coordinating actor (new dots go to its
    // cloud): the pessimistic case.
    g.bench_function("merge_add_delta_into_100k_behind", |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                || (w.ours.0.clone(), w.ours.1.clone()),
                |(source, _), i| {
                    source
                        .apply(&add(member("new", i as usize)), at(5))
                        .unwrap()
                },
                |(_, target), delta| target.merge(black_box(delta)),
            )
        })
    });
    // The common case: a replica in step with the coordinator (new dots extend its vector).
    g.bench_function("merge_add_delta_into_100k_in_step", |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                || (w.ours.0.clone(), w.ours.0.clone()),
                |(source, _), i| {
                    source
                        .apply(&add(member("new", i as usize)), at(5))
                        .unwrap()
                },
                |(_, target), delta| target.merge(black_box(delta)),
            )
        })
    });
    let mut small = Set::default();
    for i in 0..10 {
        small
            .apply(&add(member("item", i)), at(i as u64 % ACTORS))
            .unwrap();
    }
    g.bench_function("add_to_10", |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                || (),
                |_, i| (small.clone(), add(member("new", i as usize))),
                |_, (set, op)| {
                    black_box(set.apply(black_box(op), at(7)).unwrap());
                },
            )
        })
    });
    g.bench_function("add_to_100k", |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                || w.ours.0.clone(),
                |_, i| add(member("new", i as usize)),
                |big, op| {
                    black_box(big.apply(black_box(op), at(7)).unwrap());
                },
            )
        })
    });
    g.finish();
}

fn add(m: Vec<u8>) -> SetOp {
    SetOp::Add(vec![m])
}

criterion_group!(benches, merge, delta);
criterion_main!(benches);
