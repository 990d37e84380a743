//! A restarted server is reached again after backoff; an unreachable one is backed off.

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
    loop {
        if let Ok(socket) = UdpSocket::bind(addr) {
            drop(socket);
            return Server::start(addr, identity, NetConfig::default(), Echo::default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
