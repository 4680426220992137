//! The official Python clients from PyPI against contree-local: `contree-sdk` 0.3.6 (the
//! high-level SDK, sync and async) and `contree-client` 0.4.4 (the low-level client),
//! pinned with hashes in `tests/python/requirements.txt` and driven by
//! `tests/python/official_clients.py` against an embedded server.
//!
//! The venv: `$CONTREE_PYTHON_VENV` when set (`.ci/run` makes `.ci/python-venv`), else one
//! this test makes under `target/tmp` with `python3 -m venv` (`$CONTREE_PYTHON` picks
//! another interpreter). The pinned packages are installed into it from PyPI the first time
//! and whenever the requirements change. Needs Python 3.10+ with its `venv` module (Debian:
//! `apt-get install python3 python3-venv`), and Linux and root like every contree-local test.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

#[path = "support/local.rs"]
mod support;

/// Every check of the script; each must report `ok`, so a check that vanished fails too.
const CHECKS: [&str; 13] = [
    "sdk_run_wait_stdout",
    "sdk_async_run",
    "sdk_session_chain",
    "sdk_branching",
    "sdk_popen_communicate",
    "sdk_apply_files_read",
    "sdk_ls",
    "sdk_tag_untag",
    "sdk_image_listing",
    "client_events",
    "client_stdin",
    "client_cancel",
    "client_preserve_cwd",
];

/// Bound on the venv's creation and on installing the pinned packages.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on the whole script (its runs take seconds; the SDK polls with backoff).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);
/// The file in a venv recording which requirements were installed into it.
const STAMP: &str = "contree-requirements.sha256";

#[test]
fn the_official_python_clients_work_against_contree_local() {
    let python = venv_python();
    let server = support::local_server();
    let script = manifest_dir().join("tests/python/official_clients.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .env("CONTREE_URL", server.base_url())
        .env("CONTREE_TOKEN", server.token())
        // Loopback only: a proxy from the environment must not see the server's traffic.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        cmd.env_remove(var);
    }
    let run = run_bounded(cmd, SCRIPT_TIMEOUT, "the Python clients' script");
    assert!(run.ok, "the official Python clients failed against contree-local:\n{run}");
    for check in CHECKS {
        assert!(run.stdout.lines().any(|l| l == format!("ok {check}")), "check `{check}` did not pass:\n{run}");
    }
    let summary = format!("{} passed, 0 failed", CHECKS.len());
    assert_eq!(run.stdout.lines().last(), Some(summary.as_str()), "{run}");
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's interpreter, with the pinned requirements installed.
fn venv_python() -> PathBuf {
    let requirements = manifest_dir().join("tests/python/requirements.txt");
    let wanted = hex::encode(Sha256::digest(std::fs::read(&requirements).expect("read tests/python/requirements.txt")));
    let venv = match std::env::var_os("CONTREE_PYTHON_VENV").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("bin/python").exists(),
                "CONTREE_PYTHON_VENV={} is not a venv (no bin/python); create it with `python3 -m venv`",
                dir.display()
            );
            dir
        }
        None => {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
            if !dir.join("bin/python").exists() {
                make_venv(&dir);
            }
            dir
        }
    };
    let stamp = venv.join(STAMP);
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let mut pip = Command::new(venv.join("bin/python"));
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes"])
            .args(["--only-binary", ":all:", "-r"])
            .arg(&requirements);
        let run = run_bounded(pip, INSTALL_TIMEOUT, "pip install -r tests/python/requirements.txt");
        assert!(run.ok, "could not install the official Python clients from PyPI into {}:\n{run}", venv.display());
        std::fs::write(&stamp, &wanted).expect("write the venv's requirements stamp");
    }
    venv.join("bin/python")
}

fn make_venv(dir: &Path) {
    // A half-made venv from an interrupted run is made again.
    let _ = std::fs::remove_dir_all(dir);
    let python = std::env::var_os("CONTREE_PYTHON").unwrap_or_else(|| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "venv"]).arg(dir);
    let run = run_bounded(cmd, INSTALL_TIMEOUT, "python3 -m venv");
    assert!(
        run.ok,
        "could not make a Python venv at {} with {:?}: install Python 3.10+ and its venv module \
         (Debian: `apt-get install python3 python3-venv`), or point CONTREE_PYTHON_VENV at a venv:\n{run}",
        dir.display(),
        python
    );
}

/// How a child process ended.
struct Finished {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to its end, or until `timeout` (then kills it).
fn run_bounded(mut cmd: Command, timeout: Duration, what: &str) -> Finished {
    let mut child = match cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => {
            let stderr = format!("could not start {what} ({:?}): {e}", cmd.get_program());
            return Finished { ok: false, stdout: String::new(), stderr };
        }
    };
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n{what} did not finish within {timeout:?}; killed"));
    }
    Finished { ok: status.is_some_and(|s| s.success()), stdout, stderr }
}
