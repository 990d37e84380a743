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

use std::collections::BTreeMap;

use cairn_crdt::Value;
use cairn_ring::{NodeId, PartitionId};

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

/// Names one staged write; reported back once the write is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteToken(pub u64);

/// What a node keeps about itself.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeMeta {
    /// Bumped every time the storage may have lost writes it had reported durable; part of
    /// every actor id, so a new generation never reuses a dot.
    pub generation: u64,
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

/// A node's storage: objects, hints and metadata.
pub trait Store {
    /// The object at `key`, staged or durable.
    fn object(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError>;
    /// Stages `value` as the object at `key`.
    fn stage_object(&mut self, key: ObjectKey, value: Value) -> Result<WriteToken, StoreError>;
    /// The hinted copy this node keeps of `key` for `owner`.
    fn hint(&self, owner: NodeId, key: &ObjectKey) -> Result<Option<Value>, StoreError>;
    /// Stages `value` as the hinted copy of `key` for `owner`.
    fn stage_hint(
        &mut self,
        owner: NodeId,
        key: ObjectKey,
        value: Value,
    ) -> Result<WriteToken, StoreError>;
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
    /// Hint backlog: `(owner, count)` for every owner with hints.
    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, StoreError>;
    /// The node's metadata, `None` for a store that has never held any.
    fn meta(&self) -> Result<Option<NodeMeta>, StoreError>;
    /// Stages new metadata.
    fn stage_meta(&mut self, meta: NodeMeta) -> Result<WriteToken, StoreError>;
}

/// An in-memory store that keeps staged writes apart from committed ones, so a simulated
/// crash loses exactly what a real one may lose.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    durable: Tables,
    staged: Tables,
    staged_tokens: Vec<WriteToken>,
    next_token: u64,
}

#[derive(Clone, Debug, Default)]
struct Tables {
    objects: BTreeMap<ObjectKey, Value>,
    /// `None` marks a staged removal.
    hints: BTreeMap<(NodeId, ObjectKey), Option<Value>>,
    meta: Option<NodeMeta>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every staged write durable and returns their tokens, in staging order.
    pub fn commit(&mut self) -> Vec<WriteToken> {
        let staged = std::mem::take(&mut self.staged);
        self.durable.objects.extend(staged.objects);
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

    /// Number of staged, uncommitted writes.
    pub fn staged_len(&self) -> usize {
        self.staged_tokens.len()
    }

    /// Every durable and staged object, staged winning.
    pub fn objects(&self) -> impl Iterator<Item = (&ObjectKey, &Value)> + '_ {
        let staged = self.staged.objects.iter();
        let durable = self
            .durable
            .objects
            .iter()
            .filter(|(k, _)| !self.staged.objects.contains_key(*k));
        staged.chain(durable)
    }

    fn token(&mut self) -> WriteToken {
        self.next_token += 1;
        let token = WriteToken(self.next_token);
        self.staged_tokens.push(token);
        token
    }
}

impl Store for MemStore {
    fn object(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let found = self
            .staged
            .objects
            .get(key)
            .or_else(|| self.durable.objects.get(key));
        Ok(found.cloned())
    }

    fn stage_object(&mut self, key: ObjectKey, value: Value) -> Result<WriteToken, StoreError> {
        self.staged.objects.insert(key, value);
        Ok(self.token())
    }

    fn hint(&self, owner: NodeId, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let k = (owner, key.clone());
        match self.staged.hints.get(&k) {
            Some(staged) => Ok(staged.clone()),
            None => Ok(self.durable.hints.get(&k).cloned().flatten()),
        }
    }

    fn stage_hint(
        &mut self,
        owner: NodeId,
        key: ObjectKey,
        value: Value,
    ) -> Result<WriteToken, StoreError> {
        self.staged.hints.insert((owner, key), Some(value));
        Ok(self.token())
    }

    fn hints(
        &self,
        owner: NodeId,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, Value)>, StoreError> {
        let mut merged: BTreeMap<&ObjectKey, &Option<Value>> = BTreeMap::new();
        for table in [&self.durable.hints, &self.staged.hints] {
            for ((o, k), v) in table {
                if *o == owner && after.is_none_or(|a| k > a) {
                    merged.insert(k, v);
                }
            }
        }
        let live = merged
            .into_iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)));
        Ok(live.take(limit).collect())
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
        let keys = self.durable.hints.keys().chain(self.staged.hints.keys());
        let unique: std::collections::BTreeSet<&(NodeId, ObjectKey)> = keys.collect();
        for k in unique {
            if self.hint(k.0, &k.1)?.is_some() {
                *counts.entry(k.0).or_default() += 1;
            }
        }
        Ok(counts.into_iter().collect())
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
    }
}
