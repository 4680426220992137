//! Shared by the SDK benchmarks: where the server is, what a round records, and how the
//! process's own CPU, memory and sockets are read.
//!
//! Every benchmark appends one JSON object per measurement to `$BENCH_OUT` (and prints it),
//! in the same shape as `benches/python/official_clients_bench.py`, so `benches/compare`
//! can interleave rounds of every client and `cargo bench --bench report` can tabulate them.
#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

/// The server a benchmark talks to: `CONTREE_BENCH_URL` + `CONTREE_BENCH_TOKEN` (an external
/// contree-local, so the client's CPU and memory are its own), or an embedded one.
pub struct Target {
    pub url: String,
    pub token: String,
    /// Whether the server runs in this process (then CPU and RSS include it: not reported).
    pub embedded: bool,
    _server: Option<contree_local::LocalServer>,
}

impl Target {
    /// The external server when configured, else an embedded one (blocking start: callers
    /// may be plain threads).
    pub fn from_env() -> Result<Target, Box<dyn std::error::Error>> {
        if let (Ok(url), Ok(token)) = (std::env::var("CONTREE_BENCH_URL"), std::env::var("CONTREE_BENCH_TOKEN")) {
            return Ok(Target { url, token, embedded: false, _server: None });
        }
        eprintln!(
            "CONTREE_BENCH_URL is not set: using an embedded server (CPU and RSS then include the server; \
             benches/compare measures against a separate one)"
        );
        let server = contree_local::LocalServer::start_blocking(
            contree_local::LocalConfig::default().with_max_concurrent_runs(env_usize("BENCH_SERVER_SLOTS", 4)),
        )?;
        Ok(Target {
            url: server.base_url().to_string(),
            token: server.token().to_string(),
            embedded: true,
            _server: Some(server),
        })
    }
}

/// A client configuration for `target` speaking `http`: `h2c` (what
/// `LocalServer::client_config` sets up) or `http1` (the default for a plain `http://` URL).
pub fn client_config(target: &Target, http: &str) -> Result<contree::ContreeConfig, Box<dyn std::error::Error>> {
    let mut config = contree::ContreeConfig::default().with_base_url(&target.url).with_token(target.token.as_str());
    config.http_version = match http {
        "h2c" => contree::HttpVersion::Http2PriorKnowledge,
        "http1" => contree::HttpVersion::Http1Only,
        other => return Err(format!("BENCH_HTTP must be h2c or http1, not {other}").into()),
    };
    Ok(config)
}

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A string from the environment, or `default`.
pub fn env_string(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// User + system CPU time of this whole process (every thread) so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident set size of this process, in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Current resident set size, in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l[key.len()..].trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open sockets of this process right now.
pub fn open_sockets() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
        .count()
}

/// Samples [`open_sockets`] on a thread until stopped; `stop` returns the maximum seen.
pub struct SocketSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<usize>,
}

impl SocketSampler {
    pub fn start(every: Duration) -> SocketSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(open_sockets());
                std::thread::sleep(every);
            }
            max.max(open_sockets())
        });
        SocketSampler { stop, handle }
    }

    pub fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

/// Latencies in milliseconds, sorted copy's percentile (nearest rank).
pub fn percentile_ms(latencies: &[f64], p: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    let mut v = latencies.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints one measurement and appends it to `$BENCH_OUT` (if set) as a JSON line.
pub fn record(value: serde_json::Value) {
    let line = value.to_string();
    println!("{line}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open $BENCH_OUT");
        writeln!(f, "{line}").expect("write $BENCH_OUT");
    }
}

/// One line for people: p50/p90/p99 of a latency sample.
pub fn summary(label: &str, latencies_ms: &[f64]) -> String {
    format!(
        "{label:<24} n={:<5} p50={:>7.2} ms  p90={:>7.2} ms  p99={:>7.2} ms",
        latencies_ms.len(),
        percentile_ms(latencies_ms, 0.5),
        percentile_ms(latencies_ms, 0.9),
        percentile_ms(latencies_ms, 0.99)
    )
}

/// The server's own record of each operation's duration (ms), read after the timed loop.
pub fn server_durations_ms(url: &str, token: &str, ids: &[String]) -> Vec<f64> {
    let client = reqwest::blocking::Client::new();
    ids.iter()
        .filter_map(|id| {
            let v: serde_json::Value =
                client.get(format!("{url}/v1/operations/{id}")).bearer_auth(token).send().ok()?.json().ok()?;
            v.get("duration").and_then(|d| d.as_f64()).map(|s| s * 1e3)
        })
        .collect()
}
