//! # contree-local
//!
//! A real Contree server on your machine: it speaks the Contree v1 HTTP API and runs every
//! command in a sandbox (Linux namespaces + overlayfs) whose filesystem becomes a new,
//! addressable image — so images branch like git, offline, with no account.
//!
//! Start one in-process (tests, examples) with [`LocalServer::start`], or run the
//! `contree-local` binary. It needs Linux and root (or `CAP_SYS_ADMIN`); when the host can't
//! sandbox, starting fails with a clear error and nothing is ever run unsandboxed.
//!
//! ```no_run
//! use contree_local::{LocalConfig, LocalServer};
//!
//! # async fn demo() -> contree_core::Result<()> {
//! let server = LocalServer::start(LocalConfig::default()).await?;
//! println!("Contree API at {} (token {})", server.base_url(), server.token());
//! // Point a Contree client at `server.base_url()` with `server.token()`: the built-in image
//! // is `tag:contree-local/base:latest`.
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Outside an async runtime (blocking tests), use [`LocalServer::start_blocking`], which runs
//! the server on a runtime of its own.
#![deny(missing_docs)]

mod api;
pub mod config;
mod data_dir;
mod fds;
mod ops;

mod images;
mod layer_quota;
mod limits;
// Entry points that only the sandbox's own tests use (spawn with a callback, wait, discard)
// are dead code in the server build.
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
mod sandbox;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use contree_core::{Error, Result};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{DEFAULT_MAX_IMPORT_BYTES, DEFAULT_MAX_QUEUED_RUNS, LocalConfig, RunLimit};
pub use images::base::BASE_IMAGE_TAG;
pub use sandbox::IdRange;

/// How long [`LocalServer::shutdown`] waits for killed runs to be recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running local server. Dropping it stops the server (killing running commands); call
/// [`shutdown`](LocalServer::shutdown) to also wait until everything is recorded.
pub struct LocalServer {
    base_url: String,
    addr: SocketAddr,
    token: String,
    data_dir: PathBuf,
    ops: Arc<ops::Ops>,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The runtime of a server started with [`LocalServer::start_blocking`].
    runtime: Option<tokio::runtime::Runtime>,
    /// A temporary data dir, removed after everything else (declared last: dropped last).
    _temp_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("base_url", &self.base_url)
            .field("data_dir", &self.data_dir)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl LocalServer {
    /// Starts a server (from inside a tokio runtime): checks that the host can sandbox,
    /// opens (or creates) the data dir and makes it private to the server's user (see
    /// [`LocalConfig::data_dir`]), marks operations interrupted by a previous stop as
    /// FAILED, prepares the built-in base image, and listens on `config.bind`.
    ///
    /// Errors: `InvalidArgument` for a bad config field, `Config` when the host can't sandbox
    /// commands (the message says what is missing), `Io` when the data dir or the address
    /// can't be used.
    ///
    /// It also raises the process's soft `RLIMIT_NOFILE` to the hard limit (every connection
    /// and every starting run needs descriptors) and logs both figures; spawns that arrive
    /// while descriptors are still short are answered 429 with `Retry-After`.
    pub async fn start(config: LocalConfig) -> Result<LocalServer> {
        config.validate()?;
        let max_queued_runs = raise_fd_limit(config.max_concurrent_runs, config.max_queued_runs);
        let (temp_dir, data_dir) = match &config.data_dir {
            Some(d) => {
                data_dir::create_private(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("contree-local-")
                    .tempdir()
                    .map_err(|e| Error::io("cannot create a temporary data dir", e))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        // Relative data dirs would change meaning inside the sandbox's mount namespace.
        let data_dir = std::fs::canonicalize(&data_dir)
            .map_err(|e| Error::io(format!("cannot resolve {}", data_dir.display()), e))?;

        let setup_dir = data_dir.clone();
        let ids = config.id_range;
        let limit_config = config.clone();
        let Prepared { store, base, cgroups, layer_quota } =
            tokio::task::spawn_blocking(move || prepare(&setup_dir, &ids, &limit_config))
                .await
                .map_err(|e| Error::config(format!("server setup crashed: {e}")))??;

        let token = config.token.clone().unwrap_or_else(generate_token);
        let listener = listen(config.bind).map_err(|e| Error::io(format!("cannot listen on {}", config.bind), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("cannot read the listening address", e))?;

        let ops = ops::Ops::new(
            store,
            base,
            data_dir.clone(),
            config.id_range,
            ops::RunLimits {
                default_timeout: config.default_run_timeout,
                max_timeout: config.max_run_timeout,
                max_concurrent_runs: config.max_concurrent_runs,
                max_queued_runs,
                networking: config.networking,
                networking_by_default: config.networking && networking_helper_present(),
            },
            cgroups,
            layer_quota,
            ops::ImportSettings {
                insecure_registries: config.insecure_registries.clone(),
                max_bytes: config.max_import_bytes,
                slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_runs)),
            },
        );
        let reserve = api::listener::reserve(config.max_concurrent_runs);
        let state = api::AppState {
            ops: ops.clone(),
            token_uuid: api::token_uuid(&token),
            keepalive: config.keepalive_interval,
            fd_reserve: reserve,
        };
        let app = api::router(state, api::auth::TokenCheck::new(&token));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve::serve(listener, reserve, app, stop_rx));
        tracing::info!(%addr, data_dir = %data_dir.display(), "contree-local listening");
        Ok(LocalServer {
            base_url: format!("http://{addr}"),
            addr,
            token,
            data_dir,
            ops,
            stop_tx: Some(stop_tx),
            task: Some(task),
            runtime: None,
            _temp_dir: temp_dir,
        })
    }

    /// Like [`start`](LocalServer::start), for callers outside any async runtime (blocking
    /// clients and their tests): the server runs on a runtime of its own, stopped when the
    /// handle is dropped.
    ///
    /// Must not be called from within a tokio runtime (use `start` there).
    pub fn start_blocking(config: LocalConfig) -> Result<LocalServer> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::config(
                "LocalServer::start_blocking was called inside a tokio runtime; use LocalServer::start().await",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("contree-local")
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the server's runtime", e))?;
        let mut server = runtime.block_on(LocalServer::start(config))?;
        server.runtime = Some(runtime);
        Ok(server)
    }

    /// The server's base URL, e.g. `http://127.0.0.1:41234` (the API is under `/v1`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A client configuration for this server: its URL and token, and HTTP/2 with prior
    /// knowledge, so one connection carries every request and event stream (the server speaks
    /// HTTP/1.1 and h2c on the same port).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = contree_local::LocalServer::start(contree_local::LocalConfig::default()).await?;
    /// let config = server.client_config();
    /// assert_eq!(config.base_url, server.base_url());
    /// // contree::Contree::builder().config(config).build()?
    /// # Ok(()) }
    /// ```
    pub fn client_config(&self) -> contree_core::ContreeConfig {
        let mut config =
            contree_core::ContreeConfig::default().with_base_url(&self.base_url).with_token(self.token.as_str());
        config.http_version = contree_core::HttpVersion::Http2PriorKnowledge;
        config
    }

    /// Where the server keeps its state.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server: no new requests, running commands are killed (their operations end
    /// FAILED), and returns once that is recorded (bounded wait) and the listener is closed.
    pub async fn shutdown(mut self) {
        self.ops.shutdown(SHUTDOWN_GRACE).await;
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // Open event streams end with their operations; give connections a moment.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.ops.kill_all();
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_err() {
                // Our own runtime, dropped from plain code: let the killed runs get recorded.
                let ops = self.ops.clone();
                let task = self.task.take();
                rt.block_on(async move {
                    ops.shutdown(SHUTDOWN_GRACE).await;
                    if let Some(task) = task {
                        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            } else {
                rt.shutdown_background();
            }
        } else if let Some(task) = self.task.take() {
            // Stopped by the graceful-shutdown signal; aborting only cuts idle connections.
            drop(task);
        }
    }
}

/// Whether runs can have a network here. Without `slirp4netns`, runs that don't mention
/// networking run without one (said once in the log) rather than every run failing on a
/// machine that never asked for a network; a run that asks for it still fails, saying what
/// to install. There is never a fallback to the host's network.
fn networking_helper_present() -> bool {
    match sandbox::networking_helper() {
        Ok(path) => {
            tracing::info!(helper = %path.display(), "networking: runs have a network by default");
            true
        }
        Err(e) => {
            tracing::warn!(
                "networking: {e}; runs that don't ask for networking run without it, and runs that ask for it fail"
            );
            false
        }
    }
}

/// What the blocking part of the start prepares.
struct Prepared {
    store: store::Store,
    base: images::base::BaseImage,
    cgroups: Option<Arc<sandbox::cgroup::Cgroups>>,
    layer_quota: Option<layer_quota::LayerQuota>,
}

/// Host checks and store/base preparation (blocking).
fn prepare(data_dir: &Path, ids: &sandbox::IdRange, config: &LocalConfig) -> Result<Prepared> {
    sandbox::check_support(data_dir, ids).map_err(|e| Error::config(e.to_string()))?;
    let cgroups = limits::setup(config)?;
    let store = store::Store::open(data_dir)?;
    let failed = store.fail_interrupted_operations()?;
    if !failed.is_empty() {
        tracing::warn!(count = failed.len(), "operations interrupted by the previous stop were marked FAILED");
    }
    // Scratch dirs of runs cut short by a crash: their operations were just marked FAILED.
    let runs = data_dir.join("runs");
    if runs.exists()
        && let Err(e) = std::fs::remove_dir_all(&runs)
    {
        tracing::warn!(dir = %runs.display(), error = %e, "could not clean up old run directories");
    }
    data_dir::create_private_subdir(&runs)?;
    let layer_quota = match layer_quota::LayerQuota::probe(&runs) {
        Ok(q) => {
            tracing::info!(
                "run limits: max_layer_bytes is enforced by btrfs qgroups (a run that sets none gets the spec's 12 GiB)"
            );
            Some(q)
        }
        Err(why) => {
            // Said at every start, so that nobody mistakes the spec's default for a cap that holds.
            tracing::warn!(
                "run limits: max_layer_bytes (the spec's default of 12 GiB per run layer) is NOT enforced: {why}; \
                 spawns that set it are refused with 400"
            );
            None
        }
    };
    let base = images::base::ensure_base(data_dir)
        .map_err(|e| Error::config(format!("cannot prepare the base image: {e}")))?;
    data_dir::tighten(data_dir)?;
    if store.get_image(base.uuid)?.is_none() {
        let record = store::ImageRecord::new(base.uuid, None, None);
        store.insert_image(&record)?;
        // The tag may have been moved to another image by a user; only claim it if free.
        if store.find_by_tag(BASE_IMAGE_TAG)?.is_none() {
            store.set_tag(base.uuid, BASE_IMAGE_TAG)?;
        }
    }
    Ok(Prepared { store, base, cgroups, layer_quota })
}

/// Raises the soft descriptor limit (see [`LocalServer::start`]), warns when even the hard
/// limit leaves too few for `max_concurrent_runs` runs, and returns the queue depth to use:
/// `max_queued_runs`, or less when the descriptors can't carry that many queued runs
/// ([`fds::queue_budget`]).
fn raise_fd_limit(max_concurrent_runs: usize, max_queued_runs: usize) -> usize {
    match fds::raise_nofile_limit() {
        Ok((old, new)) => {
            let budget = fds::queue_budget(new, max_concurrent_runs);
            let queue = max_queued_runs.min(budget);
            tracing::info!(
                old_soft = old,
                new_soft = new,
                max_queued_runs = queue,
                "file descriptor limit (RLIMIT_NOFILE)"
            );
            if queue < max_queued_runs {
                tracing::warn!(
                    asked = max_queued_runs,
                    allowed = queue,
                    "max_queued_runs lowered to what the file descriptor limit can carry"
                );
            }
            let want = fds::FDS_PER_RUN.saturating_mul(max_concurrent_runs as u64 + 1) + fds::FDS_MARGIN;
            if new < want {
                tracing::warn!(
                    limit = new,
                    want,
                    "the file descriptor limit is low for max_concurrent_runs; spawns will often be refused with 429"
                );
            }
            queue
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the file descriptor limit");
            max_queued_runs
        }
    }
}

/// The accept queue asked for (the kernel caps it at `net.core.somaxconn`, 4096 on current
/// kernels). Tokio's default of 1,024 overflowed on this 2-core machine when 2,000 clients
/// connected at once while both executor threads were busy: the kernel dropped the extra
/// connection attempts and clients timed out connecting.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` like `TcpListener::bind`, with a [`LISTEN_BACKLOG`]-deep accept queue.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std and tokio do: a restarted server may bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A random 256-bit token, hex-encoded.
fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
