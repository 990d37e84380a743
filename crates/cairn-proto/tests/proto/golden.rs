//! Golden bytes: encodings written by format version 1 must keep decoding to the same
//! values. If one of these fails, the format changed: bump `FORMAT_VERSION` and keep a
//! version-1 reader (proto-docs/crdt-laws.md, "Compatibility"), do not edit the hex.

use cairn_crdt::{
    Actor, CausalContext, Counter, CounterOp, Crdt, Dot, Replica, Set, SetOp, Timestamp, Value,
};
use cairn_proto::{decode_context, decode_value, encode_context, encode_value};

fn at(actor: u64) -> Replica {
    Replica {
        actor: Actor(actor),
        now: Timestamp::ZERO,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unspaced(s: &str) -> String {
    s.split_whitespace().collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s = unspaced(s);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn small_counter() -> Value {
    let mut c = Counter::default();
    c.apply(&CounterOp::Increment(5), at(1)).unwrap();
    c.apply(&CounterOp::Increment(-2), at(2)).unwrap();
    Value::Counter(c)
}

/// [`small_counter`] reset, then incremented by 3 at actor 1: floors under entries.
fn reset_counter() -> Value {
    let Value::Counter(mut c) = small_counter() else {
        unreachable!("small_counter is a counter")
    };
    c.reset(at(3));
    c.apply(&CounterOp::Increment(3), at(1)).unwrap();
    Value::Counter(c)
}

fn small_set() -> Value {
    let mut s = Set::default();
    s.apply(
        &SetOp::Add(vec![b"apple".to_vec(), b"apricot".to_vec()]),
        at(1),
    )
    .unwrap();
    s.apply(&SetOp::Add(vec![b"banana".to_vec()]), at(2))
        .unwrap();
    s.apply(&SetOp::Add(vec![b"apple".to_vec()]), at(2))
        .unwrap();
    Value::Set(s)
}

fn small_context() -> CausalContext {
    let d = |a, c| Dot::new(Actor(a), c);
    CausalContext::from_dots([d(1, 1), d(1, 2), d(2, 1), d(2, 4)])
}

/// Counter: entries (1, inc 5, dec 0) and (2, inc 0, dec 2); no reset floors.
const COUNTER: &str = "0101 02 010500 020002 00";
/// Counter: entries (1, inc 8, dec 0) and (2, inc 0, dec 2); floors (1, inc 5, dec 0)
/// and (2, inc 0, dec 2).
const RESET_COUNTER: &str = "0101 02 010800 020002 02 010500 020002";
/// Set: context {1: 2, 2: 2}; actors [1, 2]; members "apple", "ap|ricot", "banana";
/// dot codes 0x12 (2,2), 0x10 (1,2), 0x06 (2,1); no deferred removes.
const SET: &str =
    "0102 020102020200 020102 03 00056170706c65 0205726963 6f74 00066261 6e616e61 03121006 00";
/// Context: vv {1: 2, 2: 1}, cloud [(2, 4)].
const CONTEXT: &str = "0120 0201020201 010204";

#[test]
fn golden_counter() {
    assert_eq!(hex(&encode_value(&small_counter())), unspaced(COUNTER));
    assert_eq!(decode_value(&unhex(COUNTER)), Ok(small_counter()));
}

#[test]
fn golden_reset_counter() {
    assert_eq!(
        hex(&encode_value(&reset_counter())),
        unspaced(RESET_COUNTER)
    );
    assert_eq!(decode_value(&unhex(RESET_COUNTER)), Ok(reset_counter()));
}

#[test]
fn golden_set() {
    assert_eq!(hex(&encode_value(&small_set())), unspaced(SET));
    assert_eq!(decode_value(&unhex(SET)), Ok(small_set()));
}

#[test]
fn golden_context() {
    assert_eq!(hex(&encode_context(&small_context())), unspaced(CONTEXT));
    assert_eq!(decode_context(&unhex(CONTEXT)), Ok(small_context()));
}
