//! Admission under load, over HTTP: a spawn beyond the queue depth is refused with 429 and
//! `Retry-After` before anything is recorded, so replaying it later is safe. Linux and root
//! only (like the server itself).
#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use contree_local::{BASE_IMAGE_TAG, LocalConfig, LocalServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Outer bound of the test.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}/v1{path}", self.base)).bearer_auth(&self.token)
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    async fn post_spawn(&self, body: &Value) -> reqwest::Response {
        self.req(reqwest::Method::POST, "/instances").json(body).send().await.unwrap()
    }

    async fn spawn(&self, body: &Value) -> String {
        let r = self.post_spawn(body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["uuid"].as_str().unwrap().to_owned()
    }

    async fn wait_status(&self, op: &str, want: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.get_json(&format!("/operations/{op}")).await;
            if want.iter().any(|w| v["status"] == *w) {
                return v;
            }
            assert!(Instant::now() < deadline, "operation never reached {want:?}: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn operation_ids(&self) -> Vec<String> {
        let list = self.get_json("/operations?kind=instance&limit=1000").await;
        list.as_array().unwrap().iter().map(|o| o["uuid"].as_str().unwrap().to_owned()).collect()
    }
}

/// One slot, a queue of one: with a run executing and another queued, a third spawn is 429
/// with `Retry-After` and the `{error, status}` body, and leaves no operation behind; once
/// the queue has room, the same request is accepted.
#[tokio::test]
async fn a_spawn_beyond_the_queue_depth_is_429_with_retry_after_and_leaves_nothing() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = LocalServer::start(LocalConfig::default().with_max_concurrent_runs(1).with_max_queued_runs(1))
            .await
            .unwrap();
        let api =
            Api { base: server.base_url().to_owned(), token: server.token().to_owned(), http: reqwest::Client::new() };
        let image = format!("tag:{BASE_IMAGE_TAG}");
        let sleeper = json!({"command": "sleep", "args": ["60"], "image": image, "disposable": true, "timeout": 90});

        let running = api.spawn(&sleeper).await;
        api.wait_status(&running, &["EXECUTING"]).await;
        let queued = api.spawn(&sleeper).await;
        let v = api.get_json(&format!("/operations/{queued}")).await;
        assert_eq!(v["status"], "PENDING", "{v}");
        let before = api.operation_ids().await;
        assert_eq!(before.len(), 2, "{before:?}");

        let third = json!({"command": "true", "image": image, "disposable": true});
        let r = api.post_spawn(&third).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], 429, "{body}");
        assert!(body["error"].as_str().unwrap().contains("max_queued_runs"), "{body}");
        assert_eq!(api.operation_ids().await, before, "a refused spawn must leave no operation behind");

        // Cancelling the queued run frees its place: the same request is now accepted.
        let r = api.req(reqwest::Method::DELETE, &format!("/operations/{queued}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        api.wait_status(&queued, &["CANCELLED"]).await;
        let replayed = api.spawn(&third).await;
        let r = api.req(reqwest::Method::DELETE, &format!("/operations/{running}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let v = api.wait_status(&replayed, &["SUCCESS", "FAILED", "CANCELLED"]).await;
        assert_eq!(v["status"], "SUCCESS", "{v}");
        server.shutdown().await;
    })
    .await
    .expect("the test finishes in time");
}

/// Clients in this test: each holds up to two connections (its spawn, then the event stream
/// it follows), far more than the server's descriptor limit below can carry at once.
const CLIENTS: usize = 400;
/// The server's hard and soft `RLIMIT_NOFILE` in this test.
const SERVER_NOFILE: u64 = 256;

/// Under a low descriptor limit, a crowd of clients gets slow connects and replayable 429s,
/// never a FAILED run: the accept loop leaves the descriptors that started runs need
/// (measured before: 4 of 1,000 runs FAILED with `EMFILE` under `ulimit -n 1024`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_under_a_low_descriptor_limit_gets_429s_and_no_failed_runs() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_contree-local"));
    cmd.args(["--bind", "127.0.0.1:0", "--max-concurrent-runs", "2", "--no-networking", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("CONTREE_LOCAL_TOKEN", "crowd-test-token-1");
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: SERVER_NOFILE as _, rlim_max: SERVER_NOFILE as _ };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (mut child, url) = support::spawn_and_read_url(&mut cmd, Duration::from_secs(60));
    let api = std::sync::Arc::new(Api {
        base: url,
        token: "crowd-test-token-1".to_owned(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap(),
    });

    let outcome = tokio::time::timeout(Duration::from_secs(300), async {
        let image = format!("tag:{BASE_IMAGE_TAG}");
        let body = json!({"command": "true", "image": image, "disposable": true});
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let (api, body) = (api.clone(), body.clone());
            tasks.spawn(async move {
                let mut refused = 0u32;
                // Bounded: 600 replays at the 1 s `Retry-After` outlast the test's own bound.
                let op = loop {
                    let r = api.post_spawn(&body).await;
                    if r.status() == StatusCode::TOO_MANY_REQUESTS && refused < 600 {
                        refused += 1;
                        let secs: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                        continue;
                    }
                    let status = r.status();
                    let v: Value = r.json().await.unwrap();
                    assert_eq!(status, StatusCode::CREATED, "{v}");
                    break v["uuid"].as_str().unwrap().to_owned();
                };
                // Follow the run to its end, holding a second connection as real clients do.
                let events =
                    api.req(reqwest::Method::GET, &format!("/operations/{op}/events?follow=1")).send().await.unwrap();
                assert_eq!(events.status(), StatusCode::OK);
                let _ = events.bytes().await.unwrap();
                let v = api.get_json(&format!("/operations/{op}")).await;
                (v["status"].as_str().unwrap_or("?").to_owned(), v["error"].clone(), refused)
            });
        }
        let (mut failed, mut ok, mut refusals) = (Vec::new(), 0, 0);
        while let Some(done) = tasks.join_next().await {
            let (status, error, refused) = done.unwrap();
            refusals += refused;
            if status == "SUCCESS" { ok += 1 } else { failed.push((status, error)) }
        }
        (ok, failed, refusals)
    })
    .await;
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let (ok, failed, refusals) = outcome.expect("the crowd finishes in time");
    assert!(alive, "the server died under the crowd");
    assert!(failed.is_empty(), "{} runs did not succeed, e.g. {:?}", failed.len(), &failed[..failed.len().min(3)]);
    assert_eq!(ok, CLIENTS);
    // The crowd really was more than the server could take at once.
    assert!(refusals > 0, "no spawn was refused: the test did not load the server");
}
