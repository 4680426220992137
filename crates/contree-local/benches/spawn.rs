//! Spawn benchmark (issue 9): end-to-end latency of `true` over HTTP, on a fresh server and
//! again right after a burst of 1,000 concurrent runs.
//!
//! `cargo bench -p contree-local --bench spawn` (a release build). Each run is
//! `POST /v1/instances` (`true` on the built-in image, disposable so no layers pile up) followed
//! by `GET /v1/operations/{id}/events?follow=1` read to its end: the server publishes the
//! `completion` event only once the final record is stored, so the run is terminal when the
//! stream ends. A run counts as a success when `completion` says SUCCESS and the main process
//! exited 0.
//!
//! Phases: (1) fresh server, 20 warm-up runs then N sequential runs; (2) a burst of 1,000 runs
//! started at once (all in flight; a 429 is retried after its `Retry-After` and counted);
//! (3) N sequential runs right after the burst. Goal: p50 ≤ 10 ms in (1) and (3), and p50 of
//! (3) within 20% of (1). The bench always exits 0 once it has measured (PASS or FAIL is
//! printed); it exits 1 only when it could not measure (no server, bench timeout).
//!
//! Then (4), embedded only: (3) again with the server's process carrying 1 GiB more of touched
//! heap (a spawn's cost must not follow the server's size). Then (5) throughput, the load
//! goals of issue 10: for each level L of
//! `CONTREE_BENCH_THROUGHPUT` (default `1,100,1000,2000`), max(L, N) runs with L in flight
//! from one client, reporting runs/s (against level 1), failures, timeouts and 429s, while a
//! side task polls `GET /v1/operations?limit=1` every 100 ms (a status read must stay
//! answerable under load); and the server's RSS once everything has drained, against its
//! idle figure after phase 1. Goals: ≥ 90% of the level-1 runs/s at 1,000 in flight, no
//! errors or timeouts at 2,000, RSS after drain within 2× of idle (read
//! `CONTREE_BENCH_SETTLE_SECS`, default 20, after the drain). An empty
//! `CONTREE_BENCH_THROUGHPUT` skips the phase.
//!
//! Knobs (environment):
//! - `CONTREE_BENCH_RUNS` — sequential runs per phase (default 200)
//! - `CONTREE_BENCH_BURST` — runs in the burst (default 1000), all in flight at once unless
//!   `CONTREE_BENCH_BURST_INFLIGHT` bounds it lower
//! - `CONTREE_BENCH_URL` + `CONTREE_BENCH_TOKEN` — benchmark an external server instead of an
//!   embedded one (its RSS is then read from `CONTREE_BENCH_SERVER_PID` if set)
//! - `CONTREE_BENCH_IMAGE` — image to run `true` on (default: the built-in base image's UUID)
//! - `CONTREE_BENCH_MAX_RUNS` — `max_concurrent_runs` of the embedded server (default: the
//!   server's default, twice the CPUs)
//! - `CONTREE_BENCH_RUN_TIMEOUT_SECS` (60), `CONTREE_BENCH_BURST_TIMEOUT_SECS` (300, per run,
//!   queueing included), `CONTREE_BENCH_TIMEOUT_SECS` (1800, the whole bench)
//! - `CONTREE_BENCH_JSON` — where to write the results (default `target/spawn-bench.json`)
//! - `CONTREE_BENCH_NETWORKING` — `on` or `off` sends `networking.enabled`; unset leaves it to
//!   the server's default (on where `slirp4netns` is installed)
//! - `CONTREE_BENCH_INFLATE_MIB` — phase 4 (embedded only): how much touched heap the server's
//!   process carries while it spawns (default 1024; 0 skips the phase)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contree_local::{BASE_IMAGE_TAG, LocalConfig, LocalServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const WARMUP: usize = 20;
const GOAL_P50_MS: f64 = 10.0;
const GOAL_RATIO: f64 = 1.20;
/// Errors printed per phase (the rest are only counted).
const ERRORS_SHOWN: usize = 5;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default))
}

struct Knobs {
    runs: usize,
    /// In-flight levels of the throughput phase (empty: skipped).
    levels: Vec<usize>,
    burst: usize,
    burst_inflight: usize,
    run_timeout: Duration,
    burst_timeout: Duration,
    total_timeout: Duration,
    inflate_mib: usize,
}

impl Knobs {
    fn from_env() -> Knobs {
        let burst = env_usize("CONTREE_BENCH_BURST", 1000);
        Knobs {
            runs: env_usize("CONTREE_BENCH_RUNS", 200).max(1),
            levels: std::env::var("CONTREE_BENCH_THROUGHPUT")
                .unwrap_or_else(|_| "1,100,1000,2000".to_owned())
                .split(',')
                .filter_map(|l| l.trim().parse::<usize>().ok())
                .filter(|l| *l > 0)
                .collect(),
            burst,
            burst_inflight: env_usize("CONTREE_BENCH_BURST_INFLIGHT", burst).clamp(1, burst.max(1)),
            run_timeout: env_secs("CONTREE_BENCH_RUN_TIMEOUT_SECS", 60),
            burst_timeout: env_secs("CONTREE_BENCH_BURST_TIMEOUT_SECS", 300),
            total_timeout: env_secs("CONTREE_BENCH_TIMEOUT_SECS", 1800),
            inflate_mib: env_usize("CONTREE_BENCH_INFLATE_MIB", 1024),
        }
    }
}

/// Where requests go.
#[derive(Clone)]
struct Api {
    base: String,
    token: String,
    image: String,
    /// `networking.enabled` to send, or `None` to leave it out (the server's default).
    networking: Option<bool>,
    http: reqwest::Client,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// One run's outcome, and how many 429s it met on the way.
struct Run {
    result: Result<Timing, String>,
    throttled: u32,
}

#[derive(Clone, Copy)]
struct Timing {
    /// Spawn request sent → stream ended with `completion` (what the goal is about).
    total: Duration,
    /// Spawn request sent → 201 received (429 waits included).
    accepted: Duration,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.base)
    }

    /// The UUID of `tag` (so runs don't resolve a tag), or `None` when it can't be looked up.
    async fn resolve_tag(&self, tag: &str) -> Option<String> {
        let r = self
            .http
            // Tags are made of `[A-Za-z0-9._/:-]`: safe in a query as they are.
            .get(self.url(&format!("/inspect/?tag={tag}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        if r.status() != StatusCode::FOUND {
            return None;
        }
        let loc = r.headers().get("location")?.to_str().ok()?;
        let uuid = loc.trim_end_matches('/').rsplit('/').next()?.to_owned();
        (uuid.len() == 36).then_some(uuid)
    }

    /// Spawns `true` and follows it to its end, within `timeout`.
    async fn run_true(&self, timeout: Duration) -> Run {
        let mut throttled = 0;
        let start = Instant::now();
        let result = match tokio::time::timeout(timeout, self.spawn_and_follow(start, &mut throttled)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        };
        Run { result, throttled }
    }

    async fn spawn_and_follow(&self, start: Instant, throttled: &mut u32) -> Result<Timing, String> {
        let mut body = json!({"command": "true", "image": self.image, "disposable": true});
        if let Some(on) = self.networking {
            body["networking"] = json!({"enabled": on});
        }
        // Bounded by the caller's timeout; each 429 waits its Retry-After (1 s if absent).
        let op = loop {
            let r = self
                .http
                .post(self.url("/instances"))
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("spawn: {e}"))?;
            let status = r.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                *throttled += 1;
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait.clamp(1, 60))).await;
                continue;
            }
            let text = r.text().await.map_err(|e| format!("spawn body: {e}"))?;
            if status != StatusCode::CREATED {
                return Err(format!("spawn: HTTP {status}: {text}"));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("spawn body: {e}: {text}"))?;
            break v["uuid"].as_str().ok_or_else(|| format!("spawn body has no uuid: {text}"))?.to_owned();
        };
        let accepted = start.elapsed();
        let r = self
            .http
            .get(self.url(&format!("/operations/{op}/events?follow=1")))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("events of {op}: {e}"))?;
        let status = r.status();
        // The stream ends right after `completion`: reading it to the end keeps the
        // connection reusable.
        let text = r.text().await.map_err(|e| format!("events of {op}: {e}"))?;
        let total = start.elapsed();
        if status != StatusCode::OK {
            return Err(format!("events of {op}: HTTP {status}: {text}"));
        }
        check_events(&op, &text)?;
        Ok(Timing { total, accepted })
    }
}

/// A run succeeded when its `completion` says SUCCESS and the main process exited 0.
fn check_events(op: &str, sse: &str) -> Result<(), String> {
    let mut completion = None;
    let mut exit_code = None;
    for frame in sse.split("\n\n") {
        let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
        let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
        match v["type"].as_str() {
            Some("completion") => completion = Some(v["data"].clone()),
            Some("exit") if v["spid"] == 1 => exit_code = v["data"]["code"].as_i64(),
            _ => {}
        }
    }
    let Some(c) = completion else { return Err(format!("{op}: the event stream ended without completion")) };
    if c["status"] != "SUCCESS" {
        return Err(format!("{op}: {} ({})", c["status"], c["error"]));
    }
    if exit_code != Some(0) {
        return Err(format!("{op}: `true` exited with {exit_code:?}"));
    }
    Ok(())
}

/// Latency statistics of one phase, in milliseconds.
#[derive(Default, Clone, Copy)]
struct Stats {
    n: usize,
    failures: usize,
    throttled: u32,
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
    accepted_p50: f64,
    wall: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn stats(label: &str, runs: &[Run], wall: Duration) -> Stats {
    let mut total: Vec<f64> = runs.iter().filter_map(|r| r.result.as_ref().ok()).map(|t| ms(t.total)).collect();
    let mut accepted: Vec<f64> = runs.iter().filter_map(|r| r.result.as_ref().ok()).map(|t| ms(t.accepted)).collect();
    total.sort_by(f64::total_cmp);
    accepted.sort_by(f64::total_cmp);
    let failures: Vec<&String> = runs.iter().filter_map(|r| r.result.as_ref().err()).collect();
    for e in failures.iter().take(ERRORS_SHOWN) {
        eprintln!("  [{label}] run failed: {e}");
    }
    if failures.len() > ERRORS_SHOWN {
        eprintln!("  [{label}] … and {} more failures", failures.len() - ERRORS_SHOWN);
    }
    Stats {
        n: total.len(),
        failures: failures.len(),
        throttled: runs.iter().map(|r| r.throttled).sum(),
        p50: percentile(&total, 50.0),
        p90: percentile(&total, 90.0),
        p99: percentile(&total, 99.0),
        mean: if total.is_empty() { f64::NAN } else { total.iter().sum::<f64>() / total.len() as f64 },
        min: total.first().copied().unwrap_or(f64::NAN),
        max: total.last().copied().unwrap_or(f64::NAN),
        accepted_p50: percentile(&accepted, 50.0),
        wall: ms(wall),
    }
}

fn stats_json(s: &Stats) -> Value {
    let num = |x: f64| if x.is_finite() { json!((x * 1000.0).round() / 1000.0) } else { Value::Null };
    json!({
        "ok": s.n, "failures": s.failures, "throttled_429": s.throttled,
        "p50_ms": num(s.p50), "p90_ms": num(s.p90), "p99_ms": num(s.p99), "mean_ms": num(s.mean),
        "min_ms": num(s.min), "max_ms": num(s.max), "spawn_201_p50_ms": num(s.accepted_p50),
        "wall_ms": num(s.wall),
    })
}

/// `VmRSS`, `VmHWM` (in KiB) and `Threads` of a process' /proc status.
#[derive(Default, Clone, Copy)]
struct Mem {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

fn read_mem(pid: Option<u32>) -> Option<Mem> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(Mem { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")?, threads: field("Threads:").unwrap_or(0) })
}

fn mem_json(m: Option<Mem>) -> Value {
    m.map_or(Value::Null, |m| json!({"vm_rss_kib": m.rss_kib, "vm_hwm_kib": m.hwm_kib, "threads": m.threads}))
}

fn mem_text(m: Option<Mem>) -> String {
    m.map_or("n/a".to_owned(), |m| {
        format!(
            "RSS {:.1} MiB (peak {:.1} MiB), {} threads",
            m.rss_kib as f64 / 1024.0,
            m.hwm_kib as f64 / 1024.0,
            m.threads
        )
    })
}

/// `count` sequential runs.
async fn sequential(api: &Api, count: usize, timeout: Duration) -> (Vec<Run>, Duration) {
    let wall = Instant::now();
    let mut runs = Vec::with_capacity(count);
    for _ in 0..count {
        runs.push(api.run_true(timeout).await);
    }
    (runs, wall.elapsed())
}

/// `count` runs started at once, at most `inflight` in flight, on their own client (its
/// connections are closed when the burst ends).
async fn burst(api: &Api, count: usize, inflight: usize, timeout: Duration) -> (Vec<Run>, Duration) {
    let api = Api { http: http_client(), ..api.clone() };
    let permits = Arc::new(Semaphore::new(inflight));
    let wall = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..count {
        let api = api.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            api.run_true(timeout).await
        });
    }
    let mut runs = Vec::with_capacity(count);
    while let Some(r) = set.join_next().await {
        runs.push(r.unwrap_or_else(|e| Run { result: Err(format!("the run task failed: {e}")), throttled: 0 }));
    }
    (runs, wall.elapsed())
}

/// Runs/s at one in-flight level, plus what the status poller saw meanwhile.
struct Level {
    inflight: usize,
    stats: Stats,
    timeouts: usize,
    runs_per_s: f64,
    poll: PollStats,
}

/// Latency of the status reads polled during a level.
#[derive(Default)]
struct PollStats {
    count: usize,
    failed: usize,
    p50_ms: f64,
    max_ms: f64,
}

/// The status read the poller makes (bounded by its own 10 s timeout).
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Polls `GET /operations?limit=1` until `stop` fires, recording each call's latency.
async fn poll_status(api: Api, mut stop: tokio::sync::oneshot::Receiver<()>) -> PollStats {
    let mut lat = Vec::new();
    let mut failed = 0;
    // Bounded: one poll per 100 ms for at most the whole bench's timeout.
    for _ in 0..(3600 * 10) {
        let t = Instant::now();
        let call = api.http.get(api.url("/operations?limit=1")).bearer_auth(&api.token).send();
        match tokio::time::timeout(POLL_TIMEOUT, call).await {
            Ok(Ok(r)) if r.status().is_success() => {
                let _ = r.bytes().await;
                lat.push(ms(t.elapsed()));
            }
            _ => failed += 1,
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = &mut stop => break,
        }
    }
    lat.sort_by(f64::total_cmp);
    PollStats {
        count: lat.len(),
        failed,
        p50_ms: percentile(&lat, 50.0),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
    }
}

/// Waits (bounded) until the server has no run left in flight: `GET /operations` lists
/// none PENDING or EXECUTING.
async fn wait_drained(api: &Api, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut busy = false;
        for status in ["PENDING", "EXECUTING"] {
            let r = api
                .http
                .get(api.url(&format!("/operations?status={status}&limit=1")))
                .bearer_auth(&api.token)
                .send()
                .await;
            match r {
                Ok(r) => {
                    busy |=
                        r.json::<Value>().await.ok().and_then(|v| v.as_array().map(|a| !a.is_empty())) != Some(false)
                }
                Err(_) => busy = true,
            }
        }
        if !busy {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Lifts the soft open-files limit to the hard one: the burst holds two sockets per run in
/// this process when the server is embedded.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The 1-minute load average: other work on the machine skews every number here.
/// `mib` MiB of heap with every page written, so that it is resident.
fn touched_ballast(mib: usize) -> Vec<Vec<u8>> {
    (0..mib).map(|i| vec![(i % 251) as u8 + 1; 1 << 20]).collect()
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn json_path() -> PathBuf {
    if let Ok(p) = std::env::var("CONTREE_BENCH_JSON") {
        return PathBuf::from(p);
    }
    // `CARGO_TARGET_TMPDIR` is `<target>/tmp`.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map_or(tmp.clone(), |t| t.to_path_buf()).join("spawn-bench.json")
}

fn print_row(label: &str, s: &Stats) {
    println!(
        "{label:<28} {:>5} {:>5} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>10.0}",
        s.n, s.failures, s.throttled, s.p50, s.p90, s.p99, s.mean, s.max, s.accepted_p50, s.wall
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

async fn bench(knobs: &Knobs) -> Result<Value, String> {
    // The server: embedded (fresh, temporary data dir) or external.
    let external = std::env::var("CONTREE_BENCH_URL").ok().filter(|u| !u.is_empty());
    let server_pid: Option<u32> = std::env::var("CONTREE_BENCH_SERVER_PID").ok().and_then(|p| p.trim().parse().ok());
    let (server, base, token) = match &external {
        Some(url) => {
            let token = std::env::var("CONTREE_BENCH_TOKEN")
                .map_err(|_| "CONTREE_BENCH_URL needs CONTREE_BENCH_TOKEN".to_owned())?;
            (None, url.trim_end_matches('/').to_owned(), token)
        }
        None => {
            let mut config = LocalConfig::default();
            if let Ok(n) = std::env::var("CONTREE_BENCH_MAX_RUNS") {
                let n = n.trim().parse().map_err(|_| format!("CONTREE_BENCH_MAX_RUNS={n} is not a number"))?;
                config = config.with_max_concurrent_runs(n);
            }
            let server = LocalServer::start(config)
                .await
                .map_err(|e| format!("the embedded server did not start (needs Linux and root): {e}"))?;
            let (base, token) = (server.base_url().to_owned(), server.token().to_owned());
            (Some(server), base, token)
        }
    };
    // Memory of the server: this process when embedded (the bench's client included).
    let mem = || if server.is_some() { read_mem(None) } else { server_pid.and_then(|p| read_mem(Some(p))) };
    // `on`/`off` send `networking.enabled`; unset leaves it to the server (on, as the spec says,
    // where slirp4netns is installed: then every run also starts a network helper).
    let networking = match std::env::var("CONTREE_BENCH_NETWORKING").as_deref() {
        Ok("on") => Some(true),
        Ok("off") => Some(false),
        _ => None,
    };
    let mut api = Api { base, token, image: String::new(), networking, http: http_client() };
    api.image = match std::env::var("CONTREE_BENCH_IMAGE") {
        Ok(i) if !i.is_empty() => i,
        _ => api.resolve_tag(BASE_IMAGE_TAG).await.unwrap_or_else(|| format!("tag:{BASE_IMAGE_TAG}")),
    };
    let where_ = external.as_deref().unwrap_or("embedded contree-local (fresh temporary data dir)");
    let net = match api.networking {
        Some(true) => "networking on",
        Some(false) => "networking off",
        None => "networking: server default",
    };
    println!("spawn bench: `true` on {} via {where_}, {net}", api.image);
    println!(
        "  {} warm-up + {} sequential runs per phase, burst of {} ({} in flight), {} CPUs",
        WARMUP,
        knobs.runs,
        knobs.burst,
        knobs.burst_inflight,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mem_start = mem();
    let load_start = load_average();

    // Phase 1: fresh server.
    let (warm, _) = sequential(&api, WARMUP, knobs.run_timeout).await;
    if let Some(Err(e)) = warm.iter().map(|r| &r.result).find(|r| r.is_err()) {
        return Err(format!("a warm-up run failed: {e}"));
    }
    println!("phase 1: {} sequential runs on the fresh server…", knobs.runs);
    let (runs, wall) = sequential(&api, knobs.runs, knobs.run_timeout).await;
    let fresh = stats("fresh", &runs, wall);
    let mem_fresh = mem();

    // Phase 2: the burst.
    println!("phase 2: burst of {} runs…", knobs.burst);
    let (runs, wall) = burst(&api, knobs.burst, knobs.burst_inflight, knobs.burst_timeout).await;
    let burst_stats = stats("burst", &runs, wall);
    let mem_burst = mem();
    drop(runs);

    // Phase 3: right after the burst.
    println!("phase 3: {} sequential runs right after the burst…", knobs.runs);
    let (runs, wall) = sequential(&api, knobs.runs, knobs.run_timeout).await;
    let after = stats("after burst", &runs, wall);
    let mem_after = mem();

    // Phase 4 (embedded only): the same runs with the server's process 1 GiB larger (touched
    // heap). A spawn that copied the server (fork) would slow down with its size; a
    // vfork-style spawn must not.
    let inflated = if server.is_some() && knobs.inflate_mib > 0 {
        println!(
            "phase 4: {} sequential runs with the server's RSS inflated by {} MiB…",
            knobs.runs, knobs.inflate_mib
        );
        let ballast = touched_ballast(knobs.inflate_mib);
        let mem_inflated = mem();
        let (runs, wall) = sequential(&api, knobs.runs, knobs.run_timeout).await;
        drop(ballast);
        Some((stats("inflated", &runs, wall), mem_inflated))
    } else {
        None
    };

    // Phase 5: throughput at each in-flight level, then RSS once drained.
    let mut levels = Vec::new();
    for &level in &knobs.levels {
        let count = level.max(knobs.runs);
        println!("phase 5: {count} runs, {level} in flight…");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let poller = tokio::spawn(poll_status(Api { http: http_client(), ..api.clone() }, stop_rx));
        let (runs, wall) = burst(&api, count, level, knobs.burst_timeout).await;
        let _ = stop_tx.send(());
        let poll = poller.await.unwrap_or_default();
        let timeouts = runs.iter().filter(|r| r.result.as_ref().is_err_and(|e| e.starts_with("timed out"))).count();
        let stats = stats(&format!("{level} in flight"), &runs, wall);
        let runs_per_s = stats.n as f64 / wall.as_secs_f64();
        levels.push(Level { inflight: level, stats, timeouts, runs_per_s, poll });
    }
    let (drained, mem_drained) = if levels.is_empty() {
        (true, None)
    } else {
        let drained = wait_drained(&api, Duration::from_secs(120)).await;
        // The burst's clients and connections are gone; the server's extra blocking threads
        // time out after 10 s and it trims freed memory once idle for 15 s.
        tokio::time::sleep(env_secs("CONTREE_BENCH_SETTLE_SECS", 20)).await;
        (drained, mem())
    };
    let load_end = load_average();

    let ratio = after.p50 / fresh.p50;
    let fresh_ok = fresh.failures == 0 && fresh.p50 <= GOAL_P50_MS;
    let after_ok = after.failures == 0 && after.p50 <= GOAL_P50_MS;
    let ratio_ok = fresh.failures == 0 && after.failures == 0 && ratio <= GOAL_RATIO;

    println!();
    println!(
        "{:<28} {:>5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "phase (latency in ms)", "ok", "fail", "429", "p50", "p90", "p99", "mean", "max", "201 p50", "wall ms"
    );
    print_row("1 fresh, sequential", &fresh);
    print_row(&format!("2 burst, {} in flight", knobs.burst_inflight), &burst_stats);
    print_row("3 after burst, sequential", &after);
    if let Some((s, _)) = &inflated {
        print_row(&format!("4 RSS +{} MiB, sequential", knobs.inflate_mib), s);
    }
    println!("(burst latencies include queueing behind max_concurrent_runs; `201 p50` is the spawn request alone)");
    println!();
    let mem_label = if server.is_some() {
        "bench process = embedded server + the bench's HTTP client"
    } else if server_pid.is_some() {
        "external server process"
    } else {
        "external server, CONTREE_BENCH_SERVER_PID not set"
    };
    println!("memory ({mem_label}):");
    println!("  at start:           {}", mem_text(mem_start));
    println!("  after phase 1:      {}", mem_text(mem_fresh));
    println!("  right after burst:  {}", mem_text(mem_burst));
    println!("  after phase 3:      {}", mem_text(mem_after));
    if let Some((_, m)) = &inflated {
        println!("  during phase 4:     {}", mem_text(*m));
    }
    let load = |l: Option<f64>| l.map_or("n/a".to_owned(), |l| format!("{l:.2}"));
    println!("1-min load average: {} at start, {} at the end (noise)", load(load_start), load(load_end));
    println!();
    println!("p50 after/before: {ratio:.2}  ({:.2} ms / {:.2} ms)", after.p50, fresh.p50);
    if let Some((s, _)) = &inflated {
        println!("p50 inflated/after-burst: {:.2}  ({:.2} ms / {:.2} ms)", s.p50 / after.p50, s.p50, after.p50);
    }
    println!("goal p50 <= {GOAL_P50_MS} ms, fresh:        {}", verdict(fresh_ok));
    println!("goal p50 <= {GOAL_P50_MS} ms, after burst:  {}", verdict(after_ok));
    println!("goal after/before <= {GOAL_RATIO:.2}:       {}", verdict(ratio_ok));
    let all_ok = fresh_ok && after_ok && ratio_ok;
    println!("overall: {}", verdict(all_ok));

    let base_rate = levels.iter().find(|l| l.inflight == 1).map(|l| l.runs_per_s);
    let mut load_goals = serde_json::Map::new();
    if !levels.is_empty() {
        println!();
        println!(
            "{:<12} {:>6} {:>5} {:>8} {:>5} {:>9} {:>7} {:>22}",
            "in flight", "ok", "fail", "timeout", "429", "runs/s", "vs 1", "status GET p50/max ms"
        );
        for l in &levels {
            let vs = base_rate.map_or(f64::NAN, |b| l.runs_per_s / b);
            println!(
                "{:<12} {:>6} {:>5} {:>8} {:>5} {:>9.1} {:>6.0}% {:>10.1}/{:<7.1}{}",
                l.inflight,
                l.stats.n,
                l.stats.failures,
                l.timeouts,
                l.stats.throttled,
                l.runs_per_s,
                vs * 100.0,
                l.poll.p50_ms,
                l.poll.max_ms,
                if l.poll.failed > 0 { format!(" ({} failed)", l.poll.failed) } else { String::new() }
            );
        }
        let idle = mem_fresh.map(|m| m.rss_kib as f64);
        let drained_rss = mem_drained.map(|m| m.rss_kib as f64);
        let rss_ratio = idle.zip(drained_rss).map(|(i, d)| d / i);
        println!(
            "memory after the load drained{}: {}",
            if drained { "" } else { " (NOT drained)" },
            mem_text(mem_drained)
        );
        if let Some(r) = rss_ratio {
            println!("RSS after drain / idle (after phase 1): {r:.2}");
        }
        if let Some(l) = levels.iter().find(|l| l.inflight == 1000)
            && let Some(b) = base_rate
        {
            let ok = l.runs_per_s >= 0.9 * b;
            println!("goal runs/s at 1,000 in flight >= 90% of 1:    {}", verdict(ok));
            load_goals.insert("rate_1000".to_owned(), json!(verdict(ok)));
        }
        if let Some(l) = levels.iter().find(|l| l.inflight == 2000) {
            let ok = l.stats.failures == 0 && l.timeouts == 0 && l.poll.failed == 0;
            println!("goal 0 errors/timeouts at 2,000 in flight:     {}", verdict(ok));
            load_goals.insert("errors_2000".to_owned(), json!(verdict(ok)));
        }
        if let Some(r) = rss_ratio {
            let ok = r <= 2.0;
            println!("goal RSS after drain <= 2x idle:               {}", verdict(ok));
            load_goals.insert("rss_after_drain".to_owned(), json!(verdict(ok)));
        }
    }

    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(json!({
        "bench": "contree-local spawn",
        "target": external.unwrap_or_else(|| "embedded".to_owned()),
        "image": api.image,
        "networking": api.networking,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "runs": knobs.runs, "warmup": WARMUP, "burst": knobs.burst, "burst_inflight": knobs.burst_inflight,
        "fresh": stats_json(&fresh),
        "burst_phase": stats_json(&burst_stats),
        "after_burst": stats_json(&after),
        "inflated": inflated.as_ref().map(|(s, m)| json!({"mib": knobs.inflate_mib, "stats": stats_json(s), "memory": mem_json(*m)})),
        "memory": {
            "what": mem_label,
            "start": mem_json(mem_start), "after_fresh": mem_json(mem_fresh),
            "after_burst": mem_json(mem_burst), "after_phase3": mem_json(mem_after),
        },
        "load_average_1min": {"start": load_start, "end": load_end},
        "throughput": levels.iter().map(|l| json!({
            "inflight": l.inflight, "runs_per_s": l.runs_per_s, "timeouts": l.timeouts,
            "stats": stats_json(&l.stats),
            "status_get": {"count": l.poll.count, "failed": l.poll.failed, "p50_ms": l.poll.p50_ms, "max_ms": l.poll.max_ms},
        })).collect::<Vec<_>>(),
        "memory_after_drain": mem_json(mem_drained),
        "drained": drained,
        "load_goals": load_goals,
        "p50_ratio_after_over_fresh": if ratio.is_finite() { json!(ratio) } else { Value::Null },
        "goals": {
            "p50_ms_max": GOAL_P50_MS, "ratio_max": GOAL_RATIO,
            "fresh_p50": verdict(fresh_ok), "after_burst_p50": verdict(after_ok), "ratio": verdict(ratio_ok),
            "overall": verdict(all_ok),
        },
    }))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    raise_nofile_limit();
    let knobs = Knobs::from_env();
    let report = match tokio::time::timeout(knobs.total_timeout, bench(&knobs)).await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            eprintln!("spawn bench: could not measure: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("spawn bench: timed out after {:?} (CONTREE_BENCH_TIMEOUT_SECS)", knobs.total_timeout);
            std::process::exit(1);
        }
    };
    let path = json_path();
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap_or_default()));
    match written {
        Ok(()) => println!("results: {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
