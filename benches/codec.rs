//! What reading and writing a stored set costs: `cairn_proto`'s decode (which also checks
//! every invariant, since the bytes come from disk or a peer) and encode of sets of 100
//! and 10,000 members, each added by one of three actors, like the sets `cairn bench
//! --workload set-add` grows. A node decodes a set on every write that misses its
//! overlay and encodes it on every write.
//!
//! Run: `cargo bench --bench codec` (about half a minute).

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use cairn_crdt::{Crdt, Set, SetOp, Value};
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "workload.rs"]
mod workload;

use workload::{at, member};

/// A set of `n` members added one at a time by three actors in turn.
fn set_of(n: usize) -> Value {
    let mut set = Set::default();
    for i in 0..n {
        let op = SetOp::Add(vec![member("m", i * 7919 % 1_000_003)]);
        set.apply(&op, at(1 + (i % 3) as u64)).unwrap();
    }
    Value::Set(set)
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("set_codec");
    for n in [100, 10_000] {
        let value = set_of(n);
        let bytes = cairn_proto::encode_value(&value);
        g.bench_function(format!("decode_{n}"), |b| {
            b.iter(|| black_box(cairn_proto::decode_value(black_box(&bytes)).unwrap()))
        });
        g.bench_function(format!("encode_{n}"), |b| {
            b.iter(|| black_box(cairn_proto::encode_value(black_box(&value))))
        });
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
