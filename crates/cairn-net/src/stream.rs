//! Frames over quinn streams, and quinn's errors as [`NetError`]s.

use quinn::{
    ConnectionError, ReadError, ReadExactError, RecvStream, SendStream, VarInt, WriteError,
};

use crate::frame::{self, FrameError, HEADER_BYTES};
use crate::NetError;

/// Application close code: orderly shutdown (reason `shutdown`).
pub(crate) const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0);
/// Application close code: the remote's certificate is not a node certificate but it
/// asked for the peer ALPN.
pub(crate) const CLOSE_NOT_NODE: VarInt = VarInt::from_u32(1);
/// Application close code: no (or an unknown) ALPN was negotiated.
pub(crate) const CLOSE_BAD_ALPN: VarInt = VarInt::from_u32(2);
/// A one-way send found no room on the connection for `NetConfig::stall_timeout`.
pub(crate) const CLOSE_STALLED: VarInt = VarInt::from_u32(3);
/// Stream stop code: the request frame was bad; the reply explains.
pub(crate) const STOP_BAD_FRAME: VarInt = VarInt::from_u32(1);
/// Stop code for a one-way stream on a connection that may not send them (a client's).
pub(crate) const STOP_NOT_ALLOWED: VarInt = VarInt::from_u32(2);

/// TLS alert `no_application_protocol` (RFC 8446).
const ALERT_NO_APPLICATION_PROTOCOL: u64 = 120;
/// QUIC carries TLS alerts as transport error codes 0x100 + alert (RFC 9001 §4.8).
const CRYPTO_ERROR_BASE: u64 = 0x100;

/// Bytes read per chunk of a payload. The buffer grows with what actually arrives, so a
/// remote that declares a large frame and stalls holds no more memory than it sent (QUIC
/// flow control bounds that).
const READ_CHUNK_BYTES: usize = 64 << 10;

/// Largest payload copied behind its header to be written in one call; larger ones are
/// written after the header, not copied.
const COALESCE_BYTES_MAX: usize = 64 << 10;

/// Why reading a frame failed: the bytes were bad (answer with an error frame) or the
/// stream itself broke (nothing can be answered).
#[derive(Debug)]
pub(crate) enum ReadFailure {
    Frame(FrameError),
    Stream(NetError),
}

/// Writes one frame and finishes the stream.
pub(crate) async fn write_frame(
    send: &mut SendStream,
    kind: u8,
    payload: &[u8],
    max: usize,
) -> Result<(), NetError> {
    let header = frame::encode_header(kind, payload.len(), max)?;
    if payload.len() <= COALESCE_BYTES_MAX {
        // One write, so one pass through the connection's lock and one wake of its driver.
        let mut frame = Vec::with_capacity(header.len() + payload.len());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(payload);
        send.write_all(&frame).await.map_err(write_error)?;
    } else {
        send.write_all(&header).await.map_err(write_error)?;
        send.write_all(payload).await.map_err(write_error)?;
    }
    finish(send)
}

pub(crate) fn finish(send: &mut SendStream) -> Result<(), NetError> {
    send.finish()
        .map_err(|_| NetError::ConnectionLost("stream closed before it was finished".into()))
}

/// Reads one frame: exactly the header, then (if the version and length are acceptable)
/// exactly the payload. Returns the kind byte and the payload.
pub(crate) async fn read_frame(
    recv: &mut RecvStream,
    max: usize,
) -> Result<(u8, Vec<u8>), ReadFailure> {
    let mut head = [0; HEADER_BYTES];
    read_exact(recv, &mut head).await?;
    let header = frame::decode_header(head, max).map_err(ReadFailure::Frame)?;
    let payload = read_payload(recv, header.payload_bytes()).await?;
    Ok((header.kind, payload))
}

async fn read_exact(recv: &mut RecvStream, buf: &mut [u8]) -> Result<(), ReadFailure> {
    recv.read_exact(buf).await.map_err(|e| match e {
        ReadExactError::FinishedEarly(got) => ReadFailure::Frame(FrameError::Truncated {
            missing: (buf.len() - got) as u64,
        }),
        ReadExactError::ReadError(e) => ReadFailure::Stream(read_error(e)),
    })
}

async fn read_payload(recv: &mut RecvStream, len: usize) -> Result<Vec<u8>, ReadFailure> {
    let mut payload = Vec::with_capacity(len.min(READ_CHUNK_BYTES));
    while payload.len() < len {
        let want = (len - payload.len()).min(READ_CHUNK_BYTES);
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                let missing = (len - payload.len()) as u64;
                return Err(ReadFailure::Frame(FrameError::Truncated { missing }));
            }
            Err(e) => return Err(ReadFailure::Stream(read_error(e))),
        }
    }
    Ok(payload)
}

pub(crate) fn read_error(error: ReadError) -> NetError {
    match error {
        ReadError::ConnectionLost(e) => connection_error(e),
        ReadError::Reset(code) => {
            NetError::ConnectionLost(format!("stream reset by the remote (code {code})"))
        }
        other => NetError::ConnectionLost(other.to_string()),
    }
}

pub(crate) fn write_error(error: WriteError) -> NetError {
    match error {
        WriteError::ConnectionLost(e) => connection_error(e),
        WriteError::Stopped(code) => {
            NetError::ConnectionLost(format!("the remote stopped reading (code {code})"))
        }
        other => NetError::ConnectionLost(other.to_string()),
    }
}

/// Sorts a quinn connection error by whose fault it is: the remote refusing us, our side
/// refusing the remote, or the connection going away.
pub(crate) fn connection_error(error: ConnectionError) -> NetError {
    match error {
        ConnectionError::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            let reason = format!("{close}");
            match code.checked_sub(CRYPTO_ERROR_BASE) {
                Some(ALERT_NO_APPLICATION_PROTOCOL) => NetError::Handshake(reason),
                _ if is_crypto(code) => NetError::Refused(reason),
                _ => NetError::ConnectionLost(reason),
            }
        }
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            if close.error_code == CLOSE_SHUTDOWN {
                NetError::ConnectionLost(format!("the remote shut down: {reason}"))
            } else {
                NetError::Refused(reason)
            }
        }
        // Our own side aborted: during the handshake that means we did not accept the
        // remote (its certificate, usually).
        ConnectionError::TransportError(e) if is_crypto(u64::from(e.code)) => {
            NetError::Handshake(e.to_string())
        }
        ConnectionError::VersionMismatch => NetError::Handshake(error.to_string()),
        ConnectionError::TimedOut => NetError::ConnectionLost("idle timeout".into()),
        ConnectionError::LocallyClosed => NetError::Closed,
        other => NetError::ConnectionLost(other.to_string()),
    }
}

fn is_crypto(code: u64) -> bool {
    (CRYPTO_ERROR_BASE..=CRYPTO_ERROR_BASE + 0xff).contains(&code)
}
