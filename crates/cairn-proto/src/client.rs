//! The native client protocol (ALPN `cairn-client/1`): what the SDK sends a node and what
//! comes back, as versioned postcard bodies inside `cairn-net` frames.
//!
//! ```text
//! request  = [CLIENT_VERSION] postcard(Request)
//! response = [CLIENT_VERSION] postcard(Response)
//! ```
//!
//! Operations and values inside travel as this crate's own envelopes
//! ([`crate::encode_op`], [`crate::encode_value`]), so a value has the same bytes on the
//! wire as on disk. Decoding is total: any input gives a message or a [`DecodeError`].
//! Operations and values are decoded (and so validated) when the server or client turns
//! them into [`Op`]s and [`Value`]s: [`KeyRequest::op`] and [`Response::value`].

use cairn_crdt::{Op, Value};
use serde::{Deserialize, Serialize};

use crate::DecodeError;

/// The version byte that starts every client message.
pub const CLIENT_VERSION: u8 = 1;

/// Most key requests in one [`Request::Batch`].
pub const BATCH_MAX: usize = 256;

/// A client's message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// One operation on one key.
    Key(KeyRequest),
    /// Several, answered by one [`Response::Batch`] in the same order.
    Batch(Vec<KeyRequest>),
    /// The QUIC addresses of the cluster's nodes, as the answering node knows them.
    Nodes,
}

/// What to do to which key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequest {
    /// The bucket.
    #[serde(with = "crate::wire::byte_vec")]
    pub bucket: Vec<u8>,
    /// The key.
    #[serde(with = "crate::wire::byte_vec")]
    pub key: Vec<u8>,
    /// The action.
    pub action: Action,
    /// Overrides of the bucket's options.
    pub options: Options,
}

/// What a key request does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Apply an operation (its [`crate::encode_op`] bytes); the answer is the value after it.
    Update(#[serde(with = "crate::wire::byte_vec")] Vec<u8>),
    /// Read the value.
    Read,
    /// Delete what the replicas read have observed.
    Delete,
    /// Apply an operation like [`Action::Update`], answered by [`Response::Applied`]
    /// rather than the value after it: for updates whose caller does not need the value,
    /// which for a large set or map saves encoding, sending and decoding all of it.
    Apply(#[serde(with = "crate::wire::byte_vec")] Vec<u8>),
}

/// Per-request options; `None` takes the bucket's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Replies a read waits for.
    pub r: Option<Quorum>,
    /// Acknowledgements a write waits for.
    pub w: Option<Quorum>,
    /// Of those, replies from primaries.
    pub pr: Option<Quorum>,
    /// Of those, acknowledgements from primaries.
    pub pw: Option<Quorum>,
    /// The request's deadline at the coordinator, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// A quorum as clients name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quorum {
    /// One replica.
    One,
    /// A majority.
    Quorum,
    /// Every replica.
    All,
    /// An explicit count.
    Count(u8),
}

impl std::str::FromStr for Quorum {
    type Err = String;

    /// Parses `one`, `quorum`, `all` or a number.
    fn from_str(text: &str) -> Result<Quorum, String> {
        match text {
            "one" => Ok(Quorum::One),
            "quorum" => Ok(Quorum::Quorum),
            "all" => Ok(Quorum::All),
            digits => digits
                .parse()
                .map(Quorum::Count)
                .map_err(|_| format!("{text:?}: expected a number, one, quorum or all")),
        }
    }
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The value ([`crate::encode_value`] bytes) after an update or as read; `None`: not found.
    Value(#[serde(with = "crate::wire::opt_byte_vec")] Option<Vec<u8>>),
    /// A delete was acknowledged.
    Deleted,
    /// Answers to a batch, in order (flat: a batch never nests, so decoding cannot
    /// recurse on hostile input).
    Batch(Vec<Answer>),
    /// The cluster's nodes' QUIC addresses.
    Nodes(Vec<String>),
    /// The request failed.
    Error(ErrorReply),
    /// An [`Action::Apply`] was acknowledged.
    Applied,
}

/// One key's answer inside a [`Response::Batch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// As [`Response::Value`].
    Value(#[serde(with = "crate::wire::opt_byte_vec")] Option<Vec<u8>>),
    /// As [`Response::Deleted`].
    Deleted,
    /// As [`Response::Error`].
    Error(ErrorReply),
    /// As [`Response::Applied`].
    Applied,
}

impl Response {
    /// This single-key response as a batch answer (a response that answers no key
    /// becomes an error answer).
    pub fn into_answer(self) -> Answer {
        match self {
            Response::Value(v) => Answer::Value(v),
            Response::Deleted => Answer::Deleted,
            Response::Error(e) => Answer::Error(e),
            Response::Applied => Answer::Applied,
            Response::Batch(_) | Response::Nodes(_) => Answer::Error(ErrorReply {
                kind: ErrorKind::Invalid,
                message: "not an answer to one key".into(),
                answered: 0,
                required: 0,
                primaries: 0,
                primaries_required: 0,
            }),
        }
    }
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
    /// For [`ErrorKind::QuorumNotReached`]: replicas that answered.
    pub answered: u8,
    /// For [`ErrorKind::QuorumNotReached`]: replicas needed.
    pub required: u8,
    /// For [`ErrorKind::QuorumNotReached`]: primaries among those that answered.
    pub primaries: u8,
    /// For [`ErrorKind::QuorumNotReached`]: primaries needed (`pr`/`pw`).
    pub primaries_required: u8,
}

/// Failure kinds; each maps to one SDK error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Too few replicas answered (after a write: indeterminate).
    QuorumNotReached,
    /// The operation's type is not the key's.
    TypeMismatch,
    /// A key, value or operation passes a named bound.
    TooLarge,
    /// The operation was refused (an overflow).
    Refused,
    /// The request is malformed or its options cannot be met.
    Invalid,
    /// No node that could serve it is reachable, or the node is starting or stopping.
    Unavailable,
    /// The coordinator did not answer in time (after a write: indeterminate).
    Timeout,
    /// The node's queue is full: back off.
    Overloaded,
    /// The node's storage failed.
    Storage,
}

impl KeyRequest {
    /// The operation of an update, decoded and validated.
    pub fn op(&self) -> Option<Result<Op, DecodeError>> {
        match &self.action {
            Action::Update(bytes) | Action::Apply(bytes) => Some(crate::decode_op(bytes)),
            Action::Read | Action::Delete => None,
        }
    }
}

impl Response {
    /// The value of a [`Response::Value`], decoded and validated.
    pub fn value(bytes: &Option<Vec<u8>>) -> Result<Option<Value>, DecodeError> {
        bytes.as_deref().map(crate::decode_value).transpose()
    }
}

fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail; a bare version byte is refused by
    // the receiver, which is the right outcome should it ever happen.
    postcard::to_extend(msg, vec![CLIENT_VERSION]).unwrap_or_else(|_| vec![CLIENT_VERSION])
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != CLIENT_VERSION {
        return Err(DecodeError::UnknownVersion {
            found: version,
            supported: CLIENT_VERSION,
        });
    }
    let (msg, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    Ok(msg)
}

/// Encodes a client request.
pub fn encode_request(req: &Request) -> Vec<u8> {
    encode(req)
}

/// Decodes a client request; a batch longer than [`BATCH_MAX`] is refused.
pub fn decode_request(bytes: &[u8]) -> Result<Request, DecodeError> {
    let req: Request = decode(bytes)?;
    if let Request::Batch(items) = &req {
        if items.len() > BATCH_MAX {
            return Err(crate::error::invalid(
                "a batch holds at most BATCH_MAX requests",
            ));
        }
    }
    Ok(req)
}

/// Encodes a node's response.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    encode(resp)
}

/// Decodes a node's response.
pub fn decode_response(bytes: &[u8]) -> Result<Response, DecodeError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crdt::CounterOp;

    fn incr() -> KeyRequest {
        KeyRequest {
            bucket: b"likes".to_vec(),
            key: b"post".to_vec(),
            action: Action::Update(crate::encode_op(&Op::Counter(CounterOp::Increment(1)))),
            options: Options {
                w: Some(Quorum::All),
                timeout_ms: Some(100),
                ..Options::default()
            },
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for req in [
            Request::Key(incr()),
            Request::Batch(vec![incr(), incr()]),
            Request::Key(KeyRequest {
                action: Action::Apply(vec![1, 2]),
                ..incr()
            }),
            Request::Nodes,
        ] {
            assert_eq!(decode_request(&encode_request(&req)), Ok(req));
        }
        let error = ErrorReply {
            kind: ErrorKind::QuorumNotReached,
            message: "1 of 2".into(),
            answered: 1,
            required: 2,
            primaries: 1,
            primaries_required: 0,
        };
        for resp in [
            Response::Value(None),
            Response::Deleted,
            Response::Applied,
            Response::Nodes(vec!["127.0.0.1:7000".into()]),
            Response::Batch(vec![
                Answer::Deleted,
                Answer::Applied,
                Answer::Error(error.clone()),
                Answer::Value(Some(vec![1, 2])),
            ]),
            Response::Error(error),
        ] {
            assert_eq!(decode_response(&encode_response(&resp)), Ok(resp));
        }
        assert_eq!(incr().op(), Some(Ok(Op::Counter(CounterOp::Increment(1)))));
    }

    #[test]
    fn bad_bytes_are_typed_errors() {
        assert_eq!(decode_request(&[]), Err(DecodeError::Empty));
        assert!(matches!(
            decode_request(&[9, 0]),
            Err(DecodeError::UnknownVersion { .. })
        ));
        let bytes = encode_request(&Request::Key(incr()));
        for cut in 1..bytes.len() {
            assert!(decode_request(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_request(&long).is_err());
        let big = Request::Batch(vec![incr(); BATCH_MAX + 1]);
        assert!(decode_request(&encode_request(&big)).is_err());
    }
}
