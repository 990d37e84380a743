//! A scripted cluster for scenario tests: no random faults, just the ones a test asks
//! for (cut links, crash and restart nodes, skew clocks), with time moved by hand.
//!
//! Where [`crate::Sim`] explores thousands of random histories, `Cluster` pins down one
//! story, such as a regression test for a bug the sweeps found.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cairn_core::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientTag, Config, MemStore, Node,
    ObjectKey, Output, PeerMessage, RequestOptions, Store,
};
use cairn_crdt::Value;
use cairn_ring::{Layout, NodeId};

/// A scripted cluster of nodes `1..=n` (index `i` is node `i + 1`).
pub struct Cluster {
    layout: Layout,
    nodes: Vec<Option<Node<MemStore>>>,
    parked: Vec<Option<MemStore>>,
    skew_ms: Vec<i64>,
    cut: BTreeSet<(usize, usize)>,
    queue: VecDeque<(usize, usize, PeerMessage)>,
    replies: BTreeMap<u64, Result<ClientReply, ClientError>>,
    next_tag: u64,
    next_nonce: u64,
    now: u64,
    duplicate: bool,
    configure: fn(&mut Config),
}

/// Most messages delivered in one simulated millisecond (`Cluster::settle`) before the
/// cluster is judged to livelock. Every test of this crate passes with a bound of 10,000
/// (session 29), syncing a wiped node's 3,072 keys included; with the anti-entropy cursor
/// switched off, a wiped node's sync of 1,536 keys of one segment hit a bound of
/// 1,000,000 after 157 s, where it used to hang.
const SETTLE_MESSAGES_MAX: usize = 100_000;

impl Cluster {
    /// `nodes` nodes over `zones` zones, `partitions` partitions, `n` replicas per key.
    pub fn new(nodes: usize, zones: usize, partitions: u16, n: u8) -> Self {
        Self::with_config(nodes, zones, partitions, n, |_| {})
    }

    /// As [`Cluster::new`], with `configure` applied to every node's config at each start.
    pub fn with_config(
        nodes: usize,
        zones: usize,
        partitions: u16,
        n: u8,
        configure: fn(&mut Config),
    ) -> Self {
        let mut c = Cluster {
            layout: crate::layout(nodes, zones, partitions, n),
            nodes: (0..nodes).map(|_| None).collect(),
            parked: (0..nodes).map(|_| Some(MemStore::new())).collect(),
            skew_ms: vec![0; nodes],
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            replies: BTreeMap::new(),
            next_tag: 0,
            next_nonce: 1,
            now: 1_000,
            duplicate: false,
            configure,
        };
        for i in 0..nodes {
            c.restart(i);
        }
        // Every store starts empty: the nodes sync before the test begins, as `cairn dev`
        // and the server tests wait for (their trees are empty, so this takes a moment).
        c.await_synced(1_000);
        c
    }

    /// Moves time until no running node is syncing its partitions after starting with an
    /// empty store (`Node::syncing_partitions`), at most `max_ms`. Panics if one still is.
    pub fn await_synced(&mut self, max_ms: u64) {
        for _ in 0..max_ms {
            if self.syncing() == 0 {
                return;
            }
            self.advance(1);
        }
        assert_eq!(self.syncing(), 0, "nodes still syncing after {max_ms} ms");
    }

    /// Partitions the running nodes are syncing, summed over the nodes.
    pub fn syncing(&self) -> usize {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.syncing_partitions().len())
            .sum()
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Node `i`, if it is running.
    pub fn node(&self, i: usize) -> Option<&Node<MemStore>> {
        self.nodes[i].as_ref()
    }

    /// The index of the node with id `id`.
    pub fn index(&self, id: NodeId) -> usize {
        usize::try_from(id.0 - 1).expect("node ids are small")
    }

    /// Virtual time now, ms.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Sends a client request to node `at`; the reply shows up in [`Self::reply`].
    pub fn request(&mut self, at: usize, key: &str, op: ClientOp, options: RequestOptions) -> u64 {
        self.next_tag += 1;
        let tag = self.next_tag;
        let request = ClientRequest {
            bucket: b"b".as_slice().into(),
            key: key.as_bytes().into(),
            op,
            options,
        };
        let now = self.local_now(at);
        if let Some(node) = self.nodes[at].as_mut() {
            node.handle_client(now, ClientTag(tag), request);
        }
        self.drain(at);
        tag
    }

    /// The reply to request `tag`, once it came.
    pub fn reply(&self, tag: u64) -> Option<&Result<ClientReply, ClientError>> {
        self.replies.get(&tag)
    }

    /// Runs `request` and moves time until it is answered (at most `max_ms`).
    pub fn call(
        &mut self,
        at: usize,
        key: &str,
        op: ClientOp,
        options: RequestOptions,
    ) -> Result<ClientReply, ClientError> {
        let tag = self.request(at, key, op, options);
        for _ in 0..30_000 {
            if let Some(r) = self.replies.get(&tag) {
                return r.clone();
            }
            self.advance(1);
        }
        Err(ClientError::Unavailable("the cluster never answered"))
    }

    /// Cuts the links between `a` and `b`, both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Cuts node `i` off from every other node.
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            if j != i {
                self.cut(i, j);
            }
        }
    }

    /// While on, every message is delivered twice.
    pub fn set_duplicate(&mut self, on: bool) {
        self.duplicate = on;
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Sets node `i`'s clock offset.
    pub fn skew(&mut self, i: usize, ms: i64) {
        self.skew_ms[i] = ms;
    }

    /// Loses node `i`'s hints (its store's hint table), as a fallback whose hint file died.
    pub fn drop_hints(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].as_mut() {
            node.store_mut().drop_hints();
        }
    }

    /// Whether every primary of `key` holds the same copy.
    pub fn converged(&self, key: &str) -> bool {
        let copies: Vec<Option<Value>> = self
            .owners(key)
            .into_iter()
            .map(|i| self.copy(i, key))
            .collect();
        copies.windows(2).all(|w| w[0] == w[1])
    }

    /// Crashes node `i`: staged writes are lost; with `wipe`, everything is. Messages in
    /// flight to it are lost too, as with QUIC: none reaches its next incarnation.
    pub fn crash(&mut self, i: usize, wipe: bool) {
        self.queue.retain(|(_, to, _)| *to != i);
        if let Some(node) = self.nodes[i].take() {
            let mut store = node.into_store();
            store.crash();
            if wipe {
                store.wipe();
            }
            self.parked[i] = Some(store);
        }
    }

    /// Starts node `i` again over its store.
    pub fn restart(&mut self, i: usize) {
        let Some(store) = self.parked[i].take() else {
            return;
        };
        self.next_nonce += 1;
        let id = NodeId(i as u64 + 1);
        let now = self.local_now(i);
        let mut config = Config::new(id, self.next_nonce * 7919);
        (self.configure)(&mut config);
        match Node::new(config, self.layout.clone(), store, now) {
            Ok(node) => self.nodes[i] = Some(node),
            Err(e) => unreachable!("MemStore never fails: {e}"),
        }
        self.drain(i);
        // Commit the new generation, so the node is ready to coordinate.
        self.settle();
    }

    /// Moves time by `ms`, one millisecond at a time: every message in flight is
    /// delivered (or dropped on a cut link), every store commits, every timer fires.
    pub fn advance(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            self.settle();
            for i in 0..self.nodes.len() {
                let now = self.local_now(i);
                if let Some(node) = self.nodes[i].as_mut() {
                    if node.poll_timeout().is_some_and(|t| t <= now) {
                        node.handle_timeout(now);
                    }
                }
                self.drain(i);
            }
            self.settle();
        }
    }

    /// Delivers the messages in flight (and those they cause) without committing any store:
    /// replies may carry state that is staged but not yet durable.
    pub fn deliver_only(&mut self) {
        while let Some((from, to, msg)) = self.queue.pop_front() {
            if self.cut.contains(&(from, to)) {
                continue;
            }
            let now = self.local_now(to);
            if let Some(node) = self.nodes[to].as_mut() {
                node.handle_peer(now, NodeId(from as u64 + 1), msg);
            }
            self.drain(to);
        }
    }

    /// Commits node `i`'s staged writes (only).
    pub fn commit(&mut self, i: usize) {
        let now = self.local_now(i);
        if let Some(node) = self.nodes[i].as_mut() {
            let tokens = node.store_mut().commit();
            node.handle_persisted(now, &tokens);
        }
        self.drain(i);
    }

    /// Node `i`'s copy of `key` (its objects table).
    pub fn copy(&self, i: usize, key: &str) -> Option<Value> {
        let partition = self.layout.partition_of(b"b", key.as_bytes());
        let object = ObjectKey {
            partition,
            bucket: b"b".as_slice().into(),
            key: key.as_bytes().into(),
        };
        self.nodes[i]
            .as_ref()?
            .store()
            .object(&object)
            .ok()
            .flatten()
    }

    /// The primaries of `key`, as node indexes.
    pub fn owners(&self, key: &str) -> Vec<usize> {
        let p = self.layout.partition_of(b"b", key.as_bytes());
        self.layout
            .replicas(p)
            .iter()
            .map(|id| self.index(*id))
            .collect()
    }

    fn local_now(&self, i: usize) -> u64 {
        (self.now as i64 + self.skew_ms[i]).max(0) as u64
    }

    /// Delivers messages and commits until nothing moves.
    fn settle(&mut self) {
        let mut delivered = 0;
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some((from, to, msg)) = self.queue.pop_front() {
                moved = true;
                // Messages are delivered within the simulated millisecond: nodes that
                // answer each other forever (exchanges that never end) would spin here
                // for good. Fail the test instead of hanging it.
                delivered += 1;
                assert!(
                    delivered <= SETTLE_MESSAGES_MAX,
                    "more than {SETTLE_MESSAGES_MAX} messages in one simulated ms: a livelock"
                );
                if self.cut.contains(&(from, to)) {
                    continue;
                }
                let now = self.local_now(to);
                if let Some(node) = self.nodes[to].as_mut() {
                    node.handle_peer(now, NodeId(from as u64 + 1), msg);
                }
                self.drain(to);
            }
            for i in 0..self.nodes.len() {
                let now = self.local_now(i);
                let Some(node) = self.nodes[i].as_mut() else {
                    continue;
                };
                if node.store().staged_len() > 0 {
                    moved = true;
                    let tokens = node.store_mut().commit();
                    node.handle_persisted(now, &tokens);
                    self.drain(i);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        while let Some(out) = node.poll_output() {
            match out {
                Output::Send { to, msg } => {
                    let to = usize::try_from(to.0 - 1).expect("node ids are small");
                    if self.duplicate {
                        self.queue.push_back((i, to, msg.clone()));
                    }
                    self.queue.push_back((i, to, msg));
                }
                Output::Reply { tag, result } => {
                    self.replies.insert(tag.0, result);
                }
            }
        }
    }
}
