//! `contree-local`: run a local Contree server.
//!
//! ```text
//! contree-local --data-dir ~/.local/share/contree-local --bind 127.0.0.1:8080 [--token T]
//! ```
//! Prints the base URL and the token (generated when not given) on start, then serves until
//! interrupted (Ctrl-C / SIGTERM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use contree_local::{LocalConfig, LocalServer};

/// A local Contree server: runs every command in a Linux sandbox (namespaces + overlayfs)
/// and keeps each result as a new image. Needs root (or CAP_SYS_ADMIN).
#[derive(Parser)]
#[command(name = "contree-local", version)]
struct Args {
    /// Where images, layers, files and the database are kept.
    /// Default: $XDG_DATA_HOME/contree-local (or ~/.local/share/contree-local).
    #[arg(long, env = "CONTREE_LOCAL_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Address to listen on. Keep it on loopback unless you really mean to expose it.
    #[arg(long, default_value = "127.0.0.1:8080", env = "CONTREE_LOCAL_BIND")]
    bind: SocketAddr,

    /// Bearer token clients must send. Default: a random one, printed at start.
    #[arg(long, env = "CONTREE_LOCAL_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// How many commands run at once (further ones wait as PENDING). Default: 2 × CPUs.
    #[arg(long)]
    max_concurrent_runs: Option<usize>,

    /// Timeout of runs that don't set one, in seconds.
    #[arg(long)]
    default_run_timeout: Option<u64>,
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("contree-local");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/contree-local");
    }
    PathBuf::from("/var/lib/contree-local")
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "contree_local=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config =
        LocalConfig::default().with_data_dir(args.data_dir.unwrap_or_else(default_data_dir)).with_bind(args.bind);
    if let Some(t) = args.token {
        config = config.with_token(t);
    }
    if let Some(n) = args.max_concurrent_runs {
        config = config.with_max_concurrent_runs(n);
    }
    if let Some(s) = args.default_run_timeout {
        config = config.with_default_run_timeout(Duration::from_secs(s));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("contree-local: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match LocalServer::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("contree-local: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Printed on stdout (not through logging) so scripts can read them.
        println!("CONTREE_URL={}", server.base_url());
        println!("CONTREE_TOKEN={}", server.token());
        println!("data dir: {}", server.data_dir().display());
        wait_for_signal().await;
        eprintln!("contree-local: shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
