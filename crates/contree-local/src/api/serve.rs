//! The accept loop: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port.
//!
//! Why not `axum::serve`: it cannot tune HTTP/2, and hyper's default of 200 concurrent streams
//! per connection is too few here. Every run a client follows holds one event stream for its
//! whole life, so an SDK that multiplexes 1,000 runs in flight over one h2c connection would
//! have 800 of them (spawns and stdin writes included) queued behind streams that only end
//! when their runs do. The limit below is above what the run queue can hold.
//!
//! HTTP/1.1 clients still get one connection per request in flight; HTTP/2 clients
//! (`contree::ClientBuilder::http2_prior_knowledge`) multiplex everything on one socket.

use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::listener::ReservingListener;

/// Streams one HTTP/2 connection may carry at once: above the deepest run queue
/// (`--max-queued-runs`, at most 4,096 by default) plus the runs executing, so a client that
/// follows every queued run on one connection never waits for a stream.
pub(crate) const MAX_STREAMS_PER_CONNECTION: u32 = 8192;

/// Largest HTTP/2 frame the server accepts: fewer frames (and less per-frame work) for file
/// uploads than the protocol's 16 KiB default.
const MAX_FRAME_SIZE: u32 = 256 * 1024;

/// How long open connections get to finish after the stop signal.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` fires, then lets open connections finish (bounded).
pub(crate) async fn serve(listener: TcpListener, reserve: u64, app: Router, stop: tokio::sync::oneshot::Receiver<()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .max_frame_size(MAX_FRAME_SIZE)
        .adaptive_window(true);
    let mut listener = ReservingListener::new(listener, reserve);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        // Without TCP_NODELAY, small writes (an SSE frame, a short JSON body) wait for the
        // client's delayed ACK: ~40 ms per request.
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::debug!("connections still open after the drain period; closing them");
    }
}
