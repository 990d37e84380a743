//! Anti-entropy trees in the style of Riak's TicTac AAE.
//!
//! Each replica keeps, per partition, [`SEGMENTS`] 64-bit segment hashes. A key falls in
//! one segment; the segment is the XOR of [`leaf`] hashes `(bucket, key, state hash)` of its
//! keys, so a write updates it in O(1): XOR out the key's old leaf, XOR in the new one, in
//! the same commit as the object (the [`Store`](crate::Store) does it). Segments group into
//! [`BRANCHES`] branches of [`BRANCH_WIDTH`]; a branch hash is the XOR of its segments and
//! the root the XOR of the branches. Two replicas compare roots, then branches, then
//! segments, then the keys of differing segments, and exchange only the states that differ.

use cairn_crdt::Value;
use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64;

use crate::store::ObjectKey;

/// Segments per partition.
pub const SEGMENTS: usize = 1024;
/// Segments per branch.
pub const BRANCH_WIDTH: usize = 32;
/// Branches per partition.
pub const BRANCHES: usize = SEGMENTS / BRANCH_WIDTH;

/// A segment's index within its partition's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u16);

/// The hash of a value's canonical encoding: equal states hash equal on every replica.
///
/// It costs one encoding of the state per write, O(size of the value); see ARCHITECTURE.md
/// for why not a causal summary.
pub fn state_hash(value: &Value) -> u64 {
    state_hash_of_encoding(&cairn_proto::encode_value(value))
}

/// [`state_hash`] of a value from its encoding (`cairn_proto::encode_value`), for callers
/// that encode it anyway.
pub fn state_hash_of_encoding(encoded: &[u8]) -> u64 {
    xxh3_64(encoded)
}

/// A key's contribution to its segment.
pub fn leaf(key: &ObjectKey, state_hash: u64) -> u64 {
    // Every write hashes two leaves (its old state's and its new one's): typical keys
    // are laid out on the stack, not in a fresh allocation.
    let mut bytes: SmallVec<[u8; 128]> = SmallVec::new();
    bytes.extend_from_slice(&(key.bucket.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&key.bucket);
    bytes.extend_from_slice(&key.key);
    bytes.extend_from_slice(&state_hash.to_le_bytes());
    xxh3_64(&bytes)
}

/// The segment a key falls in: low bits of its key hash (the partition uses the high bits).
pub fn segment_of(key: &ObjectKey) -> SegmentId {
    let hash = cairn_ring::key_hash(&key.bucket, &key.key);
    let index = hash % SEGMENTS as u64;
    SegmentId(u16::try_from(index).expect("SEGMENTS fits in u16"))
}

/// One partition's segment hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    segments: Box<[u64]>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            segments: vec![0; SEGMENTS].into_boxed_slice(),
        }
    }
}

impl Tree {
    /// A tree over given segment hashes; `None` unless there are exactly [`SEGMENTS`].
    pub fn from_segments(segments: Vec<u64>) -> Option<Self> {
        (segments.len() == SEGMENTS).then(|| Tree {
            segments: segments.into_boxed_slice(),
        })
    }

    /// Records that `key`'s state hash went from `old` to `new` (`None`: absent).
    pub fn update(&mut self, key: &ObjectKey, old: Option<u64>, new: Option<u64>) {
        let segment = &mut self.segments[usize::from(segment_of(key).0)];
        if let Some(h) = old {
            *segment ^= leaf(key, h);
        }
        if let Some(h) = new {
            *segment ^= leaf(key, h);
        }
    }

    /// The segment hashes.
    pub fn segments(&self) -> &[u64] {
        &self.segments
    }

    /// The hash of branch `b`: the XOR of its segments.
    pub fn branch(&self, b: usize) -> u64 {
        self.segments[b * BRANCH_WIDTH..(b + 1) * BRANCH_WIDTH]
            .iter()
            .fold(0, |acc, s| acc ^ s)
    }

    /// Every branch hash.
    pub fn branches(&self) -> Vec<u64> {
        (0..BRANCHES).map(|b| self.branch(b)).collect()
    }

    /// The root hash.
    pub fn root(&self) -> u64 {
        self.segments.iter().fold(0, |acc, s| acc ^ s)
    }

    /// The segments of `branches` whose hashes differ from `theirs` (given in the same
    /// order: `BRANCH_WIDTH` hashes per branch).
    pub fn differing_segments(&self, branches: &[u16], theirs: &[u64]) -> Vec<SegmentId> {
        let mut out = Vec::new();
        for (i, b) in branches.iter().enumerate() {
            for s in 0..BRANCH_WIDTH {
                let index = usize::from(*b) * BRANCH_WIDTH + s;
                let mine = self.segments.get(index).copied();
                if mine.is_some() && theirs.get(i * BRANCH_WIDTH + s).copied() != mine {
                    out.push(SegmentId(u16::try_from(index).expect("index < SEGMENTS")));
                }
            }
        }
        out
    }

    /// The segment hashes of the given branches, in order.
    pub fn branch_segments(&self, branches: &[u16]) -> Vec<u64> {
        let mut out = Vec::with_capacity(branches.len() * BRANCH_WIDTH);
        for b in branches {
            let start = usize::from(*b) * BRANCH_WIDTH;
            match self.segments.get(start..start + BRANCH_WIDTH) {
                Some(s) => out.extend_from_slice(s),
                None => out.extend(std::iter::repeat_n(0, BRANCH_WIDTH)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crdt::ValueType;
    use cairn_ring::PartitionId;

    fn key(k: &str) -> ObjectKey {
        ObjectKey {
            partition: PartitionId(0),
            bucket: Box::from(&b"b"[..]),
            key: k.as_bytes().into(),
        }
    }

    /// A leaf's hash is on disk (in segment hashes): its input must never change. Pinned
    /// to the layout it has always had, for keys on the stack and past it.
    #[test]
    fn a_leaf_hashes_bucket_length_bucket_key_and_state() {
        for k in ["k", &"x".repeat(300)] {
            let key = key(k);
            let mut bytes = 1u64.to_le_bytes().to_vec();
            bytes.extend_from_slice(b"b");
            bytes.extend_from_slice(k.as_bytes());
            bytes.extend_from_slice(&7u64.to_le_bytes());
            assert_eq!(leaf(&key, 7), xxh3_64(&bytes));
        }
    }

    #[test]
    fn updates_commute_and_undo() {
        let (mut a, mut b) = (Tree::default(), Tree::default());
        let h1 = state_hash(&Value::empty(ValueType::Set));
        let h2 = state_hash(&Value::empty(ValueType::Counter));
        a.update(&key("x"), None, Some(h1));
        a.update(&key("y"), None, Some(h2));
        b.update(&key("y"), None, Some(h2));
        b.update(&key("x"), None, Some(h1));
        assert_eq!(a, b);
        a.update(&key("x"), Some(h1), None);
        a.update(&key("y"), Some(h2), None);
        assert_eq!(a, Tree::default());
        assert_eq!(a.root(), 0);
    }

    #[test]
    fn differing_segments_are_found_through_branches() {
        let (mut a, b) = (Tree::default(), Tree::default());
        a.update(&key("x"), None, Some(7));
        let differ: Vec<usize> = (0..BRANCHES)
            .filter(|&i| a.branch(i) != b.branch(i))
            .collect();
        assert_eq!(differ.len(), 1);
        let branches = [u16::try_from(differ[0]).unwrap()];
        let segments = a.differing_segments(&branches, &b.branch_segments(&branches));
        assert_eq!(segments, vec![segment_of(&key("x"))]);
    }
}
