//! Active anti-entropy: the scheduler and the four-step exchange of `aae::Tree`s.
//!
//! The initiator sends its root hash, and when the peer's differs, its branch hashes; the
//! peer answers with the segment hashes of the branches that differ; the initiator sends
//! its keys and state hashes in the segments that differ; the peer sends its states of the
//! keys that differ (plain `Replicate` repairs) and asks for the initiator's, which ends
//! the exchange. Both sides merge, so a key missing or stale on either side is repaired
//! either way.
//!
//! Key lists are bounded (`AAE_KEYS_MAX`) and sorted by segment, then key
//! ([`aae_order`]). When a list is cut, the exchange compares only the keys up to the
//! earlier of the two lists' last keys, and the initiator's next exchange with that peer
//! lists keys after it (`AaeState::resume`). So however many keys differ, successive
//! exchanges walk all of them. (Before, every exchange listed the first keys of the
//! differing segments in key order, which spread over all segments: once those matched,
//! no segment became equal and nothing past them was ever compared, so a partition whose
//! differing segments held ~3,000 keys could stay diverged. ARCHITECTURE.md has the
//! figures.)

use std::collections::{BTreeMap, BTreeSet};

use cairn_ring::{NodeId, PartitionId};

use super::{Node, Pending};
use crate::aae::{SegmentId, BRANCHES, BRANCH_WIDTH};
use crate::msg::{PeerMessage, RequestId};
use cairn_crdt::Value;

use crate::store::{aae_order, ObjectKey, Store};

/// Most keys one exchange lists (step 3); more differing keys wait for the next exchange.
pub const AAE_KEYS_MAX: usize = 1024;
/// Most differing segments one exchange looks into (all of them: `AAE_KEYS_MAX` bounds
/// the work).
pub const AAE_SEGMENTS_MAX: usize = crate::aae::SEGMENTS;

/// Most exchanges a syncing node runs at once (`sync.rs`); otherwise one runs at a time.
/// One at a time, nodes of the simulator's new clusters took up to 4.1 s to sync their
/// (partition, peer) pairs (most about 2 s; 4 seeds), refusing reads meanwhile; 16 at a
/// time but with the 2 s exchange timeout, up to 2.4 s (8 seeds): a lost message held its
/// pair for the whole timeout, hence `Config::sync_timeout_ms`.
pub const SYNC_EXCHANGES_MAX: usize = 16;

/// What anti-entropy has done so far on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AaeStats {
    /// Exchanges started.
    pub exchanges: u64,
    /// Exchanges that found the trees equal at once.
    pub in_sync: u64,
    /// Objects this node sent to repair a peer.
    pub keys_repaired: u64,
    /// Their encoded size.
    pub bytes_sent: u64,
    /// Bytes of the exchanges' own messages (hashes and key lists, both directions as
    /// sent by this node; estimated from their contents).
    pub protocol_bytes: u64,
}

/// The scheduler's state.
#[derive(Clone, Debug, Default)]
pub(super) struct AaeState {
    pub(super) cursor: usize,
    pub(super) next_at_ms: u64,
    pub(super) last_start_ms: u64,
    /// Exchanges this node started and has not ended, with their pairs: at most one, or
    /// `SYNC_EXCHANGES_MAX` while syncing.
    pub(super) in_flight: BTreeMap<RequestId, (PartitionId, NodeId)>,
    pub(super) stats: AaeStats,
    /// When this node last started an exchange with each peer (bounded by the layout's
    /// nodes: entries for peers that left are dropped when the next exchange starts).
    pub(super) last_with: BTreeMap<NodeId, u64>,
    /// Where each pair's next exchange starts its key list (after this key): set when an
    /// exchange's lists were cut, cleared when one compared to the end or found the trees
    /// equal. Bounded by the pairs: entries for pairs no longer replicas together are
    /// dropped when the next exchange starts.
    pub(super) resume: BTreeMap<(PartitionId, NodeId), ObjectKey>,
}

impl<S: Store> Node<S> {
    /// What anti-entropy has done so far.
    pub fn aae_stats(&self) -> AaeStats {
        self.aae.stats
    }

    /// When this node last started an anti-entropy exchange with each peer (`now_ms`
    /// of the start).
    pub fn aae_last_exchange(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.aae.last_with.iter().map(|(n, t)| (*n, *t))
    }

    /// Most exchanges in flight at once now.
    pub(super) fn aae_slots(&self) -> usize {
        match self.meta.unsynced {
            true => SYNC_EXCHANGES_MAX,
            false => 1,
        }
    }

    /// Starts the next exchange if it is time and a slot is free. A node syncing after
    /// starting empty compares its unsynced pairs, several at once and with a shorter
    /// timeout, and does so even with `aae_enabled` off: until it has, its reads count
    /// for nothing (`sync.rs`).
    pub(super) fn schedule_aae(&mut self, now_ms: u64) {
        if !(self.cfg.aae_enabled || self.meta.unsynced)
            || now_ms < self.aae.next_at_ms
            || self.aae.in_flight.len() >= self.aae_slots()
        {
            return;
        }
        // A layout change may have left nothing to sync (O(partitions), so only here).
        self.finish_sync_if_done();
        let syncing = self.meta.unsynced;
        self.aae.next_at_ms = now_ms + self.cfg.aae_interval_ms;
        self.aae.last_start_ms = now_ms;
        let (pairs, timeout_ms) = match syncing {
            true => (self.unsynced_pairs(), self.cfg.sync_timeout_ms),
            false => (self.aae_pairs(), self.cfg.aae_timeout_ms),
        };
        // Skip pairs whose peer is believed down or whose partition is already in an
        // exchange, but never loop forever. One exchange per partition: a syncing node
        // that compared a partition with both peers at once got every key from each
        // (1.6x the keys crossed between real processes, 2x in the simulator); one
        // after the other, the second peer finds the first one's repairs already there.
        for _ in 0..pairs.len() {
            if self.aae.in_flight.len() >= self.aae_slots() {
                return;
            }
            let (partition, peer) = pairs[self.aae.cursor % pairs.len()];
            self.aae.cursor = self.aae.cursor.wrapping_add(1);
            let busy = self.aae.in_flight.values().any(|(p, _)| *p == partition);
            if busy || !self.is_healthy(peer, now_ms) {
                continue;
            }
            let Ok(tree) = self.store.aae_tree(partition) else {
                return;
            };
            let pending = Pending::Aae { peer, partition };
            let id = self.register(now_ms, timeout_ms, pending);
            self.aae.in_flight.insert(id, (partition, peer));
            self.aae.stats.exchanges += 1;
            let layout = &self.layout;
            self.aae.last_with.retain(|n, _| layout.node(*n).is_some());
            self.aae
                .resume
                .retain(|(p, n), _| layout.replicas(*p).contains(n));
            self.aae.last_with.insert(peer, now_ms);
            self.aae.stats.protocol_bytes += 8 + 16;
            self.send(
                peer,
                PeerMessage::AaeRoot {
                    id,
                    partition,
                    root: tree.root(),
                },
            );
        }
    }

    /// Every (partition, peer) this node shares a replica set with, in a fixed order.
    fn aae_pairs(&self) -> Vec<(PartitionId, NodeId)> {
        let me = self.cfg.id;
        let mut pairs = Vec::new();
        for p in self.layout.partitions() {
            let replicas = self.layout.replicas(p);
            if replicas.contains(&me) {
                pairs.extend(replicas.iter().filter(|n| **n != me).map(|n| (p, *n)));
            }
        }
        pairs
    }

    /// Step 0, at the peer: compare roots.
    pub(super) fn on_aae_root(
        &mut self,
        from: NodeId,
        id: RequestId,
        partition: PartitionId,
        root: u64,
    ) {
        let Ok(tree) = self.store.aae_tree(partition) else {
            return;
        };
        self.aae.stats.protocol_bytes += 1 + 16;
        self.send(
            from,
            PeerMessage::AaeRootReply {
                id,
                partition,
                in_sync: tree.root() == root,
            },
        );
    }

    /// Step 1, at the initiator: roots differ, so send the branch hashes.
    pub(super) fn on_aae_root_reply(
        &mut self,
        from: NodeId,
        id: RequestId,
        partition: PartitionId,
        in_sync: bool,
    ) {
        if !self.is_exchange_with(id, from, partition) {
            return;
        }
        if in_sync {
            self.aae.stats.in_sync += 1;
            self.note_synced(partition, from);
            self.aae.resume.remove(&(partition, from));
            return self.end_aae(id);
        }
        let Ok(tree) = self.store.aae_tree(partition) else {
            return self.end_aae(id);
        };
        self.aae.stats.protocol_bytes += 8 * BRANCHES as u64 + 16;
        self.send(
            from,
            PeerMessage::AaeBranches {
                id,
                partition,
                branches: tree.branches(),
            },
        );
    }

    /// Step 2, at the peer: which branches differ, with our segment hashes for them.
    pub(super) fn on_aae_branches(
        &mut self,
        from: NodeId,
        id: RequestId,
        partition: PartitionId,
        theirs: Vec<u64>,
    ) {
        let Ok(tree) = self.store.aae_tree(partition) else {
            return;
        };
        let mine = tree.branches();
        let differ: Vec<u16> = (0..BRANCHES)
            .filter(|&b| theirs.get(b) != mine.get(b))
            .filter_map(|b| u16::try_from(b).ok())
            .collect();
        let segments: Vec<(u16, u64)> = differ
            .iter()
            .flat_map(|&b| {
                let start = usize::from(b) * BRANCH_WIDTH;
                let hashes = tree.branch_segments(&[b]);
                hashes
                    .into_iter()
                    .enumerate()
                    .map(move |(i, h)| (start + i, h))
            })
            .filter(|&(_, h)| h != 0)
            .filter_map(|(i, h)| Some((u16::try_from(i).ok()?, h)))
            .collect();
        self.aae.stats.protocol_bytes += 16 + 2 * differ.len() as u64 + 10 * segments.len() as u64;
        self.send(
            from,
            PeerMessage::AaeSegments {
                id,
                partition,
                branches: differ,
                segments,
            },
        );
    }

    /// Step 3, at the initiator: our keys in the segments that differ.
    pub(super) fn on_aae_segments(
        &mut self,
        from: NodeId,
        id: RequestId,
        partition: PartitionId,
        branches: Vec<u16>,
        sparse: Vec<(u16, u64)>,
    ) {
        if !self.is_exchange_with(id, from, partition) {
            return;
        }
        if branches.is_empty() {
            self.aae.stats.in_sync += 1;
            self.note_synced(partition, from);
            self.aae.resume.remove(&(partition, from));
            return self.end_aae(id);
        }
        // Peer input: distinct branches that exist, or the exchange ends.
        let distinct: std::collections::BTreeSet<u16> = branches.iter().copied().collect();
        if distinct.len() != branches.len() || branches.iter().any(|b| usize::from(*b) >= BRANCHES)
        {
            return self.end_aae(id);
        }
        let Ok(tree) = self.store.aae_tree(partition) else {
            return self.end_aae(id);
        };
        // Their hashes for the differing branches, in order, zero where left out.
        let mut theirs = vec![0u64; branches.len() * BRANCH_WIDTH];
        for (segment, hash) in sparse {
            let (branch, offset) = (
                usize::from(segment) / BRANCH_WIDTH,
                usize::from(segment) % BRANCH_WIDTH,
            );
            if let Some(i) = branches.iter().position(|b| usize::from(*b) == branch) {
                theirs[i * BRANCH_WIDTH + offset] = hash;
            }
        }
        let mut segments: Vec<SegmentId> = tree.differing_segments(&branches, &theirs);
        segments.truncate(AAE_SEGMENTS_MAX);
        let after = self.aae.resume.get(&(partition, from)).cloned();
        let Ok(keys) = self
            .store
            .aae_keys(partition, &segments, after.as_ref(), AAE_KEYS_MAX)
        else {
            return self.end_aae(id);
        };
        let segments: Vec<u16> = segments.into_iter().map(|s| s.0).collect();
        self.aae.stats.protocol_bytes += 16
            + 2 * segments.len() as u64
            + after.as_ref().map_or(0, key_bytes)
            + keys.iter().map(|(k, _)| key_bytes(k) + 8).sum::<u64>();
        self.send(
            from,
            PeerMessage::AaeKeys {
                id,
                partition,
                segments,
                after,
                keys,
            },
        );
    }

    /// Step 4, at the peer: send our states of the keys that differ, ask for theirs.
    pub(super) fn on_aae_keys(
        &mut self,
        from: NodeId,
        id: RequestId,
        partition: PartitionId,
        segments: Vec<u16>,
        after: Option<ObjectKey>,
        theirs: Vec<(ObjectKey, u64)>,
    ) {
        // Peer input: a cursor in another partition gets no answer (the exchange times
        // out, counting for nothing).
        if after.as_ref().is_some_and(|k| k.partition != partition) {
            return;
        }
        let segments: BTreeSet<SegmentId> = segments
            .into_iter()
            .filter(|s| usize::from(*s) < crate::aae::SEGMENTS)
            .map(SegmentId)
            .collect();
        let theirs_cut = theirs.len() >= AAE_KEYS_MAX;
        let start = after.as_ref().map(aae_order);
        let in_list = |k: &ObjectKey| {
            let at = aae_order(k);
            k.partition == partition && segments.contains(&at.0) && start.is_none_or(|s| at > s)
        };
        let theirs: BTreeMap<ObjectKey, u64> = theirs
            .into_iter()
            .filter(|(k, _)| in_list(k) && self.owns_partition_of(k))
            .collect();
        // Peer input: a full list with no key that belongs in it gives no point to
        // compare up to; no answer.
        if theirs_cut && theirs.is_empty() {
            return;
        }
        let listed: Vec<SegmentId> = segments.iter().copied().collect();
        let Ok(mine) = self
            .store
            .aae_keys(partition, &listed, after.as_ref(), AAE_KEYS_MAX)
        else {
            // No list to compare: the initiator's exchange times out, counting for
            // nothing (an empty list here would claim this node holds nothing).
            return;
        };
        // A list cut at the bound says nothing past its last key: compare up to the
        // earlier of the cut lists' last keys, and resume after it next time.
        // (Each key's order is computed once here: it hashes the key.)
        let last_of_theirs = theirs.keys().map(aae_order).max();
        let last_of_mine = mine.last().map(|(k, _)| aae_order(k));
        let end_at = [
            last_of_theirs.filter(|_| theirs_cut),
            last_of_mine.filter(|_| mine.len() >= AAE_KEYS_MAX),
        ]
        .into_iter()
        .flatten()
        .min();
        let compared = |k: &ObjectKey| end_at.is_none_or(|e| aae_order(k) <= e);
        // Keys both hold, differently: send ours; the initiator sends back the join only if
        // it held something ours lacked (one state crosses the wire when one side is
        // simply behind, the common case).
        let mut repaired = false;
        for (key, hash) in mine.iter().filter(|(k, _)| compared(k)) {
            if theirs.get(key) != Some(hash) {
                repaired = true;
                self.repair_peer(from, key, true);
            }
        }
        // Keys only they hold: ask for them.
        let mine: BTreeSet<&ObjectKey> = mine.iter().map(|(k, _)| k).collect();
        let wanted: Vec<ObjectKey> = theirs
            .keys()
            .filter(|k| compared(k) && !mine.contains(k))
            .cloned()
            .collect();
        let end: Option<ObjectKey> = end_at.map(|(_, k)| k.clone());
        self.aae.stats.protocol_bytes +=
            16 + wanted.iter().map(key_bytes).sum::<u64>() + end.as_ref().map_or(0, key_bytes);
        // Only a walk from the first key to the end, with nothing sent, shows this node
        // holds nothing the initiator lacks.
        let complete = after.is_none() && end.is_none() && !repaired;
        let msg = PeerMessage::AaeFetch {
            id,
            keys: wanted,
            complete,
            next: end,
        };
        self.send(from, msg);
    }

    /// The end, at the initiator: send the states the peer asked for. Trees that differed
    /// may differ still (bounds cut the exchange short, or writes went on): the next
    /// exchange starts after a tenth of `aae_interval_ms` (catching up, still paced).
    /// With `complete`, the peer held nothing this node lacked: the pair is synced.
    pub(super) fn on_aae_fetch(
        &mut self,
        from: NodeId,
        id: RequestId,
        keys: Vec<ObjectKey>,
        complete: bool,
        next: Option<ObjectKey>,
    ) {
        let Some(&Pending::Aae { peer, partition }) = self.pending.get(&id) else {
            return;
        };
        if peer != from {
            return;
        }
        for key in keys.iter().take(AAE_KEYS_MAX) {
            self.repair_peer(from, key, false);
        }
        if complete {
            self.note_synced(partition, from);
        }
        self.resume_after(partition, from, next);
        self.aae.next_at_ms = self.aae.last_start_ms + self.cfg.aae_interval_ms / 10;
        self.end_aae(id);
    }

    /// Records where the pair's next exchange starts its key list. Peer input: a cursor
    /// in another partition, or one that does not move forward, starts over from the first
    /// key rather than loop.
    fn resume_after(&mut self, partition: PartitionId, peer: NodeId, next: Option<ObjectKey>) {
        let pair = (partition, peer);
        let now = self.aae.resume.get(&pair);
        match next {
            Some(k)
                if k.partition == partition && now.is_none_or(|a| aae_order(&k) > aae_order(a)) =>
            {
                self.aae.resume.insert(pair, k);
            }
            _ => {
                self.aae.resume.remove(&pair);
            }
        }
    }

    /// Whether `id` is an exchange this node started with `peer` over `partition`.
    fn is_exchange_with(&self, id: RequestId, peer: NodeId, partition: PartitionId) -> bool {
        matches!(self.pending.get(&id),
            Some(Pending::Aae { peer: p, partition: q }) if *p == peer && *q == partition)
    }

    /// Sends our state of `key` to `peer` as a repair nobody waits on; with `answer`, the
    /// peer sends back the join if it held more.
    fn repair_peer(&mut self, peer: NodeId, key: &ObjectKey, answer: bool) {
        let Ok(Some(value)) = self.store.object(key) else {
            return;
        };
        self.aae.stats.keys_repaired += 1;
        self.aae.stats.bytes_sent += cairn_proto::encode_value(&value).len() as u64;
        let key = key.clone();
        let msg = match answer {
            true => PeerMessage::AaeRepair { key, value },
            false => PeerMessage::Replicate {
                id: None,
                key,
                value,
                hint_for: None,
            },
        };
        self.send(peer, msg);
    }

    /// A repair from an exchange's peer: merge it, and send the join back if it differs.
    pub(super) fn on_aae_repair(&mut self, from: NodeId, key: ObjectKey, value: Value) {
        if self.merge_local(&key, None, &value).is_err() {
            return;
        }
        if let Ok(Some(joined)) = self.store.object(&key) {
            if joined != value {
                self.aae.stats.keys_repaired += 1;
                self.aae.stats.bytes_sent += cairn_proto::encode_value(&joined).len() as u64;
                self.send(
                    from,
                    PeerMessage::Replicate {
                        id: None,
                        key,
                        value: joined,
                        hint_for: None,
                    },
                );
            }
        }
    }

    pub(super) fn end_aae(&mut self, id: RequestId) {
        self.pending.remove(&id);
        self.aae.in_flight.remove(&id);
        if self.meta.unsynced {
            self.aae.next_at_ms = 0; // Back to back while syncing (`sync.rs`).
        }
    }
}

/// A key's size on the wire, about: partition, two length prefixes, bucket and key.
fn key_bytes(key: &ObjectKey) -> u64 {
    (4 + key.bucket.len() + key.key.len()) as u64
}
