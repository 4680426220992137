//! A scripted Contree on wiremock for the execution scenarios: spawn, event streams,
//! operation status, uploads. Everything here is synchronous (the mock server runs on its own
//! runtime), so both flavors share it as is.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Request, Respond, ResponseTemplate};

use crate::flavor::{Client, Image};
use crate::support::{Mock, TOKEN};
use contree::{ContreeConfig, RetryPolicy};

/// The image every scenario starts from.
pub const IMAGE: &str = "11111111-1111-4111-8111-111111111111";
/// The operation of a single-run scenario.
pub const OP: &str = "22222222-2222-4222-8222-222222222222";
/// The image a kept run produces.
pub const RESULT: &str = "33333333-3333-4333-8333-333333333333";

/// The truncation cap the test config sets, so a spawn body shows it came from the config.
pub const CONFIG_TRUNCATE: u64 = 4321;
/// The run timeout the test config sets (whole seconds).
pub const CONFIG_RUN_TIMEOUT: u64 = 77;

/// A configuration for `mock`: tiny retry and poll delays so failure paths stay fast.
pub fn config(base_url: &str) -> ContreeConfig {
    let mut config = ContreeConfig::default().with_base_url(base_url).with_token(TOKEN);
    config.retry = RetryPolicy {
        max_attempts: 2,
        delays: vec![Duration::from_millis(5)],
        jitter: 0.0,
        retry_after_cap: Duration::from_secs(2),
    };
    config.operation_poll_min = Duration::from_millis(5);
    config.operation_poll_max = Duration::from_secs(2);
    config.operation_run_timeout = Some(Duration::from_secs(CONFIG_RUN_TIMEOUT));
    config.default_truncate_output_at = CONFIG_TRUNCATE;
    config.transport_timeout = Duration::from_secs(10);
    config
}

/// A client talking to `mock`.
pub fn client(mock: &Mock) -> Client {
    Client::new(config(&mock.uri())).expect("client")
}

/// The source image, named by uuid.
pub fn image(client: &Client) -> Image {
    client.images().use_image(IMAGE).expect("image")
}

/// A fresh mock and a client for it.
pub fn setup() -> (Mock, Client) {
    let mock = Mock::start();
    let client = client(&mock);
    (mock, client)
}

/// The `{value, encoding}` form of bytes, as the server writes it.
pub fn stream_repr(bytes: &[u8]) -> Value {
    let printable = bytes.iter().all(|b| matches!(b, 32..=126 | b'\t' | b'\n' | b'\r'));
    if printable {
        json!({"value": String::from_utf8(bytes.to_vec()).unwrap(), "encoding": "ascii"})
    } else {
        json!({"value": base64(bytes), "encoding": "base64"})
    }
}

/// Standard base64 with padding (a tiny encoder keeps the suite free of one more dependency).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// How a scripted run ends.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: &'static str,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i64,
    pub signal: i64,
    pub result_image: Option<&'static str>,
    pub error: Option<&'static str>,
    pub truncated: bool,
    pub elapsed: f64,
}

impl Reply {
    /// A successful run printing `stdout`, keeping no image (the image-run default).
    pub fn ok(stdout: &str) -> Reply {
        Reply {
            status: "SUCCESS",
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
            exit_code: 0,
            signal: -1,
            result_image: None,
            error: None,
            truncated: false,
            elapsed: 0.25,
        }
    }

    pub fn image(mut self, uuid: &'static str) -> Reply {
        self.result_image = Some(uuid);
        self
    }

    pub fn stderr(mut self, stderr: &str) -> Reply {
        self.stderr = stderr.as_bytes().to_vec();
        self
    }

    pub fn exit(mut self, code: i64) -> Reply {
        self.exit_code = code;
        self
    }

    /// A FAILED operation with the server's reason.
    pub fn failed(reason: &'static str) -> Reply {
        Reply { status: "FAILED", error: Some(reason), exit_code: -1, ..Reply::ok("") }
    }

    /// A CANCELLED operation.
    pub fn cancelled() -> Reply {
        Reply { status: "CANCELLED", exit_code: -1, ..Reply::ok("") }
    }
}

/// `GET /operations/{op}` for a finished (or running, with `status` EXECUTING) instance.
pub fn op_json(op: &str, reply: &Reply) -> Value {
    let terminal_ok = reply.status == "SUCCESS";
    json!({
        "uuid": op,
        "kind": "instance",
        "status": reply.status,
        "error": reply.error,
        "created_at": "2026-01-01T00:00:00Z",
        "duration": reply.elapsed + 0.5,
        "image_uuid": IMAGE,
        "result_image_uuid": if terminal_ok { json!(reply.result_image) } else { Value::Null },
        "metadata": {
            "command": "cmd",
            "image": IMAGE,
            "result": {
                "resources": {"elapsed_time": reply.elapsed, "max_rss": 2048, "user_cpu_time": 0.125, "cost": 0.5},
                "state": {"exit_code": reply.exit_code, "pid": 7, "signal": reply.signal, "timed_out": false},
                "stdout": {"value": stream_repr(&reply.stdout)["value"], "encoding": stream_repr(&reply.stdout)["encoding"], "truncated": reply.truncated},
                "stderr": stream_repr(&reply.stderr)
            }
        },
        "result": {"image": if terminal_ok { json!(reply.result_image) } else { Value::Null }, "tag": null}
    })
}

/// One SSE frame carrying an event, the way the server writes it.
pub fn frame(id: u64, kind: &str, spid: Option<u32>, data: Value) -> String {
    let mut event = json!({"id": id, "ts": "2026-01-01T00:00:00.000Z", "type": kind, "data": data});
    if let Some(spid) = spid {
        event["spid"] = json!(spid);
    }
    format!("id: {id}\nevent: {kind}\ndata: {event}\n\n")
}

pub fn stdout_frame(id: u64, bytes: &[u8]) -> String {
    frame(id, "stdout", Some(1), stream_repr(bytes))
}

pub fn stderr_frame(id: u64, bytes: &[u8]) -> String {
    frame(id, "stderr", Some(1), stream_repr(bytes))
}

pub fn exit_frame(id: u64, code: i64) -> String {
    frame(
        id,
        "exit",
        Some(1),
        json!({"pid": 7, "code": code, "signal": -1, "timed_out": false, "duration_ms": 250, "resources": {}}),
    )
}

pub fn completion_frame(id: u64, reply: &Reply) -> String {
    frame(
        id,
        "completion",
        None,
        json!({"status": reply.status, "duration_ms": 750, "result_image_uuid": reply.result_image, "error": reply.error}),
    )
}

/// The event log of a run that printed `reply`'s output and exited.
pub fn events_for(reply: &Reply) -> String {
    let mut body = String::new();
    let mut id = 1;
    if !reply.stdout.is_empty() {
        body += &stdout_frame(id, &reply.stdout);
        id += 1;
    }
    if !reply.stderr.is_empty() {
        body += &stderr_frame(id, &reply.stderr);
        id += 1;
    }
    if reply.status == "SUCCESS" {
        body += &exit_frame(id, reply.exit_code);
        id += 1;
    }
    body + &completion_frame(id, reply)
}

pub fn sse_response(body: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("cache-control", "no-cache")
        .set_body_raw(body.into().into_bytes(), "text/event-stream")
}

/// Answers a spawn with 201 and the request echoed back under the operation id, as the server
/// does.
pub struct SpawnEcho {
    pub op: String,
}

impl Respond for SpawnEcho {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut body: Value = serde_json::from_slice(&request.body).unwrap_or_else(|_| json!({}));
        body["uuid"] = json!(self.op);
        ResponseTemplate::new(201)
            .insert_header("location", format!("/v1/operations/{}", self.op).as_str())
            .set_body_json(body)
    }
}

/// Answers with the templates in order, repeating the last one; records when each request came.
pub struct Sequence {
    replies: Vec<ResponseTemplate>,
    count: AtomicUsize,
    pub seen: Arc<Mutex<Vec<Instant>>>,
}

impl Sequence {
    pub fn new(replies: Vec<ResponseTemplate>) -> Sequence {
        Sequence { replies, count: AtomicUsize::new(0), seen: Arc::default() }
    }
}

impl Respond for Sequence {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        self.seen.lock().unwrap().push(Instant::now());
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        self.replies[n.min(self.replies.len() - 1)].clone()
    }
}

/// A content-addressed file store: `GET /files/{sha}` answers 200 for known content, 404
/// otherwise; `POST /files` stores the body and answers its uuid and sha256.
pub struct FileStore {
    known: Mutex<HashMap<String, String>>,
}

/// The uuid the fake store gives a content: derived from its hash, so tests can predict it.
pub fn file_uuid(content: &[u8]) -> String {
    let sha = Sha256::digest(content);
    let h = hex::encode(&sha[..16]);
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

pub fn sha256_hex(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

impl FileStore {
    /// Mounts the store; `already` is content the server has before the run.
    pub fn mount(mock: &Mock, already: &[&[u8]]) {
        let known = already.iter().map(|c| (sha256_hex(c), file_uuid(c))).collect();
        let store = Arc::new(FileStore { known: Mutex::new(known) });
        mock.mount(wiremock::Mock::given(method("GET")).and(FilesSha).respond_with(SharedStore(store.clone())));
        mock.mount(wiremock::Mock::given(method("POST")).and(path("/v1/files")).respond_with(SharedStore(store)));
    }
}

struct FilesSha;
impl wiremock::Match for FilesSha {
    fn matches(&self, request: &Request) -> bool {
        request.url.path().strip_prefix("/v1/files/").is_some_and(|rest| rest.len() == 64)
    }
}

struct SharedStore(Arc<FileStore>);
impl Respond for SharedStore {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut known = self.0.known.lock().unwrap();
        if request.method.as_str() == "GET" {
            let sha = request.url.path().rsplit('/').next().unwrap_or_default().to_string();
            return match known.get(&sha) {
                Some(uuid) => ResponseTemplate::new(200).set_body_json(json!({
                    "uuid": uuid, "sha256": sha, "size": 1,
                    "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
                })),
                None => ResponseTemplate::new(404).set_body_json(json!({"error": "file not found", "status": 404})),
            };
        }
        let sha = sha256_hex(&request.body);
        let uuid = file_uuid(&request.body);
        known.insert(sha.clone(), uuid.clone());
        ResponseTemplate::new(201).set_body_json(json!({"uuid": uuid, "sha256": sha, "size": request.body.len()}))
    }
}

/// Mounts `POST /v1/instances` answering with operation `op` (for any command).
pub fn mount_spawn(mock: &Mock, op: &str) {
    mock.mount(
        wiremock::Mock::given(method("POST")).and(path("/v1/instances")).respond_with(SpawnEcho { op: op.into() }),
    );
}

/// Mounts `POST /v1/instances` answering with operation `op` when the body's command is
/// `command`.
pub fn mount_spawn_for(mock: &Mock, command: &str, op: &str) {
    mock.mount(
        wiremock::Mock::given(method("POST"))
            .and(path("/v1/instances"))
            .and(body_partial_json(json!({"command": command})))
            .respond_with(SpawnEcho { op: op.into() }),
    );
}

pub fn events_path(op: &str) -> String {
    format!("/v1/operations/{op}/events")
}

pub fn op_path(op: &str) -> String {
    format!("/v1/operations/{op}")
}

pub fn mount_events(mock: &Mock, op: &str, response: ResponseTemplate) {
    mock.mount(wiremock::Mock::given(method("GET")).and(path(events_path(op))).respond_with(response));
}

pub fn mount_status(mock: &Mock, op: &str, reply: &Reply) {
    mock.mount(
        wiremock::Mock::given(method("GET")).and(path(op_path(op))).respond_with(
            ResponseTemplate::new(200).insert_header("retry-after", "1").set_body_json(op_json(op, reply)),
        ),
    );
}

/// Accepts `DELETE /operations/{op}` (202), as a cancel.
pub fn mount_cancel(mock: &Mock, op: &str) {
    mock.mount(wiremock::Mock::given(method("DELETE")).and(path(op_path(op))).respond_with(ResponseTemplate::new(202)));
}

/// A whole run of operation `op`: spawn (any command), its events, its final status.
pub fn mount_run(mock: &Mock, op: &str, reply: &Reply) {
    mount_spawn(mock, op);
    mount_run_events(mock, op, reply);
}

/// The events and final status of operation `op` (the spawn mounted separately).
pub fn mount_run_events(mock: &Mock, op: &str, reply: &Reply) {
    mount_events(mock, op, sse_response(events_for(reply)));
    mount_status(mock, op, reply);
    mount_cancel(mock, op);
}

/// The JSON bodies of every spawn, in order.
pub fn spawn_bodies(mock: &Mock) -> Vec<Value> {
    mock.requests_to("POST", "/v1/instances")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("spawn body is JSON"))
        .collect()
}

/// The only spawn body.
pub fn spawn_body(mock: &Mock) -> Value {
    let bodies = spawn_bodies(mock);
    assert_eq!(bodies.len(), 1, "expected exactly one spawn, got {bodies:?}");
    bodies.into_iter().next().unwrap()
}

/// A header of a recorded request, as text.
pub fn header(request: &Request, name: &str) -> Option<String> {
    request.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A value of a recorded request's query.
pub fn query(request: &Request, key: &str) -> Option<String> {
    request.url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// A one-connection HTTP server that answers with `head` (status line and headers) and then
/// `body`, and closes the connection: with a `content-length` larger than the body, the
/// client sees a body that breaks half-way. Returns its base URL.
pub fn broken_body_server(head: &'static str, body: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Serve a bounded number of connections, then stop by itself.
        for _ in 0..4 {
            let Ok((mut conn, _)) = listener.accept() else { return };
            conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 8192];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(body);
            let _ = conn.flush();
            drop(conn);
        }
    });
    format!("http://{addr}")
}

/// A byte sink both flavors accept as a writer (`Write` and `AsyncWrite`), readable after.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncWrite for SharedBuf {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
