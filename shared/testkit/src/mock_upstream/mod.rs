//! The mock upstream's lifecycle: binding, serving in a background task, and the handle a test
//! holds to read counters and stop the server.
//!
//! Fault models (chosen by prefix of the request's `model`, any `-suffix` allowed):
//! `mock-slow-<ms>`, `mock-429-<n>`, `mock-429ms-<n>`, `mock-quota`, `mock-500-<n>`, `mock-400`,
//! `mock-hang`, `mock-hangfirst-<n>`, `mock-bad-json`, `mock-truncated`, `mock-sse-cut`, `mock-drip-<ms>`,
//! `mock-chaos-<ms>-<seed>` (faults drawn at random per call), `mock-flexbusy-<n>` (flex-tier
//! calls refused with 429 "resource unavailable"); every other model echoes the last user
//! message. The same faults apply on `/v1/completions` (the prompt echoed), `/v1/embeddings`
//! (deterministic vectors, `dimensions` and `encoding_format` honoured), `/v1/moderations` and
//! `/v1/responses` (JSON or typed SSE events, `response.created` ... `response.completed`, with
//! sequence numbers). `/v1/files` and `/v1/batches` run provider batches, with faults of their
//! own (see `batch_api`). `GET /v1/models` lists a fixed set; `GET /_stats` and `POST /_reset`
//! expose the counters.

mod batch_api;
mod endpoints;
mod fault;
mod handlers;
mod responses;
mod stats;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub use stats::StatsSnapshot;

use stats::Stats;

/// A running mock upstream. Dropping it (or calling [`MockUpstream::shutdown`]) stops it from
/// accepting connections and closes idle ones; requests in flight run to their end.
#[derive(Debug)]
pub struct MockUpstream {
    /// The bound address, with the real port when port 0 was asked for.
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    /// Never sent on: dropping it is the shutdown signal, which makes `Drop` free.
    _stop: oneshot::Sender<()>,
    listener_closed: oneshot::Receiver<()>,
}

/// Binds `addr` (port 0 for an ephemeral port) and serves the mock in a background task of the
/// current tokio runtime.
pub async fn spawn_mock_upstream(addr: SocketAddr) -> io::Result<MockUpstream> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(Stats::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let (closed_tx, listener_closed) = oneshot::channel::<()>();
    let listener = NoDelayListener {
        inner: listener,
        _closed: closed_tx,
    };
    let serve = axum::serve(listener, handlers::router(Arc::clone(&stats))).with_graceful_shutdown(
        async move {
            // Resolves with an error when the handle drops its sender, which is the signal.
            let _ = stopped.await;
        },
    );
    tokio::spawn(async move {
        if let Err(err) = serve.await {
            eprintln!("prism mock upstream on {addr} stopped serving: {err}");
        }
    });
    Ok(MockUpstream {
        addr,
        stats,
        _stop: stop,
        listener_closed,
    })
}

impl MockUpstream {
    /// The OpenAI base URL clients should use: `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received for `model`, counted before any delay or fault.
    pub fn hits(&self, model: &str) -> u64 {
        self.stats.hits(model)
    }

    /// Requests for `model` whose handling was dropped before it finished (the client left).
    pub fn aborted(&self, model: &str) -> u64 {
        self.stats.aborted(model)
    }

    /// Requests for `model` answered in full (the client got a result it was billed for).
    pub fn finished(&self, model: &str) -> u64 {
        self.stats.finished(model)
    }

    /// Chat requests for `model` that asked for the flex tier.
    pub fn flex_hits(&self, model: &str) -> u64 {
        self.stats.flex_hits(model)
    }

    /// Calls to the Files or Batch API of one kind: `files.create`, `files.content`,
    /// `files.delete`, `batches.create`, `batches.retrieve`, `batches.list`, `batches.cancel`.
    pub fn batch_api_calls(&self, kind: &str) -> u64 {
        self.stats.batch_api_calls(kind)
    }

    /// All counters, as `GET /_stats` reports them.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Forgets all counters, like `POST /_reset`.
    pub fn reset(&self) {
        self.stats.reset();
    }

    /// Stops accepting connections and returns once the port is closed, so a test can rely on
    /// the next connection attempt being refused.
    pub async fn shutdown(self) {
        let Self {
            _stop: stop,
            listener_closed,
            ..
        } = self;
        drop(stop);
        // Resolves with an error when the listener is dropped, which is what is awaited here.
        let _ = listener_closed.await;
    }
}

/// The TCP listener, plus two things axum's own lacks: replies go out without Nagle's delay, and
/// its drop tells [`MockUpstream::shutdown`] that the port is closed.
struct NoDelayListener {
    inner: TcpListener,
    _closed: oneshot::Sender<()>,
}

impl axum::serve::Listener for NoDelayListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        // Small replies would otherwise wait on delayed ACKs and the latency bench would measure
        // that; failing to set it only costs latency, so the connection is served regardless.
        let _ = io.set_nodelay(true);
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
