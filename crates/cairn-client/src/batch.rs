//! Many operations in one frame: [`Client::batch`].

use cairn_crdt::{CounterOp, FieldOp, MapOp, Op, RegisterOp, SetOp, Value};
use cairn_proto::client::{Action, Answer, KeyRequest, Request, Response, BATCH_MAX};

use crate::client::{Client, Options, Retry};
use crate::error::{Error, Result};

/// One operation of a batch; see [`Client::batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOp {
    op: Op,
    /// Answered `Ok(None)` once acknowledged, without the value ([`BatchOp::ack_only`]).
    ack_only: bool,
}

impl BatchOp {
    fn of(op: Op) -> BatchOp {
        BatchOp {
            op,
            ack_only: false,
        }
    }

    /// Increment a counter.
    pub fn increment(by: i64) -> BatchOp {
        BatchOp::of(Op::Counter(CounterOp::Increment(by)))
    }

    /// Add a member to a set.
    pub fn add(member: impl AsRef<[u8]>) -> BatchOp {
        BatchOp::of(Op::Set(SetOp::Add(vec![member.as_ref().to_vec()])))
    }

    /// Assign a register.
    pub fn assign(value: impl AsRef<[u8]>) -> BatchOp {
        BatchOp::of(Op::Register(RegisterOp::Assign(value.as_ref().to_vec())))
    }

    /// Increment a counter field of a map.
    pub fn map_increment(field: &str, by: i64) -> BatchOp {
        BatchOp::of(Op::Map(MapOp {
            updates: vec![(field.to_owned(), FieldOp::Increment(by))],
            context: None,
        }))
    }

    /// This operation answered by its acknowledgement alone (`Ok(None)`), not the value
    /// after it: cheaper when the value is a large set or map nobody looks at.
    pub fn ack_only(self) -> BatchOp {
        BatchOp {
            ack_only: true,
            ..self
        }
    }

    fn action(&self) -> Action {
        let bytes = cairn_proto::encode_op(&self.op);
        if self.ack_only {
            Action::Apply(bytes)
        } else {
            Action::Update(bytes)
        }
    }
}

/// One key of a batch: `(bucket, key, operation)`; no operation reads the key.
pub type BatchItem = (String, String, Option<BatchOp>);

impl Client {
    /// Runs up to [`BATCH_MAX`] operations in one frame (one round trip); the node runs
    /// them concurrently. Each gets its own result, in order: the value after an update
    /// (`None` for an [`ack_only`](BatchOp::ack_only) one), or as read. Like single
    /// writes, a batch with updates is not resent once sent.
    pub async fn batch(
        &self,
        items: Vec<BatchItem>,
        options: Options,
    ) -> Result<Vec<Result<Option<Value>>>> {
        if items.len() > BATCH_MAX {
            return Err(Error::TooLarge(format!(
                "a batch holds at most {BATCH_MAX} operations"
            )));
        }
        let options = options.over(self.default_options());
        let writes = items.iter().any(|(_, _, op)| op.is_some());
        let count = items.len();
        let requests = items
            .into_iter()
            .map(|(bucket, key, op)| KeyRequest {
                bucket: bucket.into_bytes(),
                key: key.into_bytes(),
                action: op.as_ref().map_or(Action::Read, BatchOp::action),
                options: options.wire(),
            })
            .collect();
        let retry = if writes {
            Retry::IfNeverSent
        } else {
            Retry::Always
        };
        let timeout = options.timeout.unwrap_or(crate::client::DEFAULT_TIMEOUT);
        match self.send(&Request::Batch(requests), retry, timeout).await? {
            Response::Batch(answers) if answers.len() == count => {
                Ok(answers.into_iter().map(answer).collect())
            }
            Response::Batch(answers) => Err(Error::Protocol(format!(
                "a batch of {count} was answered with {} results",
                answers.len()
            ))),
            Response::Error(e) => Err(e.into()),
            other => Err(Error::Protocol(format!(
                "a batch was answered with {other:?}"
            ))),
        }
    }
}

fn answer(a: Answer) -> Result<Option<Value>> {
    match a {
        Answer::Value(bytes) => Response::value(&bytes).map_err(|e| Error::Protocol(e.to_string())),
        Answer::Deleted | Answer::Applied => Ok(None),
        Answer::Error(e) => Err(e.into()),
    }
}
