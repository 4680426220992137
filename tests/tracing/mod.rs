//! The SDK's span tree, checked with a capturing `tracing` layer against the embedded
//! contree-local server. Written once, run in both flavors (`tracing_async.rs`,
//! `tracing_blocking.rs`).
//!
//! The subscriber is installed for the test's thread only (`set_default`): the embedded
//! server runs on threads of its own, so what is captured is the client's alone. Work the
//! SDK moves to a task or thread (a popen follower, parallel uploads) must carry the span
//! and the subscriber with it, or its spans are missing here.

pub mod capture;

use capture::{Capture, Captured};
use tracing_subscriber::layer::SubscriberExt;

use crate::flavor::{Client, Image};

/// The list of scenarios, kept in one place for both flavors.
#[macro_export]
macro_rules! tracing_scenarios {
    ($m:ident) => {
        $m!(
            a_run_is_one_span_with_a_child_span_per_request,
            spawn_and_events_runs_have_the_same_tree,
            a_failed_request_is_an_error_span_without_its_query,
            a_retried_request_is_a_span_per_attempt_with_a_retry_event,
            an_import_is_one_span_with_its_requests_and_no_password
        );
    };
}

/// A client of the shared server, its base image, and the server's token and port.
fn setup() -> (Client, Image, String, u16) {
    let server = crate::support::local_server();
    let client = Client::builder().base_url(server.base_url()).token(server.token()).build().expect("client");
    let base = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("base image");
    let port = url_port(server.base_url());
    (client, base, server.token().to_owned(), port)
}

fn url_port(base: &str) -> u16 {
    let after_scheme = base.split("://").nth(1).expect("scheme");
    let host_port = after_scheme.split('/').next().expect("host");
    host_port.rsplit(':').next().expect("port").parse().expect("numeric port")
}

fn subscriber(capture: &Capture) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(capture.clone())
}

/// How the span of a run from `base` names its image.
fn image_field(base: &Image) -> String {
    match base.uuid() {
        Some(u) => u.to_string(),
        None => format!("tag:{}", base.tag().expect("a tag")),
    }
}

/// Checks one `contree.run` span and its request children; returns the children's
/// `otel.name`s.
fn check_run_span(c: &Captured, run: usize, op_id: &str, image: &str, port: u16) -> Vec<String> {
    let span = &c.spans[run];
    let f = &span.fields;
    assert_eq!(f.get("contree.operation.id").map(String::as_str), Some(op_id), "{span:?}");
    assert_eq!(f.get("contree.image").map(String::as_str), Some(image), "{span:?}");
    assert_eq!(f.get("contree.operation.status").map(String::as_str), Some("SUCCESS"), "{span:?}");
    assert_eq!(f.get("process.exit.code").map(String::as_str), Some("0"), "{span:?}");
    assert_eq!(f.get("otel.status_code").map(String::as_str), Some("OK"), "{span:?}");
    let ms: u64 = f.get("contree.duration_ms").expect("a duration").parse().expect("whole milliseconds");
    assert!(ms < 120_000, "{ms}");

    let children = c.children(run);
    assert!(!children.is_empty(), "the run span has no request spans: {:#?}", c.spans);
    let mut names = Vec::new();
    for &i in &children {
        let child = &c.spans[i];
        assert_eq!(child.name, "contree.http", "only requests under a run: {child:?}");
        let f = &child.fields;
        let method = f.get("http.request.method").expect("a method");
        let template = f.get("url.template").expect("a route template");
        assert!(template.starts_with("/v1/"), "{child:?}");
        assert!(!template.contains(op_id), "ids are placeholders in templates: {child:?}");
        assert_eq!(f.get("otel.name"), Some(&format!("{method} {template}")), "{child:?}");
        assert_eq!(f.get("otel.kind").map(String::as_str), Some("client"), "{child:?}");
        assert_eq!(f.get("server.address").map(String::as_str), Some("127.0.0.1"), "{child:?}");
        assert_eq!(f.get("server.port"), Some(&port.to_string()), "{child:?}");
        let status: u16 = f.get("http.response.status_code").expect("a status").parse().expect("numeric");
        assert!(f.contains_key("contree.elapsed_ms"), "{child:?}");
        assert!(!f.contains_key("http.request.resend_count"), "no resends on a healthy server: {child:?}");
        if status == 404 && template == "/v1/files/{sha256}" {
            // The upload's dedup lookup: a new file is not there yet. An HTTP error all the
            // same, as the OTel client convention has it.
            assert_eq!(f.get("error.type").map(String::as_str), Some("404"), "{child:?}");
            assert_eq!(f.get("otel.status_code").map(String::as_str), Some("ERROR"), "{child:?}");
        } else {
            assert!((200..400).contains(&status), "{child:?}");
            assert!(!f.contains_key("error.type"), "{child:?}");
        }
        assert!(c.children(i).is_empty(), "a request span has no children: {child:?}");
        names.push(f["otel.name"].clone());
    }
    assert!(names.iter().any(|n| n == "POST /v1/instances"), "{names:?}");
    assert!(names.iter().any(|n| n == "GET /v1/operations/{operationId}/events"), "{names:?}");
    names
}

/// No token, no URL (and so no query) anywhere in what was recorded.
fn check_no_secrets(c: &Captured, token: &str) {
    assert!(!c.spans.is_empty());
    for (key, value) in c.all_values() {
        assert!(!value.contains(token), "the token leaked into `{key}`: {value}");
        assert!(!value.contains("http://") && !value.contains("https://"), "a URL in `{key}`: {value}");
    }
}

#[crate::maybe]
pub async fn a_run_is_one_span_with_a_child_span_per_request() {
    let (_client, base, token, port) = setup();
    let capture = Capture::default();
    let done = {
        let _guard = tracing::subscriber::set_default(subscriber(&capture));
        // A file to upload: its requests belong to the run too (the blocking flavor uploads
        // on threads of their own).
        base.run("true")
            .file("/etc/contree-tracing", format!("token-free content {}\n", uuid::Uuid::new_v4()).into_bytes())
            .wait()
            .await
            .expect("run")
    };
    let op_id = done.output().expect("output").operation_id.to_string();
    let c = capture.snapshot();
    let runs = c.named("contree.run");
    assert_eq!(runs.len(), 1, "{:#?}", c.spans);
    assert_eq!(c.spans[runs[0]].parent, None, "the run span is a root here");
    let names = check_run_span(&c, runs[0], &op_id, &image_field(&base), port);
    assert!(names.iter().any(|n| n.ends_with(" /v1/files") || n.contains("/v1/files/{sha256}")), "{names:?}");
    // The driver's own events happen in the run's span.
    let started = c.events.iter().find(|e| e.fields.get("message").map(String::as_str) == Some("run started"));
    assert_eq!(started.expect("a `run started` event").span, Some(runs[0]));
    // Every request span of the run is under it: none is left at the root.
    for i in c.named("contree.http") {
        assert_eq!(c.spans[i].parent, Some(runs[0]), "{:?}", c.spans[i]);
    }
    check_no_secrets(&c, &token);
}

#[crate::maybe]
pub async fn spawn_and_events_runs_have_the_same_tree() {
    let (_client, base, token, port) = setup();
    let capture = Capture::default();
    let (spawned_id, events_id) = {
        let _guard = tracing::subscriber::set_default(subscriber(&capture));
        let mut process = base.run("true").spawn().await.expect("spawn");
        let spawned_id = process.id().to_owned();
        let status = process.wait().await.expect("wait");
        assert!(status.success());

        let mut events = base.run("true").events();
        let mut finished = false;
        let mut events_id = None;
        while let Some(event) = events.next_event().await.expect("event") {
            finished |= matches!(event, crate::flavor::RunEvent::Finished(_));
            events_id = events_id.or_else(|| events.operation_id().map(str::to_owned));
        }
        assert!(finished);
        (spawned_id, events_id.expect("the events named their operation"))
    };
    let c = capture.snapshot();
    let runs = c.named("contree.run");
    assert_eq!(runs.len(), 2, "{:#?}", c.spans);
    let image = image_field(&base);
    let by_id = |id: &str| {
        *runs
            .iter()
            .find(|&&i| c.spans[i].fields.get("contree.operation.id").map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("no run span for {id}: {:#?}", c.spans))
    };
    check_run_span(&c, by_id(&spawned_id), &spawned_id, &image, port);
    check_run_span(&c, by_id(&events_id), &events_id, &image, port);
    check_no_secrets(&c, &token);
}

#[crate::maybe]
pub async fn a_failed_request_is_an_error_span_without_its_query() {
    let (client, _base, token, port) = setup();
    let capture = Capture::default();
    let missing = format!("no-such-tag-{}", uuid::Uuid::new_v4().simple());
    {
        let _guard = tracing::subscriber::set_default(subscriber(&capture));
        let err = client.images().get_by_tag(&missing).await.expect_err("no such tag");
        assert!(err.is_not_found(), "{err}");
    }
    let c = capture.snapshot();
    let requests = c.named("contree.http");
    assert_eq!(requests.len(), 1, "{:#?}", c.spans);
    let f = &c.spans[requests[0]].fields;
    assert_eq!(f.get("otel.name").map(String::as_str), Some("GET /v1/inspect/"), "{f:?}");
    assert_eq!(f.get("http.response.status_code").map(String::as_str), Some("404"), "{f:?}");
    assert_eq!(f.get("error.type").map(String::as_str), Some("404"), "{f:?}");
    assert_eq!(f.get("otel.status_code").map(String::as_str), Some("ERROR"), "{f:?}");
    assert_eq!(f.get("server.port"), Some(&port.to_string()));
    // The tag travels in the query: it must not reach the span.
    for (key, value) in c.all_values() {
        assert!(!value.contains(&missing), "the query leaked into `{key}`: {value}");
    }
    check_no_secrets(&c, &token);
}

/// A one-route HTTP server on a thread: answers 503 (`Retry-After: 0`) to the first request
/// and 200 to the others, on any connection; returns its port.
fn flaky_server() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        // Bounded: the test makes two requests; a few spare connections at most.
        for conn in listener.incoming().take(8) {
            let Ok(conn) = conn else { break };
            let served = served.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    // One request: its head up to the empty line (HEAD has no body).
                    let mut line = String::new();
                    let mut got = false;
                    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                        got = true;
                        if line == "\r\n" {
                            break;
                        }
                        line.clear();
                    }
                    if !got {
                        return;
                    }
                    let answer = if served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
                    };
                    if conn.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[crate::maybe]
pub async fn a_retried_request_is_a_span_per_attempt_with_a_retry_event() {
    let port = flaky_server();
    let token = "retry-test-token-8d1f0a";
    let client = Client::builder().base_url(format!("http://127.0.0.1:{port}")).token(token).build().expect("client");
    let sha = "ab".repeat(32);
    let capture = Capture::default();
    {
        let _guard = tracing::subscriber::set_default(subscriber(&capture));
        let found = client.files().exists(&sha).await.expect("retried, then answered");
        assert!(found);
    }
    let c = capture.snapshot();
    let requests = c.named("contree.http");
    assert_eq!(requests.len(), 2, "one span per attempt: {:#?}", c.spans);
    let (first, second) = (&c.spans[requests[0]], &c.spans[requests[1]]);
    for span in [first, second] {
        assert_eq!(span.fields.get("otel.name").map(String::as_str), Some("HEAD /v1/files/{sha256}"), "{span:?}");
        assert_eq!(span.parent, None, "{span:?}");
    }
    assert_eq!(first.fields.get("http.response.status_code").map(String::as_str), Some("503"), "{first:?}");
    assert_eq!(first.fields.get("error.type").map(String::as_str), Some("503"), "{first:?}");
    assert!(!first.fields.contains_key("http.request.resend_count"), "{first:?}");
    assert_eq!(second.fields.get("http.request.resend_count").map(String::as_str), Some("1"), "{second:?}");
    assert_eq!(second.fields.get("http.response.status_code").map(String::as_str), Some("200"), "{second:?}");
    let retry = c
        .events
        .iter()
        .find(|e| e.fields.get("message").map(String::as_str) == Some("contree request retried"))
        .unwrap_or_else(|| panic!("no retry event: {:#?}", c.events));
    assert_eq!(retry.span, Some(requests[0]), "the retry is an event of the attempt it repeats");
    for (key, value) in c.all_values() {
        assert!(!value.contains(&sha), "the file's hash (an id) is a placeholder: `{key}` = {value}");
    }
    check_no_secrets(&c, token);
}

#[crate::maybe]
pub async fn an_import_is_one_span_with_its_requests_and_no_password() {
    use crate::support::registry as reg;
    let (client, _base, token, _port) = setup();
    let r = reg::auth_registry();
    let repo = format!("test/traced-{}", crate::flavor::NAME);
    reg::push_image(r, &repo, "1", &[reg::busybox_layer()], &reg::config(reg::host_arch(), &[], None));
    let reference = format!("{}/{repo}:1", r.addr);
    let capture = Capture::default();
    {
        let _guard = tracing::subscriber::set_default(subscriber(&capture));
        client.images().import_from(&reference).credentials(reg::USER, reg::PASSWORD).send().await.expect("import");
    }
    let c = capture.snapshot();
    let imports = c.named("contree.import");
    assert_eq!(imports.len(), 1, "{:#?}", c.spans);
    let f = &c.spans[imports[0]].fields;
    let op_id = f.get("contree.operation.id").expect("the operation id");
    assert_eq!(op_id.len(), 36, "{f:?}");
    assert!(f.get("contree.image").is_some_and(|i| i.contains(&repo)), "{f:?}");
    assert_eq!(f.get("contree.operation.status").map(String::as_str), Some("SUCCESS"), "{f:?}");
    assert_eq!(f.get("otel.status_code").map(String::as_str), Some("OK"), "{f:?}");
    assert!(f.contains_key("contree.duration_ms"), "{f:?}");
    let names: Vec<&str> = c.children(imports[0]).iter().map(|&i| c.spans[i].fields["otel.name"].as_str()).collect();
    assert_eq!(names.first(), Some(&"POST /v1/images/import"), "{names:?}");
    assert!(names[1..].iter().all(|n| *n == "GET /v1/operations/{operationId}"), "{names:?}");
    assert!(names.len() >= 2, "{names:?}");
    for (key, value) in c.all_values() {
        assert!(!value.contains(reg::PASSWORD), "the registry password is in `{key}`: {value}");
    }
    check_no_secrets(&c, &token);
}
