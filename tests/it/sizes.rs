//! Encoded sizes (deterministic, so asserted here; timings live in `benches/crdt.rs`).

#[path = "../../benches/workload.rs"]
mod workload;

use cairn_crdt::{Crdt, Set, SetOp, Value};
use workload::{at, member, Workload};

fn encoded(set: &Set) -> usize {
    cairn_proto::encode_value(&Value::Set(set.clone())).len()
}

#[test]
fn a_100k_set_encodes_in_at_most_a_third_of_crdts_postcard() {
    let w = Workload::new();
    let ours = encoded(&w.ours.0);
    let theirs = postcard::to_allocvec(&w.theirs.0).unwrap().len();
    assert!(w.ours.0.len() > 98_000);
    assert!(ours * 3 <= theirs, "cairn {ours} B vs crdts {theirs} B");
}

#[test]
fn an_add_delta_does_not_grow_with_the_set() {
    let mut small = Set::default();
    for i in 0..10 {
        small
            .apply(&SetOp::Add(vec![member("item", i)]), at(i as u64 % 16))
            .unwrap();
    }
    let mut big = Workload::new().ours.0;
    let op = SetOp::Add(vec![b"new-member".to_vec()]);
    let small_delta = small.apply(&op, at(3)).unwrap();
    let big_delta = big.apply(&op, at(3)).unwrap();
    // The dot's counter is larger in the big set, so its varint may take a byte or two more.
    assert!(encoded(&big_delta) <= encoded(&small_delta) + 4);
    assert!(encoded(&big_delta) < 64, "{} B", encoded(&big_delta));
}
