//! Benchmark: what the SDK's spans cost when nobody looks, on the latency of a `true` run
//! end to end (spawn, event stream, final status) against an embedded contree-local server.
//!
//! `cargo bench --bench tracing_overhead` — measures, in interleaved rounds (so drift and
//! noise hit every mode alike):
//! - `none`: no subscriber for this thread;
//! - `off`: a subscriber whose filter disables everything (`LevelFilter::OFF`);
//! - `all`: a formatting subscriber at TRACE writing every span and event to `io::sink()`.
//!
//! and, first of all, `never`: no subscriber ever installed in the process, the case where
//! tracing's callsite cache turns every span into a constant-false check (once any
//! subscriber has existed, even a thread-local one, callsites are re-checked per call, so
//! `none` measures that slightly slower path). Statically compiling tracing out (its
//! `max_level_off` feature) cannot be compared in one binary; `never` is what it saves
//! against.
//!
//! The client runs on this thread (a current-thread runtime) with the subscriber set for
//! this thread only: the server's own threads log nothing, so only the SDK's cost is seen.
//! Override the sizes with `BENCH_ROUNDS=N BENCH_RUNS=N` (runs per mode per round).

use std::time::{Duration, Instant};

use tracing_subscriber::filter::LevelFilter;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len() as u32
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    None,
    Off,
    All,
}

fn dispatch(mode: Mode) -> Option<tracing::Dispatch> {
    match mode {
        Mode::None => None,
        Mode::Off => Some(tracing::Dispatch::new(
            tracing_subscriber::fmt().with_max_level(LevelFilter::OFF).with_writer(std::io::sink).finish(),
        )),
        Mode::All => Some(tracing::Dispatch::new(
            tracing_subscriber::fmt().with_max_level(LevelFilter::TRACE).with_writer(std::io::sink).finish(),
        )),
    }
}

async fn runs(run: &contree::PreparedRun, n: usize, into: &mut Vec<Duration>) -> contree::Result<()> {
    for _ in 0..n {
        let t = Instant::now();
        let done = run.clone().wait().await?;
        into.push(t.elapsed());
        assert_eq!(done.exit_code()?, 0);
    }
    Ok(())
}

fn report(label: &str, mut lat: Vec<Duration>, baseline: Option<Duration>) -> Duration {
    lat.sort();
    let med = median(&lat);
    let ratio = baseline.map_or(String::new(), |b| format!("  median/none={:.3}", med.as_secs_f64() / b.as_secs_f64()));
    println!(
        "{label:<8} n={:<5} median={:>7.3} ms  mean={:>7.3} ms  p90={:>7.3} ms{ratio}",
        lat.len(),
        med.as_secs_f64() * 1e3,
        mean(&lat).as_secs_f64() * 1e3,
        lat[lat.len() * 9 / 10].as_secs_f64() * 1e3,
    );
    med
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server runs on threads of its own, with no subscriber (none is ever global here).
    let server =
        std::thread::spawn(|| contree_local::LocalServer::start_blocking(contree_local::LocalConfig::default()))
            .join()
            .expect("server thread")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = contree::Contree::builder().base_url(server.base_url()).token(server.token()).build()?;
    let base = client.images().use_image(contree_local::BASE_IMAGE_TAG)?;
    let run = base.run("true");
    let rounds = env_count("BENCH_ROUNDS", 20);
    let per = env_count("BENCH_RUNS", 10);

    rt.block_on(async {
        // Warm up: page cache, connection pool, first overlay mounts.
        let mut sink = Vec::new();
        runs(&run, 20, &mut sink).await?;
        // `never`: before any subscriber has existed in this process.
        let mut never = Vec::new();
        for _ in 0..rounds {
            runs(&run, per, &mut never).await?;
        }
        let mut lat: [Vec<Duration>; 3] = Default::default();
        let modes = [Mode::None, Mode::Off, Mode::All];
        for round in 0..rounds {
            // Rotate the order so no mode always follows the same one.
            for k in 0..3 {
                let i = (round + k) % 3;
                match dispatch(modes[i]) {
                    Some(d) => {
                        let _guard = tracing::dispatcher::set_default(&d);
                        runs(&run, per, &mut lat[i]).await?;
                    }
                    None => runs(&run, per, &mut lat[i]).await?,
                }
            }
        }
        println!("`true` run latency, {rounds} rounds x {per} runs per mode (interleaved), one client thread:");
        let [none, off, all] = lat;
        let base = report("none", none, None);
        report("never", never, Some(base));
        report("off", off, Some(base));
        report("all", all, Some(base));
        Ok::<_, contree::Error>(())
    })?;
    drop(server);
    Ok(())
}
