//! How many connections a client opens: bounded by `max_connections` over HTTP/1.1, one over
//! h2c, in both flavors, with many runs in flight against a real contree-local.
//!
//! The HTTP/1.1 bound is twice `max_connections`: at most that many requests are in flight,
//! and the pool keeps at most that many idle, but hyper's pool may open a connection for a
//! request while another is on its way back to the pool (it then pools the new one).
//!
//! Over h2c one connection carries the streams, but hyper's pool opens another while a burst
//! of new streams waits for the first one to accept more: a handful, never one per run.
#![cfg(all(feature = "async", feature = "blocking"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Established client-side TCP connections of this process to `port` (the server runs in
/// this process too: its accepted sockets have `port` as their local port, not the remote).
fn client_connections_to(port: u16) -> usize {
    let Ok(table) = std::fs::read_to_string("/proc/self/net/tcp") else { return 0 };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let remote_port =
                cols.get(2).and_then(|r| r.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && cols.get(3) == Some(&"01")
        })
        .count()
}

/// Samples [`client_connections_to`] until dropped; the maximum seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(port: u16) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 10 minutes of samples even if the test never stops it.
            for _ in 0..120_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                m.fetch_max(client_connections_to(port), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Sampler { stop, max, thread: Some(thread) }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

const RUNS: usize = 48;

/// Connections an h2c client may open for [`RUNS`] runs (see the module docs).
const H2C_MAX: usize = 6;

/// A server of the test's own: the connections counted are this test's only.
async fn own_server() -> contree_local::LocalServer {
    contree_local::LocalServer::start(contree_local::LocalConfig::default()).await.expect("start contree-local")
}

fn own_server_blocking() -> contree_local::LocalServer {
    contree_local::LocalServer::start_blocking(contree_local::LocalConfig::default()).expect("start contree-local")
}

async fn async_runs_in_flight(client: contree::Contree, port: u16) -> usize {
    let run = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("image").shell("sleep 0.3; echo done");
    let sampler = Sampler::start(port);
    let tasks: Vec<_> = (0..RUNS).map(|_| tokio::spawn(run.clone().wait())).collect();
    for t in tasks {
        let done = t.await.expect("task").expect("run");
        assert_eq!(done.stdout_text().expect("stdout"), "done\n");
    }
    sampler.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_stays_within_max_connections_and_every_run_succeeds() {
    let server = own_server().await;
    // 12 connections: 8 kept for short requests, so at most 4 event streams; the other runs
    // are followed by polling.
    let client = contree::Contree::builder()
        .base_url(server.base_url())
        .token(server.token())
        .http_version(contree::HttpVersion::Http1Only)
        .max_connections(12)
        .build()
        .expect("client");
    let max = async_runs_in_flight(client, server.local_addr().port()).await;
    assert!(max >= 2, "the sampler saw {max} connections: it is not measuring");
    assert!(max <= 2 * 12, "{RUNS} runs in flight opened {max} connections; the bound is 2 x 12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_client_carries_every_run_on_one_connection() {
    let server = own_server().await;
    let client = contree::Contree::builder().config(server.client_config()).build().expect("client");
    let max = async_runs_in_flight(client, server.local_addr().port()).await;
    assert!(max >= 1, "the sampler saw no connection: it is not measuring");
    assert!(max <= H2C_MAX, "{RUNS} runs in flight over h2c used {max} connections");
}

#[test]
fn a_blocking_http1_client_stays_within_max_connections() {
    let server = own_server_blocking();
    let client = contree::blocking::ContreeSync::builder()
        .base_url(server.base_url())
        .token(server.token())
        .max_connections(12)
        .build()
        .expect("client");
    let run = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("image").shell("sleep 0.3; echo done");
    let sampler = Sampler::start(server.local_addr().port());
    let threads: Vec<_> = (0..RUNS)
        .map(|_| {
            let run = run.clone();
            std::thread::spawn(move || run.wait())
        })
        .collect();
    for t in threads {
        let done = t.join().expect("thread").expect("run");
        assert_eq!(done.stdout_text().expect("stdout"), "done\n");
    }
    let max = sampler.finish();
    assert!(max >= 2, "the sampler saw {max} connections: it is not measuring");
    assert!(max <= 2 * 12, "{RUNS} runs in flight opened {max} connections; the bound is 2 x 12");
}

#[test]
fn a_blocking_h2c_client_carries_every_run_on_one_connection() {
    let server = own_server_blocking();
    let client = contree::blocking::ContreeSync::builder().config(server.client_config()).build().expect("client");
    let run = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("image").shell("sleep 0.3; echo done");
    let sampler = Sampler::start(server.local_addr().port());
    let threads: Vec<_> = (0..RUNS)
        .map(|_| {
            let run = run.clone();
            std::thread::spawn(move || run.wait())
        })
        .collect();
    for t in threads {
        t.join().expect("thread").expect("run");
    }
    let max = sampler.finish();
    assert!(max >= 1, "the sampler saw no connection: it is not measuring");
    assert!(max <= H2C_MAX, "{RUNS} runs in flight over h2c used {max} connections");
}

#[test]
fn a_connection_bound_that_leaves_no_stream_is_refused_before_any_request() {
    let err = contree::Contree::builder()
        .base_url("http://127.0.0.1:9")
        .token("t")
        .max_connections(contree::core::config::RESERVED_FOR_REQUESTS)
        .build()
        .expect_err("too small a bound");
    assert!(err.is_invalid_argument(), "{err}");
    assert!(err.to_string().contains("max_connections"), "{err}");
}
