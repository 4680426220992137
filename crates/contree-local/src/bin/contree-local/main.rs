//! `contree-local`: run a local Contree server.
//!
//! ```text
//! contree-local --data-dir ~/.local/share/contree-local --bind 127.0.0.1:8080 [--token-file PATH] [--no-networking]
//!               [--run-memory 2G] [--run-pids 1024] [--run-cpus 1.5] [--log-format text|json]
//! ```
//! The token is never taken from the command line (every host user can read it there): it
//! comes from `--token-file`, `CONTREE_LOCAL_TOKEN`, or is generated into `<data-dir>/token`
//! (see [`token`]). Prints the base URL (and a generated token, once) on start, then serves
//! until interrupted (Ctrl-C / SIGTERM).

mod token;

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

    /// A file holding the bearer token clients must send (mode 0600: files other users can
    /// read are refused). Or set CONTREE_LOCAL_TOKEN. Default: the token in <data-dir>/token,
    /// generated and printed on the first start.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// Refused: a token on the command line is visible to every user in `ps`.
    #[arg(long, hide = true, num_args = 0..=1, value_name = "REFUSED")]
    token: Option<Option<String>>,

    /// How many commands run at once (further ones wait as PENDING). Default: 2 × CPUs.
    #[arg(long)]
    max_concurrent_runs: Option<usize>,

    /// How many runs may wait as PENDING for a slot; a spawn beyond that is answered 429 with
    /// Retry-After (nothing recorded, so clients replay it). Default: 4096.
    #[arg(long)]
    max_queued_runs: Option<usize>,

    /// Timeout of runs that don't set one, in seconds.
    #[arg(long)]
    default_run_timeout: Option<u64>,

    /// Host uid/gid range of the sandboxes' user namespaces, as BASE:COUNT (root in a
    /// sandbox is BASE on the host). Default: 2000000000:65536. No host account may use it.
    #[arg(long, value_name = "BASE:COUNT", value_parser = parse_id_range)]
    id_range: Option<contree_local::IdRange>,

    /// Run every command without a network. Requests that ask for `networking.enabled: true`
    /// are refused with 400. Default: runs have a network through slirp4netns (never the
    /// host's), as the Contree spec says.
    #[arg(long)]
    no_networking: bool,

    /// Memory limit of each run (swap included), as BYTES or with a K/M/G/T suffix (powers of
    /// 1024: 512M, 2G), or `unlimited`. A run past it is OOM-killed and its operation fails
    /// saying so. Default: 2G, or half the RAM when less (a warning is logged if the host
    /// can't enforce it; an explicit value the host can't enforce stops the start).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    run_memory: Option<contree_local::RunLimit<u64>>,

    /// How many processes and threads a run may have at once, or `unlimited`. Default: 1024.
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    run_pids: Option<contree_local::RunLimit<u64>>,

    /// CPU quota of each run, in CPUs (e.g. 1.5), or `unlimited`. Default: no quota (every
    /// run may use all CPUs; runs get equal CPU weight).
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    run_cpus: Option<contree_local::RunLimit<f64>>,
    /// A registry (`host` or `host:port`) that image imports reach over plain HTTP; may be
    /// repeated. Loopback registries always are; every other one is HTTPS only.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// The most an imported image may unpack to (`BYTES`, `512M`, `20G`); default 12G.
    #[arg(long, value_name = "SIZE", value_parser = parse_import_bytes)]
    max_import_bytes: Option<u64>,

    /// How log lines on stderr are written: `text` (one line each, coloured only on a
    /// terminal and without NO_COLOR) or `json` (one JSON object per line, with the current
    /// span's fields). Which lines: RUST_LOG (default `contree_local=info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CONTREE_LOCAL_LOG_FORMAT")]
    log_format: LogFormat,
}

/// Set once JSON logging is on: [`complain`] then logs instead of printing.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The format of the server's log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs go to stderr. Colours are for people: a pipe or a file (journald, `2> log`, CI)
/// gets plain text, and NO_COLOR turns them off on a terminal too.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "contree_local=info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init()
        }
        LogFormat::Json => {
            builder.json().with_ansi(false).init();
            JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn parse_import_bytes(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// Writes a line for scripts on stdout. A reader that has gone away (a closed pipe) must
/// not stop the server: `println!` would panic on EPIPE, so errors are ignored here.
fn announce(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
}

/// Like [`announce`], on stderr. With `--log-format json` it is a log line like the others
/// (stderr stays one JSON object per line); command-line mistakes found before logging starts
/// stay plain, like clap's own.
fn complain(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("{line}");
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(line).and_then(|()| err.write_all(b"\n"));
}

fn parse_id_range(s: &str) -> Result<contree_local::IdRange, String> {
    let (base, count) = s.split_once(':').ok_or_else(|| format!("{s:?} is not BASE:COUNT"))?;
    let base = base.parse::<u32>().map_err(|e| format!("base {base:?}: {e}"))?;
    let count = count.parse::<u32>().map_err(|e| format!("count {count:?}: {e}"))?;
    contree_local::IdRange::new(base, count).map_err(|e| e.to_string())
}

/// `unlimited`, or a value for `parse`.
fn limit<T>(s: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<contree_local::RunLimit<T>, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(contree_local::RunLimit::Unlimited);
    }
    parse(s).map(contree_local::RunLimit::Set)
}

fn parse_memory(s: &str) -> Result<contree_local::RunLimit<u64>, String> {
    limit(s, parse_size)
}

fn parse_pids(s: &str) -> Result<contree_local::RunLimit<u64>, String> {
    limit(s, |s| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}")))
}

fn parse_cpus(s: &str) -> Result<contree_local::RunLimit<f64>, String> {
    limit(s, |s| match s.parse::<f64>() {
        Ok(c) if c.is_finite() && c > 0.0 => Ok(c),
        _ => Err(format!("{s:?} is not a positive number of CPUs")),
    })
}

/// BYTES or a number with a K, M, G or T suffix (powers of 1024; `KiB`, `MB`… spellings
/// too).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n = num.parse::<u64>().map_err(|_| format!("{s:?} is not a size (BYTES, 512M, 2G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
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
    // Taken out of the environment before anything else runs (no other thread exists yet), so
    // no process the server starts inherits it.
    let env_token = std::env::var_os(token::TOKEN_ENV);
    if env_token.is_some() {
        // SAFETY: single-threaded here: nothing has started a thread or reads the environment.
        unsafe { std::env::remove_var(token::TOKEN_ENV) };
    }
    let args = Args::parse();
    init_logging(args.log_format);
    if args.token.is_some() {
        complain(format_args!("contree-local: {}", token::TOKEN_FLAG_REFUSED));
        return ExitCode::from(2);
    }
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let token = match token::resolve(args.token_file.as_deref(), env_token, &data_dir) {
        Ok(t) => t,
        Err(e) => {
            complain(format_args!("contree-local: {e}"));
            return ExitCode::from(2);
        }
    };
    let mut config =
        LocalConfig::default().with_data_dir(&data_dir).with_bind(args.bind).with_networking(!args.no_networking);
    let token_path = match &token {
        Some(t) => {
            config = config.with_token(t.secret.clone());
            match &t.origin {
                token::Origin::File(p) | token::Origin::DataDir(p) => Some(p.clone()),
                token::Origin::Env => None,
            }
        }
        None => None,
    };
    if let Some(n) = args.max_concurrent_runs {
        config = config.with_max_concurrent_runs(n);
    }
    if let Some(n) = args.max_queued_runs {
        config = config.with_max_queued_runs(n);
    }
    if let Some(s) = args.default_run_timeout {
        config = config.with_default_run_timeout(Duration::from_secs(s));
    }
    if let Some(ids) = args.id_range {
        config = config.with_id_range(ids);
    }
    if let Some(m) = args.run_memory {
        config = config.with_run_memory(m);
    }
    if let Some(n) = args.run_pids {
        config = config.with_run_pids(n);
    }
    if let Some(c) = args.run_cpus {
        config = config.with_run_cpus(c);
    }
    for r in args.insecure_registries {
        config = config.with_insecure_registry(r);
    }
    if let Some(n) = args.max_import_bytes {
        config = config.with_max_import_bytes(n);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            complain(format_args!("contree-local: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match LocalServer::start(config).await {
            Ok(s) => s,
            Err(e) => {
                complain(format_args!("contree-local: {e}"));
                return ExitCode::FAILURE;
            }
        };
        // Printed on stdout (not through logging) so scripts can read them.
        announce(format_args!("CONTREE_URL={}", server.base_url()));
        match token_path {
            Some(p) => announce(format_args!("CONTREE_TOKEN_FILE={}", p.display())),
            None if token.is_none() => {
                // Generated: saved (0600, in the private data dir) and shown this once; later
                // starts reuse the file and print only its path.
                let path = server.data_dir().join(token::TOKEN_FILE_NAME);
                if let Err(e) = token::save_generated(&path, server.token()) {
                    complain(format_args!("contree-local: {e}"));
                    server.shutdown().await;
                    return ExitCode::FAILURE;
                }
                announce(format_args!("CONTREE_TOKEN={}", server.token()));
                announce(format_args!("CONTREE_TOKEN_FILE={}", path.display()));
            }
            None => {}
        }
        announce(format_args!("data dir: {}", server.data_dir().display()));
        wait_for_signal().await;
        tracing::info!("shutting down");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_limits_parse() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert!(parse_size("2X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_memory("unlimited"), Ok(contree_local::RunLimit::Unlimited));
        assert_eq!(parse_pids("256"), Ok(contree_local::RunLimit::Set(256)));
        assert_eq!(parse_cpus("1.5"), Ok(contree_local::RunLimit::Set(1.5)));
        assert!(parse_cpus("0").is_err() && parse_cpus("nan").is_err());
    }
}
