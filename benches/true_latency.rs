//! Benchmark: `true` in the built-in image, end to end through the SDK (HTTP spawn, SSE
//! follow, final status read) against an embedded contree-local server.
//!
//! `cargo bench --bench true_latency` — prints p50/p99 latency and runs per second,
//! sequentially and with 100 runs in flight. Override the counts with
//! `BENCH_SEQUENTIAL=N BENCH_CONCURRENT=N`.

use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(label: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    println!(
        "{label:<28} n={:<4} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms  {:>6.1} runs/s",
        lat.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        lat.len() as f64 / wall.as_secs_f64()
    );
}

/// The server's record of the operation a failed run belongs to, to tell why it failed.
async fn operation_record(server: &contree_local::LocalServer, e: &contree::Error) -> String {
    let op = e.operation_id().unwrap_or_default();
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/operations/{op}", server.base_url()))
        .bearer_auth(server.token())
        .send()
        .await;
    match resp {
        Ok(r) => r.text().await.unwrap_or_else(|e| e.to_string()),
        Err(e) => e.to_string(),
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server =
        contree_local::LocalServer::start(contree_local::LocalConfig::default().with_max_concurrent_runs(100)).await?;
    let client = contree::Contree::builder().base_url(server.base_url()).token(server.token()).build()?;
    let base = client.images().use_image(contree_local::BASE_IMAGE_TAG)?;
    let run = base.run("true");

    // Warm up: page cache, connection pool, first overlay mounts.
    for _ in 0..20 {
        if let Err(e) = run.clone().wait().await {
            eprintln!("warm-up failed: {}", operation_record(&server, &e).await);
            return Err(e.into());
        }
    }

    let sequential = env_count("BENCH_SEQUENTIAL", 300);
    let mut lat = Vec::with_capacity(sequential);
    let wall = Instant::now();
    for _ in 0..sequential {
        let t = Instant::now();
        // A clone per execution: each execution is a new operation (clones are cheap).
        let done = match run.clone().wait().await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("after {} runs: {}", lat.len(), operation_record(&server, &e).await);
                return Err(e.into());
            }
        };
        assert_eq!(done.exit_code()?, 0);
        lat.push(t.elapsed());
    }
    report("sequential", lat, wall.elapsed());

    let concurrent = env_count("BENCH_CONCURRENT", 100);
    for round in 1..=3 {
        let wall = Instant::now();
        let tasks: Vec<_> = (0..concurrent)
            .map(|_| {
                let run = run.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let done = run.wait().await?;
                    let code = done.exit_code()?;
                    Ok::<_, contree::Error>((t.elapsed(), code))
                })
            })
            .collect();
        let mut lat = Vec::with_capacity(concurrent);
        let mut errors = 0;
        for t in tasks {
            match t.await? {
                Ok((d, 0)) => lat.push(d),
                Ok((_, code)) => {
                    errors += 1;
                    eprintln!("exit code {code}");
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("error: {e}");
                }
            }
        }
        report(&format!("{concurrent} in flight (round {round})"), lat, wall.elapsed());
        println!("{:<28} errors={errors}", "");
    }
    server.shutdown().await;
    Ok(())
}
