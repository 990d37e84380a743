//! The frame codec: pure functions over bytes, no I/O, so they can be unit-tested,
//! property-tested and fuzzed on their own.
//!
//! Every request and every reply is one frame on its own QUIC stream:
//!
//! ```text
//! offset  size  field
//! 0       4     payload length in bytes, u32 big-endian (the payload only: not the
//!               length, version or kind bytes)
//! 4       1     protocol version, PROTOCOL_VERSION (1)
//! 5       1     kind: requests 0 = request, 1 = ping; replies 0 = ok, 1 = pong, 2 = error
//! 6       len   payload (for an error reply: a UTF-8 message)
//! ```
//!
//! The header is a fixed [`HEADER_BYTES`], so a reader takes exactly that, refuses a
//! version it does not speak and a length above its limit before allocating anything, then
//! reads exactly the payload. `proto-docs/framing.md` draws the same with examples.

use crate::PROTOCOL_VERSION;

/// Size of the fixed frame header: length (4), version (1), kind (1).
pub const HEADER_BYTES: usize = 6;

/// Why bytes are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The version byte is not [`PROTOCOL_VERSION`].
    #[error("protocol version {got} is not supported: this side speaks version {expected}")]
    Version {
        /// The version the frame carries.
        got: u8,
        /// The version this side speaks.
        expected: u8,
    },
    /// The declared (or requested) payload length is above the limit.
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The payload length declared or requested.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The bytes end before the frame does.
    #[error("truncated frame: {missing} more bytes were expected")]
    Truncated {
        /// How many more bytes the frame needs.
        missing: u64,
    },
    /// The kind byte is not one this direction of the stream uses.
    #[error("unknown {direction} frame kind {kind}")]
    Kind {
        /// `"request"` or `"reply"`.
        direction: &'static str,
        /// The kind byte.
        kind: u8,
    },
}

/// Kinds of frames a caller sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// An application request for the [`Handler`](crate::Handler).
    Request = 0,
    /// A liveness and authorisation check; answered with [`ReplyKind::Pong`] by the
    /// transport itself, never passed to the handler.
    Ping = 1,
}

/// Kinds of frames a server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// The handler's reply payload.
    Ok = 0,
    /// The answer to [`RequestKind::Ping`]; empty payload.
    Pong = 1,
    /// An error; the payload is a UTF-8 message.
    Error = 2,
}

impl From<RequestKind> for u8 {
    fn from(kind: RequestKind) -> u8 {
        kind as u8
    }
}

impl From<ReplyKind> for u8 {
    fn from(kind: ReplyKind) -> u8 {
        kind as u8
    }
}

impl TryFrom<u8> for RequestKind {
    type Error = FrameError;

    fn try_from(kind: u8) -> Result<RequestKind, FrameError> {
        match kind {
            0 => Ok(RequestKind::Request),
            1 => Ok(RequestKind::Ping),
            _ => Err(FrameError::Kind {
                direction: "request",
                kind,
            }),
        }
    }
}

impl TryFrom<u8> for ReplyKind {
    type Error = FrameError;

    fn try_from(kind: u8) -> Result<ReplyKind, FrameError> {
        match kind {
            0 => Ok(ReplyKind::Ok),
            1 => Ok(ReplyKind::Pong),
            2 => Ok(ReplyKind::Error),
            _ => Err(FrameError::Kind {
                direction: "reply",
                kind,
            }),
        }
    }
}

/// A decoded frame header. `version` is always [`PROTOCOL_VERSION`] once decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes (at most the limit it was decoded against).
    pub len: u32,
    /// The kind byte, not yet interpreted (its meaning depends on the direction).
    pub kind: u8,
}

impl Header {
    /// The payload length as a `usize`, for buffers. Lossless: decoding checked it against
    /// a `usize` limit.
    pub fn payload_bytes(&self) -> usize {
        // u32 -> usize is lossless on every target Cairn runs on (32 and 64 bit).
        usize::try_from(self.len).unwrap_or(usize::MAX)
    }
}

/// A frame borrowed from a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The kind byte.
    pub kind: u8,
    /// The payload.
    pub payload: &'a [u8],
}

/// Encodes the header of a frame of `kind` whose payload is `payload_bytes` long, refusing
/// payloads above `max` (and above `u32::MAX`, which the length field cannot hold).
pub fn encode_header(
    kind: u8,
    payload_bytes: usize,
    max: usize,
) -> Result<[u8; HEADER_BYTES], FrameError> {
    let too_large = || FrameError::TooLarge {
        len: u64::try_from(payload_bytes).unwrap_or(u64::MAX),
        max,
    };
    if payload_bytes > max {
        return Err(too_large());
    }
    let len = u32::try_from(payload_bytes).map_err(|_| too_large())?;
    let [a, b, c, d] = len.to_be_bytes();
    Ok([a, b, c, d, PROTOCOL_VERSION, kind])
}

/// Encodes a whole frame into one buffer.
pub fn encode(kind: u8, payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let header = encode_header(kind, payload.len(), max)?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

/// Decodes a header, checking the version first (a frame of another version may not even
/// share this layout) and then the length against `max`.
pub fn decode_header(bytes: [u8; HEADER_BYTES], max: usize) -> Result<Header, FrameError> {
    let [a, b, c, d, version, kind] = bytes;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version {
            got: version,
            expected: PROTOCOL_VERSION,
        });
    }
    let len = u32::from_be_bytes([a, b, c, d]);
    if u64::from(len) > u64::try_from(max).unwrap_or(u64::MAX) {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    Ok(Header { len, kind })
}

/// Decodes one frame from the front of `bytes`; returns it and the number of bytes it
/// took. Bytes after the frame are left alone.
pub fn decode(bytes: &[u8], max: usize) -> Result<(Frame<'_>, usize), FrameError> {
    let (head, rest) = split_header(bytes)?;
    let header = decode_header(head, max)?;
    let payload = rest
        .get(..header.payload_bytes())
        .ok_or_else(|| FrameError::Truncated {
            missing: u64::from(header.len) - rest.len() as u64,
        })?;
    let frame = Frame {
        kind: header.kind,
        payload,
    };
    Ok((frame, HEADER_BYTES + payload.len()))
}

fn split_header(bytes: &[u8]) -> Result<([u8; HEADER_BYTES], &[u8]), FrameError> {
    match bytes.split_first_chunk::<HEADER_BYTES>() {
        Some((head, rest)) => Ok((*head, rest)),
        None => Err(FrameError::Truncated {
            missing: (HEADER_BYTES - bytes.len()) as u64,
        }),
    }
}

/// Cuts an error message to at most `max` bytes on a character boundary, so that an error
/// reply always fits in a frame.
pub(crate) fn clip_message(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MAX: usize = 1 << 10;

    #[test]
    fn layout_is_length_version_kind_payload() {
        let bytes = encode(ReplyKind::Error.into(), b"no", MAX).unwrap();
        assert_eq!(bytes, [0, 0, 0, 2, PROTOCOL_VERSION, 2, b'n', b'o']);
    }

    #[test]
    fn empty_payload_round_trips() {
        let bytes = encode(RequestKind::Ping.into(), b"", MAX).unwrap();
        assert_eq!(bytes.len(), HEADER_BYTES);
        let (frame, used) = decode(&bytes, MAX).unwrap();
        assert_eq!(
            (frame.kind, frame.payload, used),
            (1, &b""[..], HEADER_BYTES)
        );
    }

    #[test]
    fn other_versions_are_refused_naming_both() {
        let error = decode(&[0, 0, 0, 0, 7, 0], MAX).unwrap_err();
        assert_eq!(
            error,
            FrameError::Version {
                got: 7,
                expected: PROTOCOL_VERSION
            }
        );
        let message = error.to_string();
        assert!(message.contains('7') && message.contains('1'), "{message}");
    }

    #[test]
    fn length_above_limit_is_refused_before_the_payload() {
        let header = [0xff, 0xff, 0xff, 0xff, PROTOCOL_VERSION, 0];
        assert_eq!(
            decode_header(header, MAX),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: MAX
            })
        );
        // The limit itself is allowed.
        let header = encode_header(0, MAX, MAX).unwrap();
        assert_eq!(decode_header(header, MAX).unwrap().payload_bytes(), MAX);
    }

    #[test]
    fn encode_refuses_payloads_above_limit() {
        assert!(matches!(
            encode(0, &[0; MAX + 1], MAX),
            Err(FrameError::TooLarge { len, max: MAX }) if len == MAX as u64 + 1
        ));
    }

    #[test]
    fn truncation_says_how_much_is_missing() {
        assert_eq!(
            decode(&[0, 0], MAX),
            Err(FrameError::Truncated { missing: 4 })
        );
        assert_eq!(
            decode(&[0, 0, 0, 5, PROTOCOL_VERSION, 0, 1, 2], MAX),
            Err(FrameError::Truncated { missing: 3 })
        );
    }

    #[test]
    fn decode_leaves_trailing_bytes() {
        let mut bytes = encode(0, b"abc", MAX).unwrap();
        bytes.extend_from_slice(b"tail");
        let (frame, used) = decode(&bytes, MAX).unwrap();
        assert_eq!((frame.payload, &bytes[used..]), (&b"abc"[..], &b"tail"[..]));
    }

    #[test]
    fn kinds_map_to_bytes_and_back() {
        for kind in [RequestKind::Request, RequestKind::Ping] {
            assert_eq!(RequestKind::try_from(u8::from(kind)), Ok(kind));
        }
        for kind in [ReplyKind::Ok, ReplyKind::Pong, ReplyKind::Error] {
            assert_eq!(ReplyKind::try_from(u8::from(kind)), Ok(kind));
        }
        assert!(RequestKind::try_from(2).is_err());
        assert!(ReplyKind::try_from(3).is_err());
    }

    #[test]
    fn clip_message_respects_char_boundaries() {
        assert_eq!(clip_message("héllo", 2), "h");
        assert_eq!(clip_message("héllo", 3), "hé");
        assert_eq!(clip_message("hi", 10), "hi");
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..32) {
            let _ = decode(&bytes, max);
        }

        #[test]
        fn decode_of_encode_is_identity(kind: u8, payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let bytes = encode(kind, &payload, MAX).unwrap();
            let (frame, used) = decode(&bytes, MAX).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(frame.kind, kind);
            prop_assert_eq!(frame.payload, &payload[..]);
        }

        /// Near-valid input: a plausible header (length around the body's size, usually the
        /// right version) over arbitrary bytes, so that every branch of decode is reached.
        #[test]
        fn a_decoded_frame_reencodes_to_its_bytes(
            len in 0u32..80,
            version in prop_oneof![3 => Just(PROTOCOL_VERSION), 1 => any::<u8>()],
            kind: u8,
            body in proptest::collection::vec(any::<u8>(), 0..64),
            max in 0usize..72,
        ) {
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[version, kind]);
            bytes.extend_from_slice(&body);
            match decode(&bytes, max) {
                Ok((frame, used)) => {
                    prop_assert_eq!(encode(frame.kind, frame.payload, max).unwrap(), &bytes[..used]);
                }
                Err(FrameError::Version { got, .. }) => prop_assert_ne!(got, PROTOCOL_VERSION),
                Err(FrameError::TooLarge { len: got, .. }) => prop_assert!(got > max as u64),
                Err(FrameError::Truncated { missing }) => prop_assert_eq!(missing, u64::from(len) - body.len() as u64),
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
    }
}
