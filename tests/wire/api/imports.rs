//! `oci` ("use it if present, else import") and `import_from`: the lookup, the import body,
//! operation polling and how FAILED/CANCELLED/deadlines surface.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock as Rule, ResponseTemplate};

use super::*;
use crate::support::{Mock, TOKEN};

fn op_body(status: &str, extra: Value) -> Value {
    let mut body = json!({ "uuid": OP, "kind": "image_import", "status": status, "error": null });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// The tag lookup answers 404.
fn mount_tag_missing(mock: &Mock) {
    mock.mount(Rule::given(method("GET")).and(path("/v1/inspect/")).respond_with(error_response(404, "tag not found")));
}

/// `POST /v1/images/import` creates operation `OP`.
fn mount_import(mock: &Mock) {
    mock.mount(Rule::given(method("POST")).and(path("/v1/images/import")).respond_with(
        json_response(201, json!({ "uuid": OP })).insert_header("location", format!("/v1/operations/{OP}")),
    ));
}

/// The operation is PENDING `pending` times, then answers `last`.
fn mount_operation(mock: &Mock, pending: u64, last: Value) {
    if pending > 0 {
        mock.mount(
            Rule::given(method("GET"))
                .and(path(format!("/v1/operations/{OP}")))
                .respond_with(json_response(200, op_body("PENDING", json!({}))))
                .up_to_n_times(pending),
        );
    }
    mock.mount(
        Rule::given(method("GET")).and(path(format!("/v1/operations/{OP}"))).respond_with(json_response(200, last)),
    );
}

fn success(image: &str, tag: &str) -> Value {
    op_body("SUCCESS", json!({ "result": { "image": image, "tag": tag }, "result_image_uuid": image }))
}

fn import_posts(mock: &Mock) -> Vec<wiremock::Request> {
    mock.requests_to("POST", "/v1/images/import")
}

/// Found by tag: the existing image is used, nothing is imported.
#[crate::maybe]
pub async fn oci_found_by_tag_does_not_import() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/inspect/"))
            .and(query_param("tag", "ubuntu:latest"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", format!("{IMG}/"))),
    );
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/inspect/{IMG}/")))
            .respond_with(json_response(200, image_json(IMG, Some("ubuntu:latest")))),
    );
    mount_import(&mock);
    let client = client(&mock);
    let image = client.images().oci("docker://docker.io/library/ubuntu:latest").send().await.unwrap();
    assert_eq!(image.uuid().unwrap().to_string(), IMG);
    assert_eq!(image.tag(), Some("ubuntu:latest"));
    assert!(import_posts(&mock).is_empty());
    let paths: Vec<String> = mock.requests().iter().map(|r| r.url.path().to_string()).collect();
    assert_eq!(paths, ["/v1/inspect/".to_string(), format!("/v1/inspect/{IMG}/")]);
}

/// Missing tag: `POST /v1/images/import` with exactly `{registry: {url}, tag, timeout}`, then
/// the operation is polled until SUCCESS and its result image returned.
#[crate::maybe]
pub async fn oci_imports_when_the_tag_is_missing() {
    let mock = Mock::start();
    mount_tag_missing(&mock);
    mount_import(&mock);
    mount_operation(&mock, 2, success(IMG, "ubuntu:latest"));
    let client = client(&mock);
    let image = client.images().oci("ubuntu:latest").timeout(Duration::from_secs(120)).send().await.unwrap();
    assert_eq!(image.uuid().unwrap().to_string(), IMG);
    assert_eq!(image.tag(), Some("ubuntu:latest"));

    let lookups = mock.requests_to("GET", "/v1/inspect/");
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].url.query(), Some("tag=ubuntu%3Alatest"));
    let posts = import_posts(&mock);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].body_json::<Value>().unwrap(),
        json!({
            "registry": { "url": "docker://docker.io/library/ubuntu:latest" },
            "tag": "ubuntu:latest",
            "timeout": 120,
        })
    );
    assert_eq!(header(&posts[0], "content-type").as_deref(), Some("application/json"));
    assert_bearer(&posts[0]);
    // Two PENDING answers, then SUCCESS: exactly three polls, and nothing cancelled.
    assert_eq!(mock.requests_to("GET", &format!("/v1/operations/{OP}")).len(), 3);
    assert!(mock.requests_to("DELETE", &format!("/v1/operations/{OP}")).is_empty());
    // Order: lookup, import, polls.
    let methods: Vec<String> = mock.requests().iter().map(|r| format!("{} {}", r.method, r.url.path())).collect();
    assert_eq!(methods[..2], ["GET /v1/inspect/".to_string(), "POST /v1/images/import".to_string()]);
}

/// `oci(<uuid>)` only looks the image up by uuid.
#[crate::maybe]
pub async fn oci_with_a_uuid_only_looks_it_up() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/inspect/{IMG}/")))
            .respond_with(json_response(200, image_json(IMG, None))),
    );
    mount_import(&mock);
    let client = client(&mock);
    let image = client.images().oci(IMG).send().await.unwrap();
    assert_eq!(image.uuid().unwrap().to_string(), IMG);
    assert!(import_posts(&mock).is_empty());
    assert_eq!(mock.requests().len(), 1);
}

/// `import_from` never looks up; it sends an explicit tag and the configured import timeout.
#[crate::maybe]
pub async fn import_from_posts_without_lookup_and_default_timeout() {
    let mock = Mock::start();
    mount_import(&mock);
    mount_operation(&mock, 0, success(IMG2, "my/busybox:1"));
    let client = client_with(&mock, |c| c.operation_import_timeout = Some(Duration::from_secs(45)));
    let image =
        client.images().import_from("docker://ghcr.io/acme/busybox:1.36").tag("my/busybox:1").send().await.unwrap();
    assert_eq!(image.uuid().unwrap().to_string(), IMG2);
    assert_eq!(image.tag(), Some("my/busybox:1"));
    assert!(mock.requests_to("GET", "/v1/inspect/").is_empty());
    let posts = import_posts(&mock);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].body_json::<Value>().unwrap(),
        json!({
            "registry": { "url": "docker://ghcr.io/acme/busybox:1.36" },
            "tag": "my/busybox:1",
            "timeout": 45,
        })
    );
}

/// Registry credentials go in the body, and never into `Debug` or errors.
#[crate::maybe]
pub async fn import_credentials_are_sent_but_never_shown() {
    const PASSWORD: &str = "hunter2-Pa55word";
    let mock = Mock::start();
    mount_import(&mock);
    mount_operation(&mock, 1, op_body("FAILED", json!({ "error": "unauthorized: authentication required" })));
    let client = client(&mock);
    let import = client
        .images()
        .import_from("registry.example.com:5000/team/app:2")
        .credentials("robot", PASSWORD)
        .timeout(Duration::from_secs(30));
    assert_no_secret(&format!("{import:?}"), PASSWORD);
    let err = import.send().await.unwrap_err();
    assert!(err.is_operation_failed(), "{err:?}");
    for text in [format!("{err:?}"), err.to_string()] {
        assert_no_secret(&text, PASSWORD);
        assert_no_secret(&text, TOKEN);
    }
    let posts = import_posts(&mock);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].body_json::<Value>().unwrap(),
        json!({
            "registry": {
                "url": "docker://registry.example.com:5000/team/app:2",
                "credentials": { "username": "robot", "password": PASSWORD },
            },
            "tag": "registry.example.com:5000/team/app:2",
            "timeout": 30,
        })
    );
}

/// Importing "by UUID" makes no sense: InvalidArgument before any request.
#[crate::maybe]
pub async fn import_from_uuid_is_invalid_before_any_request() {
    let mock = Mock::start();
    let client = client(&mock);
    let err = client.images().import_from(IMG).send().await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    assert_eq!(err.argument(), Some("reference"));
    assert_no_requests(&mock, "import_from(uuid)");
}

/// FAILED is OperationFailed carrying the server's error and the operation id.
#[crate::maybe]
pub async fn import_failed_is_operation_failed() {
    let mock = Mock::start();
    mount_tag_missing(&mock);
    mount_import(&mock);
    mount_operation(&mock, 1, op_body("FAILED", json!({ "error": "manifest unknown: busybox:nope" })));
    let client = client(&mock);
    let err = client.images().oci("busybox:nope").send().await.unwrap_err();
    assert!(err.is_operation_failed(), "{err:?}");
    assert!(err.message().contains("manifest unknown: busybox:nope"), "{err:?}");
    assert_eq!(err.operation_id(), Some(OP));
    assert!(err.to_string().contains(OP), "{err}");
    assert_eq!(import_posts(&mock).len(), 1);
}

/// CANCELLED is OperationCancelled with the operation id.
#[crate::maybe]
pub async fn import_cancelled_is_operation_cancelled() {
    let mock = Mock::start();
    mount_import(&mock);
    mount_operation(&mock, 0, op_body("CANCELLED", json!({})));
    let client = client(&mock);
    let err = client.images().import_from("busybox").send().await.unwrap_err();
    assert!(err.is_operation_cancelled(), "{err:?}");
    assert_eq!(err.operation_id(), Some(OP));
}

/// Past the client-side deadline the operation is cancelled on the server
/// (`DELETE /v1/operations/{id}`) and the caller gets OperationTimedOut.
#[crate::maybe]
pub async fn import_deadline_cancels_and_times_out() {
    let mock = Mock::start();
    mount_import(&mock);
    mount_operation(&mock, 0, op_body("EXECUTING", json!({})));
    mock.mount(
        Rule::given(method("DELETE"))
            .and(path(format!("/v1/operations/{OP}")))
            .respond_with(ResponseTemplate::new(204)),
    );
    let client = client(&mock);
    let err = client.images().import_from("busybox").timeout(Duration::from_millis(50)).send().await.unwrap_err();
    assert!(err.is_operation_timed_out(), "{err:?}");
    assert_eq!(err.operation_id(), Some(OP));
    assert_eq!(mock.requests_to("DELETE", &format!("/v1/operations/{OP}")).len(), 1);
    // The server-side timeout is whole seconds, at least 1.
    assert_eq!(import_posts(&mock)[0].body_json::<Value>().unwrap()["timeout"], json!(1));
}

/// One SSE frame of the import's event log, as the server writes it.
fn import_frame(id: u64, kind: &str, data: Value) -> String {
    let event = json!({"id": id, "ts": "2026-01-01T00:00:00.000Z", "type": kind, "data": data});
    format!("id: {id}\nevent: {kind}\ndata: {event}\n\n")
}

/// With a progress, the import is followed through its events: each `stdout` line becomes the
/// phase, and the manifest's total and each layer's downloaded bytes are counted. Where the
/// events route does not exist, it falls back to polling and still ends complete.
#[crate::maybe]
pub async fn import_progress_follows_the_events_or_polls() {
    let line = |text: &str| json!({"value": text, "encoding": "ascii"});
    let body = [
        import_frame(1, "stdout", line("resolving docker://ghcr.io/acme/app:1\n")),
        import_frame(2, "stdout", line("manifest sha256:ab: 2 layer(s), 300 bytes compressed\n")),
        import_frame(3, "stdout", line("layer 1/2 sha256:cd: downloaded 100 bytes\nlayer 1/2 sha256:cd: unpacked 3 entries, 9 bytes, 0 whiteout(s)\n")),
        import_frame(4, "stdout", line("layer 2/2 sha256:ef: already present\n")),
        import_frame(5, "stdout", line(&format!("image {IMG2}\n"))),
        import_frame(6, "completion", json!({"status": "SUCCESS", "duration_ms": 10, "result_image_uuid": IMG2, "error": null})),
    ]
    .concat();
    for with_events in [true, false] {
        let mock = Mock::start();
        mount_import(&mock);
        mount_operation(&mock, 0, success(IMG2, "app:1"));
        if with_events {
            mock.mount(
                Rule::given(method("GET")).and(path(format!("/v1/operations/{OP}/events"))).respond_with(
                    ResponseTemplate::new(200).set_body_raw(body.clone().into_bytes(), "text/event-stream"),
                ),
            );
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let progress = contree::Progress::callback({
            let seen = seen.clone();
            move |u| seen.lock().unwrap().push((u.done, u.total, u.phase.map(str::to_string), u.finished))
        });
        let client = client(&mock);
        let image =
            client.images().import_from("ghcr.io/acme/app:1").tag("app:1").progress(&progress).send().await.unwrap();
        assert_eq!(image.uuid().unwrap().to_string(), IMG2);
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let last = seen.last().cloned().unwrap();
        if with_events {
            assert!(seen.iter().any(|s| s.2.as_deref() == Some("resolving docker://ghcr.io/acme/app:1")), "{seen:?}");
            // The first layer's bytes, from its line; then the whole total at the end (the
            // second layer was already present, so its line carries no size).
            assert!(seen.iter().any(|s| s.0 == 100 && s.1 == Some(300) && !s.3), "{seen:?}");
            assert_eq!(last, (300, Some(300), Some(format!("image {IMG2}")), true));
            assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
        } else {
            assert_eq!(last, (0, None, Some("waiting for the import to start".to_string()), true));
            assert!(!mock.requests_to("GET", &format!("/v1/operations/{OP}")).is_empty(), "polled");
        }
    }
}
