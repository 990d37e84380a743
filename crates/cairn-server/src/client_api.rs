//! The native client protocol (ALPN `cairn-client/1`, `cairn_proto::client`): decode a
//! request, run it through the core like an HTTP request, encode the answer.

use std::time::Duration;

use cairn_core::{
    ClientError, ClientOp, ClientReply, ClientRequest, Quorum, RequestOptions, BUCKET_BYTES_MAX,
    KEY_BYTES_MAX,
};
use cairn_crdt::ApplyError;
use cairn_proto::client::{
    self as wire, Action, ErrorKind, ErrorReply, KeyRequest, Request, Response,
};
use tokio::sync::oneshot;

use crate::batch_reply::{BatchReplies, Outcome};
use crate::core_loop::{ClientResult, CoreHandle, Event, Refused};

/// Default deadline when a request names none (the bucket default).
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// How much longer than the request's own deadline the server waits for the core.
const REPLY_SLACK: Duration = Duration::from_secs(2);

/// Answers one client message.
pub async fn handle(core: &CoreHandle, bytes: &[u8]) -> Vec<u8> {
    let response = match wire::decode_request(bytes) {
        Ok(Request::Key(k)) => match start(core, k) {
            Ok(pending) => pending.finish().await,
            Err(resp) => resp,
        },
        Ok(Request::Batch(items)) => Response::Batch(batch(core, items).await),
        Ok(Request::Nodes) => nodes(core).await,
        Err(e) => error(ErrorKind::Invalid, format!("malformed client request: {e}")),
    };
    wire::encode_response(&response)
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error(ErrorReply {
        kind,
        message: message.into(),
        answered: 0,
        required: 0,
        primaries: 0,
        primaries_required: 0,
    })
}

/// A request handed to the core, waiting for its answer.
struct Pending {
    rx: oneshot::Receiver<ClientResult>,
    timeout: Duration,
}

impl Pending {
    async fn finish(self) -> Response {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(result)) => response(result),
            Ok(Err(_)) => stopped(),
            Err(_) => timed_out(),
        }
    }
}

/// The core dropped a request unanswered (it stopped): it may have been applied, so
/// this is indeterminate, never "try elsewhere".
fn stopped() -> Response {
    error(ErrorKind::Timeout, "the node stopped before answering")
}

fn timed_out() -> Response {
    error(ErrorKind::Timeout, "the node did not answer in time")
}

fn start(core: &CoreHandle, k: KeyRequest) -> Result<Pending, Response> {
    let request = request(k)?;
    let timeout = reply_wait(&request);
    let (reply, rx) = oneshot::channel();
    core.send(Event::Client { request, reply })
        .map_err(refusal)?;
    Ok(Pending { rx, timeout })
}

/// How long the server waits for the core's answer to `request`.
fn reply_wait(request: &ClientRequest) -> Duration {
    Duration::from_millis(request.options.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)) + REPLY_SLACK
}

fn refusal(r: Refused) -> Response {
    match r {
        Refused::Overloaded => error(
            ErrorKind::Overloaded,
            "the node's request queue is full; back off",
        ),
        Refused::Stopped => error(ErrorKind::Unavailable, "the node is shutting down"),
    }
}

/// A batch: every request is queued first, so the core works on them together, and
/// their answers are gathered in one [`BatchReplies`] (one allocation and one wake-up
/// for the batch, where a channel per request cost both per request).
async fn batch(core: &CoreHandle, items: Vec<KeyRequest>) -> Vec<wire::Answer> {
    let (replies, slots) = BatchReplies::new(items.len());
    let mut refused = Vec::with_capacity(items.len());
    let mut longest = Duration::ZERO;
    for (k, slot) in items.into_iter().zip(slots) {
        // A request refused here drops its slot; its refusal is its answer.
        let queued = request(k).and_then(|request| {
            let wait = reply_wait(&request);
            core.send(Event::ClientInBatch { request, slot })
                .map_err(refusal)?;
            Ok(wait)
        });
        match queued {
            Ok(wait) => {
                longest = longest.max(wait);
                refused.push(None);
            }
            Err(resp) => refused.push(Some(resp)),
        }
    }
    gather(&replies, refused, longest).await
}

/// A batch's answers, in order, under one timer: the longest of its requests' waits.
/// The timer is only the server's guard against a core that never answers (the core
/// answers each request at its own deadline, `REPLY_SLACK` before this fires).
async fn gather(
    replies: &BatchReplies,
    refused: Vec<Option<Response>>,
    longest: Duration,
) -> Vec<wire::Answer> {
    tokio::select! {
        // Answers that are all in win over a timer that has also fired.
        biased;
        () = replies.all_in() => {}
        () = tokio::time::sleep(longest) => {}
    }
    let outcomes = replies.take();
    refused
        .into_iter()
        .zip(outcomes)
        .map(|(refusal, outcome)| {
            let response = match (refusal, outcome) {
                (Some(refusal), _) => refusal,
                (None, Some(Outcome::Answered(result))) => response(result),
                (None, Some(Outcome::Dropped)) => stopped(),
                (None, None) => timed_out(),
            };
            response.into_answer()
        })
        .collect()
}

/// A wire request as the core's request, checked at the edge.
fn request(k: KeyRequest) -> Result<ClientRequest, Response> {
    for (what, bytes, max) in [
        ("bucket", &k.bucket, BUCKET_BYTES_MAX),
        ("key", &k.key, KEY_BYTES_MAX),
    ] {
        if bytes.len() > max {
            return Err(error(
                ErrorKind::TooLarge,
                format!("{what} is {} bytes; at most {max}", bytes.len()),
            ));
        }
        if bytes.is_empty() {
            return Err(error(ErrorKind::Invalid, format!("{what} is empty")));
        }
    }
    let op = match k.op() {
        Some(Ok(op)) => ClientOp::Update(op),
        Some(Err(e)) => {
            return Err(error(
                ErrorKind::Invalid,
                format!("operation does not decode: {e}"),
            ))
        }
        None if k.action == Action::Read => ClientOp::Read,
        None => ClientOp::Delete,
    };
    let q = |q: Option<wire::Quorum>| q.map(Quorum::from);
    let o = k.options;
    let ack_only = matches!(k.action, Action::Apply(_));
    Ok(ClientRequest {
        bucket: k.bucket.into_boxed_slice(),
        key: k.key.into_boxed_slice(),
        op,
        options: RequestOptions {
            n: None,
            r: q(o.r),
            w: q(o.w),
            pr: q(o.pr),
            pw: q(o.pw),
            timeout_ms: o.timeout_ms,
            ack_only,
        },
    })
}

fn response(result: ClientResult) -> Response {
    match result {
        Ok(ClientReply::Value(v)) => Response::Value(v.as_ref().map(cairn_proto::encode_value)),
        Ok(ClientReply::Deleted) => Response::Deleted,
        Ok(ClientReply::Applied) => Response::Applied,
        Err(e) => {
            let (answered, required, primaries, primaries_required) = match e {
                ClientError::QuorumNotReached {
                    answered,
                    required,
                    primaries,
                    primaries_required,
                } => (answered, required, primaries, primaries_required),
                _ => (0, 0, 0, 0),
            };
            Response::Error(ErrorReply {
                kind: classify(&e),
                message: e.to_string(),
                answered,
                required,
                primaries,
                primaries_required,
            })
        }
    }
}

/// The error's code as the HTTP API and the metrics name it (`docs/http-api.md`).
pub fn code(e: &ClientError) -> &'static str {
    match (classify(e), e) {
        (ErrorKind::QuorumNotReached, _) => "quorum_not_reached",
        (ErrorKind::TypeMismatch, _) => "type_mismatch",
        (ErrorKind::TooLarge, _) => "too_large",
        (ErrorKind::Refused, ClientError::Refused(ApplyError::CounterOverflow)) => {
            "counter_overflow"
        }
        (ErrorKind::Refused, _) => "refused",
        (ErrorKind::Invalid, ClientError::InvalidKey(_)) => "invalid_key",
        (ErrorKind::Invalid, _) => "invalid_options",
        (ErrorKind::Timeout, _) => "timeout",
        (ErrorKind::Overloaded, _) => "overloaded",
        (ErrorKind::Storage, _) => "storage",
        _ => "unavailable",
    }
}

/// The kind of a core error, shared by the HTTP API and the native protocol.
pub fn classify(e: &ClientError) -> ErrorKind {
    match e {
        ClientError::QuorumNotReached { .. } => ErrorKind::QuorumNotReached,
        ClientError::TypeMismatch(_) => ErrorKind::TypeMismatch,
        ClientError::Refused(ApplyError::TooLarge { .. }) => ErrorKind::TooLarge,
        ClientError::Refused(_) => ErrorKind::Refused,
        ClientError::InvalidOptions(_) | ClientError::InvalidKey(_) => ErrorKind::Invalid,
        ClientError::Unavailable(why) if why.contains("in time") => ErrorKind::Timeout,
        ClientError::Unavailable(_) => ErrorKind::Unavailable,
        ClientError::Store(_) => ErrorKind::Storage,
        _ => ErrorKind::Unavailable,
    }
}

async fn nodes(core: &CoreHandle) -> Response {
    match core.ask(|reply| Event::Status { reply }).await {
        Ok(status) => Response::Nodes(status.nodes.into_iter().map(|n| n.addr).collect()),
        Err(_) => error(ErrorKind::Unavailable, "the node is shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_reply::BatchSlot;
    use std::sync::Arc;

    fn kind(answer: &wire::Answer) -> Option<(ErrorKind, &str)> {
        match answer {
            wire::Answer::Error(e) => Some((e.kind, e.message.as_str())),
            _ => None,
        }
    }

    /// A batch under one timer: answers come back in order, an answer that comes in
    /// after the first request's own wait but within the batch's longest is taken, a
    /// request the core never answers times out, one it dropped is "stopped", and a
    /// request refused at the edge keeps its refusal.
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_answers_in_order_under_one_timer() {
        let (replies, slots) = BatchReplies::new(4);
        let Ok([late, silent, refused_slot, dropped]) = <[BatchSlot; 4]>::try_from(slots) else {
            panic!("four slots for four requests");
        };
        drop((refused_slot, dropped));
        let refused = vec![None, None, Some(error(ErrorKind::Overloaded, "full")), None];
        let waiting = tokio::spawn({
            let replies = Arc::clone(&replies);
            async move { gather(&replies, refused, Duration::from_millis(50)).await }
        });
        // Answered after 10 ms (a request's own wait, say), within the batch's 50 ms.
        tokio::time::sleep(Duration::from_millis(20)).await;
        late.send(Ok(ClientReply::Applied));
        let out = waiting.await.expect("the batch task");
        drop(silent);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], wire::Answer::Applied);
        assert_eq!(
            kind(&out[1]),
            Some((ErrorKind::Timeout, "the node did not answer in time"))
        );
        assert_eq!(kind(&out[2]), Some((ErrorKind::Overloaded, "full")));
        assert_eq!(
            kind(&out[3]),
            Some((ErrorKind::Timeout, "the node stopped before answering"))
        );
    }
}
