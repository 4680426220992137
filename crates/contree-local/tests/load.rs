//! Admission under load, over HTTP: a spawn beyond the queue depth is refused with 429 and
//! `Retry-After` before anything is recorded, so replaying it later is safe. Linux and root
//! only (like the server itself).
#![cfg(target_os = "linux")]

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
