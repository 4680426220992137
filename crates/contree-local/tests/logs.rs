//! The `contree-local` binary's logs: plain text without ANSI colours when stderr is not a
//! terminal, one JSON object per line with `--log-format json`, a span per request with its
//! route template, and never the token. Linux and root only (like the server itself).
#![cfg(target_os = "linux")]

use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the binary may take to print its banner (the first start builds the base image).
const START_TIMEOUT: Duration = Duration::from_secs(60);

const TOKEN: &str = "logs-test-token-5b0c2f9e1d";

/// Starts the binary with `args` (stderr to a pipe), sends a few requests, stops it with
/// SIGTERM and returns everything it wrote on stderr.
fn stderr_of_a_session(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_contree-local"))
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--token-file")
        .arg(&token_file)
        .args(args)
        .env_remove("CONTREE_LOCAL_TOKEN")
        .env_remove("CONTREE_LOCAL_LOG_FORMAT")
        .env_remove("NO_COLOR")
        // Debug: the request spans' events are logged too.
        .env("RUST_LOG", "contree_local=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        stderr.read_to_string(&mut all).unwrap();
        all
    });
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("CONTREE_URL=") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = match rx.recv_timeout(START_TIMEOUT) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            panic!("no URL in time; stderr: {}", reader.join().unwrap());
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let ok = http.get(format!("{url}/v1/whoami")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        let refused = http.get(format!("{url}/v1/whoami")).bearer_auth("wrong-token").send().await.unwrap();
        assert_eq!(refused.status(), 401);
        let missing = http
            .get(format!("{url}/v1/operations/{}?secret-query=1", uuid_like()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
    });
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    reader.join().unwrap()
}

fn uuid_like() -> &'static str {
    "0b4f7c1e-8f2a-4d8e-9c51-1d2f3a4b5c6d"
}

fn assert_no_secrets(log: &str) {
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
    assert!(!log.contains("wrong-token"), "a refused token is in the log:\n{log}");
    assert!(!log.contains("secret-query"), "a query string is in the log:\n{log}");
}

#[test]
fn text_logs_to_a_pipe_have_no_colours() {
    let log = stderr_of_a_session(&[]);
    assert!(!log.is_empty(), "the server logged nothing");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log written to a pipe:\n{log}");
    // The request span, by its route template.
    assert!(log.contains("http.request"), "no request span in the log:\n{log}");
    assert!(log.contains("http.route=\"/v1/whoami\""), "no route template in the log:\n{log}");
    assert_no_secrets(&log);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let log = stderr_of_a_session(&["--log-format", "json"]);
    let mut routes = Vec::new();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nlog:\n{log}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{line}");
        if let Some(span) = v.get("span")
            && span.get("name").and_then(|n| n.as_str()) == Some("http.request")
        {
            assert_eq!(span.get("otel.kind").and_then(|k| k.as_str()), Some("server"), "{line}");
            if let Some(route) = span.get("http.route").and_then(|r| r.as_str()) {
                routes.push(route.to_owned());
            }
        }
    }
    assert!(lines > 0, "the server logged nothing");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in JSON logs:\n{log}");
    assert!(routes.iter().any(|r| r == "/v1/whoami"), "{routes:?}\n{log}");
    assert!(routes.iter().any(|r| r == "/v1/operations/{op}"), "{routes:?}\n{log}");
    assert_no_secrets(&log);
}
