//! Malformed frames on a raw stream get an error frame; the connection and the endpoint
//! keep serving.

use cairn_net::cert::Ca;
use cairn_net::frame::{self, ReplyKind};
use cairn_net::{Alpn, Endpoint, NetConfig, FRAME_BYTES_MAX, PROTOCOL_VERSION};

use crate::support::{bounded, client, echo_server, node};

/// Each bad request and a piece of the error message it must get.
fn bad_requests() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let v = PROTOCOL_VERSION;
    vec![
        ("empty stream", vec![], "truncated"),
        ("short header", vec![0, 0, 0], "truncated"),
        ("other version", vec![0, 0, 0, 1, 9, 0, b'x'], "version 9"),
        (
            "oversized length",
            vec![0xff, 0xff, 0xff, 0xff, v, 0],
            "larger than the limit",
        ),
        (
            "truncated payload",
            vec![0, 0, 0, 100, v, 0, 1, 2, 3],
            "97 more bytes",
        ),
        ("unknown kind", vec![0, 0, 0, 0, v, 7], "kind 7"),
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec(), "version"),
    ]
}

#[tokio::test]
async fn bad_frames_get_an_error_frame_and_the_connection_survives() {
    bounded(async {
        let ca = Ca::generate("test CA").unwrap();
        let server = echo_server(&node(&ca, "n1"));
        let sdk = Endpoint::client(&client(&ca, "alice"), NetConfig::default()).unwrap();
        sdk.ping(server.addr, Alpn::Client).await.unwrap();

        for (what, bytes, expected) in bad_requests() {
            let reply = sdk
                .raw_exchange(server.addr, Alpn::Client, &bytes)
                .await
                .unwrap();
            let (reply, used) = frame::decode(&reply, FRAME_BYTES_MAX).unwrap();
            assert_eq!(
                used,
                reply.payload.len() + frame::HEADER_BYTES,
                "{what}: one frame only"
            );
            assert_eq!(reply.kind, u8::from(ReplyKind::Error), "{what}");
            let message = String::from_utf8(reply.payload.to_vec()).unwrap();
            assert!(
                message.contains(expected),
                "{what}: {message:?} lacks {expected:?}"
            );
        }
        let version = [0, 0, 0, 0, 2, 0];
        let reply = sdk
            .raw_exchange(server.addr, Alpn::Client, &version)
            .await
            .unwrap();
        let message = String::from_utf8(reply[frame::HEADER_BYTES..].to_vec()).unwrap();
        assert!(
            message.contains('2') && message.contains('1'),
            "names both versions: {message}"
        );

        // A proper call on the same connection, then a proper raw frame.
        assert_eq!(
            sdk.call(server.addr, Alpn::Client, b"still here")
                .await
                .unwrap(),
            b"Cstill here"
        );
        let good = frame::encode(0, b"raw", FRAME_BYTES_MAX).unwrap();
        let reply = sdk
            .raw_exchange(server.addr, Alpn::Client, &good)
            .await
            .unwrap();
        assert_eq!(
            reply,
            frame::encode(ReplyKind::Ok.into(), b"Craw", FRAME_BYTES_MAX).unwrap()
        );
        assert_eq!(
            sdk.connection_count(),
            1,
            "the bad frames did not cost the connection"
        );
        assert_eq!(
            server.handler.calls(),
            2,
            "bad frames never reached the handler"
        );

        sdk.close().await;
        server.stop().await;
    })
    .await;
}
