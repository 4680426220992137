//! Benchmark: latency and client CPU of `true` runs in the built-in image, one after another,
//! through the SDK (`image.run("true").wait()`), in either flavor.
//!
//! ```text
//! CONTREE_BENCH_URL=http://127.0.0.1:PORT CONTREE_BENCH_TOKEN=T \
//! BENCH_FLAVOR=async|blocking BENCH_HTTP=http1|h2c BENCH_N=200 BENCH_ROUND=1 BENCH_OUT=results.jsonl \
//!     cargo bench --bench sdk_latency
//! ```
//!
//! Records `{"kind": "latency", ...}`: every run's wall time, the client's CPU per run (user +
//! system time of this process over the timed loop, divided by the runs), its peak RSS, and the
//! server's own duration of each run (read after the timed loop). `benches/compare` runs it
//! interleaved with the official Python clients.

mod support;

use std::time::Instant;

use serde_json::json;
use support::{Target, env_string, env_usize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_env()?;
    let flavor = env_string("BENCH_FLAVOR", "async");
    let http = env_string("BENCH_HTTP", "http1");
    let config = support::client_config(&target, &http)?;
    let n = env_usize("BENCH_N", 200);
    let warmup = env_usize("BENCH_WARMUP", 10);
    let (latencies, ids, cpu, errors) = match flavor.as_str() {
        "async" => run_async(config, warmup, n)?,
        "blocking" => run_blocking(config, warmup, n)?,
        other => return Err(format!("BENCH_FLAVOR must be async or blocking, not {other}").into()),
    };
    let server_ms = support::server_durations_ms(&target.url, &target.token, &ids);
    let client = format!("contree-rs {flavor} ({http})");
    eprintln!("{}", support::summary(&client, &latencies));
    eprintln!("{}", support::summary("  server's own duration", &server_ms));
    support::record(json!({
        "kind": "latency",
        "client": client,
        "round": env_usize("BENCH_ROUND", 1),
        "n": n,
        "latencies_ms": latencies,
        "server_ms": server_ms,
        "cpu_ms_per_run": if target.embedded { None } else { Some(cpu.as_secs_f64() * 1e3 / n as f64) },
        "peak_rss_kib": if target.embedded { None } else { Some(support::peak_rss_kib()) },
        "errors": errors,
    }));
    Ok(())
}

type Outcome = (Vec<f64>, Vec<String>, std::time::Duration, usize);

fn run_async(config: contree::ContreeConfig, warmup: usize, n: usize) -> Result<Outcome, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let client = contree::Contree::builder().config(config).build()?;
        let run = client.images().use_image(contree_local::BASE_IMAGE_TAG)?.run("true");
        for _ in 0..warmup {
            run.clone().wait().await?;
        }
        let (mut lat, mut ids, mut errors) = (Vec::with_capacity(n), Vec::with_capacity(n), 0);
        let cpu = support::process_cpu();
        for _ in 0..n {
            let t = Instant::now();
            match run.clone().wait().await {
                Ok(done) => {
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    ids.push(done.output()?.operation_id.to_string());
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("error: {e}");
                }
            }
        }
        let cpu = support::process_cpu() - cpu;
        Ok((lat, ids, cpu, errors))
    })
}

fn run_blocking(
    config: contree::ContreeConfig,
    warmup: usize,
    n: usize,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let client = contree::blocking::ContreeSync::builder().config(config).build()?;
    let run = client.images().use_image(contree_local::BASE_IMAGE_TAG)?.run("true");
    for _ in 0..warmup {
        run.clone().wait()?;
    }
    let (mut lat, mut ids, mut errors) = (Vec::with_capacity(n), Vec::with_capacity(n), 0);
    let cpu = support::process_cpu();
    for _ in 0..n {
        let t = Instant::now();
        match run.clone().wait() {
            Ok(done) => {
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                ids.push(done.output()?.operation_id.to_string());
            }
            Err(e) => {
                errors += 1;
                eprintln!("error: {e}");
            }
        }
    }
    let cpu = support::process_cpu() - cpu;
    Ok((lat, ids, cpu, errors))
}
