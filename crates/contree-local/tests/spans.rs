//! The server's spans: one per request (`http.request`, OpenTelemetry server names) and one
//! per operation (`contree.operation`) with the sandbox's phases under it. One test: the
//! capturing subscriber is the process's global default, so it sees the server's threads.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contree_local::{BASE_IMAGE_TAG, LocalConfig, LocalServer};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone)]
struct SpanRecord {
    name: &'static str,
    parent: Option<usize>,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<SpanRecord>>>);

/// A span's index in the capture (the registry reuses ids of closed spans).
struct Index(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let parent = span.parent().and_then(|p| p.extensions().get::<Index>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push(SpanRecord { name: attrs.metadata().name(), parent, fields });
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(i) = span.extensions().get::<Index>().map(|i| i.0) else { return };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[i].fields));
    }
}

#[test]
fn requests_and_operations_have_spans_and_the_sandbox_phases_are_children() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone())).unwrap();
    let server =
        std::thread::spawn(|| LocalServer::start_blocking(LocalConfig::default()).expect("server")).join().unwrap();
    let token = server.token().to_owned();
    let base = server.base_url().to_owned();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let op_id = rt.block_on(async {
        let http = reqwest::Client::new();
        let spawned: serde_json::Value = http
            .post(format!("{base}/v1/instances"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"command": "true", "image": format!("tag:{BASE_IMAGE_TAG}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = spawned["uuid"].as_str().expect("an operation id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let op: serde_json::Value = http
                .get(format!("{base}/v1/operations/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if op["status"] == "SUCCESS" {
                break;
            }
            assert!(Instant::now() < deadline && op["status"] != "FAILED", "{op}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        id
    });

    // The status reaches the store a moment before the span records it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = capture.0.lock().unwrap().clone();
        let done = spans.iter().any(|s| {
            s.name == "contree.operation"
                && s.fields.get("contree.operation.id") == Some(&op_id)
                && s.fields.contains_key("contree.operation.status")
        });
        if done || Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    let (op_index, op) = spans
        .iter()
        .enumerate()
        .find(|(_, s)| s.name == "contree.operation" && s.fields.get("contree.operation.id") == Some(&op_id))
        .unwrap_or_else(|| panic!("no span for operation {op_id}: {spans:#?}"));
    assert_eq!(op.parent, None, "an operation outlives its request: {op:?}");
    assert_eq!(op.fields.get("contree.operation.status").map(String::as_str), Some("SUCCESS"), "{op:?}");
    assert_eq!(op.fields.get("otel.status_code").map(String::as_str), Some("OK"), "{op:?}");
    assert!(op.fields.contains_key("contree.duration_ms"), "{op:?}");
    let phases: Vec<&SpanRecord> = spans.iter().filter(|s| s.parent == Some(op_index)).collect();
    let names: Vec<&str> = phases.iter().map(|s| s.name).collect();
    assert_eq!(names, ["sandbox.spawn", "sandbox.run", "sandbox.finish"], "{phases:#?}");
    assert_eq!(phases[1].fields.get("process.exit.code").map(String::as_str), Some("0"), "{phases:#?}");

    let spawn = spans
        .iter()
        .find(|s| s.name == "http.request" && s.fields.get("http.route").map(String::as_str) == Some("/v1/instances"))
        .unwrap_or_else(|| panic!("no span for the spawn request: {spans:#?}"));
    assert_eq!(spawn.fields.get("otel.kind").map(String::as_str), Some("server"), "{spawn:?}");
    assert_eq!(spawn.fields.get("otel.name").map(String::as_str), Some("POST /v1/instances"), "{spawn:?}");
    assert_eq!(spawn.fields.get("http.request.method").map(String::as_str), Some("POST"), "{spawn:?}");
    let status: u16 = spawn.fields["http.response.status_code"].parse().unwrap();
    assert!((200..300).contains(&status), "{spawn:?}");
    let polls =
        spans.iter().filter(|s| s.fields.get("http.route").map(String::as_str) == Some("/v1/operations/{op}")).count();
    assert!(polls >= 1, "{spans:#?}");

    for s in &spans {
        for (k, v) in &s.fields {
            assert!(!v.contains(&token), "the token is in `{k}` of {s:?}");
        }
    }
    drop(server);
}
