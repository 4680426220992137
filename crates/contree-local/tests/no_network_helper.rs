//! A host without `slirp4netns`: runs that don't mention networking still work (offline), and
//! a run that asks for a network fails saying what to install. Never the host's network.
//!
//! Runs the `contree-local` binary with a `PATH` that has no `slirp4netns` on it.
#![cfg(target_os = "linux")]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

const TOKEN: &str = "no-network-helper-token-1";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &std::path::Path) -> (Server, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_contree-local"));
    cmd.args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("CONTREE_LOCAL_TOKEN", TOKEN)
        .env("PATH", "/nonexistent-contree-test-bin");
    let (child, url) = support::spawn_and_read_url(&mut cmd, Duration::from_secs(60));
    (Server(child), url)
}

/// Spawns `body` and waits (bounded) for the operation to end; returns it.
async fn run(client: &reqwest::Client, url: &str, body: Value) -> Value {
    let r = client.post(format!("{url}/v1/instances")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "spawn: {}", r.status());
    let op = r.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = client
            .get(format!("{url}/v1/operations/{op}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(v["status"].as_str(), Some("SUCCESS" | "FAILED" | "CANCELLED")) {
            return v;
        }
        assert!(Instant::now() < deadline, "operation {op} did not end: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_slirp4netns_runs_are_offline_unless_they_ask_and_then_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = tokio::task::spawn_blocking({
        let data = dir.path().join("data");
        move || start(&data)
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let image = "tag:contree-local/base:latest";

    let quiet = run(&client, &url, json!({"command": "cat /proc/net/dev", "shell": true, "image": image})).await;
    assert_eq!(quiet["status"], "SUCCESS", "{quiet}");
    let echo = &quiet["metadata"]["networking"]["enabled"];
    assert_eq!(echo, &json!(false), "the echo shows the effective choice: {quiet}");

    let asks = run(&client, &url, json!({"command": "true", "image": image, "networking": {"enabled": true}})).await;
    assert_eq!(asks["status"], "FAILED", "{asks}");
    let error = asks["error"].as_str().unwrap_or_default();
    assert!(error.contains("slirp4netns"), "the error says what is missing: {error}");
    assert!(error.contains("never a fallback"), "{error}");
}
