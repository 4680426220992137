//! Measures spawn + wait + finish of `true` in a sandbox, sequentially (needs root).
//!
//! ```text
//! cargo run --release -p contree-local --example sandbox_bench -- [runs=200]
//! ```
//!
//! Prints percentiles of the whole cycle and of its phases. Not a test: timings depend on
//! the machine and its load.

use std::time::{Duration, Instant};

use contree_local::images::base::ensure_base;
use contree_local::sandbox::{self, SandboxSpec, UpperState};

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!("p50 {:>9.3?}  p90 {:>9.3?}  min {:>9.3?}  max {:>9.3?}", at(0.5), at(0.9), v[0], v[v.len() - 1])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(200).max(1);
    let data = tempfile::Builder::new().prefix("contree-sandbox-bench-").tempdir()?;
    sandbox::check_support(data.path())?;
    let base = ensure_base(data.path())?;

    let (mut total, mut spawn, mut wait, mut finish) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let run_dir = data.path().join("runs").join(i.to_string());
        let t0 = Instant::now();
        let sb = sandbox::spawn(SandboxSpec::new(base.clone(), run_dir.clone(), "true"))?;
        let t1 = Instant::now();
        let exit = sb.wait();
        let t2 = Instant::now();
        let upper = sandbox::finish(&run_dir)?;
        let t3 = Instant::now();
        assert_eq!(exit.exit_code, 0);
        assert_eq!(upper, UpperState::Unchanged);
        total.push(t3 - t0);
        spawn.push(t1 - t0);
        wait.push(t2 - t1);
        finish.push(t3 - t2);
    }
    println!("{runs} sequential runs of `true`:");
    println!("  spawn+wait+finish  {}", percentiles(total));
    println!("  spawn              {}", percentiles(spawn));
    println!("  wait               {}", percentiles(wait));
    println!("  finish             {}", percentiles(finish));
    Ok(())
}
