//! Encoded size of a large set against `crdts::Orswot` under postcard. Run with
//! `cargo test -p cairn-proto --test proto size -- --nocapture` to see the numbers.

use crdts::CmRDT;

use cairn_crdt::{Actor, Crdt, Replica, Set, SetOp, Timestamp, Value};

const MEMBERS: usize = 100_000;
const ACTORS: u64 = 16;

/// Our encoded size and `crdts`'s, for the same adds, round-robin over the actors.
fn sizes(members: impl Iterator<Item = Vec<u8>>) -> (usize, usize) {
    let mut ours = Set::default();
    let mut theirs: crdts::Orswot<Vec<u8>, u64> = crdts::Orswot::new();
    for (i, m) in members.enumerate() {
        let actor = i as u64 % ACTORS;
        let at = Replica {
            actor: Actor(actor),
            now: Timestamp::ZERO,
        };
        ours.apply(&SetOp::Add(vec![m.clone()]), at).unwrap();
        let op = theirs.add(m, theirs.read_ctx().derive_add_ctx(actor));
        theirs.apply(op);
    }
    assert_eq!(ours.len(), MEMBERS);
    let ours = cairn_proto::encode_value(&Value::Set(ours)).len();
    let theirs = postcard::to_allocvec(&theirs).unwrap().len();
    (ours, theirs)
}

fn report(what: &str, (ours, theirs): (usize, usize)) -> f64 {
    let ratio = ours as f64 / theirs as f64;
    println!("{what}: cairn-proto {ours} B, crdts+postcard {theirs} B, ratio {ratio:.3}");
    ratio
}

#[test]
fn keyed_members_encode_in_under_a_third_of_crdts() {
    let members = (0..MEMBERS).map(|i| format!("item:{i:06}").into_bytes());
    let ratio = report("100k `item:NNNNNN` members, 16 actors", sizes(members));
    assert!(ratio <= 1.0 / 3.0);
}

#[test]
fn random_members_still_encode_smaller() {
    // A fixed xorshift stream: random 8-byte members share almost no prefix, and in member
    // order their dots' counters jump around, so the gain is smaller.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let members = (0..MEMBERS).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_le_bytes().to_vec()
    });
    let ratio = report("100k random 8-byte members, 16 actors", sizes(members));
    assert!(ratio < 1.0);
}
