//! Replica sync: a store that started empty counts toward no read quorum until it has
//! compared each of its partitions with every other replica of it.
//!
//! A read quorum meets every write quorum only if each replica still holds what it
//! acknowledged. A node whose store is new (a replaced disk, a wiped directory, a brand
//! new cluster) breaks that for every write acknowledged before it came up: its "not
//! found" would stand in for a copy it lost, and a register write stamped over such a read
//! could sort below the write it was meant to follow (the simulator's wiped-replica seeds;
//! docs/decisions/replica-sync-after-store-loss.md).
//!
//! So such a node answers reads of its own partitions with `ReplicaError::Syncing` (its
//! local reads too) until, for every partition it replicates and every other replica `q`
//! of it, an anti-entropy exchange it started with `q` ended with nothing `q` held that
//! it lacked. Writes are unchanged: they are on its disk, so they count toward `w`.
//!
//! An exchange that repaired something does not count: its repairs travel as separate
//! messages, so its end says nothing of their arrival. The next one, once they landed,
//! finds nothing and counts. While syncing, exchanges run back to back, up to
//! `SYNC_EXCHANGES_MAX` at once and each abandoned after `sync_timeout_ms`, so a new
//! cluster (empty trees, equal at the root) is synced within a few round trips.
//!
//! The flag lives in `NodeMeta`: cleared in a metadata write staged after every repair,
//! so a crash before it is durable restarts the sync rather than trusting repairs lost
//! with the crash. Which pairs are done is kept in memory only, for the same reason.

use cairn_ring::{NodeId, PartitionId};

use super::Node;
use crate::store::Store;

impl<S: Store> Node<S> {
    /// Partitions whose reads this node refuses until it has synced them, ascending:
    /// empty unless its store started empty (`/v1/cluster` shows them).
    pub fn syncing_partitions(&self) -> Vec<PartitionId> {
        if !self.meta.unsynced {
            return Vec::new();
        }
        self.layout
            .partitions()
            .filter(|p| self.is_syncing(*p))
            .collect()
    }

    /// Whether this node's store still has to sync (cheap; `syncing_partitions` says
    /// which partitions under the current layout).
    pub fn unsynced(&self) -> bool {
        self.meta.unsynced
    }

    /// Whether this node's copy of `partition` may lack writes a quorum counted it for.
    pub(super) fn is_syncing(&self, partition: PartitionId) -> bool {
        self.meta.unsynced && self.unsynced_peers(partition).next().is_some()
    }

    /// Replicas of `partition` this node has still to sync with (none if it is not one).
    fn unsynced_peers(&self, partition: PartitionId) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.cfg.id;
        let replicas = self.layout.replicas(partition);
        let mine = replicas.contains(&me);
        replicas
            .iter()
            .copied()
            .filter(move |q| mine && *q != me && !self.synced_pairs.contains(&(partition, *q)))
    }

    /// The pairs a syncing node compares: those not yet synced, in layout order.
    pub(super) fn unsynced_pairs(&self) -> Vec<(PartitionId, NodeId)> {
        self.layout
            .partitions()
            .flat_map(|p| self.unsynced_peers(p).map(move |q| (p, q)))
            .collect()
    }

    /// An exchange this node started with `peer` over `partition` found nothing `peer`
    /// held that this node lacked.
    pub(super) fn note_synced(&mut self, partition: PartitionId, peer: NodeId) {
        if !self.meta.unsynced {
            return;
        }
        self.synced_pairs.insert((partition, peer));
        self.finish_sync_if_done();
    }

    /// Clears the flag once every pair has synced, in a metadata write staged after every
    /// repair this node merged. A node not in the layout yet waits for one.
    pub(super) fn finish_sync_if_done(&mut self) {
        let me = self.cfg.id;
        if !self.meta.unsynced || self.layout.node(me).is_none() {
            return;
        }
        if self.layout.partitions().any(|p| self.is_syncing(p)) {
            return;
        }
        self.meta.unsynced = false;
        self.synced_pairs.clear();
        // A failed stage leaves the flag set on disk: the next run syncs again.
        let _ = self.store.stage_meta(self.meta.clone());
    }
}

#[cfg(test)]
mod tests {
    use cairn_crdt::{Value, ValueType};
    use cairn_ring::{Capacity, Layout, LayoutConfig, NodeId, NodeRole, Zone};

    use super::super::{AAE_KEYS_MAX, SYNC_EXCHANGES_MAX};
    use crate::aae::{SegmentId, SEGMENTS};
    use crate::msg::{PeerMessage, ReplicaError, RequestId};
    use crate::node::test_util::{self, synced_store};
    use crate::store::{aae_order, ObjectKey, Store};
    use crate::{Config, MemStore, Node};

    const ME: NodeId = NodeId(1);
    const PEER: NodeId = NodeId(2);

    fn three_nodes() -> Layout {
        crate::node::test_util::committed_layout(3)
    }

    fn key(layout: &Layout, k: &str) -> ObjectKey {
        ObjectKey {
            partition: layout.partition_of(b"b", k.as_bytes()),
            bucket: b"b".as_slice().into(),
            key: k.as_bytes().into(),
        }
    }

    /// Node 1 over `store`, its staged writes (the new generation) made durable.
    fn started(store: MemStore) -> Node<MemStore> {
        let mut node = Node::new(Config::new(ME, 7), three_nodes(), store, 0).unwrap();
        let tokens = node.store_mut().commit();
        node.handle_persisted(0, &tokens);
        node
    }

    fn sent(node: &mut Node<MemStore>) -> Vec<PeerMessage> {
        test_util::sent(node).into_iter().map(|(_, m)| m).collect()
    }

    fn read_reply(node: &mut Node<MemStore>, key: &ObjectKey) -> Result<(), ReplicaError> {
        let _ = sent(node);
        let id = RequestId(99);
        let read = PeerMessage::Read {
            id,
            key: key.clone(),
            hint_for: None,
        };
        node.handle_peer(1, PEER, read);
        let replies = sent(node);
        let result = replies.iter().find_map(|m| match m {
            PeerMessage::ReadReply { id: i, result } if *i == id => Some(result.clone()),
            _ => None,
        });
        result.expect("a read reply").map(|_| ())
    }

    #[test]
    fn an_empty_store_refuses_reads_until_every_pair_has_synced_and_then_remembers_it() {
        let mut node = started(MemStore::new());
        let k = key(node.layout(), "k");
        assert_eq!(read_reply(&mut node, &k), Err(ReplicaError::Syncing));
        assert_eq!(node.syncing_partitions().len(), 16);
        let pairs = node.unsynced_pairs();
        assert_eq!(pairs.len(), 32, "16 partitions, two peers each");
        // Every pair but the last leaves the node syncing that one partition.
        for &(p, q) in &pairs[..31] {
            node.note_synced(p, q);
        }
        assert_eq!(node.syncing_partitions(), [pairs[31].0]);
        node.note_synced(pairs[31].0, pairs[31].1);
        assert_eq!(read_reply(&mut node, &k), Ok(()));
        // The cleared flag is durable: the next start over this store does not sync.
        let mut store = node.into_store();
        store.commit();
        assert_eq!(store.meta().unwrap().map(|m| m.unsynced), Some(false));
        let mut node = started(store);
        assert_eq!(read_reply(&mut node, &k), Ok(()));
        // A crash before the flag was durable syncs again.
        let mut node = started(MemStore::new());
        for &(p, q) in &node.unsynced_pairs() {
            node.note_synced(p, q);
        }
        let mut store = node.into_store();
        store.crash();
        let mut node = started(store);
        assert_eq!(read_reply(&mut node, &k), Err(ReplicaError::Syncing));
    }

    /// Node 1, holding `k`, answers step 3 of an exchange node 2 started; the fetch's
    /// `complete`.
    fn complete_after(theirs: impl FnOnce(&ObjectKey, u64) -> Vec<(ObjectKey, u64)>) -> bool {
        fetch_after(None, theirs).0
    }

    /// As [`complete_after`], for a list that starts after `after`; the fetch's
    /// `complete` and `next`.
    fn fetch_after(
        after: Option<&str>,
        theirs: impl FnOnce(&ObjectKey, u64) -> Vec<(ObjectKey, u64)>,
    ) -> (bool, Option<ObjectKey>) {
        let mut node = started(synced_store());
        let k = key(node.layout(), "k");
        let p = k.partition;
        node.store_mut()
            .stage_object(k.clone(), Value::empty(ValueType::Flag))
            .unwrap();
        let all: Vec<SegmentId> = (0..SEGMENTS)
            .filter_map(|s| u16::try_from(s).ok())
            .map(SegmentId)
            .collect();
        let mine = node.store().aae_keys(p, &all, None, AAE_KEYS_MAX).unwrap();
        let hash = mine.iter().find(|(key, _)| *key == k).unwrap().1;
        let _ = sent(&mut node);
        let msg = PeerMessage::AaeKeys {
            id: RequestId(5),
            partition: p,
            segments: all.iter().map(|s| s.0).collect(),
            after: after.map(|a| ObjectKey {
                key: a.as_bytes().into(),
                ..k.clone()
            }),
            keys: theirs(&k, hash),
        };
        node.handle_peer(1, PEER, msg);
        let replies = sent(&mut node);
        let fetch = replies.iter().find_map(|m| match m {
            PeerMessage::AaeFetch { complete, next, .. } => Some((*complete, next.clone())),
            _ => None,
        });
        fetch.expect("a fetch")
    }

    #[test]
    fn an_exchange_is_complete_only_if_the_peer_sent_no_repair_and_no_list_was_cut() {
        assert!(
            complete_after(|k, h| vec![(k.clone(), h)]),
            "the same state"
        );
        let other = |k: &ObjectKey| ObjectKey {
            key: b"only-theirs".as_slice().into(),
            ..k.clone()
        };
        assert!(
            complete_after(|k, h| vec![(k.clone(), h), (other(k), 1)]),
            "a key only the initiator holds is fetched, not missing here"
        );
        assert!(
            !complete_after(|k, h| vec![(k.clone(), h ^ 1)]),
            "another state"
        );
        assert!(
            !complete_after(|_, _| Vec::new()),
            "a key only the peer holds"
        );
        // A full list: `k` and other keys of its partition.
        let layout = three_nodes();
        let cut = |k: &ObjectKey, h: u64| {
            let mut keys = vec![(k.clone(), h)];
            let others = (0..)
                .map(|i| key(&layout, &format!("x{i}")))
                .filter(|x| x.partition == k.partition);
            keys.extend(others.take(AAE_KEYS_MAX - 1).map(|x| (x, 1)));
            keys
        };
        assert!(!complete_after(cut), "the initiator's list was cut");
        let (complete, next) = fetch_after(None, cut);
        let last = cut(&key(&layout, "k"), 0)
            .into_iter()
            .map(|(k, _)| k)
            .max_by(|a, b| aae_order(a).cmp(&aae_order(b)));
        assert_eq!(
            (complete, next),
            (false, last),
            "the next exchange resumes after the cut list's last key"
        );
        // A list that resumes after a cursor leaves out the keys before it: the same
        // state there is no proof the peer holds nothing the initiator lacks. Segment
        // zero sorts first, so any key is after this cursor's segment or in it.
        let (complete, next) = fetch_after(Some(""), |k, h| vec![(k.clone(), h)]);
        assert_eq!((complete, next), (false, None), "after a cursor");
    }

    #[test]
    fn a_full_key_list_with_no_key_of_the_partition_gets_no_answer() {
        let mut node = started(synced_store());
        let layout = three_nodes();
        let k = key(&layout, "k");
        // As many keys as a cut list holds, all hashing to other partitions: there is
        // no last key to compare up to, so the exchange is left to time out.
        let strangers: Vec<(ObjectKey, u64)> = (0..)
            .map(|i| key(&layout, &format!("y{i}")))
            .filter(|x| x.partition != k.partition)
            .take(AAE_KEYS_MAX)
            .map(|x| {
                (
                    ObjectKey {
                        partition: k.partition,
                        ..x
                    },
                    1,
                )
            })
            .collect();
        let _ = sent(&mut node);
        let msg = PeerMessage::AaeKeys {
            id: RequestId(6),
            partition: k.partition,
            segments: (0..1024).collect(),
            after: None,
            keys: strangers,
        };
        node.handle_peer(1, PEER, msg);
        let fetches = sent(&mut node)
            .into_iter()
            .filter(|m| matches!(m, PeerMessage::AaeFetch { .. }))
            .count();
        assert_eq!(fetches, 0);
    }

    fn roots_sent(node: &mut Node<MemStore>) -> usize {
        let sent = sent(node);
        sent.iter()
            .filter(|m| matches!(m, PeerMessage::AaeRoot { .. }))
            .count()
    }

    #[test]
    fn a_syncing_node_compares_many_pairs_at_once_and_retries_them_sooner() {
        let mut node = started(MemStore::new());
        let _ = sent(&mut node);
        node.handle_timeout(1);
        assert_eq!(roots_sent(&mut node), SYNC_EXCHANGES_MAX);
        // None answered (lost): they are abandoned after `sync_timeout_ms`, not the
        // longer `aae_timeout_ms`, and the pairs compared again.
        let timeout = node.cfg.sync_timeout_ms;
        assert!(timeout < node.cfg.aae_timeout_ms);
        node.handle_timeout(timeout);
        assert_eq!(roots_sent(&mut node), 0, "not yet");
        node.handle_timeout(timeout + 1);
        assert_eq!(roots_sent(&mut node), SYNC_EXCHANGES_MAX);
        // A synced node runs one exchange at a time.
        let mut node = started(synced_store());
        let _ = sent(&mut node);
        node.handle_timeout(1);
        assert_eq!(roots_sent(&mut node), 1);
    }

    #[test]
    fn a_node_alone_in_its_partitions_has_nothing_to_sync() {
        let mut layout = Layout::new(LayoutConfig::new(16, 1).unwrap());
        let role = NodeRole::new("127.0.0.1:7000", Zone::new("z").unwrap(), Capacity(1));
        layout.stage_node(ME, role, ME).unwrap();
        layout.commit().unwrap();
        let node = Node::new(Config::new(ME, 7), layout, MemStore::new(), 0).unwrap();
        assert!(node.syncing_partitions().is_empty());
        assert!(!node.meta.unsynced);
    }
}
