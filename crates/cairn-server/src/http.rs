//! The HTTP/JSON API v1 (axum). Shapes are in the README and `docs/http-api.md`; errors
//! are always `{"error": {"code", "message"}}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_core::{
    ClientError, ClientOp, ClientReply, ClientRequest, Quorum, RequestOptions, BUCKET_BYTES_MAX,
    KEY_BYTES_MAX, TIMEOUT_MS_MAX,
};
use cairn_crdt::{Op, Value, ValueType};
use cairn_net::Endpoint;
use cairn_proto::client::ErrorKind;
use serde_json::{json, Value as JsonValue};

use crate::core_loop::{CoreHandle, Event, Refused};
use crate::json::{self, JsonError};
use crate::metrics::Metrics;

/// Largest request body.
pub const BODY_BYTES_MAX: usize = 8 << 20;

/// Most HTTP requests served at once (beyond it: `503 overloaded`), which also bounds
/// the memory bodies take: `HTTP_REQUESTS_MAX * BODY_BYTES_MAX`.
pub const HTTP_REQUESTS_MAX: usize = 256;

/// Longest a client may take to send its body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How much longer the HTTP layer waits than the request's own timeout before it
/// answers 504 itself (the coordinator normally answers first).
const REPLY_SLACK: Duration = Duration::from_secs(2);

/// Default request timeout when the request names none (the core's bucket default).
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The way into the core.
    pub core: CoreHandle,
    /// The request path's counters.
    pub metrics: Arc<Metrics>,
    /// The QUIC endpoint (for its connection count).
    pub endpoint: Endpoint,
    /// Permits for requests in flight ([`HTTP_REQUESTS_MAX`]).
    pub limit: Arc<tokio::sync::Semaphore>,
}

async fn limit(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match app.limit.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::from(Refused::Overloaded).into_response(),
    }
}

impl axum::extract::FromRef<AppState> for CoreHandle {
    fn from_ref(app: &AppState) -> CoreHandle {
        app.core.clone()
    }
}

/// The router.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route(
            "/v1/buckets/{bucket}/keys/{key}",
            get(read).post(update).delete(delete),
        )
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/plan", get(plan))
        .route("/v1/cluster/commit", post(commit))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(axum::middleware::from_fn_with_state(app.clone(), limit))
        .with_state(app)
}

/// An API error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonError> for ApiError {
    fn from(e: JsonError) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Overloaded => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the node's request queue is full; retry with backoff",
            ),
            Refused::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the node is shutting down",
            ),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        let status = match crate::client_api::classify(&e) {
            ErrorKind::QuorumNotReached | ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::TypeMismatch | ErrorKind::Refused => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Storage => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, crate::client_api::code(&e), e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

/// A bucket and a key.
type ObjectName = (Box<[u8]>, Box<[u8]>);

/// Bucket and key from the path, checked against their bounds.
fn object(path: Result<Path<(String, String)>, PathRejection>) -> Result<ObjectName, ApiError> {
    let Path((bucket, key)) = path.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    for (what, text, max) in [
        ("bucket", &bucket, BUCKET_BYTES_MAX),
        ("key", &key, KEY_BYTES_MAX),
    ] {
        if text.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("{what} is {} bytes; at most {max}", text.len()),
            ));
        }
        if text.is_empty() {
            return Err(ApiError::bad_request(format!("{what} is empty")));
        }
    }
    Ok((bucket.into_bytes().into(), key.into_bytes().into()))
}

/// `r`, `w`, `pr`, `pw`, `timeout_ms` (and `context` for deletes).
fn options(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    allow: &[&str],
) -> Result<(RequestOptions, HashMap<String, String>), ApiError> {
    let Query(params) =
        query.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let mut opts = RequestOptions::default();
    for (name, value) in &params {
        let quorum = || {
            Quorum::parse(value).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name}={value:?}: expected a number, one, quorum or all"
                ))
            })
        };
        match name.as_str() {
            "r" => opts.r = Some(quorum()?),
            "w" => opts.w = Some(quorum()?),
            "pr" => opts.pr = Some(quorum()?),
            "pw" => opts.pw = Some(quorum()?),
            "timeout_ms" => {
                let ms: u64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("timeout_ms={value:?}: expected milliseconds"))
                })?;
                if ms == 0 || ms > TIMEOUT_MS_MAX {
                    return Err(ApiError::bad_request(format!(
                        "timeout_ms must be 1..={TIMEOUT_MS_MAX}"
                    )));
                }
                opts.timeout_ms = Some(ms);
            }
            other if allow.contains(&other) => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    Ok((opts, params))
}

/// Runs one request through the core and waits for its answer.
async fn run(core: &CoreHandle, request: ClientRequest) -> Result<ClientReply, ApiError> {
    let timeout = Duration::from_millis(request.options.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS))
        + REPLY_SLACK;
    let answer = core.ask(|reply| Event::Client { request, reply });
    match tokio::time::timeout(timeout, answer).await {
        Ok(result) => Ok(result??),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the node did not answer in time",
        )),
    }
}

fn value_response(value: Option<Value>) -> ApiResult {
    let Some(value) = value else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no value at this key",
        ));
    };
    let shown = json::value_json(&value)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "counter_overflow", e.0))?;
    let body = json!({
        "type": value.value_type().name(),
        "value": shown,
        "context": json::value_context(&value),
    });
    Ok(Json(body).into_response())
}

async fn read(
    State(core): State<CoreHandle>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let (bucket, key) = object(path)?;
    let (options, _) = options(query, &[])?;
    let request = ClientRequest {
        bucket,
        key,
        op: ClientOp::Read,
        options,
    };
    match run(&core, request).await? {
        ClientReply::Value(v) => value_response(v),
        ClientReply::Deleted => value_response(None),
        ClientReply::Applied => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a read was answered as an update",
        )),
    }
}

/// The parsed body of an update.
fn update_body(bytes: &[u8]) -> Result<(ValueType, Vec<Op>), ApiError> {
    let body: JsonValue = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    let obj = body.as_object().ok_or_else(|| {
        ApiError::bad_request("body must be {\"type\": T, \"op\": OP, \"context\": C?}")
    })?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["type", "op", "context"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!("unknown body field {k:?}")));
    }
    let ty = obj
        .get("type")
        .and_then(JsonValue::as_str)
        .ok_or_else(|| ApiError::bad_request("body needs a \"type\""))?;
    let ty = json::value_type(ty)?;
    let op = obj
        .get("op")
        .ok_or_else(|| ApiError::bad_request("body needs an \"op\""))?;
    let context = match obj.get("context") {
        None | Some(JsonValue::Null) => None,
        Some(JsonValue::String(s)) => Some(json::decode_context(s)?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "context must be the string a read returned",
            ))
        }
    };
    Ok((ty, json::parse_ops(ty, op, context)?))
}

async fn body_bytes(body: Body) -> Result<Vec<u8>, ApiError> {
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, to_bytes(body, BODY_BYTES_MAX))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body did not arrive in time",
            )
        })?;
    read.map(|b| b.to_vec()).map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request bodies are at most {BODY_BYTES_MAX} bytes"),
        )
    })
}

async fn update(
    State(core): State<CoreHandle>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Body,
) -> ApiResult {
    let (bucket, key) = object(path)?;
    let (mut options, params) = options(query, &["ack_only"])?;
    options.ack_only = match params.get("ack_only").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "ack_only={other:?}: expected true or false"
            )))
        }
    };
    let bytes = body_bytes(body).await?;
    let (_, ops) = update_body(&bytes)?;
    let mut last = None;
    for op in ops {
        let request = ClientRequest {
            bucket: bucket.clone(),
            key: key.clone(),
            op: ClientOp::Update(op),
            options,
        };
        last = match run(&core, request).await? {
            ClientReply::Value(v) => v,
            ClientReply::Deleted | ClientReply::Applied => None,
        };
    }
    if options.ack_only {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    value_response(last)
}

async fn delete(
    State(core): State<CoreHandle>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let (bucket, key) = object(path)?;
    let (options, params) = options(query, &["context"])?;
    if let Some(ctx) = params.get("context") {
        // Checked so a client learns of a garbled context; the delete itself removes
        // what the replicas it reads have observed (see ARCHITECTURE.md).
        json::decode_context(ctx)?;
    }
    let request = ClientRequest {
        bucket,
        key,
        op: ClientOp::Delete,
        options,
    };
    run(&core, request).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn cluster(State(core): State<CoreHandle>) -> ApiResult {
    let status = core.ask(|reply| Event::Status { reply }).await?;
    Ok(Json(status).into_response())
}

async fn plan(State(core): State<CoreHandle>) -> ApiResult {
    commit_or_plan(&core, true).await
}

async fn commit(State(core): State<CoreHandle>) -> ApiResult {
    commit_or_plan(&core, false).await
}

async fn commit_or_plan(core: &CoreHandle, dry_run: bool) -> ApiResult {
    let summary = core
        .ask(|reply| Event::Commit { dry_run, reply })
        .await?
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "layout", e.to_string()))?;
    Ok(Json(summary).into_response())
}

async fn health(State(core): State<CoreHandle>) -> ApiResult {
    let status = core.ask(|reply| Event::Status { reply }).await?;
    Ok(Json(json!({"status": "ok", "node": status.node, "name": status.name, "layout_version": status.layout_version})).into_response())
}

async fn metrics(State(app): State<AppState>) -> ApiResult {
    let status = app.core.ask(|reply| Event::Status { reply }).await?;
    let text = app.metrics.render(
        &status,
        app.endpoint.connection_count(),
        app.endpoint.accepted_datagrams(),
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
