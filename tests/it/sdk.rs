//! The SDK against real `cairn server` processes: every type round-trips, the client
//! learns the cluster, fails over when its node is killed, and errors are typed.

use std::path::Path;
use std::time::Duration;

use cairn_client::{BatchOp, Client, ClientBuilder, Counter, Error, Options, Quorum};

use crate::cluster::{cairn, run_ok, temp_dir, three_nodes, Server};

/// A client certificate from the cluster CA in `root/ca`.
fn client_cert(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = root.join("client");
    run_ok(
        cairn()
            .args(["cert", "client", "--name", "app", "--ca-dir"])
            .arg(root.join("ca"))
            .arg("--out")
            .arg(&out),
    );
    (out.join("app.pem"), out.join("app-key.pem"))
}

/// A builder for `node` with the cluster CA and the certificate `client_cert` made.
fn builder(root: &Path, node: impl ToString) -> ClientBuilder {
    Client::builder()
        .nodes([node])
        .ca_cert(root.join("ca").join("ca.pem"))
        .client_cert(root.join("client/app.pem"), root.join("client/app-key.pem"))
}

async fn connect(root: &Path, node: &Server, options: Options) -> Result<Client, Error> {
    client_cert(root);
    builder(root, node.quic).options(options).build().await
}

/// A started one-replica node under a new temp dir `tag`, with the client certificate
/// `builder` uses: the tests that restart a node on its address.
fn lone_node(tag: &str) -> (std::path::PathBuf, Server) {
    let root = temp_dir(tag);
    let ca = root.join("ca");
    crate::cluster::make_ca(&ca);
    let mut node = Server::new(&root, &ca, "r1", &["--replication", "1"]);
    node.start();
    client_cert(&root);
    (root, node)
}

/// Counter `c/k` of a client pinned to `node` with request timeout `timeout`, incremented
/// once: the restart tests' client, connected before the restart.
async fn counted_once(root: &Path, node: &Server, timeout: Duration) -> Counter {
    let options = Options::new().timeout(timeout);
    let client = builder(root, node.quic).pinned().options(options);
    let counter = client.build().await.unwrap().counter("c", "k");
    assert_eq!(counter.increment(1).await.unwrap(), 1);
    counter
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn the_sdk_round_trips_every_type_fails_over_and_types_its_errors() {
    let root = temp_dir("sdk");
    let mut nodes = three_nodes(&root);
    block_on(async {
        let fast = Options::new().timeout(Duration::from_secs(2));
        let client = connect(&root, &nodes[0], fast).await.unwrap();
        assert_eq!(client.nodes().len(), 3, "learned the cluster from one node");

        // Every type round-trips.
        let likes = client.counter("likes", "p1");
        likes.increment(5).await.unwrap();
        assert_eq!(likes.increment(-2).await.unwrap(), 3);
        assert_eq!(likes.get().await.unwrap(), 3);
        let tags = client.set("tags", "p1");
        tags.add_all(["a", "b", "c"]).await.unwrap();
        let seen = tags.members().await.unwrap();
        assert_eq!(
            tags.remove(&seen, ["b"]).await.unwrap().strings(),
            ["a", "c"]
        );
        // Ack-only adds, alone and in a batch: answered without the set, and applied.
        tags.insert("d").await.unwrap();
        let batch = vec![(
            "tags".into(),
            "p1".into(),
            Some(BatchOp::add("e").ack_only()),
        )];
        let answers = client.batch(batch, Options::new()).await.unwrap();
        assert!(matches!(answers[..], [Ok(None)]), "{answers:?}");
        assert_eq!(
            tags.members().await.unwrap().strings(),
            ["a", "c", "d", "e"]
        );
        let cart = client.map("carts", "alice");
        cart.update(|m| {
            m.counter("items").increment(2);
            m.set("skus").add("apple");
            m.register("note").assign("ring twice");
            m.flag("gift").enable();
            m.map("address", |a| a.register("city").assign("Oslo"));
        })
        .await
        .unwrap();
        let read = cart.get().await.unwrap();
        assert_eq!(read.counter("items"), 2);
        assert_eq!(read.set("skus"), [b"apple".to_vec()]);
        assert!(read.flag("gift"));
        assert!(read.map("address").is_some());
        let after = cart.update_seen(&read, |m| m.remove("note")).await.unwrap();
        assert_eq!(after.register("note"), None);
        client
            .register("sessions", "s1")
            .assign("alice")
            .await
            .unwrap();
        assert_eq!(
            client
                .register("sessions", "s1")
                .get_string()
                .await
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        assert!(client.flag("features", "dark").enable().await.unwrap());
        assert!(!client.flag("features", "dark").disable().await.unwrap());
        let mv = client.mvreg("mv", "k");
        let first = mv.overwrite("x").await.unwrap();
        assert_eq!(
            mv.assign(&first, "y").await.unwrap().siblings,
            [b"y".to_vec()]
        );
        client.delete("sessions", "s1").await.unwrap();
        assert_eq!(client.register("sessions", "s1").get().await.unwrap(), None);

        // Typed errors.
        assert!(matches!(
            client.set("likes", "p1").add("x").await,
            Err(Error::TypeMismatch(_))
        ));
        assert!(matches!(
            tags.add(vec![b'x'; 2000]).await,
            Err(Error::TooLarge(_))
        ));
        let unreachable = builder(&root, "127.0.0.1:9").build().await;
        assert!(
            matches!(unreachable, Err(Error::Unavailable(_))),
            "{unreachable:?}"
        );

        // A pinned client keeps to the node it was given.
        let pinned = builder(&root, nodes[0].quic)
            .options(Options::new().timeout(Duration::from_secs(2)))
            .pinned()
            .build()
            .await
            .unwrap();
        assert_eq!(pinned.nodes(), [nodes[0].quic]);
        assert_eq!(pinned.counter("likes", "p1").get().await.unwrap(), 3);

        // The node the client uses is killed: reads fail over to the others; writes then
        // go to a live node. The pinned client has nowhere else to go.
        nodes[0].kill();
        let n = eventually_async(|| async { likes.get().await.ok() }).await;
        assert_eq!(n, 3);
        let after_kill = eventually_async(|| async { likes.increment(1).await.ok() }).await;
        assert!((4..=5).contains(&after_kill), "{after_kill}");
        let alone = pinned.counter("likes", "p1").get().await;
        assert!(alone.is_err(), "a pinned client failed over: {alone:?}");

        // With the killed node down, a key whose primaries include it cannot have every
        // primary acknowledge: the error names how many answered.
        let strict = Options::new()
            .pw(Quorum::All)
            .timeout(Duration::from_secs(2));
        let quorum_error = eventually_async(|| async {
            for i in 0..32 {
                let r = client
                    .counter("strict", format!("k{i}"))
                    .with(strict)
                    .increment(1)
                    .await;
                if let Err(Error::QuorumNotReached {
                    answered,
                    required,
                    primaries,
                    primaries_required,
                    ..
                }) = r
                {
                    return Some((answered, required, primaries, primaries_required));
                }
            }
            None
        })
        .await;
        let (answered, required, primaries, primaries_required) = quorum_error;
        assert!(
            answered < required || primaries < primaries_required,
            "{quorum_error:?}"
        );
    });
    std::fs::remove_dir_all(&root).ok();
}

/// Like `eventually`, for async checks.
async fn eventually_async<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_node_that_refuses_before_applying_sends_the_client_to_the_next() {
    let root = temp_dir("sdk-refuse");
    let ca = root.join("ca");
    crate::cluster::make_ca(&ca);
    // A lone node of a 3-replica cluster has no committed layout: it refuses every key
    // request as unavailable before applying anything.
    let mut waiting = Server::new(&root, &ca, "w1", &["--replication", "3"]);
    waiting.start();
    let mut serving = Server::new(&root, &ca, "s1", &[]);
    serving.start();
    block_on(async {
        let (cert, key) = client_cert(&root);
        let client = Client::builder()
            .nodes([waiting.quic, serving.quic])
            .ca_cert(ca.join("ca.pem"))
            .client_cert(cert, key)
            .build()
            .await
            .unwrap();
        // A write too: the refusal proves it was never applied.
        assert_eq!(client.counter("likes", "p").increment(2).await.unwrap(), 2);
        assert_eq!(client.counter("likes", "p").get().await.unwrap(), 2);
    });
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_node_restarted_on_its_address_resets_the_old_connection_at_once() {
    let (root, mut node) = lone_node("sdk-reset");
    block_on(async {
        // Shorter than the QUIC idle timeout (10 s): only a reset ends the old
        // connection within it.
        let counter = counted_once(&root, &node, Duration::from_secs(3)).await;
        node.kill();
        // Same address, same certificate.
        node.start();
        // The read leaves on the connection to the killed process. The new one answers
        // with a stateless reset the client can verify (its key comes from the node's
        // private key), so the client dials again and the read, retried as reads are,
        // succeeds. With a random key the reset is ignored and the packets vanish until
        // the idle timeout, after this read's 3 s.
        assert_eq!(counter.get().await.unwrap(), 1);
    });
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_read_that_meets_a_restart_is_sent_again_on_a_new_connection() {
    let (root, mut node) = lone_node("sdk-read-again");
    block_on(async {
        // Below the QUIC idle timeout (10 s): the old connection is still open when the
        // node comes back.
        let counter = counted_once(&root, &node, Duration::from_secs(8)).await;
        node.kill();
        // The read leaves while the node is down, so QUIC retransmits it into the
        // silence until the new process answers with a stateless reset: the connection
        // is lost after the request left. A read may be sent again, and with one node
        // there is nowhere else to send it; the client sends it once more on a new
        // connection to the same node. Without that the read failed as indeterminate.
        let read = tokio::spawn(async move { counter.get().await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        node.start();
        assert_eq!(read.await.unwrap(), Ok(1));
    });
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_restarted_node_resets_every_old_connection_at_once_not_one_per_interval() {
    let (root, mut node) = lone_node("sdk-resets");
    block_on(async {
        let options = Options::new().timeout(Duration::from_secs(3));
        // Each client has its own endpoint, so its own connection to the node: a node's
        // peers and clients all hold one when it restarts.
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let client = builder(&root, node.quic).pinned().options(options);
            clients.push(client.build().await.unwrap());
        }
        assert_eq!(clients[0].counter("c", "k").increment(1).await.unwrap(), 1);
        node.kill();
        node.start();
        // The reads leave together on the old connections, and their retransmissions keep
        // in step. quinn answers one stale packet per `min_reset_interval` (20 ms by
        // default) and drops the rest, so with its default one connection was reset per
        // round of retransmissions, each round twice as late as the one before: 27 of
        // these 64 clients were still cut off after 5 s (39 after 3 s). A read that meets
        // the reset is sent again on a new connection.
        let start = tokio::time::Instant::now();
        let mut reads = tokio::task::JoinSet::new();
        for (i, client) in clients.into_iter().enumerate() {
            reads.spawn(async move {
                loop {
                    if let Ok(n) = client.counter("c", "k").get().await {
                        return (i, n);
                    }
                    // A refusal (a dial backing off) comes back at once: no busy loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
        let budget = Duration::from_secs(5);
        while let Ok(Some(done)) = tokio::time::timeout_at(start + budget, reads.join_next()).await
        {
            let (i, n) = done.unwrap();
            assert_eq!(n, 1, "client {i}");
        }
        assert!(
            reads.is_empty(),
            "{} clients still cut off after {budget:?}",
            reads.len()
        );
    });
    std::fs::remove_dir_all(&root).ok();
}

/// Clients holding connections to one node when it restarts.
const CLIENTS: usize = 64;
