//! Configuration of a [`LocalServer`](crate::LocalServer).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use contree_core::Error;

/// Largest `truncate_output_at` the API accepts (10 MiB, as the spec says).
pub(crate) const MAX_TRUNCATE_OUTPUT_AT: u64 = 10 * 1024 * 1024;

/// The default memory limit of a run: 2 GiB, or half the host's RAM when that is less.
pub const DEFAULT_RUN_MEMORY: u64 = 2 << 30;

/// The default limit on a run's processes and threads.
pub const DEFAULT_RUN_PIDS: u64 = 1024;

/// Smallest memory limit accepted: below it not even the sandbox's init and a shell fit.
pub const MIN_RUN_MEMORY: u64 = 16 << 20;

/// Smallest pids limit accepted: init, a shell and a command need a few.
pub const MIN_RUN_PIDS: u64 = 8;

/// A per-run limit enforced by the kernel (cgroups), as configured.
///
/// Defaults are best effort, explicit values are a requirement: a server asked for a
/// limit the host can't enforce refuses to start, while a default that can't be enforced
/// is logged as a warning at start and left out of `GET /whoami`'s `limits` (never
/// silently dropped).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RunLimit<T> {
    /// The server's default for this limit, applied when the host can enforce it.
    #[default]
    Default,
    /// No limit.
    Unlimited,
    /// This limit; the server does not start if the host can't enforce it.
    Set(T),
}

impl<T> From<T> for RunLimit<T> {
    fn from(v: T) -> Self {
        RunLimit::Set(v)
    }
}

/// The default of [`LocalConfig::max_queued_runs`]: comfortably above the 2,000 runs in
/// flight the load goals ask for, while a queue this long of small requests stays within tens
/// of megabytes.
pub const DEFAULT_MAX_QUEUED_RUNS: usize = 4096;

/// How a [`LocalServer`](crate::LocalServer) is set up.
///
/// Every field has a sensible default, so embedded use is one line:
///
/// ```
/// use contree_local::LocalConfig;
/// use std::time::Duration;
///
/// let config = LocalConfig::default()
///     .with_token("test-token")
///     .with_max_concurrent_runs(4)
///     .with_default_run_timeout(Duration::from_secs(60));
/// assert_eq!(config.bind.ip().to_string(), "127.0.0.1");
/// assert_eq!(config.bind.port(), 0); // a free port is picked at start
/// assert!(config.data_dir.is_none()); // a temporary directory, removed with the server
/// // The token never shows up in debug output.
/// assert!(!format!("{config:?}").contains("test-token"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct LocalConfig {
    /// Where images, layers, uploaded files and the database live. `None` makes a fresh
    /// temporary directory that is removed when the server stops (embedded/test use).
    ///
    /// The server makes it private: the directory and those it creates in it get mode `0700`,
    /// the database and blobs `0600`, because runs leave setuid files and device nodes in their
    /// layers and the database holds every run's env, stdin and output. An existing directory
    /// that other users can enter must be empty or an earlier data dir; anything else (say
    /// `/tmp`) is refused with `InvalidArgument` naming `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// The address to listen on. Defaults to `127.0.0.1:0` (loopback, any free port): the
    /// server runs commands as root in sandboxes, so it is not exposed to the network unless
    /// asked for explicitly.
    pub bind: SocketAddr,
    /// The bearer token every request must carry. `None` generates a random one, readable with
    /// [`LocalServer::token`](crate::LocalServer::token).
    pub token: Option<String>,
    /// How many runs execute at once; further runs wait as `PENDING`. Defaults to twice the
    /// number of CPUs.
    pub max_concurrent_runs: usize,
    /// How many runs may wait as `PENDING` for one of the `max_concurrent_runs` slots. A
    /// spawn beyond that is answered 429 with `Retry-After` before anything is recorded, so
    /// clients can replay it. A queued run holds no descriptors or threads, only its request
    /// (stdin and files included), so this bounds the memory a flood of spawns can take.
    /// Defaults to [`DEFAULT_MAX_QUEUED_RUNS`]. At start it is lowered, with a warning, to
    /// what the file descriptor limit can carry (about half of what is left once the
    /// executing runs are provided for: a queued run's client holds connections too).
    pub max_queued_runs: usize,
    /// The timeout of a run whose spawn request has none. `None` means no timeout.
    pub default_run_timeout: Option<Duration>,
    /// The largest timeout a spawn request may ask for (reported by `GET /whoami` as
    /// `limits.instance_max_timeout`); larger values are rejected with 400.
    pub max_run_timeout: Duration,
    /// How often an idle event stream (`GET /operations/{id}/events?follow=1`) sends a
    /// `: keepalive` comment.
    pub keepalive_interval: Duration,
    /// The host uid/gid range every sandbox's user namespace is mapped to (root in a
    /// sandbox is `id_range.base()` on the host). Defaults to 65,536 ids from
    /// 2,000,000,000, which no host account uses; the server refuses to start when
    /// `/etc/passwd` or `/etc/group` has an id in it.
    pub id_range: crate::IdRange,
    /// Whether runs may have a network (through `slirp4netns`, never the host's namespace).
    /// Defaults to `true`, and a spawn request without `networking` gets one, as the spec
    /// says. `false` is for hosts without `slirp4netns` and for servers whose runs must stay
    /// offline: requests that omit `networking` then run without a network, and a request
    /// asking for `networking.enabled: true` is refused with 400 (rather than silently run
    /// offline, which would break it in confusing ways).
    pub networking: bool,
    /// Memory limit of each run, bytes, swap included: past it the kernel's OOM killer
    /// kills the run's largest process, and an operation whose command was killed so ends
    /// FAILED with an error naming the limit. Default: [`DEFAULT_RUN_MEMORY`] (2 GiB, or
    /// half the RAM when less). At least [`MIN_RUN_MEMORY`].
    pub run_memory: RunLimit<u64>,
    /// How many processes and threads a run may have at once (`fork` fails with `EAGAIN`
    /// past it). Default: [`DEFAULT_RUN_PIDS`]. At least [`MIN_RUN_PIDS`].
    pub run_pids: RunLimit<u64>,
    /// CPU time a run may use per second of wall time, in CPUs (`1.5`: one and a half
    /// cores). Default: no quota, all CPUs. Whatever the quota, runs get equal CPU weight
    /// when the host has the cpu controller, so a run with many processes does not starve
    /// the others.
    pub run_cpus: RunLimit<f64>,
    /// Registries (`host` or `host:port`, as in an image reference) that imports reach over
    /// plain HTTP. Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) always are;
    /// every other registry is reached over HTTPS only (rustls, the system's roots).
    pub insecure_registries: Vec<String>,
    /// The most bytes an imported image may unpack to, all layers together (and the most
    /// its compressed layers may weigh). Default: [`DEFAULT_MAX_IMPORT_BYTES`], the spec's
    /// default `max_layer_bytes`. An import past it ends FAILED saying so.
    pub max_import_bytes: u64,
}

/// The default of [`LocalConfig::max_import_bytes`]: 12 GiB.
pub const DEFAULT_MAX_IMPORT_BYTES: u64 = 12 << 30;

impl Default for LocalConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        LocalConfig {
            data_dir: None,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token: None,
            max_concurrent_runs: 2 * cpus,
            max_queued_runs: DEFAULT_MAX_QUEUED_RUNS,
            default_run_timeout: Some(Duration::from_secs(3600)),
            max_run_timeout: Duration::from_secs(24 * 3600),
            keepalive_interval: Duration::from_secs(15),
            id_range: crate::IdRange::default(),
            networking: true,
            run_memory: RunLimit::Default,
            run_pids: RunLimit::Default,
            run_cpus: RunLimit::Default,
            insecure_registries: Vec::new(),
            max_import_bytes: DEFAULT_MAX_IMPORT_BYTES,
        }
    }
}

impl fmt::Debug for LocalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalConfig")
            .field("data_dir", &self.data_dir)
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_concurrent_runs", &self.max_concurrent_runs)
            .field("max_queued_runs", &self.max_queued_runs)
            .field("default_run_timeout", &self.default_run_timeout)
            .field("max_run_timeout", &self.max_run_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("id_range", &self.id_range)
            .field("networking", &self.networking)
            .field("run_memory", &self.run_memory)
            .field("run_pids", &self.run_pids)
            .field("run_cpus", &self.run_cpus)
            .field("insecure_registries", &self.insecure_registries)
            .field("max_import_bytes", &self.max_import_bytes)
            .finish()
    }
}

impl LocalConfig {
    /// Keeps the server's state in `dir` (created if missing), so it survives restarts.
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Listens on `addr` instead of `127.0.0.1:0`.
    pub fn with_bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Requires this bearer token instead of a generated one.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets how many runs execute at once.
    pub fn with_max_concurrent_runs(mut self, runs: usize) -> Self {
        self.max_concurrent_runs = runs;
        self
    }

    /// Sets how many runs may wait for a slot; see [`LocalConfig::max_queued_runs`].
    pub fn with_max_queued_runs(mut self, runs: usize) -> Self {
        self.max_queued_runs = runs;
        self
    }

    /// Sets the timeout of runs that don't ask for one.
    pub fn with_default_run_timeout(mut self, timeout: Duration) -> Self {
        self.default_run_timeout = Some(timeout);
        self
    }

    /// Sets the largest timeout a run may ask for.
    pub fn with_max_run_timeout(mut self, timeout: Duration) -> Self {
        self.max_run_timeout = timeout;
        self
    }

    /// Sets [`id_range`](Self::id_range).
    pub fn with_id_range(mut self, ids: crate::IdRange) -> Self {
        self.id_range = ids;
        self
    }

    /// Sets the keepalive period of idle event streams.
    pub fn with_keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// Turns networking for runs on (the default) or off for the whole server; see
    /// [`LocalConfig::networking`].
    pub fn with_networking(mut self, enabled: bool) -> Self {
        self.networking = enabled;
        self
    }

    /// Sets [`run_memory`](Self::run_memory): `with_run_memory(256 << 20)` or a [`RunLimit`].
    pub fn with_run_memory(mut self, limit: impl Into<RunLimit<u64>>) -> Self {
        self.run_memory = limit.into();
        self
    }

    /// Sets [`run_pids`](Self::run_pids).
    pub fn with_run_pids(mut self, limit: impl Into<RunLimit<u64>>) -> Self {
        self.run_pids = limit.into();
        self
    }

    /// Sets [`run_cpus`](Self::run_cpus).
    pub fn with_run_cpus(mut self, limit: impl Into<RunLimit<f64>>) -> Self {
        self.run_cpus = limit.into();
        self
    }

    /// Lets imports reach `registry` (`host` or `host:port`) over plain HTTP (see
    /// [`LocalConfig::insecure_registries`]).
    pub fn with_insecure_registry(mut self, registry: impl Into<String>) -> Self {
        self.insecure_registries.push(registry.into());
        self
    }

    /// Caps what one imported image may unpack to (see [`LocalConfig::max_import_bytes`]).
    pub fn with_max_import_bytes(mut self, bytes: u64) -> Self {
        self.max_import_bytes = bytes;
        self
    }

    /// Checks the values a caller may have got wrong, naming the offending field.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_concurrent_runs == 0 {
            return Err(Error::invalid_argument("max_concurrent_runs", "must be at least 1"));
        }
        if self.max_queued_runs == 0 {
            return Err(Error::invalid_argument("max_queued_runs", "must be at least 1"));
        }
        if let Some(token) = &self.token {
            if token.is_empty() {
                return Err(Error::invalid_argument("token", "must not be empty"));
            }
            // The token travels in an HTTP header: it must be a valid header value.
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::invalid_argument("token", "must be printable ASCII without spaces"));
            }
        }
        if let RunLimit::Set(m) = self.run_memory
            && m < MIN_RUN_MEMORY
        {
            return Err(Error::invalid_argument("run_memory", format!("must be at least {MIN_RUN_MEMORY} bytes")));
        }
        if let RunLimit::Set(n) = self.run_pids
            && n < MIN_RUN_PIDS
        {
            return Err(Error::invalid_argument("run_pids", format!("must be at least {MIN_RUN_PIDS}")));
        }
        if let RunLimit::Set(c) = self.run_cpus
            && !(0.01..=1_000_000.0).contains(&c)
        {
            return Err(Error::invalid_argument("run_cpus", "must be a number of CPUs from 0.01"));
        }
        if self.max_import_bytes == 0 {
            return Err(Error::invalid_argument("max_import_bytes", "must be at least 1"));
        }
        if let Some(bad) = self
            .insecure_registries
            .iter()
            .find(|r| r.is_empty() || r.contains('/') || r.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::invalid_argument(
                "insecure_registries",
                format!("`{bad}` is not a registry host (`host` or `host:port`)"),
            ));
        }
        if self.keepalive_interval.is_zero() {
            return Err(Error::invalid_argument("keepalive_interval", "must be positive"));
        }
        if self.max_run_timeout.is_zero() {
            return Err(Error::invalid_argument("max_run_timeout", "must be positive"));
        }
        if let Some(t) = self.default_run_timeout
            && (t.is_zero() || t > self.max_run_timeout)
        {
            return Err(Error::invalid_argument(
                "default_run_timeout",
                "must be positive and not above max_run_timeout",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = LocalConfig::default();
        c.validate().unwrap();
        assert!(c.bind.ip().is_loopback());
        assert!(c.max_concurrent_runs >= 2);
        assert!(c.networking, "the spec's default: runs have a network");
        assert!(!c.with_networking(false).networking);
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = LocalConfig::default().with_max_concurrent_runs(0).validate().unwrap_err();
        assert!(e.is_invalid_argument());
        assert_eq!(e.argument(), Some("max_concurrent_runs"));
        let e = LocalConfig::default().with_max_queued_runs(0).validate().unwrap_err();
        assert_eq!(e.argument(), Some("max_queued_runs"));
        let e = LocalConfig::default().with_token("a b").validate().unwrap_err();
        assert_eq!(e.argument(), Some("token"));
        assert!(!e.to_string().contains("a b"));
        let e = LocalConfig::default()
            .with_max_run_timeout(Duration::from_secs(10))
            .with_default_run_timeout(Duration::from_secs(20))
            .validate()
            .unwrap_err();
        assert_eq!(e.argument(), Some("default_run_timeout"));
        let e = LocalConfig::default().with_run_memory(1024).validate().unwrap_err();
        assert_eq!(e.argument(), Some("run_memory"));
        let e = LocalConfig::default().with_run_pids(1).validate().unwrap_err();
        assert_eq!(e.argument(), Some("run_pids"));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = LocalConfig::default().with_run_cpus(bad).validate().unwrap_err();
            assert_eq!(e.argument(), Some("run_cpus"));
        }
        LocalConfig::default().with_run_memory(256 << 20).with_run_pids(256).with_run_cpus(0.5).validate().unwrap();
        let e = LocalConfig::default().with_max_import_bytes(0).validate().unwrap_err();
        assert_eq!(e.argument(), Some("max_import_bytes"));
        let e = LocalConfig::default().with_insecure_registry("http://x/").validate().unwrap_err();
        assert_eq!(e.argument(), Some("insecure_registries"));
        LocalConfig::default().with_insecure_registry("registry.lan:5000").validate().unwrap();
    }
}
