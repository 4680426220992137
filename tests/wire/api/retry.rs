//! The retry policy on the wire: idempotent requests are retried on transient statuses, a
//! POST/PATCH is replayed only on 425/429, `Retry-After` replaces the ladder (capped), and
//! `RetryPolicy::none()` disables everything.

use std::time::{Duration, Instant};

use contree::RetryPolicy;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock as Rule, ResponseTemplate};

use super::*;
use crate::support::Mock;

fn whoami_ok() -> ResponseTemplate {
    json_response(200, json!({"token_uuid": "t-1", "permissions": {}, "operations_stat": {}}))
}

/// `response` for the first `times` requests to `METHOD path`, then `then`.
fn mount_flaky(mock: &Mock, verb: &str, at: &str, times: u64, response: ResponseTemplate, then: ResponseTemplate) {
    mock.mount(Rule::given(method(verb)).and(path(at)).respond_with(response).up_to_n_times(times));
    mock.mount(Rule::given(method(verb)).and(path(at)).respond_with(then));
}

/// GET 503 then 200: two requests, success.
#[crate::maybe]
pub async fn get_is_retried_after_503() {
    let mock = Mock::start();
    mount_flaky(&mock, "GET", "/v1/whoami", 1, error_response(503, "warming up"), whoami_ok());
    let client = client(&mock);
    let me = client.whoami().await.unwrap();
    assert_eq!(me.token_uuid, "t-1");
    let reqs = mock.requests_to("GET", "/v1/whoami");
    assert_eq!(reqs.len(), 2);
    reqs.iter().for_each(assert_bearer);
}

/// A GET that keeps failing is tried `max_attempts` times, then the last error is returned.
#[crate::maybe]
pub async fn get_gives_up_after_max_attempts() {
    let mock = Mock::start();
    mock.mount(Rule::given(method("GET")).and(path("/v1/whoami")).respond_with(error_response(502, "still down")));
    let client = client_with(&mock, |c| c.retry = fast_retry(3));
    let err = client.whoami().await.unwrap_err();
    assert!(err.is_server(), "{err:?}");
    assert_eq!(err.status(), Some(502));
    assert_eq!(err.message(), "still down");
    assert_eq!(mock.requests_to("GET", "/v1/whoami").len(), 3);
}

/// DELETE is idempotent: an untag is retried after a 503.
#[crate::maybe]
pub async fn delete_is_retried_after_503() {
    let mock = Mock::start();
    let at = format!("/v1/images/{IMG}/tag");
    mount_flaky(&mock, "DELETE", &at, 1, error_response(503, "busy"), ResponseTemplate::new(204));
    let client = client(&mock);
    let untagged = client.images().untag(IMG, None).await.unwrap();
    assert!(untagged.is_none());
    assert_eq!(mock.requests_to("DELETE", &at).len(), 2);
}

/// A POST (upload, import) or PATCH (tag) that got a 5xx may have done its work: it is
/// never replayed.
#[crate::maybe]
pub async fn post_is_not_replayed_after_a_server_error() {
    let content = b"upload me once".to_vec();
    let sha = sha256_hex(&content);
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET")).and(path(format!("/v1/files/{sha}"))).respond_with(ResponseTemplate::new(404)),
    );
    mock.mount(Rule::given(method("POST")).and(path("/v1/files")).respond_with(error_response(500, "disk full")));
    mock.mount(
        Rule::given(method("POST")).and(path("/v1/images/import")).respond_with(error_response(503, "overloaded")),
    );
    mock.mount(
        Rule::given(method("PATCH"))
            .and(path(format!("/v1/images/{IMG}/tag")))
            .respond_with(error_response(502, "bad gw")),
    );
    let client = client(&mock);

    let err = client.files().upload(content).await.unwrap_err();
    assert!(err.is_server(), "{err:?}");
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.method(), Some("POST"));
    assert_eq!(mock.requests_to("POST", "/v1/files").len(), 1);

    let err = client.images().import_from("busybox").send().await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err:?}");
    assert_eq!(mock.requests_to("POST", "/v1/images/import").len(), 1);

    let err = client.images().tag(IMG, "t").await.unwrap_err();
    assert_eq!(err.status(), Some(502), "{err:?}");
    assert_eq!(mock.requests_to("PATCH", &format!("/v1/images/{IMG}/tag")).len(), 1);
}

/// 429 and 425 mean "rejected before processing": the POST is replayed, byte for byte.
#[crate::maybe]
pub async fn post_is_replayed_after_429_and_425() {
    for status in [429u16, 425] {
        let content = format!("replay after {status}").into_bytes();
        let sha = sha256_hex(&content);
        let mock = Mock::start();
        mock.mount(
            Rule::given(method("GET")).and(path(format!("/v1/files/{sha}"))).respond_with(ResponseTemplate::new(404)),
        );
        mount_flaky(
            &mock,
            "POST",
            "/v1/files",
            1,
            error_response(status, "not now"),
            json_response(201, json!({"uuid": FILE, "sha256": sha, "size": content.len()})),
        );
        let client = client(&mock);
        let stored = client.files().upload(content.clone()).await.unwrap();
        assert_eq!(stored.uuid.to_string(), FILE, "{status}");
        let posts = mock.requests_to("POST", "/v1/files");
        assert_eq!(posts.len(), 2, "{status}");
        for p in &posts {
            assert!(p.body == content, "{status}: a replay must resend the same bytes");
            assert_eq!(header(p, "content-type").as_deref(), Some("application/octet-stream"));
        }

        // An import POST too.
        mount_flaky(
            &mock,
            "POST",
            "/v1/images/import",
            1,
            error_response(status, "not now"),
            json_response(201, json!({"uuid": OP})),
        );
        mock.mount(Rule::given(method("GET")).and(path(format!("/v1/operations/{OP}"))).respond_with(json_response(
            200,
            json!({"uuid": OP, "status": "SUCCESS", "result": {"image": IMG, "tag": "busybox"}}),
        )));
        let image = client.images().import_from("busybox").send().await.unwrap();
        assert_eq!(image.uuid().unwrap().to_string(), IMG);
        let imports = mock.requests_to("POST", "/v1/images/import");
        assert_eq!(imports.len(), 2, "{status}");
        assert_eq!(imports[0].body, imports[1].body);
    }
}

/// A file upload replayed after a 429 resends the whole file (the file is reopened).
#[crate::maybe]
pub async fn file_upload_replay_resends_the_whole_file() {
    let content = binary_content(20_000);
    let sha = sha256_hex(&content);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &content).unwrap();
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET")).and(path(format!("/v1/files/{sha}"))).respond_with(ResponseTemplate::new(404)),
    );
    mount_flaky(
        &mock,
        "POST",
        "/v1/files",
        2,
        error_response(429, "slow down"),
        json_response(201, json!({"uuid": FILE, "sha256": sha, "size": content.len()})),
    );
    let client = client(&mock);
    client.files().upload(file).await.unwrap();
    let posts = mock.requests_to("POST", "/v1/files");
    assert_eq!(posts.len(), 3);
    for p in &posts {
        assert_eq!(p.body.len(), content.len());
        assert!(p.body == content, "each attempt must carry the whole file");
    }
}

/// Progress on an upload replayed after a 429: each attempt resends the whole body, but the
/// bytes done never go down and never pass the size (a resend counts only past the furthest
/// point reached), for a file and for bytes in memory.
#[crate::maybe]
pub async fn upload_progress_counts_a_replayed_body_once() {
    let content = binary_content(700_000);
    let sha = sha256_hex(&content);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &content).unwrap();
    for from_file in [true, false] {
        let mock = Mock::start();
        mock.mount(
            Rule::given(method("GET")).and(path(format!("/v1/files/{sha}"))).respond_with(ResponseTemplate::new(404)),
        );
        mount_flaky(
            &mock,
            "POST",
            "/v1/files",
            2,
            error_response(429, "slow down"),
            json_response(201, json!({"uuid": FILE, "sha256": sha, "size": content.len()})),
        );
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let progress = contree::Progress::callback({
            let seen = seen.clone();
            move |u| seen.lock().unwrap().push((u.done, u.total, u.finished, u.failed))
        });
        let client = client(&mock);
        if from_file {
            client.files().upload_with_progress(file.clone(), &progress).await.unwrap();
        } else {
            client.files().upload_with_progress(content.clone(), &progress).await.unwrap();
        }
        assert_eq!(mock.requests_to("POST", "/v1/files").len(), 3, "two replays");
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let size = content.len() as u64;
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "progress went down: {seen:?}");
        // The total is known from the first byte on (the very first update starts at 0).
        assert!(seen.iter().all(|s| s.0 <= size && (s.0 == 0 || s.1 == Some(size)) && !s.3), "{seen:?}");
        assert!(seen.iter().any(|s| s.0 > 0 && s.0 < size), "bytes are counted as they go: {seen:?}");
        assert_eq!(seen.last().copied(), Some((size, Some(size), true, false)));
    }
}

/// A large file (hashed while it is posted) replayed after a 429 resends the whole file: each
/// attempt reads it again from the first byte.
#[crate::maybe]
pub async fn large_file_upload_replay_resends_the_whole_file() {
    let content = binary_content(4 * 1024 * 1024 + 4097);
    let sha = sha256_hex(&content);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large.bin");
    std::fs::write(&file, &content).unwrap();
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET")).and(path(format!("/v1/files/{sha}"))).respond_with(ResponseTemplate::new(404)),
    );
    mount_flaky(
        &mock,
        "POST",
        "/v1/files",
        2,
        error_response(429, "slow down"),
        json_response(201, json!({"uuid": FILE, "sha256": sha, "size": content.len()})),
    );
    let client = client_with(&mock, |c| c.file_upload_chunk_size = 64 * 1024);
    let stored = client.files().upload(file).await.unwrap();
    assert_eq!(stored.sha256, sha);
    let posts = mock.requests_to("POST", "/v1/files");
    assert_eq!(posts.len(), 3);
    for p in &posts {
        assert_eq!(p.body.len(), content.len());
        assert!(p.body == content, "each attempt must carry the whole file");
    }
}

/// `Retry-After` replaces the (here 1 ms) ladder delay: the retry waits at least that long.
#[crate::maybe]
pub async fn retry_after_is_honoured() {
    let mock = Mock::start();
    mount_flaky(
        &mock,
        "GET",
        "/v1/whoami",
        1,
        error_response(429, "wait a bit").insert_header("retry-after", "0.3"),
        whoami_ok(),
    );
    let client = client(&mock);
    let started = Instant::now();
    client.whoami().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(mock.requests_to("GET", "/v1/whoami").len(), 2);
    // A sleep never ends early, so this lower bound is exact, not a timing guess.
    assert!(waited >= Duration::from_millis(300), "Retry-After ignored: retried after {waited:?}");
}

/// A huge `Retry-After` is capped by the policy, so a misconfigured proxy cannot park the
/// client.
#[crate::maybe]
pub async fn retry_after_is_capped() {
    let mock = Mock::start();
    mount_flaky(
        &mock,
        "GET",
        "/v1/whoami",
        1,
        error_response(503, "maintenance").insert_header("retry-after", "30"),
        whoami_ok(),
    );
    let client = client_with(&mock, |c| c.retry.retry_after_cap = Duration::from_millis(20));
    let started = Instant::now();
    client.whoami().await.unwrap();
    assert_eq!(mock.requests_to("GET", "/v1/whoami").len(), 2);
    // Far below the 30 s the server asked for (the cap is 20 ms).
    assert!(started.elapsed() < Duration::from_secs(20), "the Retry-After cap was not applied");
}

/// `RetryPolicy::none()`: one attempt, whatever the failure.
#[crate::maybe]
pub async fn retry_policy_none_disables_retries() {
    let mock = Mock::start();
    mount_flaky(&mock, "GET", "/v1/whoami", 1, error_response(503, "once"), whoami_ok());
    let content = b"no retry".to_vec();
    let sha = sha256_hex(&content);
    mock.mount(
        Rule::given(method("GET")).and(path(format!("/v1/files/{sha}"))).respond_with(ResponseTemplate::new(404)),
    );
    mount_flaky(
        &mock,
        "POST",
        "/v1/files",
        1,
        error_response(429, "slow").insert_header("retry-after", "0"),
        json_response(201, json!({"uuid": FILE, "sha256": sha, "size": 8})),
    );
    let client = client_with(&mock, |c| c.retry = RetryPolicy::none());
    let err = client.whoami().await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err:?}");
    assert_eq!(mock.requests_to("GET", "/v1/whoami").len(), 1);
    let err = client.files().upload(content).await.unwrap_err();
    assert!(err.is_rate_limited(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::ZERO));
    assert_eq!(mock.requests_to("POST", "/v1/files").len(), 1);
}
