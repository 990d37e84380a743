//! A restarted server is reached again after backoff; an unreachable one is backed off; a
//! stalled connection is given up.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use cairn_net::cert::Ca;
use cairn_net::{Alpn, Endpoint, Identity, NetConfig, NetError};

use crate::support::{bounded, node, Echo, Server};

fn quick() -> NetConfig {
    NetConfig {
        connect_timeout: Duration::from_millis(300),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        ..NetConfig::default()
    }
}

/// Binds `addr` again once the closed endpoint has released it (that happens in the
/// background after close).
async fn rebind(addr: SocketAddr, identity: &Identity) -> Server<Echo> {
    rebind_with(addr, identity, NetConfig::default()).await
}

#[tokio::test]
async fn calls_reach_a_server_restarted_on_the_same_port() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let identity = node(&ca, "n1");
        let first = Server::start(
            "127.0.0.1:0".parse().unwrap(),
            &identity,
            NetConfig::default(),
            Echo::default(),
        );
        let addr = first.addr;
        let caller =
            Endpoint::bind("127.0.0.1:0".parse().unwrap(), &node(&ca, "n2"), quick()).unwrap();
        assert_eq!(caller.call(addr, Alpn::Peer, b"1").await.unwrap(), b"P1");

        first.stop().await;
        let down = caller.call(addr, Alpn::Peer, b"lost").await.unwrap_err();
        let mut errors = vec![down.to_string()];
        let second = rebind(addr, &identity).await;
        let reply = loop {
            match caller.call(addr, Alpn::Peer, b"2").await {
                Ok(reply) => break reply,
                Err(error) => errors.push(error.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(reply, b"P2", "after {errors:?}");
        assert_eq!(second.handler.calls(), 1);
        caller.close().await;
        second.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_address_is_backed_off() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        // A port nothing listens on.
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = NetConfig {
            backoff_min: Duration::from_secs(600),
            backoff_max: Duration::from_secs(600),
            ..quick()
        };
        let caller =
            Endpoint::bind("127.0.0.1:0".parse().unwrap(), &node(&ca, "n2"), config).unwrap();

        let error = caller.call(addr, Alpn::Peer, b"x").await.unwrap_err();
        assert!(matches!(error, NetError::Connect(_)), "{error}");
        let error = caller.call(addr, Alpn::Peer, b"x").await.unwrap_err();
        assert!(
            matches!(error, NetError::Backoff(wait) if wait > Duration::ZERO),
            "{error}"
        );
        caller.close().await;
    })
    .await;
}

/// A server on a thread of its own, which `freeze` stops dead (its runtime blocked, so
/// nothing it receives is answered) until `end` drops it without a word to its peers: a
/// node paused, cut off or killed.
struct Frozen {
    addr: SocketAddr,
    freeze: std::sync::mpsc::Sender<()>,
    frozen: std::sync::mpsc::Receiver<()>,
    end: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Frozen {
    /// Serves as the node whose PEM texts are `pems` (CA, certificate, key).
    fn start(pems: [String; 3], config: NetConfig) -> Frozen {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (freeze, freeze_rx) = std::sync::mpsc::channel::<()>();
        let (frozen_tx, frozen) = std::sync::mpsc::channel::<()>();
        let (end, end_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let [ca, cert, key] = pems;
            let identity = Identity::from_pem(&ca, &cert, &key).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = Server::start(
                    crate::support::localhost(),
                    &identity,
                    config,
                    Echo::default(),
                );
                addr_tx.send(server.addr).unwrap();
                // Serve until told to freeze, then block this runtime's only thread.
                while freeze_rx.try_recv().is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = frozen_tx.send(());
                let _ = end_rx.recv();
                // Dropped with the runtime that would have sent its goodbyes.
                drop(server);
            });
        });
        let addr = addr_rx.recv().unwrap();
        Frozen {
            addr,
            freeze,
            frozen,
            end,
            thread,
        }
    }
}

#[tokio::test]
async fn a_connection_out_of_stream_slots_is_given_up_so_a_restarted_server_is_reached_at_once() {
    // Four one-way requests in flight fill the connection: the fifth waits for room.
    let took = bounded(reached_after_a_freeze(4, Via::Tell)).await;
    assert!(took < Duration::from_secs(2), "reached after {took:?}");
}

#[tokio::test]
async fn a_connection_that_hears_nothing_back_is_given_up_so_a_restarted_server_is_reached_at_once()
{
    // Room for every request: only the silence tells the connection is dead.
    let took = bounded(reached_after_a_freeze(1024, Via::Tell)).await;
    assert!(took < Duration::from_secs(2), "reached after {took:?}");
}

#[tokio::test]
async fn a_caller_whose_connection_hears_nothing_back_gives_it_up_and_reaches_a_restarted_server() {
    // Calls wait for their answers, so they never run out of room; the silence rule
    // alone ends the old connection. Without it, each call after the replacement timed
    // out on it until its idle timeout.
    let took = bounded(reached_after_a_freeze(1024, Via::Call)).await;
    assert!(took < Duration::from_secs(2), "reached after {took:?}");
}

/// How the caller sends to the server.
#[derive(Clone, Copy)]
enum Via {
    /// One-way: the server counts what it received.
    Tell,
    /// Request and answer, each call within a short `call_timeout`.
    Call,
}

/// How long after its replacement a server that froze (taking `streams` one-way requests
/// at a time) is reached again by a caller that kept sending to it. Given up after 500 ms
/// of stall, the old connection is gone and the next send dials the new server. Kept, it
/// took sends until its idle timeout (10 s after the freeze: 7.0 s after the
/// replacement), the new server dropping its packets as another's.
async fn reached_after_a_freeze(streams: u32, via: Via) -> Duration {
    let ca = Ca::generate("test CA").unwrap();
    let issued = ca.issue_node("n1", &["127.0.0.1".to_string()]).unwrap();
    let pems = [ca.cert_pem(), issued.cert_pem, issued.key_pem];
    let serving = NetConfig {
        max_concurrent_streams: streams,
        ..NetConfig::default()
    };
    let first = Frozen::start(pems, serving.clone());
    let addr = first.addr;
    let config = NetConfig {
        stall_timeout: Duration::from_millis(500),
        call_timeout: Duration::from_millis(500),
        ..quick()
    };
    let caller = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &node(&ca, "n2"), config).unwrap();
    let send = |caller: Endpoint, body: &'static [u8]| async move {
        match via {
            Via::Tell => caller.tell(addr, body).await,
            Via::Call => caller.call(addr, Alpn::Peer, body).await.map(drop),
        }
    };
    send(caller.clone(), b"before").await.unwrap();
    first.freeze.send(()).unwrap();
    first.frozen.recv().unwrap();
    // Sends into the silence: QUIC retransmits them on a doubling backoff.
    for _ in 0..8 {
        tokio::spawn(send(caller.clone(), b"unheard"));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.end.send(()).unwrap();
    first.thread.join().unwrap();
    // Back on the address with a new key (a replaced machine, say), so no stateless
    // reset can end the old connection: only giving it up does.
    let second = rebind_with(addr, &node(&ca, "n1"), serving).await;
    let replaced = tokio::time::Instant::now();
    // Until one arrives: a send into the old connection is taken (buffered) and lost, a
    // call on it times out.
    while second.handler.calls() == 0 {
        let _ = send(caller.clone(), b"after").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = replaced.elapsed();
    caller.close().await;
    second.stop().await;
    took
}

/// [`rebind`] with a serving config.
async fn rebind_with(addr: SocketAddr, identity: &Identity, config: NetConfig) -> Server<Echo> {
    loop {
        if let Ok(socket) = UdpSocket::bind(addr) {
            drop(socket);
            return Server::start(addr, identity, config, Echo::default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
