//! Round trips on both ALPNs, handler errors, and many concurrent calls on one connection.

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_net::cert::Ca;
use cairn_net::{Alpn, Endpoint, Handler, NetConfig, NetError};
use tokio::sync::Barrier;

use crate::support::{bounded, client, echo_server, localhost, node, Echo, Server};

#[tokio::test]
async fn echo_between_nodes_on_both_alpns() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let server = echo_server(&node(&ca, "n1"));
        let caller = Endpoint::bind(localhost(), &node(&ca, "n2"), NetConfig::default()).unwrap();

        let reply = caller
            .call(server.addr, Alpn::Peer, b"hello peer")
            .await
            .unwrap();
        assert_eq!(reply, b"Phello peer");
        let reply = caller
            .call(server.addr, Alpn::Client, b"hello client")
            .await
            .unwrap();
        assert_eq!(reply, b"Chello client");
        let reply = caller.call(server.addr, Alpn::Peer, b"").await.unwrap();
        assert_eq!(reply, b"P");

        assert_eq!(server.handler.calls(), 3, "pings never reach the handler");
        assert_eq!(caller.connection_count(), 2, "one connection per ALPN");
        caller.close().await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn client_certificate_calls_on_the_client_alpn() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let server = echo_server(&node(&ca, "n1"));
        let sdk = Endpoint::client(&client(&ca, "alice"), NetConfig::default()).unwrap();

        for i in 0..3u8 {
            let reply = sdk.call(server.addr, Alpn::Client, &[i]).await.unwrap();
            assert_eq!(reply, [b'C', i]);
        }
        assert_eq!(
            sdk.connection_count(),
            1,
            "calls share the cached connection"
        );
        sdk.ping(server.addr, Alpn::Client).await.unwrap();

        sdk.close().await;
        assert!(matches!(
            sdk.call(server.addr, Alpn::Client, b"x").await,
            Err(NetError::Closed)
        ));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn handler_errors_and_panics_come_back_as_remote_errors() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let server = echo_server(&node(&ca, "n1"));
        let sdk = Endpoint::client(&client(&ca, "alice"), NetConfig::default()).unwrap();

        for (request, message) in [
            (&b"fail"[..], "asked to fail"),
            (b"panic", "handler failed: asked to panic"),
        ] {
            let error = sdk
                .call(server.addr, Alpn::Client, request)
                .await
                .unwrap_err();
            assert!(
                matches!(&error, NetError::Remote(m) if m == message),
                "{error}"
            );
            // The error ended one stream, not the connection.
            assert_eq!(
                sdk.call(server.addr, Alpn::Client, b"ok").await.unwrap(),
                b"Cok"
            );
            assert_eq!(sdk.connection_count(), 1, "the connection survived");
        }
        sdk.close().await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn requests_above_the_limit_are_refused_locally_and_remotely() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let small = NetConfig {
            frame_bytes_max: 1024,
            ..NetConfig::default()
        };
        let server = Server::start(
            localhost(),
            &node(&ca, "n1"),
            small.clone(),
            Echo::default(),
        );

        // The caller's own limit is checked before anything is sent.
        let limited = Endpoint::client(&client(&ca, "alice"), small).unwrap();
        let error = limited
            .call(server.addr, Alpn::Client, &[0; 1025])
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                NetError::FrameTooLarge {
                    len: 1025,
                    max: 1024
                }
            ),
            "{error}"
        );

        // A caller with a larger limit gets the server's refusal as an error frame.
        let sdk = Endpoint::client(&client(&ca, "bob"), NetConfig::default()).unwrap();
        let error = sdk
            .call(server.addr, Alpn::Client, &[0; 4096])
            .await
            .unwrap_err();
        assert!(
            matches!(&error, NetError::Remote(m) if m.contains("larger than the limit")),
            "{error}"
        );
        assert_eq!(
            sdk.call(server.addr, Alpn::Client, b"small").await.unwrap(),
            b"Csmall"
        );
        assert_eq!(
            server.handler.calls(),
            1,
            "the oversized request never reached the handler"
        );

        limited.close().await;
        sdk.close().await;
        server.stop().await;
    })
    .await;
}

/// Answers only once `barrier` has gathered every request: it passes only if all of them
/// are in flight at once on the one connection.
struct Gate {
    barrier: Barrier,
}

impl Handler for Gate {
    async fn handle(&self, _: Alpn, _: SocketAddr, request: Vec<u8>) -> Result<Vec<u8>, String> {
        self.barrier.wait().await;
        Ok(request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_calls_share_one_connection() {
    const CALLS: u32 = 500;
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let gate = Gate {
            barrier: Barrier::new(CALLS as usize),
        };
        let server = Server::start(localhost(), &node(&ca, "n1"), NetConfig::default(), gate);
        let caller = Endpoint::bind(localhost(), &node(&ca, "n2"), NetConfig::default()).unwrap();
        caller.ping(server.addr, Alpn::Peer).await.unwrap();

        let calls: Vec<_> = (0..CALLS)
            .map(|i| {
                let caller = caller.clone();
                let addr = server.addr;
                tokio::spawn(
                    async move { (i, caller.call(addr, Alpn::Peer, &i.to_be_bytes()).await) },
                )
            })
            .collect();
        for call in calls {
            let (i, reply) = call.await.unwrap();
            assert_eq!(reply.unwrap(), i.to_be_bytes());
        }
        assert_eq!(caller.connection_count(), 1);
        caller.close().await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_endpoint_does_not_serve() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let sdk = Endpoint::client(&client(&ca, "alice"), NetConfig::default()).unwrap();
        sdk.serve(Arc::new(Echo::default())).await;
        sdk.close().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let ca = Ca::generate("test CA").unwrap();
    let config = NetConfig {
        keep_alive: NetConfig::default().idle_timeout,
        ..NetConfig::default()
    };
    let error = Endpoint::client(&client(&ca, "alice"), config).unwrap_err();
    assert!(matches!(error, NetError::Config(_)), "{error}");
}

#[tokio::test]
async fn one_way_requests_reach_the_handler_and_are_counted_in_datagrams() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let server = echo_server(&node(&ca, "n1"));
        let caller = Endpoint::bind(localhost(), &node(&ca, "n2"), NetConfig::default()).unwrap();
        // A failing one has no one to tell but the log.
        for request in [&b"one"[..], b"fail", b"two"] {
            caller.tell(server.addr, request).await.unwrap();
        }
        while server.handler.calls() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(server.handler.calls(), 3);
        let seen = server.endpoint.accepted_datagrams();
        assert!(seen.received > 0 && seen.sent > 0, "{seen:?}");
        assert_eq!(
            caller.accepted_datagrams().received,
            0,
            "the caller accepted no connection"
        );
        caller.close().await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_certificate_cannot_tell() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let server = echo_server(&node(&ca, "n1"));
        let caller = Endpoint::client(&client(&ca, "c1"), NetConfig::default()).unwrap();
        let error = caller.tell(server.addr, b"hello").await.unwrap_err();
        assert!(
            matches!(error, NetError::Refused(_) | NetError::Handshake(_)),
            "{error:?}"
        );
        assert_eq!(server.handler.calls(), 0);
        caller.close().await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_one_way_stream_on_the_client_alpn_is_stopped_unread() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let server = echo_server(&node(&ca, "n1"));
        let caller = Endpoint::client(&client(&ca, "c1"), NetConfig::default()).unwrap();
        // A frame header promising 5 bytes, then nothing: only a stop ends the wait.
        let header = cairn_net::frame::encode_header(1, 5, 1 << 20).unwrap();
        let code = caller
            .raw_one_way(server.addr, Alpn::Client, &header)
            .await
            .unwrap();
        assert_eq!(code, Some(2), "stopped as not allowed");
        assert_eq!(server.handler.calls(), 0);
        caller.close().await;
        server.stop().await;
    })
    .await;
}
