//! The Cairn server: drives a `cairn-core` [`Node`] with the redb store
//! (`cairn-store`), QUIC peers (`cairn-net`) and the real clock, and serves the HTTP/JSON
//! API.
//!
//! ```text
//!   HTTP (axum tasks) ──┐                       ┌── peer sends (spawned cairn-net calls)
//!   QUIC peers (tasks) ─┼─▶ Event channel ─▶ core task (Node<RedbStore>) ─┤
//!   store writer ───────┘   (bounded)                                     └── client replies (oneshot)
//! ```
//!
//! The node lives in one task ([`core_loop`]) on the same runtime as the connections, so
//! a request handled on the core's worker reaches it and its answer leaves without waking
//! another thread; besides the runtime, a write touches the store's log writer and
//! applier threads. [`run`] starts it all from a validated [`ServerConfig`] and returns
//! after a graceful shutdown: stop accepting HTTP, finish requests in flight, close the
//! store (flush and mark it clean), close QUIC.

pub mod batch_reply;
pub mod client_api;
pub mod config;
pub mod core_loop;
pub mod http;
pub mod json;
pub mod metrics;
pub mod peer;
pub mod slow;
pub mod state;
pub mod status;
pub mod testing;
mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::{Config, Node};
use cairn_net::{Endpoint, NetConfig};
use cairn_ring::{Capacity, Layout, LayoutConfig, NodeId, NodeRole, Zone};
use cairn_store::{Options, RedbStore};

pub use config::{ConfigError, RawConfig, ServerConfig};
use core_loop::{Clock, Core, CoreHandle, Event};
use peer::{JoinRequest, Outbound, PeerHandler};
use state::StateDir;

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file in the data directory.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Certificates or QUIC.
    #[error("network: {0}")]
    Net(String),
    /// The store.
    #[error("store {file}: {reason}")]
    Store {
        /// The redb file.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// Joining a cluster.
    #[error("cannot join {seed}: {reason}")]
    Join {
        /// The node asked.
        seed: std::net::SocketAddr,
        /// Why it failed.
        reason: String,
    },
    /// The HTTP listener.
    #[error("http {addr}: {reason}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Runs a node until `shutdown` completes, then stops it gracefully.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = StateDir::open(&config.data)?;
    let (id, new_id) = state.node_id()?;
    tracing::info!(node = %status::node_name(id), name = %config.name, new = new_id, "node id");
    tracing::info!(data = %config.data.display(), "data directory");
    let identity = tls::identity(&config, &state)?;
    let endpoint = Endpoint::bind(config.listen, &identity, NetConfig::default())
        .map_err(|e| ServerError::Net(format!("cannot bind QUIC on {}: {e}", config.listen)))?;
    let listen = endpoint
        .local_addr()
        .map_err(|e| ServerError::Net(e.to_string()))?;
    tracing::info!(%listen, advertise = %config.advertise, "QUIC (peers: ALPN cairn-peer/4)");
    if config.loopback_forced {
        tracing::warn!(
            "no certificate configured: using a development CA and binding to 127.0.0.1 only"
        );
    }

    let layout = layout(&config, &state, id, &endpoint).await?;
    tracing::info!(
        version = layout.version().0,
        nodes = layout.nodes().count(),
        staged = layout.staged().len(),
        replication = layout.config().replication(),
        partitions = layout.config().partitions(),
        "layout"
    );

    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|e| ServerError::Http {
            addr: config.http,
            reason: e.to_string(),
        })?;
    let http_addr = listener.local_addr().map_err(|e| ServerError::Http {
        addr: config.http,
        reason: e.to_string(),
    })?;
    let CoreParts {
        core,
        handle,
        queue,
        metrics,
    } = core_parts(&config, state, id, layout, &endpoint)?;
    let core_task = tokio::spawn(core.run(queue));
    // A node whose core died serves nothing but would look alive: end the process
    // instead, so a supervisor restarts it (a new generation, no lost acknowledged write:
    // everything acknowledged is durable).
    let core_done = tokio::spawn(async move {
        if let Err(e) = core_task.await {
            tracing::error!(error = %e, "the core task failed; aborting");
            std::process::abort();
        }
    });

    let serving = {
        let endpoint = endpoint.clone();
        let handler = Arc::new(PeerHandler::new(handle.clone(), id, Arc::clone(&metrics)));
        tokio::spawn(async move { endpoint.serve(handler).await })
    };
    tracing::info!(http = %http_addr, "HTTP API ready");
    let app = http::AppState {
        core: handle.clone(),
        metrics,
        endpoint: endpoint.clone(),
        limit: Arc::new(tokio::sync::Semaphore::new(http::HTTP_REQUESTS_MAX)),
    };
    let signalled = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let signalled = signalled.clone();
        async move {
            shutdown.await;
            signalled.notify_one();
        }
    };
    let serve = axum::serve(listener, http::router(app)).with_graceful_shutdown(signal);
    let grace = config.shutdown_grace;
    tokio::select! {
        served = serve => {
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }
        () = async { signalled.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("HTTP requests still open after the grace period; closing them");
        }
    }
    tracing::info!("shutting down: HTTP closed, finishing requests in flight");
    let closed = handle
        .ask_blocking(|done| Event::Shutdown {
            grace: config.shutdown_grace,
            done,
        })
        .await;
    endpoint.close().await;
    serving.abort();
    let _ = core_done.await;
    match closed {
        Ok(Ok(())) => {
            tracing::info!("store flushed and marked clean; bye");
            Ok(())
        }
        Ok(Err(reason)) => Err(ServerError::Store {
            file: config.data.join("cairn.redb").display().to_string(),
            reason,
        }),
        Err(e) => Err(ServerError::Store {
            file: config.data.join("cairn.redb").display().to_string(),
            reason: format!("the core stopped before closing the store ({e:?})"),
        }),
    }
}

/// The node's core over this node's store, and the way into it: what [`run`] starts
/// (and what tests start without the rest of the server).
pub(crate) struct CoreParts {
    pub(crate) core: Core,
    pub(crate) handle: CoreHandle,
    pub(crate) queue: core_loop::CoreQueue,
    pub(crate) metrics: Arc<metrics::Metrics>,
}

/// Opens the store and starts a node (a new storage generation) over it, with `layout`.
pub(crate) fn core_parts(
    config: &ServerConfig,
    state: StateDir,
    id: NodeId,
    layout: Layout,
    endpoint: &Endpoint,
) -> Result<CoreParts, ServerError> {
    let (handle, queue) = core_loop::queue();
    let flag = Arc::new(AtomicBool::new(false));
    let store = open_store(config, &state, handle.clone(), flag.clone())?;
    let nonce = rand::random::<u64>();
    let mut node_config = Config::new(id, nonce);
    node_config.bucket_props.n = layout.config().replication();
    let clock = Clock {
        offset_ms: config.clock_offset_ms,
    };
    let node =
        Node::new(node_config, layout, store, clock.now_ms()).map_err(|e| ServerError::Store {
            file: state.store_file().display().to_string(),
            reason: e.to_string(),
        })?;
    tracing::info!(generation = node.generation(), "storage generation");
    if node.unsynced() {
        // Every new node says this too (a new cluster syncs in a moment); after a lost
        // disk it explains the refused reads.
        tracing::info!(
            "the store started empty or may have lost writes: this node refuses reads of \
             its partitions until it has synced each with the other replicas \
             (`syncing` in /v1/cluster)"
        );
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let runtime = tokio::runtime::Handle::current();
    let outbound = Outbound::new(id, endpoint.clone(), runtime, metrics.clone());
    let core = Core::new(
        node,
        clock,
        outbound,
        state,
        flag,
        config.name.clone(),
        config.http,
        metrics.clone(),
        config.slow_request,
    );
    Ok(CoreParts {
        core,
        handle,
        queue,
        metrics,
    })
}

fn open_store(
    config: &ServerConfig,
    state: &StateDir,
    core: CoreHandle,
    flag: Arc<AtomicBool>,
) -> Result<RedbStore, ServerError> {
    let mut opts = Options::new(rand::random::<u64>());
    opts.warm_bytes = config.warm_bytes;
    opts.wal_restart_bytes = cairn_store::spread_restart_bytes(rand::random::<u64>());
    opts.durability = match config.durability {
        config::Durability::Fsync => cairn_store::Durability::Fsync,
        config::Durability::None => cairn_store::Durability::None,
    };
    opts.on_persisted = Some(Arc::new(move || {
        // One wake-up at a time: the core clears the flag when it takes the tokens.
        if !flag.swap(true, Ordering::AcqRel) {
            let _ = core.send(Event::Persisted);
        }
    }));
    let file = state.store_file();
    let store = RedbStore::open(&file, opts).map_err(|e| ServerError::Store {
        file: file.display().to_string(),
        reason: e.to_string(),
    })?;
    let r = store.recovery();
    tracing::info!(
        file = %file.display(),
        durability = ?config.durability,
        created = r.created,
        previous_clean = r.previous_clean,
        replayed_log_batches = r.replayed,
        rotated = ?r.rotated,
        upgraded_from_format = ?r.upgraded_from,
        "store"
    );
    Ok(store)
}

/// The saved layout; or, on first start, the one the `--join` node answers with; or a
/// new cluster of this one node.
async fn layout(
    config: &ServerConfig,
    state: &StateDir,
    id: NodeId,
    endpoint: &Endpoint,
) -> Result<Layout, ServerError> {
    if let Some(layout) = state.load_layout()? {
        if config.join.is_some() {
            tracing::info!("already a cluster member (layout on disk): --join ignored");
        }
        return Ok(layout);
    }
    let zone = Zone::new(config.zone.clone()).map_err(|e| ConfigError(format!("zone: {e}")))?;
    let role = NodeRole::new(
        config.advertise.to_string(),
        zone,
        Capacity(config.capacity),
    );
    let layout = match config.join {
        Some(seed) => join(endpoint, seed, id, &role, config.join_patience).await?,
        None => {
            let shape = LayoutConfig::new(config.partitions, config.replication)
                .map_err(|e| ConfigError(e.to_string()))?;
            let mut layout = Layout::new(shape);
            layout
                .stage_node(id, role, id)
                .map_err(|e| ConfigError(format!("cannot stage this node: {e}")))?;
            match layout.commit() {
                Ok(_) => tracing::info!("started a new cluster"),
                Err(e) => {
                    tracing::warn!(error = %e, "new cluster staged but not committed: join more nodes, then `cairn cluster commit`")
                }
            }
            layout
        }
    };
    state.save_layout(&layout)?;
    Ok(layout)
}

async fn join(
    endpoint: &Endpoint,
    seed: std::net::SocketAddr,
    id: NodeId,
    role: &NodeRole,
    patience: Duration,
) -> Result<Layout, ServerError> {
    let req = JoinRequest {
        id: id.0,
        addr: role.addr.clone(),
        zone: role.zone.as_str().to_owned(),
        capacity: role.capacity.0,
    };
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match peer::join(endpoint, seed, &req).await {
            Ok(layout) => {
                tracing::info!(%seed, "joined: staged in the cluster's layout; commit to give this node partitions");
                return Ok(layout);
            }
            Err(reason) if tokio::time::Instant::now() >= deadline => {
                return Err(ServerError::Join { seed, reason });
            }
            Err(reason) => {
                tracing::info!(%seed, %reason, "join: retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}
