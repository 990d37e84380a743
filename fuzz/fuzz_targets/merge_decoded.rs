//! Merging decoded states never panics: two values decoded from one input (split at its
//! first byte's position) merge both ways, and a state merged with itself is unchanged.
//!
//! Decoded states can be ones no history reaches (say, the same dot under different
//! members in the two halves), so only the laws that hold for any single valid state are
//! asserted here; `crdt_laws` checks the rest on reachable states.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let at = usize::from(split).min(rest.len());
    let (left, right) = rest.split_at(at);
    let (Ok(a), Ok(b)) = (cairn_proto::decode_value(left), cairn_proto::decode_value(right)) else {
        return;
    };
    let mut ab = a.clone();
    let mut ba = b.clone();
    if ab.merge(&b).is_ok() {
        ba.merge(&a).expect("same types merge both ways");
    }
    let mut aa = a.clone();
    aa.merge(&a).expect("a value merges with itself");
    assert_eq!(aa, a, "merge is idempotent");
    let _ = aa.is_bottom();
});
