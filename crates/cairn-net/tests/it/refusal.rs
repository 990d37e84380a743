//! Who may call: only certificates of the cluster CA; on the peer ALPN only node
//! certificates. Refused callers never reach the handler.

use cairn_net::cert::Ca;
use cairn_net::{Alpn, Endpoint, Identity, NetConfig, NetError};

use crate::support::{bounded, client, echo_server, localhost, node};

fn is_refusal(error: &NetError) -> bool {
    matches!(error, NetError::Refused(_) | NetError::Handshake(_))
}

#[tokio::test]
async fn a_node_of_another_cluster_cannot_call() {
    bounded(async {
        let ca = Ca::generate("cluster A").unwrap();
        let other = Ca::generate("cluster B").unwrap();
        let server = echo_server(&node(&ca, "a1"));
        let stranger =
            Endpoint::bind(localhost(), &node(&other, "b1"), NetConfig::default()).unwrap();

        for alpn in [Alpn::Peer, Alpn::Client] {
            let error = stranger.call(server.addr, alpn, b"hi").await.unwrap_err();
            // The stranger does not trust cluster A's node certificate.
            assert!(matches!(error, NetError::Handshake(_)), "{error}");
        }
        assert_eq!(server.handler.calls(), 0);
        stranger.close().await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_by_the_server() {
    bounded(async {
        let ca = Ca::generate("cluster A").unwrap();
        let other = Ca::generate("cluster B").unwrap();
        let server = echo_server(&node(&ca, "a1"));
        // Trusts cluster A (so it accepts the server) but presents cluster B's certificate.
        let issued = other.issue_node("b1", &[]).unwrap();
        let impostor =
            Identity::from_pem(&ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
        let impostor = Endpoint::client(&impostor, NetConfig::default()).unwrap();

        let error = impostor
            .call(server.addr, Alpn::Peer, b"hi")
            .await
            .unwrap_err();
        assert!(matches!(error, NetError::Refused(_)), "{error}");
        assert_eq!(server.handler.calls(), 0);
        impostor.close().await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_certificate_is_refused_on_the_peer_alpn() {
    bounded(async {
        let ca = Ca::generate("cluster A").unwrap();
        let server = echo_server(&node(&ca, "a1"));
        let sdk = Endpoint::client(&client(&ca, "alice"), NetConfig::default()).unwrap();

        let error = sdk.call(server.addr, Alpn::Peer, b"hi").await.unwrap_err();
        assert!(
            matches!(&error, NetError::Refused(m) if m.contains("node certificate")),
            "{error}"
        );
        assert!(is_refusal(&error));
        assert_eq!(server.handler.calls(), 0);
        // The same certificate is welcome on the client ALPN.
        assert_eq!(
            sdk.call(server.addr, Alpn::Client, b"hi").await.unwrap(),
            b"Chi"
        );
        sdk.close().await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_certificate_cannot_serve() {
    let ca = Ca::generate("cluster A").unwrap();
    let error =
        Endpoint::bind(localhost(), &client(&ca, "alice"), NetConfig::default()).unwrap_err();
    assert!(matches!(error, NetError::Tls(_)), "{error}");
}
