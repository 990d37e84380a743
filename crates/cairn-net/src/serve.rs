//! The server side: admit connections, read one request frame per stream, answer it.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use quinn::crypto::rustls::HandshakeData;
use quinn::{Connection, Incoming, RecvStream, SendStream};
use rustls::pki_types::CertificateDer;
use tracing::{debug, info};

use crate::frame::{clip_message, ReplyKind, RequestKind};
use crate::identity::is_node_cert;
use crate::stream::{
    self, ReadFailure, CLOSE_BAD_ALPN, CLOSE_NOT_NODE, STOP_BAD_FRAME, STOP_NOT_ALLOWED,
};
use crate::traffic::Traffic;
use crate::Alpn;

/// What the server side does with one request payload.
///
/// The transport calls it once per request frame, each call in its own task, so calls run
/// concurrently (up to `max_concurrent_streams` of each stream kind per connection).
/// Pings never reach it.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. `alpn` tells peers from clients (and a peer has shown a node
    /// certificate); `peer` is the remote address. `Ok` is sent as the reply payload,
    /// `Err` as an error frame carrying the message (the caller gets
    /// [`NetError::Remote`](crate::NetError::Remote)); for a one-way request
    /// ([`Endpoint::tell`](crate::Endpoint::tell)) nothing is sent and `Err` is logged.
    fn handle(
        &self,
        alpn: Alpn,
        peer: SocketAddr,
        request: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
}

/// What every stream task needs to know.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) frame_bytes_max: usize,
    /// How long a remote has to send its whole request.
    pub(crate) request_timeout: Duration,
}

/// Completes the handshake, admits the connection for its ALPN, then serves its streams
/// until it closes.
pub(crate) async fn serve_connection<H: Handler>(
    incoming: Incoming,
    handler: Arc<H>,
    limits: Limits,
    traffic: Arc<Traffic>,
) {
    let peer = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            info!(%peer, %error, "incoming connection failed its handshake");
            return;
        }
    };
    let Some(alpn) = admit(&connection) else {
        return;
    };
    debug!(%peer, ?alpn, "connection accepted");
    let _tracked = traffic.track(&connection);
    let stream = StreamTask { alpn, peer, limits };
    loop {
        // Both accepts are cancel-safe: a stream the other branch's win leaves behind is
        // taken on a later turn.
        let accepted = tokio::select! {
            bi = connection.accept_bi() => bi.map(|(send, recv)| {
                tokio::spawn(stream.run(send, recv, Arc::clone(&handler)));
            }),
            uni = connection.accept_uni() => uni.map(|mut recv| {
                if alpn == Alpn::Peer {
                    tokio::spawn(stream.run_one_way(recv, Arc::clone(&handler)));
                } else {
                    // Clients may not send one-way requests: stopped unread, so nothing
                    // they send sits in a buffer until the connection ends.
                    let _ = recv.stop(STOP_NOT_ALLOWED);
                }
            }),
        };
        if let Err(error) = accepted {
            debug!(%peer, %error, "connection ended");
            return;
        }
    }
}

/// Decides which ALPN the connection speaks, closing it if it may not: the TLS handshake
/// has already checked the certificate against the CA; the peer ALPN also needs a node
/// certificate.
fn admit(connection: &Connection) -> Option<Alpn> {
    let peer = connection.remote_address();
    let Some(alpn) = negotiated_alpn(connection) else {
        info!(%peer, "closing a connection with no known ALPN");
        connection.close(CLOSE_BAD_ALPN, b"no known ALPN was negotiated");
        return None;
    };
    if alpn == Alpn::Peer && !remote_is_node(connection) {
        info!(%peer, "refusing the peer ALPN to a certificate that is not a node certificate");
        connection.close(CLOSE_NOT_NODE, b"the peer ALPN needs a node certificate");
        return None;
    }
    Some(alpn)
}

fn negotiated_alpn(connection: &Connection) -> Option<Alpn> {
    let data = connection
        .handshake_data()?
        .downcast::<HandshakeData>()
        .ok()?;
    Alpn::from_id(data.protocol.as_deref()?)
}

fn remote_is_node(connection: &Connection) -> bool {
    connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .is_some_and(|chain| chain.first().is_some_and(is_node_cert))
}

/// One request stream.
#[derive(Clone, Copy)]
struct StreamTask {
    alpn: Alpn,
    peer: SocketAddr,
    limits: Limits,
}

impl StreamTask {
    async fn run<H: Handler>(self, mut send: SendStream, mut recv: RecvStream, handler: Arc<H>) {
        let read = tokio::time::timeout(
            self.limits.request_timeout,
            stream::read_frame(&mut recv, self.limits.frame_bytes_max),
        );
        let (kind, payload) = match read.await {
            Ok(Ok((kind, request))) => self.answer(kind, request, handler).await,
            Ok(Err(ReadFailure::Frame(error))) => self.refuse(&mut recv, error.to_string()),
            Ok(Err(ReadFailure::Stream(error))) => {
                debug!(peer = %self.peer, %error, "request stream broke");
                return;
            }
            Err(_) => self.refuse(&mut recv, "request not received in time".into()),
        };
        self.reply(&mut send, kind, payload).await;
    }

    /// Serves a one-way request (a unidirectional stream on the peer ALPN): reads its frame
    /// and runs the handler; nothing is answered, so a failure is only logged.
    async fn run_one_way<H: Handler>(self, mut recv: RecvStream, handler: Arc<H>) {
        let read = tokio::time::timeout(
            self.limits.request_timeout,
            stream::read_frame(&mut recv, self.limits.frame_bytes_max),
        );
        let request = match read.await {
            Ok(Ok((kind, request))) if kind == u8::from(RequestKind::Request) => request,
            Ok(Ok((kind, _))) => {
                debug!(peer = %self.peer, kind, "a one-way stream carried no request");
                return;
            }
            Ok(Err(ReadFailure::Frame(error))) => {
                debug!(peer = %self.peer, %error, "bad one-way frame");
                let _ = recv.stop(STOP_BAD_FRAME);
                return;
            }
            Ok(Err(ReadFailure::Stream(error))) => {
                debug!(peer = %self.peer, %error, "one-way stream broke");
                return;
            }
            Err(_) => {
                debug!(peer = %self.peer, "one-way request not received in time");
                let _ = recv.stop(STOP_BAD_FRAME);
                return;
            }
        };
        if let (ReplyKind::Error, message) = self.call_handler(request, handler).await {
            let message = String::from_utf8_lossy(&message);
            debug!(peer = %self.peer, %message, "one-way request failed");
        }
    }

    /// Stops reading a bad request (the remote need not send the rest) and explains why.
    fn refuse(&self, recv: &mut RecvStream, message: String) -> (ReplyKind, Vec<u8>) {
        debug!(peer = %self.peer, %message, "bad request frame");
        // The stream may already be fully read; stopping it then is a no-op.
        let _ = recv.stop(STOP_BAD_FRAME);
        (ReplyKind::Error, message.into_bytes())
    }

    async fn answer<H: Handler>(
        &self,
        kind: u8,
        request: Vec<u8>,
        handler: Arc<H>,
    ) -> (ReplyKind, Vec<u8>) {
        match RequestKind::try_from(kind) {
            Ok(RequestKind::Ping) => (ReplyKind::Pong, Vec::new()),
            Ok(RequestKind::Request) => self.call_handler(request, handler).await,
            Err(error) => (ReplyKind::Error, error.to_string().into_bytes()),
        }
    }

    /// Runs the handler with its panics caught, so that a panicking handler costs one error
    /// reply rather than a silently dropped stream. (Caught in place, not by running the
    /// handler as a task of its own: a spawn and a join per request cost more than the
    /// rest of the stream's bookkeeping.)
    async fn call_handler<H: Handler>(
        &self,
        request: Vec<u8>,
        handler: Arc<H>,
    ) -> (ReplyKind, Vec<u8>) {
        match catch_unwind(handler.handle(self.alpn, self.peer, request)).await {
            Ok(Ok(reply)) => (ReplyKind::Ok, reply),
            Ok(Err(message)) => (ReplyKind::Error, message.into_bytes()),
            Err(panic) => (
                ReplyKind::Error,
                format!("handler failed: {}", panic_message(&*panic)).into_bytes(),
            ),
        }
    }

    async fn reply(&self, send: &mut SendStream, kind: ReplyKind, payload: Vec<u8>) {
        let max = self.limits.frame_bytes_max;
        let (kind, payload) = fit(kind, payload, max);
        if let Err(error) = stream::write_frame(send, kind.into(), &payload, max).await {
            debug!(peer = %self.peer, %error, "could not send the reply");
        }
    }
}

/// Polls `future` to completion, turning a panic in any poll into `Err` with the panic's
/// payload. After a panic the future is dropped at once, inside the same guard (a `Drop`
/// that panics too costs nothing more), and never polled again.
///
/// `AssertUnwindSafe` promises no more than the task per request this replaced did: a
/// handler reaches shared state only through `Sync` types, and the node's own state lives
/// in its core task, which a handler's panic cannot reach.
async fn catch_unwind<F: Future>(future: F) -> std::thread::Result<F::Output> {
    let mut slot = std::pin::pin!(Some(future));
    std::future::poll_fn(|cx| {
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            slot.as_mut().as_pin_mut().map(|future| future.poll(cx))
        }));
        match polled {
            Ok(Some(Poll::Ready(output))) => Poll::Ready(Ok(output)),
            Ok(Some(Poll::Pending)) => Poll::Pending,
            // Polled after it finished or panicked: never, `poll_fn` is not polled again
            // once it is ready.
            Ok(None) => {
                let ended: Box<dyn std::any::Any + Send> = Box::new("polled after it ended");
                Poll::Ready(Err(ended))
            }
            Err(panic) => {
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| slot.as_mut().set(None)));
                Poll::Ready(Err(panic))
            }
        }
    })
    .await
}

/// A panic payload as text (`panic!` makes a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// Makes a reply fit in a frame: an oversized `Ok` becomes an error naming the sizes, an
/// oversized error message is cut.
fn fit(kind: ReplyKind, payload: Vec<u8>, max: usize) -> (ReplyKind, Vec<u8>) {
    if payload.len() <= max {
        return (kind, payload);
    }
    let message = match kind {
        ReplyKind::Error => String::from_utf8_lossy(&payload).into_owned(),
        _ => format!(
            "reply of {} bytes is larger than the limit of {max} bytes",
            payload.len()
        ),
    };
    (
        ReplyKind::Error,
        clip_message(&message, max).as_bytes().to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_replies_become_errors_that_fit() {
        assert_eq!(
            fit(ReplyKind::Ok, vec![1; 4], 4),
            (ReplyKind::Ok, vec![1; 4])
        );
        let (kind, payload) = fit(ReplyKind::Ok, vec![1; 5], 4);
        assert_eq!((kind, payload.len()), (ReplyKind::Error, 4));
        let (kind, payload) = fit(ReplyKind::Error, b"too long".to_vec(), 3);
        assert_eq!((kind, payload), (ReplyKind::Error, b"too".to_vec()));
        let (kind, payload) = fit(ReplyKind::Ok, vec![0; 200], 100);
        assert_eq!(kind, ReplyKind::Error);
        assert!(String::from_utf8(payload).unwrap().contains("200 bytes"));
    }
}
