//! Benchmark: many runs in flight from one client — throughput, errors, the client's peak RSS
//! and the sockets it holds.
//!
//! ```text
//! CONTREE_BENCH_URL=http://127.0.0.1:PORT CONTREE_BENCH_TOKEN=T \
//! BENCH_FLAVOR=async|blocking BENCH_HTTP=h2c|http1 BENCH_IN_FLIGHT=1000 BENCH_OUT=results.jsonl \
//!     prlimit --nofile=1024:1024 cargo bench --bench sdk_in_flight
//! ```
//!
//! Keeps `BENCH_IN_FLIGHT` runs of `true` going until `BENCH_TOTAL` (default: the larger of
//! the two and 200) have finished; the async flavor runs them as tasks on one client, the
//! blocking flavor on as many threads. `h2c` is what `LocalServer::client_config` sets up;
//! `http1` is the default for a plain `http://` URL, bounded by `max_connections` (64).
//! Records `{"kind": "in_flight", ...}`. Run it once per level: peak RSS is per process.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Target, env_string, env_usize};

struct Outcome {
    latencies_ms: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_env()?;
    let flavor = env_string("BENCH_FLAVOR", "async");
    let http = env_string("BENCH_HTTP", "h2c");
    let in_flight = env_usize("BENCH_IN_FLIGHT", 1000).max(1);
    let total = env_usize("BENCH_TOTAL", in_flight.max(200));
    let config = support::client_config(&target, &http)?;
    let sockets = support::SocketSampler::start(Duration::from_millis(20));
    let wall = Instant::now();
    let outcome = match flavor.as_str() {
        "async" => run_async(config, in_flight, total)?,
        "blocking" => run_blocking(config, in_flight, total)?,
        other => return Err(format!("BENCH_FLAVOR must be async or blocking, not {other}").into()),
    };
    let wall = wall.elapsed();
    let max_sockets = sockets.stop();
    let done = outcome.latencies_ms.len();
    eprintln!(
        "{} | {:.1} runs/s, errors {}, max sockets {max_sockets}, peak RSS {} KiB",
        support::summary(&format!("{flavor} {http} x{in_flight}"), &outcome.latencies_ms),
        done as f64 / wall.as_secs_f64(),
        outcome.errors,
        support::peak_rss_kib()
    );
    support::record(json!({
        "kind": "in_flight",
        "client": format!("contree-rs {flavor} ({http})"),
        "round": env_usize("BENCH_ROUND", 1),
        "in_flight": in_flight,
        "total": total,
        "runs_per_s": done as f64 / wall.as_secs_f64(),
        "errors": outcome.errors,
        "first_error": outcome.first_error,
        "latencies_ms": outcome.latencies_ms,
        "max_sockets": max_sockets,
        "peak_rss_kib": if target.embedded { None } else { Some(support::peak_rss_kib()) },
        "nofile_limit": nofile_limit(),
    }));
    Ok(())
}

/// The soft descriptor limit this process runs under (`prlimit --nofile` in the script).
fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

fn run_async(
    config: contree::ContreeConfig,
    in_flight: usize,
    total: usize,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let client = contree::Contree::builder().config(config).build()?;
        let run = client.images().use_image(contree_local::BASE_IMAGE_TAG)?.run("true");
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..in_flight)
            .map(|_| {
                let (run, next) = (run.clone(), next.clone());
                tokio::spawn(async move {
                    let mut out = Outcome { latencies_ms: Vec::new(), errors: 0, first_error: None };
                    while next.fetch_add(1, Ordering::Relaxed) < total {
                        let t = Instant::now();
                        match run.clone().wait().await {
                            Ok(_) => out.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3),
                            Err(e) => {
                                out.errors += 1;
                                out.first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        let mut all = Outcome { latencies_ms: Vec::with_capacity(total), errors: 0, first_error: None };
        for w in workers {
            let out = w.await?;
            all.latencies_ms.extend(out.latencies_ms);
            all.errors += out.errors;
            if all.first_error.is_none() {
                all.first_error = out.first_error;
            }
        }
        Ok(all)
    })
}

fn run_blocking(
    config: contree::ContreeConfig,
    in_flight: usize,
    total: usize,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let client = contree::blocking::ContreeSync::builder().config(config).build()?;
    let run = client.images().use_image(contree_local::BASE_IMAGE_TAG)?.run("true");
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (run, next) = (run.clone(), next.clone());
            // Small stacks: a thousand threads of the default 8 MiB would be mostly untouched
            // reservations anyway, but say what the workload needs.
            std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
                let mut out = Outcome { latencies_ms: Vec::new(), errors: 0, first_error: None };
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    match run.clone().wait() {
                        Ok(_) => out.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3),
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                out
            })
        })
        .collect::<Result<_, _>>()?;
    let mut all = Outcome { latencies_ms: Vec::with_capacity(total), errors: 0, first_error: None };
    for w in workers {
        let out = w.join().map_err(|_| "a worker thread panicked")?;
        all.latencies_ms.extend(out.latencies_ms);
        all.errors += out.errors;
        if all.first_error.is_none() {
            all.first_error = out.first_error;
        }
    }
    Ok(all)
}
