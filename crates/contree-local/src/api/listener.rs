//! The accept loop's side of descriptor accounting: new connections wait in the kernel's
//! backlog while the server is short of descriptors, so that runs holding a slot can always
//! start.
//!
//! Every accepted connection costs a descriptor, and a burst of clients (or clients that
//! replay a 429 every second) can take every free one as soon as it is freed: measured under
//! `ulimit -n 1024` with 1,000 clients, the accept loop won every race against the runs that
//! had their slot, which waited for descriptors until they gave up and ended FAILED. A
//! connection that is not accepted yet costs the server nothing, and its client only sees a
//! slower connect, so accepting pauses while fewer than [`reserve`] descriptors are free.
//!
//! A paused accept loop alone would starve: the connections already accepted stay open as
//! idle keep-alives in their clients' pools, holding every descriptor above the reserve
//! while new connections wait in the backlog (seen: a spawn's connect waited past its
//! client's 120 s timeout). So while descriptors are scarce, answers also carry
//! `Connection: close` ([`close_when_short`]): each connection serves one request and frees
//! its descriptor, and the backlog keeps moving.

use std::time::Duration;

use axum::serve::Listener;

use crate::fds;

/// How often a paused accept loop looks again for free descriptors.
const PAUSE: Duration = Duration::from_millis(10);

/// Descriptors the accept loop leaves free: enough for every run slot to start a sandbox at
/// once, plus the server's own margin (SQLite, layers read for `/inspect`, logging).
pub(crate) fn reserve(max_concurrent_runs: usize) -> u64 {
    fds::FDS_PER_RUN.saturating_mul(max_concurrent_runs as u64).saturating_add(fds::FDS_MARGIN)
}

/// A [`Listener`] that accepts only while at least `reserve` descriptors are free.
pub(crate) struct ReservingListener<L> {
    inner: L,
    reserve: u64,
}

impl<L> ReservingListener<L> {
    /// Wraps `inner`, keeping `reserve` descriptors (see [`reserve`]) out of its reach.
    pub(crate) fn new(inner: L, reserve: u64) -> Self {
        Self { inner, reserve }
    }
}

impl<L: Listener> Listener for ReservingListener<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let mut paused = false;
        while !fds::has_headroom(self.reserve) {
            if !paused {
                paused = true;
                tracing::debug!(reserve = self.reserve, free = ?fds::free(), "accepting paused: short of descriptors");
            }
            tokio::time::sleep(PAUSE).await;
        }
        self.inner.accept().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Adds `Connection: close` to `resp` while fewer than twice the `reserve` descriptors are
/// free, so that clients don't keep connections idle on a server that needs the descriptors
/// (see the [module docs](self)). Far from the limit this is a cached comparison.
pub(crate) async fn close_when_short(mut resp: axum::response::Response, reserve: u64) -> axum::response::Response {
    if !fds::has_headroom(reserve.saturating_mul(2)) {
        resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_covers_every_slot_and_the_margin() {
        assert_eq!(reserve(0), fds::FDS_MARGIN);
        assert_eq!(reserve(4), 4 * fds::FDS_PER_RUN + fds::FDS_MARGIN);
        assert_eq!(reserve(usize::MAX), u64::MAX);
        // The run queue is sized from what is left after the same reserve (and one more run),
        // so a full queue's followers fit next to it.
        let limit = 1024;
        let queue = fds::queue_budget(limit, 4) as u64;
        assert!(reserve(4) + 2 * queue <= limit, "queue of {queue} does not fit beside the reserve");
    }

    #[tokio::test]
    async fn accepts_while_descriptors_are_free() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = ReservingListener::new(tcp, 1);
        assert_eq!(listener.local_addr().unwrap(), addr);
        let connect = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (_io, peer) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.unwrap();
        let client = connect.await.unwrap().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }

    #[tokio::test]
    async fn answers_close_their_connection_only_when_descriptors_are_scarce() {
        let ok = || axum::response::Response::new(axum::body::Body::empty());
        let kept = close_when_short(ok(), 1).await;
        assert!(kept.headers().get(axum::http::header::CONNECTION).is_none());
        let closed = close_when_short(ok(), u64::MAX).await;
        assert_eq!(closed.headers()[axum::http::header::CONNECTION], "close");
    }

    #[tokio::test]
    async fn pauses_while_the_reserve_is_not_free() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        // More than any descriptor limit: the loop must not accept.
        let mut listener = ReservingListener::new(tcp, u64::MAX);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(waited.is_err(), "a connection was accepted with no descriptors to spare");
    }
}
