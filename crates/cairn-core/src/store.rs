//! The narrow trait at the storage edge, and `MemStore` for tests and the simulator.
//!
//! # Failure contract
//!
//! - `stage_*` calls never make anything durable. A staged write becomes durable only when
//!   its [`WriteToken`] is reported persisted (by the driver, through
//!   `Node::handle_persisted`); a node acknowledges nothing before that.
//! - Reads see staged writes: a node reads its own writes before they are durable.
//! - A crash may lose any staged write whose token was not yet reported; it loses nothing
//!   that was reported. A store that cannot promise that (a new or restored disk, an
//!   unclean shutdown without synced commits) must say so through [`NodeMeta`], so the
//!   node takes new actors before it coordinates again (DESIGN.md §4.2).
//! - Every method may fail with [`StoreError`]; the node then fails the request it was
//!   serving, and never panics.

use std::collections::{BTreeMap, BTreeSet};

use cairn_crdt::Value;
use cairn_ring::{NodeId, PartitionId};

use crate::aae::{segment_of, state_hash, SegmentId, Tree};

/// Where an object lives: its partition, bucket and key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The partition `(bucket, key)` hashes to.
    pub partition: PartitionId,
    /// The bucket.
    pub bucket: Box<[u8]>,
    /// The key within the bucket.
    pub key: Box<[u8]>,
}

/// Where `key` sorts in an anti-entropy key list: by segment, then by key. Both replicas
/// of an exchange list keys in this order, so a list cut at a bound ends at a key both can
/// resume after; and it is the order a store keyed by segment first scans in.
pub fn aae_order(key: &ObjectKey) -> (SegmentId, &ObjectKey) {
    (segment_of(key), key)
}

/// Names one staged write; reported back once the write is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteToken(pub u64);

/// What a node keeps about itself.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeMeta {
    /// Bumped every time the storage may have lost writes it had reported durable; part of
    /// every actor id, so a new generation never reuses a dot.
    pub generation: u64,
    /// Per partition, bumped before this node coordinates again in a partition whose
    /// data it dropped (a hint handed home, a tombstone reaped): the dropped copy held
    /// this node's latest dots for its keys, so the old actor could reissue them.
    pub epochs: BTreeMap<PartitionId, u64>,
    /// Partitions whose data this node dropped since their epoch last moved.
    pub dropped: BTreeSet<PartitionId>,
    /// The store may lack writes that quorums counted this node for: it started empty (new
    /// or lost), and has not yet synced every partition it replicates with every other
    /// replica. Until then its copies count toward no read quorum (`node/sync.rs`).
    pub unsynced: bool,
}

/// A storage failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The device or the database failed.
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// Stored bytes do not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A hint backlog's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Hints kept.
    pub count: u64,
    /// Their encoded size.
    pub bytes: u64,
}

/// A node's storage: objects with their anti-entropy trees, hints, and metadata.
pub trait Store {
    /// The object at `key`, staged or durable.
    fn object(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError>;
    /// The object at `key`, like [`object`](Self::object), for a caller about to stage a
    /// changed copy of it: a store that keeps decoded values may hand over its own copy
    /// instead of a clone, and read that key afresh if no stage follows.
    fn object_for_update(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        self.object(key)
    }
    /// Stages `value` as the object at `key`, and the matching update of its partition's
    /// anti-entropy tree ([`crate::aae::Tree::update`] with [`crate::aae::state_hash`]),
    /// in one write: a crash keeps both or neither.
    fn stage_object(&mut self, key: ObjectKey, value: Value) -> Result<WriteToken, StoreError>;
    /// Stages the removal of the object at `key` (a reaped tombstone) and its tree update.
    fn stage_object_removal(&mut self, key: &ObjectKey) -> Result<WriteToken, StoreError>;
    /// The anti-entropy tree of `partition`, staged writes included.
    fn aae_tree(&self, partition: PartitionId) -> Result<Tree, StoreError>;
    /// The keys of `partition` that fall in `segments`, with their state hashes, in
    /// [`aae_order`] after `after` (a key of `partition`, exclusive; `None`: from the
    /// first), at most `limit` of them.
    fn aae_keys(
        &self,
        partition: PartitionId,
        segments: &[SegmentId],
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, u64)>, StoreError>;
    /// The hinted copy this node keeps of `key` for `owner`.
    fn hint(&self, owner: NodeId, key: &ObjectKey) -> Result<Option<Value>, StoreError>;
    /// Stages `value` as the hinted copy of `key` for `owner`.
    fn stage_hint(
        &mut self,
        owner: NodeId,
        key: ObjectKey,
        value: Value,
    ) -> Result<WriteToken, StoreError>;
    /// Every hinted copy of `key` this node keeps, by owner.
    fn key_hints(&self, key: &ObjectKey) -> Result<Vec<(NodeId, Value)>, StoreError>;
    /// Up to `limit` hints for `owner`, in key order after `after` (exclusive).
    fn hints(
        &self,
        owner: NodeId,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, Value)>, StoreError>;
    /// Stages the removal of `owner`'s hint for `key`.
    fn stage_hint_removal(
        &mut self,
        owner: NodeId,
        key: &ObjectKey,
    ) -> Result<WriteToken, StoreError>;
    /// Hint backlog by owner, for every owner with hints.
    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, StoreError>;
    /// The whole hint backlog: count and encoded bytes.
    fn hint_backlog(&self) -> Result<Backlog, StoreError>;
    /// The node's metadata, `None` for a store that has never held any.
    fn meta(&self) -> Result<Option<NodeMeta>, StoreError>;
    /// Stages new metadata.
    fn stage_meta(&mut self, meta: NodeMeta) -> Result<WriteToken, StoreError>;
}

/// An in-memory store that keeps staged writes apart from committed ones, so a simulated
/// crash loses exactly what a real one may.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    durable: Tables,
    staged: Tables,
    staged_tokens: Vec<WriteToken>,
    next_token: u64,
}

/// One layer of tables. In the staged layer, `None` marks a staged removal.
#[derive(Clone, Debug, Default)]
struct Tables {
    objects: BTreeMap<ObjectKey, Option<Stored>>,
    trees: BTreeMap<PartitionId, Tree>,
    hints: BTreeMap<(NodeId, ObjectKey), Option<(Value, u64)>>,
    meta: Option<NodeMeta>,
}

/// An object with its state hash.
#[derive(Clone, Debug)]
struct Stored {
    value: Value,
    hash: u64,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every staged write durable and returns their tokens, in staging order.
    pub fn commit(&mut self) -> Vec<WriteToken> {
        let staged = std::mem::take(&mut self.staged);
        for (k, v) in staged.objects {
            match v {
                Some(v) => self.durable.objects.insert(k, Some(v)),
                None => self.durable.objects.remove(&k),
            };
        }
        self.durable.trees.extend(staged.trees);
        for (k, v) in staged.hints {
            match v {
                Some(v) => self.durable.hints.insert(k, Some(v)),
                None => self.durable.hints.remove(&k),
            };
        }
        if let Some(meta) = staged.meta {
            self.durable.meta = Some(meta);
        }
        std::mem::take(&mut self.staged_tokens)
    }

    /// Simulates a crash: everything staged is lost.
    pub fn crash(&mut self) {
        self.staged = Tables::default();
        self.staged_tokens.clear();
    }

    /// Simulates a lost disk: everything is gone, metadata included.
    pub fn wipe(&mut self) {
        *self = MemStore {
            next_token: self.next_token,
            ..MemStore::default()
        };
    }

    /// Simulates losing hints only (say, a fallback whose hint file was lost).
    pub fn drop_hints(&mut self) {
        self.durable.hints.clear();
        self.staged.hints.clear();
    }

    /// Number of staged, uncommitted writes.
    pub fn staged_len(&self) -> usize {
        self.staged_tokens.len()
    }

    /// Every object, staged winning over durable.
    pub fn objects(&self) -> impl Iterator<Item = (&ObjectKey, &Value)> + '_ {
        let staged = self
            .staged
            .objects
            .iter()
            .filter_map(|(k, v)| Some((k, &v.as_ref()?.value)));
        let durable = self
            .durable
            .objects
            .iter()
            .filter(|(k, _)| !self.staged.objects.contains_key(*k));
        staged.chain(durable.filter_map(|(k, v)| Some((k, &v.as_ref()?.value))))
    }

    fn stored(&self, key: &ObjectKey) -> Option<&Stored> {
        match self.staged.objects.get(key) {
            Some(staged) => staged.as_ref(),
            None => self.durable.objects.get(key).and_then(Option::as_ref),
        }
    }

    fn tree(&self, partition: PartitionId) -> Tree {
        let tree = self
            .staged
            .trees
            .get(&partition)
            .or_else(|| self.durable.trees.get(&partition));
        tree.cloned().unwrap_or_default()
    }

    /// Stages `new` for `key` (`None`: removal), updating the tree in the same layer.
    fn stage(&mut self, key: ObjectKey, new: Option<Stored>) -> WriteToken {
        let old = self.stored(&key).map(|s| s.hash);
        // The staged tree starts as a copy of the durable one, once per commit.
        if !self.staged.trees.contains_key(&key.partition) {
            let durable = self
                .durable
                .trees
                .get(&key.partition)
                .cloned()
                .unwrap_or_default();
            self.staged.trees.insert(key.partition, durable);
        }
        if let Some(tree) = self.staged.trees.get_mut(&key.partition) {
            tree.update(&key, old, new.as_ref().map(|s| s.hash));
        }
        self.staged.objects.insert(key, new);
        self.token()
    }

    fn token(&mut self) -> WriteToken {
        self.next_token += 1;
        let token = WriteToken(self.next_token);
        self.staged_tokens.push(token);
        token
    }

    fn live_hints(&self) -> BTreeMap<&(NodeId, ObjectKey), &(Value, u64)> {
        let mut merged = BTreeMap::new();
        for (k, v) in self.durable.hints.iter().chain(&self.staged.hints) {
            merged.insert(k, v.as_ref());
        }
        merged
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect()
    }
}

impl Store for MemStore {
    fn object(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        Ok(self.stored(key).map(|s| s.value.clone()))
    }

    fn stage_object(&mut self, key: ObjectKey, value: Value) -> Result<WriteToken, StoreError> {
        let hash = state_hash(&value);
        Ok(self.stage(key, Some(Stored { value, hash })))
    }

    fn stage_object_removal(&mut self, key: &ObjectKey) -> Result<WriteToken, StoreError> {
        Ok(self.stage(key.clone(), None))
    }

    fn aae_tree(&self, partition: PartitionId) -> Result<Tree, StoreError> {
        Ok(self.tree(partition))
    }

    fn aae_keys(
        &self,
        partition: PartitionId,
        segments: &[SegmentId],
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, u64)>, StoreError> {
        let wanted: BTreeSet<SegmentId> = segments.iter().copied().collect();
        let after = after.map(aae_order);
        let mut keys: BTreeMap<(SegmentId, &ObjectKey), u64> = BTreeMap::new();
        for layer in [&self.durable.objects, &self.staged.objects] {
            for (k, v) in layer.iter().filter(|(k, _)| k.partition == partition) {
                let at = aae_order(k);
                match v {
                    Some(s) if wanted.contains(&at.0) && after.is_none_or(|a| at > a) => {
                        keys.insert(at, s.hash)
                    }
                    _ => keys.remove(&at),
                };
            }
        }
        Ok(keys
            .into_iter()
            .take(limit)
            .map(|((_, k), h)| (k.clone(), h))
            .collect())
    }

    fn hint(&self, owner: NodeId, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let k = (owner, key.clone());
        let found = match self.staged.hints.get(&k) {
            Some(staged) => staged.as_ref(),
            None => self.durable.hints.get(&k).and_then(Option::as_ref),
        };
        Ok(found.map(|(v, _)| v.clone()))
    }

    fn stage_hint(
        &mut self,
        owner: NodeId,
        key: ObjectKey,
        value: Value,
    ) -> Result<WriteToken, StoreError> {
        let bytes = cairn_proto::encode_value(&value).len() as u64;
        self.staged.hints.insert((owner, key), Some((value, bytes)));
        Ok(self.token())
    }

    fn key_hints(&self, key: &ObjectKey) -> Result<Vec<(NodeId, Value)>, StoreError> {
        // Staged entries (values or removals) shadow durable ones.
        type Hints = BTreeMap<(NodeId, ObjectKey), Option<(Value, u64)>>;
        let of_key = |table: &Hints| -> BTreeMap<NodeId, Option<(Value, u64)>> {
            let rows = table.iter().filter(|((_, k), _)| k == key);
            rows.map(|((o, _), v)| (*o, v.clone())).collect()
        };
        let mut found = of_key(&self.durable.hints);
        found.extend(of_key(&self.staged.hints));
        Ok(found
            .into_iter()
            .filter_map(|(o, v)| Some((o, v?.0)))
            .collect())
    }

    fn hints(
        &self,
        owner: NodeId,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, Value)>, StoreError> {
        let live = self.live_hints().into_iter();
        let mine = live.filter(|((o, k), _)| *o == owner && after.is_none_or(|a| k > a));
        Ok(mine
            .take(limit)
            .map(|((_, k), (v, _))| (k.clone(), v.clone()))
            .collect())
    }

    fn stage_hint_removal(
        &mut self,
        owner: NodeId,
        key: &ObjectKey,
    ) -> Result<WriteToken, StoreError> {
        self.staged.hints.insert((owner, key.clone()), None);
        Ok(self.token())
    }

    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        let mut counts: BTreeMap<NodeId, u64> = BTreeMap::new();
        for (owner, _) in self.live_hints().keys() {
            *counts.entry(*owner).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    fn hint_backlog(&self) -> Result<Backlog, StoreError> {
        let live = self.live_hints();
        let bytes = live.values().map(|(_, b)| b).sum();
        Ok(Backlog {
            count: live.len() as u64,
            bytes,
        })
    }

    fn meta(&self) -> Result<Option<NodeMeta>, StoreError> {
        Ok(self
            .staged
            .meta
            .clone()
            .or_else(|| self.durable.meta.clone()))
    }

    fn stage_meta(&mut self, meta: NodeMeta) -> Result<WriteToken, StoreError> {
        self.staged.meta = Some(meta);
        Ok(self.token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crdt::ValueType;

    fn key(k: &str) -> ObjectKey {
        ObjectKey {
            partition: PartitionId(0),
            bucket: Box::from(&b"b"[..]),
            key: k.as_bytes().into(),
        }
    }

    #[test]
    fn crash_loses_exactly_the_uncommitted() {
        let mut s = MemStore::new();
        s.stage_object(key("kept"), Value::empty(ValueType::Counter))
            .unwrap();
        assert_eq!(s.commit().len(), 1);
        s.stage_object(key("lost"), Value::empty(ValueType::Set))
            .unwrap();
        assert!(
            s.object(&key("lost")).unwrap().is_some(),
            "reads see staged writes"
        );
        s.crash();
        assert!(s.object(&key("lost")).unwrap().is_none());
        assert!(s.object(&key("kept")).unwrap().is_some());
    }

    #[test]
    fn the_tree_follows_the_objects_through_commits_and_crashes() {
        let mut s = MemStore::new();
        let p = PartitionId(0);
        s.stage_object(key("a"), Value::empty(ValueType::Counter))
            .unwrap();
        s.commit();
        let durable = s.aae_tree(p).unwrap();
        assert_ne!(durable.root(), 0);
        s.stage_object(key("b"), Value::empty(ValueType::Set))
            .unwrap();
        assert_ne!(
            s.aae_tree(p).unwrap(),
            durable,
            "staged writes show in the tree"
        );
        s.crash();
        assert_eq!(s.aae_tree(p).unwrap(), durable, "and vanish with them");
        s.stage_object_removal(&key("a")).unwrap();
        s.commit();
        assert_eq!(s.aae_tree(p).unwrap().root(), 0);
        assert!(s.object(&key("a")).unwrap().is_none());
    }

    #[test]
    fn aae_keys_lists_a_segment_with_state_hashes() {
        let mut s = MemStore::new();
        let v = Value::empty(ValueType::Flag);
        s.stage_object(key("a"), v.clone()).unwrap();
        let seg = segment_of(&key("a"));
        let keys = s.aae_keys(PartitionId(0), &[seg], None, 10).unwrap();
        assert_eq!(keys, vec![(key("a"), state_hash(&v))]);
    }

    #[test]
    fn aae_keys_list_by_segment_then_key_and_resume_after_a_cursor() {
        let mut s = MemStore::new();
        let keys: Vec<ObjectKey> = (0..200).map(|i| key(&format!("k{i}"))).collect();
        for k in &keys {
            s.stage_object(k.clone(), Value::empty(ValueType::Flag))
                .unwrap();
        }
        s.commit();
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| aae_order(a).cmp(&aae_order(b)));
        assert_ne!(sorted, {
            let mut by_key = keys.clone();
            by_key.sort();
            by_key
        });
        let all: Vec<SegmentId> = (0..crate::aae::SEGMENTS)
            .filter_map(|s| u16::try_from(s).ok())
            .map(SegmentId)
            .collect();
        // Pages of 30, each after the last key of the one before, list every key once.
        let mut listed = Vec::new();
        let mut after: Option<ObjectKey> = None;
        loop {
            let page = s
                .aae_keys(PartitionId(0), &all, after.as_ref(), 30)
                .unwrap();
            listed.extend(page.iter().map(|(k, _)| k.clone()));
            match page.last() {
                Some((k, _)) if page.len() == 30 => after = Some(k.clone()),
                _ => break,
            }
        }
        assert_eq!(listed, sorted);
        // A removal staged after the cursor hides its key.
        s.stage_object_removal(&sorted[150]).unwrap();
        let page = s
            .aae_keys(PartitionId(0), &all, Some(&sorted[149]), 1)
            .unwrap();
        assert_eq!(page[0].0, sorted[151]);
    }

    #[test]
    fn hint_removal_is_staged_too() {
        let mut s = MemStore::new();
        let owner = NodeId(7);
        s.stage_hint(owner, key("a"), Value::empty(ValueType::Flag))
            .unwrap();
        s.commit();
        s.stage_hint_removal(owner, &key("a")).unwrap();
        assert!(s.hints(owner, None, 10).unwrap().is_empty());
        s.crash();
        assert_eq!(
            s.hints(owner, None, 10).unwrap().len(),
            1,
            "removal was not durable"
        );
        assert_eq!(s.hint_counts().unwrap(), vec![(owner, 1)]);
        assert_eq!(s.hint_backlog().unwrap().count, 1);
        assert!(s.hint_backlog().unwrap().bytes > 0);
    }
}
