//! End-to-end tests: a real contree-local server (real sandboxes, real SQLite) driven over
//! HTTP on 127.0.0.1, the way clients use it. Linux and root only (like the server itself).
#![cfg(target_os = "linux")]

use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use contree_local::{BASE_IMAGE_TAG, LocalConfig, LocalServer};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One server shared by the tests that don't need their own (it runs on its own runtime,
/// so it outlives each test's runtime).
fn shared() -> &'static LocalServer {
    static SERVER: OnceLock<LocalServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        std::thread::spawn(|| {
            LocalServer::start_blocking(LocalConfig::default().with_keepalive_interval(Duration::from_millis(300)))
                .expect("the local server starts (needs Linux and root)")
        })
        .join()
        .unwrap()
    })
}

/// A client bound to one server.
#[derive(Clone)]
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &LocalServer) -> Self {
        Api {
            base: server.base_url().to_owned(),
            token: server.token().to_owned(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        }
    }

    fn shared() -> Self {
        Api::new(shared())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.base)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(&self.token)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::GET, path).send().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    async fn upload(&self, content: &[u8]) -> Value {
        let r = self.req(reqwest::Method::POST, "/files").body(content.to_vec()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    /// POST /instances; returns the operation id.
    async fn spawn(&self, body: Value) -> String {
        let r = self.req(reqwest::Method::POST, "/instances").json(&body).send().await.unwrap();
        let status = r.status();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "spawn {body}: {v}");
        let uuid = v["uuid"].as_str().unwrap().to_owned();
        assert_eq!(loc.unwrap(), format!("/v1/operations/{uuid}"));
        uuid
    }

    /// Every event of an operation (`follow=1` waits for its end).
    async fn events(&self, op: &str, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/operations/{op}/events?{query}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        parse_sse(&r.text().await.unwrap())
    }

    /// Waits for the operation to end (following its events) and returns its status body.
    async fn wait(&self, op: &str) -> Value {
        let evs = tokio::time::timeout(Duration::from_secs(60), self.events(op, "follow=1")).await.expect("run ends");
        assert_eq!(evs.last().unwrap()["type"], "completion", "{evs:?}");
        self.get_json(&format!("/operations/{op}")).await
    }

    /// Spawns and waits.
    async fn run(&self, body: Value) -> Value {
        let op = self.spawn(body).await;
        self.wait(&op).await
    }

    async fn wait_status(&self, op: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.get_json(&format!("/operations/{op}")).await;
            if v["status"] == want {
                return v;
            }
            assert!(Instant::now() < deadline, "operation never reached {want}: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn base_uuid(&self) -> String {
        let r = self.get(&format!("/inspect/?tag={BASE_IMAGE_TAG}")).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        r.headers()["location"].to_str().unwrap().trim_end_matches('/').to_owned()
    }
}

/// Parses an SSE body into the JSON of its event frames (comments and `sse_error` skipped).
fn parse_sse(body: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for frame in body.split("\n\n") {
        let mut id = None;
        let mut event = None;
        let mut data = String::new();
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse::<u64>().unwrap());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
        if let (Some(id), Some(event)) = (id, event) {
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(v["id"], id);
            assert_eq!(v["type"], event.as_str());
            out.push(v);
        }
    }
    out
}

/// Percent-encodes a query value (keeping `/` readable, as clients do).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn types(evs: &[Value]) -> Vec<String> {
    evs.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

fn stream_bytes(v: &Value) -> Vec<u8> {
    let s = v["value"].as_str().unwrap();
    match v["encoding"].as_str().unwrap_or("ascii") {
        "base64" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).unwrap()
        }
        _ => s.as_bytes().to_vec(),
    }
}

/// The main process' stdout in an operation body ("" while there is none yet).
fn stdout(op: &Value) -> String {
    let out = &op["metadata"]["result"]["stdout"];
    if out.is_null() {
        return String::new();
    }
    String::from_utf8(stream_bytes(out)).unwrap()
}

fn base_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("tag:{BASE_IMAGE_TAG}"))
}

#[tokio::test]
async fn whoami_and_bearer_auth() {
    let api = Api::shared();
    let v = api.get_json("/whoami").await;
    assert!(v["token_uuid"].as_str().unwrap().len() == 36);
    assert!(v["token_expiration"].is_null());
    assert_eq!(v["permissions"]["spawn"], true);
    assert_eq!(v["permissions"]["list"], true);
    assert!(v["limits"]["instance_max_timeout"].as_i64().unwrap() > 0);
    assert!(!v.to_string().contains(&api.token), "whoami must not echo the token");

    for auth in [None, Some("Bearer wrong"), Some("Basic abc"), Some("Bearer ")] {
        let mut req = api.http.get(api.url("/whoami"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], 401);
        assert!(body["error"].as_str().unwrap().contains("token"));
    }
    // Every route is protected, even unknown ones; with the token, unknown routes are JSON 404s.
    let r = api.http.get(api.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = api.get("/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 404);
    // The IAM `Project` header is accepted and ignored.
    let r = api.req(reqwest::Method::GET, "/whoami").header("Project", "p").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn files_upload_dedup_head_get_list() {
    let api = Api::shared();
    let content = format!("file content {}\n", uuid::Uuid::new_v4());
    let sha = hex::encode(Sha256::digest(content.as_bytes()));
    let first = api.upload(content.as_bytes()).await;
    assert_eq!(first["sha256"], sha);
    assert_eq!(first["size"], content.len());
    let again = api.upload(content.as_bytes()).await;
    assert_eq!(again["uuid"], first["uuid"], "same content, same record");

    let r = api.req(reqwest::Method::HEAD, &format!("/files/{sha}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api.req(reqwest::Method::HEAD, &format!("/files/{}", "0".repeat(64))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let info = api.get_json(&format!("/files/{}", sha.to_uppercase())).await;
    assert_eq!(info["uuid"], first["uuid"]);
    assert!(info["created_at"].is_string() && info["updated_at"].is_string());
    let r = api.get("/files/not-a-sha").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = api.get(&format!("/files/{}", "a".repeat(64))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 404);

    let list = api.get_json("/files?limit=1000").await;
    assert!(list["files"].as_array().unwrap().iter().any(|f| f["sha256"] == sha));
    assert_eq!(api.get("/files?limit=0").await.status(), StatusCode::BAD_REQUEST);

    // A big upload streams through (and is hashed while streaming).
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let r = api.upload(&big).await;
    assert_eq!(r["sha256"], hex::encode(Sha256::digest(&big)));
    assert_eq!(r["size"], big.len());
}

/// A client that abandons its upload mid-body (here after 1 MiB of a declared 64 MiB, and
/// mid-chunk of a chunked body) leaves nothing: no file record, no blob, no temp file. Hyper
/// may drop the handler when the connection goes; the part that arrived must not be stored
/// as if it were the whole.
#[tokio::test]
async fn an_abandoned_upload_leaves_no_file_and_no_temp_file() {
    use tokio::io::AsyncWriteExt;
    let server = LocalServer::start(LocalConfig::default().with_networking(false)).await.unwrap();
    let api = Api::new(&server);
    let addr = server.base_url().trim_start_matches("http://").trim_end_matches('/').to_string();
    let blobs = server.data_dir().join("blobs");
    let part: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let entries = || -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    let before = entries();
    for chunked in [false, true] {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let framing = if chunked {
            "transfer-encoding: chunked\r\n".to_string()
        } else {
            format!("content-length: {}\r\n", 64 << 20)
        };
        let head = format!(
            "POST /v1/files HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/octet-stream\r\n{framing}\r\n",
            api.token
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        if chunked {
            // One whole chunk, then half of a second one.
            conn.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await.unwrap();
            conn.write_all(&part).await.unwrap();
            conn.write_all(format!("\r\n{:x}\r\n", part.len()).as_bytes()).await.unwrap();
            conn.write_all(&part[..part.len() / 2]).await.unwrap();
        } else {
            conn.write_all(&part).await.unwrap();
        }
        conn.flush().await.unwrap();
        // Let the server take in what was sent, then go away mid-body.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(conn);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while entries() != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(entries(), before, "an abandoned upload left files in the blob store");
    let list = api.get_json("/files?limit=1000").await;
    assert_eq!(list["files"], json!([]), "an abandoned upload was recorded as a file");
    // The server is fine: a whole upload still works.
    let r = api.upload(&part).await;
    assert_eq!(r["sha256"], hex::encode(Sha256::digest(&part)));
}

#[tokio::test]
async fn echo_events_come_in_order_and_fold_into_the_result() {
    let api = Api::shared();
    let base = api.base_uuid().await;
    let op = api.spawn(json!({"command": "echo", "args": ["hi"], "image": base_image()})).await;
    let evs = tokio::time::timeout(Duration::from_secs(60), api.events(&op, "follow=1")).await.unwrap();
    assert_eq!(types(&evs), ["init", "spawn", "stdout", "exit", "shutdown", "completion"], "{evs:#?}");
    assert!(evs.windows(2).all(|w| w[0]["id"].as_u64() < w[1]["id"].as_u64()));
    assert_eq!(evs[0]["spid"], 0);
    assert_eq!(evs[1]["spid"], 1);
    assert_eq!(evs[1]["data"]["command"], "echo");
    assert_eq!(stream_bytes(&evs[2]["data"]), b"hi\n");
    assert_eq!(evs[3]["data"]["code"], 0);
    assert_eq!(evs[3]["data"]["signal"], -1);
    assert_eq!(evs[4]["data"]["reason"], "job_complete");
    assert!(evs[5].get("spid").is_none());
    assert_eq!(evs[5]["data"]["status"], "SUCCESS");
    assert!(evs[5]["data"]["duration_ms"].is_u64());

    let v = api.get_json(&format!("/operations/{op}")).await;
    assert_eq!(v["status"], "SUCCESS");
    assert_eq!(v["kind"], "instance");
    assert_eq!(v["image_uuid"], base);
    assert_eq!(v["metadata"]["image"], base, "the tag is resolved to the uuid");
    assert_eq!(v["metadata"]["networking"]["enabled"], true, "networking is on unless asked off (the spec's default)");
    assert_eq!(stdout(&v), "hi\n");
    assert_eq!(v["metadata"]["result"]["state"]["exit_code"], 0);
    assert!(v["metadata"]["result"]["resources"]["elapsed_time"].as_f64().unwrap() >= 0.0);
    // `echo` writes nothing: the result is the source image itself.
    assert_eq!(v["result_image_uuid"], base);
    assert_eq!(evs[5]["data"]["result_image_uuid"], base);

    // Filters: since / Last-Event-Id / spid; terminal ops ignore follow.
    let tail = api.events(&op, "since=4").await;
    assert_eq!(types(&tail), ["shutdown", "completion"]);
    let r = api
        .req(reqwest::Method::GET, &format!("/operations/{op}/events?since=1"))
        .header("Last-Event-Id", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(types(&parse_sse(&r.text().await.unwrap())), ["completion"]);
    assert_eq!(types(&api.events(&op, "spid=0").await), ["init", "shutdown"]);
    assert_eq!(types(&api.events(&op, "spid=1&since=-1").await), ["spawn", "stdout", "exit"]);
    assert_eq!(api.get(&format!("/operations/{op}/events?since=x")).await.status(), StatusCode::BAD_REQUEST);
    // The subprocess view folds the same log.
    let sub = api.get_json(&format!("/operations/{op}/subprocesses/1")).await;
    assert_eq!(sub["state"]["exit_code"], 0);
    assert_eq!(stream_bytes(&sub["stdout"]), b"hi\n");
    assert_eq!(api.get(&format!("/operations/{op}/subprocesses/2")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn nonzero_exit_is_success_with_the_exit_code() {
    let api = Api::shared();
    let v = api.run(json!({"command": "echo oops >&2; exit 3", "shell": true, "image": base_image()})).await;
    assert_eq!(v["status"], "SUCCESS");
    assert_eq!(v["metadata"]["result"]["state"]["exit_code"], 3);
    assert_eq!(stream_bytes(&v["metadata"]["result"]["stderr"]), b"oops\n");
    // A missing program exits 127, like a shell would; still a completed operation.
    let v = api.run(json!({"command": "/no/such/program", "image": base_image()})).await;
    assert_eq!(v["status"], "SUCCESS");
    assert_eq!(v["metadata"]["result"]["state"]["exit_code"], 127);
}

#[tokio::test]
async fn stdin_env_cwd_uid_and_files() {
    let api = Api::shared();
    let v = api.run(json!({"command": "cat", "image": base_image(), "stdin": {"value": "my input\n"}})).await;
    assert_eq!(stdout(&v), "my input\n");
    let v = api
        .run(json!({"command": "cat", "image": base_image(), "stdin": {"value": "AAEC/w==", "encoding": "base64"}}))
        .await;
    assert_eq!(stream_bytes(&v["metadata"]["result"]["stdout"]), [0, 1, 2, 255]);

    let v = api
        .run(json!({"command": "echo $FOO-$HOME_X; pwd; id -u; id -g; hostname", "shell": true, "image": base_image(),
                    "env": {"FOO": "bar", "HOME_X": "y", "API_TOKEN": "s3cr3t"}, "cwd": "/tmp/work/dir",
                    "uid": 1234, "gid": 4321, "hostname": "box"}))
        .await;
    assert_eq!(stdout(&v), "bar-y\n/tmp/work/dir\n1234\n4321\nbox\n");
    assert_eq!(v["metadata"]["env"]["API_TOKEN"], "<MASKED>", "secrets are masked in the echo");
    let evs = api.events(v["uuid"].as_str().unwrap(), "").await;
    let spawn = evs.iter().find(|e| e["type"] == "spawn").unwrap();
    assert_eq!(spawn["data"]["env"]["API_TOKEN"], "<MASKED>");
    assert_eq!(spawn["data"]["env"]["FOO"], "bar");
    assert!(!evs.iter().any(|e| e.to_string().contains("s3cr3t")));

    let file = api.upload(b"placed content\n").await;
    let v = api
        .run(json!({"command": "cat /opt/app/data.txt /etc/conf; stat -c '%a %u %g' /opt/app/data.txt /etc/conf",
                    "shell": true, "image": base_image(),
                    "files": {"/opt/app/data.txt": {"uuid": file["uuid"], "mode": "0600", "uid": 7, "gid": 8},
                              "/etc/conf": {"uuid": file["uuid"]}}}))
        .await;
    assert_eq!(stdout(&v), "placed content\nplaced content\n600 7 8\n644 0 0\n");
}

#[tokio::test]
async fn bad_spawn_requests_are_400_and_unknown_images_404() {
    let api = Api::shared();
    let bad = [
        json!({"image": base_image()}),
        json!({"command": "true", "image": "not-an-image"}),
        json!({"command": "true", "image": base_image(), "cwd": "relative"}),
        json!({"command": "true", "image": base_image(), "truncate_output_at": 10485761}),
        json!({"command": "true", "image": base_image(), "timeout": 0}),
        json!({"command": "true", "image": base_image(), "hostname": "bad host"}),
        json!({"command": "true", "image": base_image(), "files": {"relative": {"uuid": uuid::Uuid::new_v4()}}}),
        json!({"command": "true", "image": base_image(), "files": {"/x": {"uuid": uuid::Uuid::new_v4()}}}),
        json!({"command": "true", "image": base_image(), "stdin": {"value": "%%", "encoding": "base64"}}),
    ];
    for body in bad {
        let r = api.req(reqwest::Method::POST, "/instances").json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], 400);
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    let r = api.req(reqwest::Method::POST, "/instances").body("{not json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = api
        .req(reqwest::Method::POST, "/instances")
        .json(&json!({"command": "true", "image": "tag:no/such:tag"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(api.get(&format!("/operations/{unknown}")).await.status(), StatusCode::NOT_FOUND);
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{unknown}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.get(&format!("/operations/{unknown}/events")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_layer_size_cap_that_cannot_be_enforced_is_refused_not_ignored() {
    let api = Api::shared();
    let body = json!({"command": "true", "image": base_image(), "resources_limits": {"max_layer_bytes": 104857600}});
    let r = api.req(reqwest::Method::POST, "/instances").json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("max_layer_bytes") && msg.contains("cannot be enforced"), "{msg}");
    // Without it the same spawn runs.
    let r = api
        .req(reqwest::Method::POST, "/instances")
        .json(&json!({"command": "true", "image": base_image(), "resources_limits": {}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test]
async fn ids_outside_the_sandbox_id_range_are_400_naming_the_field() {
    let api = Api::shared();
    for (body, field) in [
        (json!({"command": "true", "image": base_image(), "uid": 65536}), "`uid`"),
        (json!({"command": "true", "image": base_image(), "gid": 4_000_000_000u32}), "`gid`"),
    ] {
        let r = api.req(reqwest::Method::POST, "/instances").json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().await.unwrap();
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(field) && msg.contains("id range"), "{msg}");
    }
    // The top of the range is fine.
    let r = api
        .req(reqwest::Method::POST, "/instances")
        .json(&json!({"command": "true", "image": base_image(), "uid": 65535, "gid": 65535}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test]
async fn files_under_proc_sys_dev_are_400_naming_field_and_path() {
    let api = Api::shared();
    let file = api.upload(b"not for the kernel\n").await;
    let uuid = file["uuid"].as_str().unwrap().to_owned();
    for dest in
        ["/proc", "/proc/sys/kernel/core_pattern", "/./proc/x", "//sys/kernel/x", "/dev/./shm/x", "/a/../proc/x"]
    {
        let body = json!({"command": "true", "image": base_image(), "files": {dest: {"uuid": uuid}}});
        let r = api.req(reqwest::Method::POST, "/instances").json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().await.unwrap();
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("`files`") && msg.contains(dest), "{dest}: {msg}");
    }
}

/// A server started with networking off: omitted `networking` means none, asking for it is a
/// 400. (No run here needs a network.)
#[tokio::test]
async fn a_server_without_networking_refuses_requests_for_it() {
    let server = LocalServer::start(LocalConfig::default().with_networking(false)).await.unwrap();
    let api = Api::new(&server);
    let r = api
        .req(reqwest::Method::POST, "/instances")
        .json(&json!({"command": "true", "image": base_image(), "networking": {"enabled": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("`networking.enabled`") && msg.contains("networking turned off"), "{msg}");
    for body in [
        json!({"command": "true", "image": base_image()}),
        json!({"command": "true", "image": base_image(), "networking": {}}),
        json!({"command": "true", "image": base_image(), "networking": {"enabled": false}}),
    ] {
        let op = api.spawn(body.clone()).await;
        let v = api.get_json(&format!("/operations/{op}")).await;
        assert_eq!(v["metadata"]["networking"]["enabled"], false, "{body}: {v}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn output_is_truncated_at_the_cap() {
    let api = Api::shared();
    let v = api
        .run(json!({"command": "head -c 5000 /dev/zero | tr '\\0' a; echo err >&2", "shell": true,
                    "image": base_image(), "truncate_output_at": 100}))
        .await;
    let out = &v["metadata"]["result"]["stdout"];
    assert_eq!(stream_bytes(out), vec![b'a'; 100]);
    assert_eq!(out["truncated"], true);
    assert_eq!(v["metadata"]["result"]["stderr"]["truncated"], false);
    let evs = api.events(v["uuid"].as_str().unwrap(), "").await;
    let t: Vec<_> = evs.iter().filter(|e| e["type"] == "truncated").collect();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["data"], json!({"stream": "stdout", "bytes_emitted": 100, "bytes_dropped": 4900}));
    let ty = types(&evs);
    let pos = |x: &str| ty.iter().position(|t| t == x).unwrap();
    assert!(pos("exit") < pos("truncated") && pos("truncated") < pos("shutdown"));
}

#[tokio::test]
async fn timeout_kills_the_tree_and_reports_timed_out() {
    let api = Api::shared();
    let started = Instant::now();
    let v = api
        .run(
            json!({"command": "sleep 100 & sleep 100; echo never", "shell": true, "image": base_image(), "timeout": 1}),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let state = &v["metadata"]["result"]["state"];
    assert_eq!(state["timed_out"], true, "{v}");
    assert_eq!(state["exit_code"], -1);
    assert_eq!(state["signal"], 9);
    assert_eq!(stdout(&v), "");
    let evs = api.events(v["uuid"].as_str().unwrap(), "").await;
    let shutdown = evs.iter().find(|e| e["type"] == "shutdown").unwrap();
    assert_eq!(shutdown["data"]["reason"], "timeout");
}

/// Memory: 4 GiB against a 256 MiB limit is OOM-killed, the operation fails saying so, and
/// the server and the next run are fine.
#[tokio::test]
async fn a_run_past_its_memory_limit_is_oom_killed_and_says_so() {
    let server = LocalServer::start(LocalConfig::default().with_run_memory(256 << 20)).await.unwrap();
    let api = Api::new(&server);
    let who = api.get_json("/whoami").await;
    assert_eq!(who["limits"]["instance_max_memory_bytes"], 256 << 20, "{who}");
    let started = Instant::now();
    let v = api
        .run(json!({"command": "exec perl -e '$x = \"a\" x (4 << 30); print \"survived\\n\"'", "shell": true,
                    "image": base_image(), "timeout": 60}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(50), "took {:?}", started.elapsed());
    assert_eq!(v["status"], "FAILED", "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("memory limit of 268435456 bytes"), "{err}");
    let state = &v["metadata"]["result"]["state"];
    assert_eq!(state["signal"], 9, "{v}");
    assert_eq!(state["timed_out"], false);
    assert_eq!(stdout(&v), "");

    // A child killed while the command survives: the run completes and stderr tells.
    let v = api
        .run(json!({"command": "perl -e '$x = \"a\" x (4 << 30)'; echo status $?", "shell": true,
                    "image": base_image(), "timeout": 60}))
        .await;
    assert_eq!(v["status"], "SUCCESS", "{v}");
    assert_eq!(stdout(&v), "status 137\n");
    let stderr = String::from_utf8(stream_bytes(&v["metadata"]["result"]["stderr"])).unwrap();
    assert!(stderr.contains("exceeding its memory limit of 268435456 bytes"), "{stderr}");

    let v = api.run(json!({"command": "echo still here", "shell": true, "image": base_image()})).await;
    assert_eq!(v["status"], "SUCCESS", "{v}");
    assert_eq!(stdout(&v), "still here\n");
    server.shutdown().await;
}

/// pids: forking 2,000 processes against a limit of 256 fails inside the run; the run ends,
/// and the server and the next run are fine.
#[tokio::test]
async fn a_run_past_its_pids_limit_cannot_fork_and_the_server_is_fine() {
    let server = LocalServer::start(LocalConfig::default().with_run_pids(256)).await.unwrap();
    let api = Api::new(&server);
    assert_eq!(api.get_json("/whoami").await["limits"]["instance_max_pids"], 256);
    let fork_bomb = r#"my @kids; for my $i (1..2000) { my $p = fork;
        if (!defined $p) { print "fork failed after ", scalar(@kids), ": $!\n"; kill 'KILL', @kids; exit 3 }
        if ($p == 0) { sleep 60; exit 0 } push @kids, $p }
        print "forked 2000\n"; kill 'KILL', @kids"#;
    let started = Instant::now();
    let v = api.run(json!({"command": "perl", "args": ["-e", fork_bomb], "image": base_image(), "timeout": 60})).await;
    assert!(started.elapsed() < Duration::from_secs(50), "took {:?}", started.elapsed());
    assert_eq!(v["status"], "SUCCESS", "{v}");
    assert_eq!(v["metadata"]["result"]["state"]["exit_code"], 3, "{v}");
    let out = stdout(&v);
    let n: usize = out
        .strip_prefix("fork failed after ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((200..256).contains(&n), "{out}");
    assert!(out.contains("Resource temporarily unavailable"), "{out}");

    let v = api.run(json!({"command": "echo still here", "shell": true, "image": base_image()})).await;
    assert_eq!(stdout(&v), "still here\n", "{v}");
    server.shutdown().await;
}

/// A btrfs filesystem on a sparse loop image, mounted for one test and gone after it.
struct BtrfsScratch {
    _dir: tempfile::TempDir,
    mount: std::path::PathBuf,
}

impl BtrfsScratch {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (install btrfs-progs, as .ci/run does)"));
            assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(std::process::Command::new("truncate").args(["-s", size]).arg(&image));
        run(std::process::Command::new("mkfs.btrfs").args(["-q", "-f"]).arg(&image));
        run(std::process::Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mount));
        BtrfsScratch { _dir: dir, mount }
    }
}

impl Drop for BtrfsScratch {
    fn drop(&mut self) {
        // Lazy: a sandbox of the stopped server may still be letting go of its mounts.
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Bytes used on the filesystem holding `path`.
fn used_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=used"]).arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Disk: writing 1.5 GB against `max_layer_bytes` of 100 MB fails inside the run at the
/// cap, nothing past it reaches the disk, the capped layer is a normal image afterwards, and
/// the server and the next run are fine.
#[tokio::test]
async fn a_run_past_its_layer_cap_cannot_write_more_and_the_server_is_fine() {
    let fs = BtrfsScratch::new("6G");
    let data_dir = fs.mount.join("data");
    let server = LocalServer::start(LocalConfig::default().with_data_dir(&data_dir)).await.unwrap();
    let api = Api::new(&server);
    let before = used_bytes(&fs.mount);
    let cap: u64 = 100_000_000;
    let v = api
        .run(json!({"command": "dd if=/dev/zero of=/root/big bs=1M count=1500 2>&1; echo dd=$?; sync; echo synced",
                    "shell": true, "image": base_image(), "timeout": 120,
                    "resources_limits": {"max_layer_bytes": cap}}))
        .await;
    assert_eq!(v["status"], "SUCCESS", "{v}");
    let out = stdout(&v);
    assert!(out.contains("Disk quota exceeded"), "{out}");
    assert!(out.contains("dd=1\n"), "{out}");
    assert!(out.ends_with("synced\n"), "{out}");
    let used = used_bytes(&fs.mount) - before;
    assert!(used < cap + 50_000_000, "the capped run used {used} bytes of disk");

    // The capped layer is an image like any other: its file stops at the cap.
    let img = v["result_image_uuid"].as_str().unwrap().to_owned();
    let v = api.run(json!({"command": "wc -c < /root/big", "shell": true, "image": img})).await;
    let size: u64 = stdout(&v).trim().parse().unwrap();
    assert!(size > 50_000_000 && size <= cap, "{size}");
    // A run on top of it has its own cap (the spec's default here) and its own layer.
    let v = api
        .run(json!({"command": "dd if=/dev/zero of=/root/more bs=1M count=200 2>/dev/null && ls /root", "shell": true,
                    "image": img}))
        .await;
    assert_eq!(stdout(&v), "big\nmore\n", "{v}");

    let v = api.run(json!({"command": "echo still here", "shell": true, "image": base_image()})).await;
    assert_eq!(stdout(&v), "still here\n", "{v}");
    server.shutdown().await;
}

#[tokio::test]
async fn cancel_gives_202_then_409() {
    let api = Api::shared();
    let op = api.spawn(json!({"command": "sleep", "args": ["100"], "image": base_image()})).await;
    api.wait_status(&op, "EXECUTING").await;
    let listed = api.get_json("/operations?status=EXECUTING&kind=instance&limit=1000").await;
    assert!(listed.as_array().unwrap().iter().any(|o| o["uuid"] == op.as_str()));
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{op}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v = api.wait(&op).await;
    assert_eq!(v["status"], "CANCELLED");
    assert!(v["result_image_uuid"].is_null());
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{op}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 409);
    let evs = api.events(&op, "").await;
    assert_eq!(evs.last().unwrap()["data"]["status"], "CANCELLED");
}

#[tokio::test]
async fn disposable_noop_and_branching_images() {
    let api = Api::shared();
    let base = api.base_uuid().await;
    // A write makes a new image on top of the source.
    let v = api
        .run(json!({"command": "mkdir -p /root/proj && echo one > /root/proj/a", "shell": true, "image": base, "disposable": false}))
        .await;
    let img = v["result_image_uuid"].as_str().unwrap().to_owned();
    assert_ne!(img, base);
    assert_eq!(v["result"]["image"], img.as_str());
    let meta = api.get_json(&format!("/inspect/{img}/")).await;
    assert_eq!(meta["uuid"], img.as_str());
    assert_eq!(meta["operation_uuid"], v["uuid"]);
    // It sees its parent's files and its own.
    let v2 = api
        .run(json!({"command": "cat /root/proj/a; test -x /bin/sh && echo has-sh", "shell": true, "image": img}))
        .await;
    assert_eq!(stdout(&v2), "one\nhas-sh\n");
    // The source is untouched.
    let r = api.get(&format!("/inspect/{base}/download?path=/root/proj/a")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A no-op run on the new image keeps its uuid.
    let noop = api.run(json!({"command": "true", "image": img, "disposable": false})).await;
    assert_eq!(noop["result_image_uuid"], img.as_str());
    // Disposable runs leave no image.
    let d = api.run(json!({"command": "echo x > /root/d", "shell": true, "image": img, "disposable": true})).await;
    assert_eq!(d["status"], "SUCCESS");
    assert!(d["result_image_uuid"].is_null());
    // Two branches from one image stay isolated.
    let b1 = api.run(json!({"command": "echo b1 > /root/proj/a", "shell": true, "image": img})).await;
    let b2 = api.run(json!({"command": "rm /root/proj/a; echo b2 > /root/proj/b", "shell": true, "image": img})).await;
    let (b1, b2) =
        (b1["result_image_uuid"].as_str().unwrap().to_owned(), b2["result_image_uuid"].as_str().unwrap().to_owned());
    let read = |i: String, p: &'static str| {
        let api = api.clone();
        async move {
            let r = api.get(&format!("/inspect/{i}/download?path={p}")).await;
            (r.status(), r.text().await.unwrap())
        }
    };
    assert_eq!(read(b1.clone(), "/root/proj/a").await, (StatusCode::OK, "b1\n".into()));
    assert_eq!(read(b1.clone(), "/root/proj/b").await.0, StatusCode::NOT_FOUND);
    assert_eq!(read(b2.clone(), "/root/proj/a").await.0, StatusCode::NOT_FOUND, "whiteout hides the parent's file");
    assert_eq!(read(b2.clone(), "/root/proj/b").await, (StatusCode::OK, "b2\n".into()));
    assert_eq!(read(img.clone(), "/root/proj/a").await, (StatusCode::OK, "one\n".into()));
    // Chaining: run on b2 sees the deletion too.
    let v = api.run(json!({"command": "ls /root/proj", "shell": true, "image": b2})).await;
    assert_eq!(stdout(&v), "b\n");
    // A filter by uuid finds the image.
    let list = api.get_json(&format!("/images?uuid={img}")).await;
    assert_eq!(list["images"][0]["uuid"], img.as_str());
}

#[tokio::test]
async fn preserve_env_is_inherited_by_later_shell_runs() {
    let api = Api::shared();
    let v = api
        .run(json!({"command": "true", "image": base_image(), "env": {"GREETING": "hello"}, "preserve_env": true}))
        .await;
    let img = v["result_image_uuid"].as_str().unwrap().to_owned();
    assert_ne!(img, api.base_uuid().await, "a changed env makes a new image");
    let v = api.run(json!({"command": "echo $GREETING", "shell": true, "image": img})).await;
    assert_eq!(stdout(&v), "hello\n");
    // Without `shell`, the image env is not inherited.
    let v = api.run(json!({"command": "/bin/sh", "args": ["-c", "echo [$GREETING]"], "image": img})).await;
    assert_eq!(stdout(&v), "[]\n");
}

/// Every field of the spec's `InstanceSpawnRequest`, which `metadata` must echo.
const SPAWN_FIELDS: [&str; 18] = [
    "command",
    "image",
    "args",
    "shell",
    "env",
    "preserve_env",
    "preserve_cwd",
    "cwd",
    "uid",
    "gid",
    "hostname",
    "disposable",
    "timeout",
    "truncate_output_at",
    "stdin",
    "files",
    "resources_limits",
    "networking",
];

#[tokio::test]
async fn operation_records_echo_every_spawn_field_with_defaults_and_a_null_result() {
    let api = Api::shared();
    let base = api.base_uuid().await;
    let body = json!({"command": "sleep", "args": ["30"], "image": base_image()});
    let r = api.req(reqwest::Method::POST, "/instances").json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let op = created["uuid"].as_str().unwrap().to_owned();
    let running = api.wait_status(&op, "EXECUTING").await;
    for (what, meta) in [("201", &created), ("GET", &running["metadata"])] {
        for field in SPAWN_FIELDS.iter().chain(&["result"]) {
            assert!(meta.get(field).is_some(), "{what}: `{field}` missing from {meta}");
        }
        assert!(meta["result"].is_null(), "{what}: no result yet: {meta}");
        assert_eq!(meta["image"], base.as_str());
        assert_eq!(meta["args"], json!(["30"]));
        assert_eq!(meta["env"], json!({}));
        assert_eq!(meta["files"], json!({}));
        assert_eq!(meta["shell"], false);
        assert_eq!(meta["cwd"], "");
        assert_eq!(meta["hostname"], "linuxkit");
        assert_eq!((meta["uid"].as_u64(), meta["gid"].as_u64()), (Some(0), Some(0)));
        assert_eq!(
            (&meta["preserve_env"], &meta["preserve_cwd"], &meta["disposable"]),
            (&json!(false), &json!(false), &json!(false))
        );
        assert!(meta["timeout"].as_u64().unwrap() > 0, "the server's default timeout: {meta}");
        assert_eq!(meta["truncate_output_at"], 1048576);
        assert_eq!(meta["stdin"], json!({"value": "", "encoding": "ascii", "close": true}));
        assert_eq!(meta["resources_limits"], json!({"max_layer_bytes": 12884901888u64}));
        assert!(meta["networking"]["enabled"].is_boolean());
    }
    // While it runs, `duration` is the time so far, and it grows.
    let d1 = running["duration"].as_f64().unwrap_or_else(|| panic!("duration while running: {running}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = api.get_json(&format!("/operations/{op}")).await;
    let d2 = again["duration"].as_f64().unwrap();
    assert!(d2 >= d1 + 0.25, "{d1} then {d2}");
    // A pending operation, and the listing, have one too.
    let listed = api.get_json("/operations?status=EXECUTING&limit=1000").await;
    let mine = listed.as_array().unwrap().iter().find(|o| o["uuid"] == op.as_str()).unwrap().clone();
    assert!(mine["duration"].as_f64().unwrap() >= d1, "{mine}");
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{op}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let done = api.wait(&op).await;
    assert_eq!(done["status"], "CANCELLED");
    assert!(done["duration"].as_f64().unwrap() >= d2);
    assert_eq!(done["metadata"]["result"]["state"]["signal"], 9, "{done}");

    // Given values are echoed as the server took them; secrets masked; files with defaults.
    let file = api.upload(b"echo from a file\n").await;
    let v = api
        .run(json!({
            "command": "cat /etc/greeting.sh; pwd", "shell": true, "image": base_image(),
            "env": {"K": "v", "DB_PASSWORD": "hunter2"}, "cwd": "/srv", "timeout": 30,
            "files": {"/etc/greeting.sh": {"uuid": file["uuid"], "mode": "755"}},
            "stdin": {"value": "aGk=", "encoding": "base64", "truncated": false},
        }))
        .await;
    assert_eq!(stdout(&v), "echo from a file\n/srv\n");
    let meta = &v["metadata"];
    assert_eq!(meta["env"], json!({"K": "v", "DB_PASSWORD": "<MASKED>"}));
    assert_eq!(meta["cwd"], "/srv");
    assert_eq!(meta["timeout"], 30);
    assert_eq!(meta["files"]["/etc/greeting.sh"], json!({"uuid": file["uuid"], "uid": 0, "gid": 0, "mode": "0755"}));
    assert_eq!(meta["stdin"], json!({"value": "aGk=", "encoding": "base64", "close": true}));
    assert_eq!(meta["result"]["state"]["exit_code"], 0);
    for field in ["block_input", "cost", "elapsed_time", "max_rss", "monotonic_time", "page_faults_io", "user_cpu_time"]
    {
        assert!(meta["result"]["resources"][field].is_number(), "`{field}`: {meta}");
    }
}

#[tokio::test]
async fn spawn_fields_the_server_would_ignore_are_400_naming_them() {
    let api = Api::shared();
    let refused = |body: Value, names: &'static [&'static str]| {
        let api = api.clone();
        async move {
            let r = api.req(reqwest::Method::POST, "/instances").json(&body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
            let v: Value = r.json().await.unwrap();
            let msg = v["error"].as_str().unwrap().to_owned();
            for name in names {
                assert!(msg.contains(name), "{body}: {msg}");
            }
        }
    };
    let image = base_image();
    refused(json!({"command": "true", "image": image, "memory_limit": 5}), &["`memory_limit`"]).await;
    refused(json!({"command": "true", "image": image, "stdin": {"value": "", "eof": true}}), &["`stdin.eof`"]).await;
    refused(
        json!({"command": "true", "image": image, "stdin": {"value": "x", "truncated": true}}),
        &["`stdin.truncated`"],
    )
    .await;
    refused(
        json!({"command": "true", "image": image, "stdin": {"value": "x", "encoding": "hex"}}),
        &["`stdin.encoding`"],
    )
    .await;
    let file = uuid::Uuid::new_v4();
    refused(
        json!({"command": "true", "image": image, "files": {"/a": {"uuid": file, "sha": "x"}}}),
        &["`files./a.sha`"],
    )
    .await;
    refused(json!({"command": "true", "image": image, "resources_limits": {"cpus": 2}}), &["`resources_limits.cpus`"])
        .await;
    refused(
        json!({"command": "true", "image": image, "networking": {"enabled": false, "dns": "x"}}),
        &["`networking.dns`"],
    )
    .await;
    // Fields the spec ignores in some combinations are refused there instead.
    refused(json!({"command": "echo", "shell": true, "args": ["x"], "image": image}), &["`args`", "`shell`"]).await;
    refused(json!({"command": "true", "image": image, "preserve_cwd": true, "disposable": true}), &["`preserve_cwd`"])
        .await;
    refused(json!({"command": "true", "image": image, "preserve_env": true, "disposable": true}), &["`preserve_env`"])
        .await;
    // Nothing was recorded for any of them, and the same requests without the field run.
    let v = api.run(json!({"command": "echo", "shell": true, "args": [], "image": image})).await;
    assert_eq!(v["status"], "SUCCESS");
}

#[tokio::test]
async fn preserve_cwd_saves_the_initial_working_directory_in_the_result_image() {
    let api = Api::shared();
    let base = api.base_uuid().await;
    // The command's own `cd` does not change what is saved.
    let v = api
        .run(json!({"command": "pwd; cd /tmp", "shell": true, "cwd": "/srv/app/", "preserve_cwd": true, "image": base}))
        .await;
    assert_eq!(stdout(&v), "/srv/app\n");
    assert_eq!(v["metadata"]["preserve_cwd"], true);
    let img = v["result_image_uuid"].as_str().unwrap().to_owned();
    assert_ne!(img, base);
    // An empty or omitted cwd now starts there; an explicit one still wins.
    let v = api.run(json!({"command": "pwd", "image": img})).await;
    assert_eq!(stdout(&v), "/srv/app\n");
    let v = api.run(json!({"command": "pwd", "cwd": "", "image": img})).await;
    assert_eq!(stdout(&v), "/srv/app\n");
    let v = api.run(json!({"command": "pwd", "cwd": "/tmp", "image": img})).await;
    assert_eq!(stdout(&v), "/tmp\n");
    // Later images inherit it, without `preserve_cwd`.
    let v = api.run(json!({"command": "touch /x", "shell": true, "cwd": "/tmp", "image": img})).await;
    let child = v["result_image_uuid"].as_str().unwrap().to_owned();
    assert_ne!(child, img);
    let v = api.run(json!({"command": "pwd", "image": child})).await;
    assert_eq!(stdout(&v), "/srv/app\n");
    // Saving the same directory again changes nothing: the image keeps its uuid.
    let v = api.run(json!({"command": "true", "preserve_cwd": true, "image": img})).await;
    assert_eq!(v["result_image_uuid"], img.as_str());
    // Without it the base image starts at `/`, and saving `/` there is no change either.
    let v = api.run(json!({"command": "pwd", "image": base})).await;
    assert_eq!(stdout(&v), "/\n");
    let v = api.run(json!({"command": "true", "preserve_cwd": true, "image": base})).await;
    assert_eq!(v["result_image_uuid"], base.as_str());
    // Another directory is a new image even when no file changed.
    let v = api.run(json!({"command": "true", "cwd": "/tmp", "preserve_cwd": true, "image": img})).await;
    let moved = v["result_image_uuid"].as_str().unwrap().to_owned();
    assert_ne!(moved, img);
    let v = api.run(json!({"command": "pwd", "image": moved})).await;
    assert_eq!(stdout(&v), "/tmp\n");
}

#[tokio::test]
async fn tags_move_and_resolve_with_a_relative_302() {
    let api = Api::shared();
    let tag = format!("test/tags-{}:v1", &uuid::Uuid::new_v4().to_string()[..8]);
    let a = api.run(json!({"command": "echo a > /a", "shell": true, "image": base_image()})).await["result_image_uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = api.run(json!({"command": "echo b > /b", "shell": true, "image": base_image()})).await["result_image_uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let r =
        api.req(reqwest::Method::PATCH, &format!("/images/{a}/tag")).json(&json!({"tag": tag})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["tag"], tag.as_str());
    let r = api.get(&format!("/inspect/?tag={tag}")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], format!("{a}/").as_str());
    // Assigning the tag elsewhere moves it.
    let r =
        api.req(reqwest::Method::PATCH, &format!("/images/{b}/tag")).json(&json!({"tag": tag})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(api.get_json(&format!("/inspect/{a}/")).await["tag"].is_null());
    let r = api.get(&format!("/inspect/?tag={tag}")).await;
    assert_eq!(r.headers()["location"], format!("{b}/").as_str());
    // Runs resolve it too.
    let v = api.run(json!({"command": "cat /b", "image": format!("tag:{tag}")})).await;
    assert_eq!(v["image_uuid"], b.as_str());
    // Listing by tag prefix.
    let prefix = tag.split(':').next().unwrap();
    let list = api.get_json(&format!("/images?tag={prefix}")).await;
    assert_eq!(list["images"].as_array().unwrap().len(), 1);
    assert_eq!(list["images"][0]["uuid"], b.as_str());
    let tagged = api.get_json("/images?tagged&limit=1000").await;
    assert!(tagged["images"].as_array().unwrap().iter().all(|i| i["tag"].is_string()));
    assert_eq!(api.get("/images?limit=0").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(api.get("/images?limit=1001").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(api.get("/images?since=yesterday").await.status(), StatusCode::BAD_REQUEST);
    let recent = api.get_json("/images?since=1h&limit=1000").await;
    assert!(recent["images"].as_array().unwrap().iter().any(|i| i["uuid"] == b.as_str()));
    let page = api.get_json("/images?limit=1&offset=1").await;
    assert_eq!(page["images"].as_array().unwrap().len(), 1);
    // Bad tags are 400, unknown images 404.
    let r = api
        .req(reqwest::Method::PATCH, &format!("/images/{b}/tag"))
        .json(&json!({"tag": "bad tag"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = api
        .req(reqwest::Method::PATCH, &format!("/images/{}/tag", uuid::Uuid::new_v4()))
        .json(&json!({"tag": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Removing it.
    let r = api.req(reqwest::Method::DELETE, &format!("/images/{b}/tag?tag={tag}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/inspect/?tag={tag}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.get("/inspect/").await.status(), StatusCode::BAD_REQUEST);
    // The slash-less forms redirect.
    let r = api.get("/inspect").await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let r = api.get(&format!("/inspect/{b}")).await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.headers()["location"], format!("/v1/inspect/{b}/").as_str());
}

#[tokio::test]
async fn inspect_list_download_archive() {
    let api = Api::shared();
    let v = api
        .run(json!({"command": "mkdir -p /srv/site/sub && printf hello > /srv/site/index.html && printf x > /srv/site/sub/x \
                                && ln -s index.html /srv/site/link && chmod 640 /srv/site/index.html",
                    "shell": true, "image": base_image()}))
        .await;
    let img = v["result_image_uuid"].as_str().unwrap().to_owned();
    let list = api.get_json(&format!("/inspect/{img}/list?path=/srv/site")).await;
    assert_eq!(list["path"], "/srv/site");
    let files = list["files"].as_array().unwrap();
    let names: Vec<_> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["index.html", "link", "sub"]);
    let index = &files[0];
    assert_eq!(index["size"], 5);
    assert_eq!(index["is_regular"], true);
    assert_eq!(index["mode"].as_u64().unwrap() & 0o7777, 0o640);
    assert_eq!(files[1]["is_symlink"], true);
    assert_eq!(files[1]["symlink_to"], "index.html");
    assert_eq!(files[2]["is_dir"], true);
    for key in ["owner", "group", "uid", "gid", "mtime", "nlink", "is_socket", "is_fifo"] {
        assert!(index.get(key).is_some(), "{key}");
    }
    let text = api.get(&format!("/inspect/{img}/list?path=/srv/site&text")).await.text().await.unwrap();
    assert!(text.starts_with("total ") && text.contains("index.html") && text.contains("link -> index.html"), "{text}");
    // The base image's own tree is there too (host /usr through its overlay).
    let usr = api.get_json(&format!("/inspect/{img}/list?path=/usr/bin")).await;
    assert!(usr["files"].as_array().unwrap().iter().any(|f| f["path"] == "env"));

    let r = api.get(&format!("/inspect/{img}/download?path=/srv/site/link")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello");
    let head = |p: &'static str| {
        let api = api.clone();
        let img = img.clone();
        async move {
            api.req(reqwest::Method::HEAD, &format!("/inspect/{img}/download?path={p}")).send().await.unwrap().status()
        }
    };
    assert_eq!(head("/srv/site/index.html").await, StatusCode::OK);
    assert_eq!(head("/srv/site").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(head("/srv/nope").await, StatusCode::NOT_FOUND);
    let r = api.get(&format!("/inspect/{img}/download?path=/srv/site")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 422);
    assert_eq!(api.get(&format!("/inspect/{img}/download")).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        api.get(&format!("/inspect/{img}/list?path=/srv/site/index.html")).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(api.get(&format!("/inspect/{unknown}/list?path=/")).await.status(), StatusCode::NOT_FOUND);

    let r = api.get(&format!("/inspect/{img}/archive?path=/srv/site")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("srv_site.tar"));
    let bytes = r.bytes().await.unwrap();
    let mut ar = tar::Archive::new(bytes.as_ref());
    let mut entries = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut content = String::new();
        if e.header().entry_type().is_file() {
            e.read_to_string(&mut content).unwrap();
        }
        entries.push((path, content));
    }
    assert_eq!(
        entries,
        [
            ("site".to_owned(), String::new()),
            ("site/index.html".to_owned(), "hello".to_owned()),
            ("site/link".to_owned(), String::new()),
            ("site/sub".to_owned(), String::new()),
            ("site/sub/x".to_owned(), "x".to_owned()),
        ]
    );
    let r = api.req(reqwest::Method::HEAD, &format!("/inspect/{img}/archive?path=/srv/site")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api.req(reqwest::Method::HEAD, &format!("/inspect/{img}/archive?path=/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A single file archives as one entry.
    let bytes = api.get(&format!("/inspect/{img}/archive?path=/srv/site/index.html")).await.bytes().await.unwrap();
    let mut ar = tar::Archive::new(bytes.as_ref());
    let names: Vec<_> =
        ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["index.html"]);
}

#[tokio::test]
async fn path_escapes_get_4xx_and_read_nothing() {
    let server = shared();
    let api = Api::shared();
    let v = api
        .run(json!({"command": "ln -s / /root/rootlink && ln -s ../../../../../.. /root/up && ln -s /proc/self/root /root/proc",
                    "shell": true, "image": base_image()}))
        .await;
    let img = v["result_image_uuid"].as_str().unwrap().to_owned();
    // A file that exists on the host but not in the image: the server's own database.
    let db = server.data_dir().join("db.sqlite");
    assert!(db.exists());
    let db = db.display().to_string();
    let attempts = [
        format!("../../../../..{db}"),
        format!("/root/rootlink{db}"),
        format!("/root/up{db}"),
        format!("/root/rootlink/../../..{db}"),
        format!("/root/proc{db}"),
        format!("/root/up/root/up{db}"),
        "/root/rootlink/etc/shadow".to_owned(),
        "/../etc/shadow".to_owned(),
        "/root/up/etc/gshadow".to_owned(),
        "/root/proc/environ".to_owned(),
        "/proc/self/environ".to_owned(),
    ];
    for p in &attempts {
        for route in ["download", "archive", "list"] {
            let r = api.get(&format!("/inspect/{img}/{route}?path={}", encode(p))).await;
            let status = r.status();
            let body = r.bytes().await.unwrap();
            assert!(status.is_client_error(), "{route} {p}: {status}");
            assert!(!body.windows(6).any(|w| w == b"SQLite"), "{route} {p} leaked the database");
        }
    }
    // Following links stays inside the image: `/root/rootlink/etc` is the image's /etc.
    let r = api.get(&format!("/inspect/{img}/list?path=/root/rootlink/root")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let names: Vec<String> = r.json::<Value>().await.unwrap()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["proc", "rootlink", "up"]);
}

/// `GET /inspect/{uuid}/grep` on real layers: what an upper layer deleted is not found, and
/// the hostile parts of an image (symlinks out and in loops, a FIFO, a sparse 1 GiB file,
/// binary data, a deep tree) are walked past without following, blocking or reading them all.
#[tokio::test]
async fn grep_searches_the_layers_confined_and_bounded() {
    let api = Api::shared();
    let deep = "/d".repeat(140);
    let setup = format!(
        "set -e; mkdir -p /srv/g/sub /srv/g{deep}; cd /srv/g; \
         printf 'alpha needle\\nbeta\\ngamma\\n' > a.txt; printf 'needle to delete\\n' > gone.txt; \
         printf 'needle\\000binary\\n' > bin.dat; printf 'x\\nNeedle caps\\n' > sub/c.md; \
         ln -s / rootlink; ln -s loop2 loop1; ln -s loop1 loop2; ln -s a.txt alink; \
         mkfifo fifo; truncate -s 1G sparse; printf 'needle deep\\n' > /srv/g{deep}/bottom"
    );
    let a = api.run(json!({"command": setup, "shell": true, "image": base_image()})).await;
    assert_eq!(a["status"], "SUCCESS", "{a}");
    let a = a["result_image_uuid"].as_str().unwrap().to_owned();
    let b = api.run(json!({"command": "rm /srv/g/gone.txt", "shell": true, "image": a})).await;
    let b = b["result_image_uuid"].as_str().unwrap().to_owned();
    let grep = |img: &str, query: &str| {
        let (api, url) = (api.clone(), format!("/inspect/{img}/grep?{query}"));
        async move {
            let r = tokio::time::timeout(Duration::from_secs(30), api.get(&url)).await.expect("grep answers in time");
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let files = |v: &Value| -> Vec<String> {
        let mut p: Vec<String> =
            v["matches"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().to_owned()).collect();
        p.dedup();
        p
    };

    let (status, v) = grep(&b, "pattern=needle&path=/srv/g").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(files(&v), ["/srv/g/a.txt"], "no deleted, binary, linked or too-deep file: {v}");
    assert_eq!(v["path"], "/srv/g");
    assert_eq!(v["patterns"], json!(["needle"]));
    assert_eq!(v["truncated"], true, "the tree below the depth cap was not searched");
    assert_eq!(
        v["matches"][0],
        json!({"path": "/srv/g/a.txt", "line_number": 1, "absolute_offset": 0, "line_text": "alpha needle\n",
               "line_bytes": 13, "submatches": [{"text": "needle", "start": 6, "end": 12}], "type": "match"})
    );
    // The image below the deletion still has the file.
    let (_, v) = grep(&a, "pattern=needle&path=/srv/g/gone.txt").await;
    assert_eq!(files(&v), ["/srv/g/gone.txt"]);
    assert_eq!(v["truncated"], false);
    assert_eq!(grep(&b, "pattern=needle&path=/srv/g/gone.txt").await.0, StatusCode::NOT_FOUND);

    // Case, globs, several roots, context.
    let (_, v) = grep(&b, "pattern=needle&path=/srv/g/sub&path=/srv/g/a.txt&case=smart").await;
    assert_eq!(files(&v), ["/srv/g/sub/c.md", "/srv/g/a.txt"]);
    assert_eq!(v["path"], "/srv/g/sub");
    let (_, v) = grep(&b, "pattern=Needle&path=/srv/g&case=smart&glob=*.md").await;
    assert_eq!(files(&v), ["/srv/g/sub/c.md"]);
    let (_, v) = grep(&b, "pattern=needle&path=/srv/g&case=insensitive&glob=!sub/").await;
    assert_eq!(files(&v), ["/srv/g/a.txt"]);
    let (_, v) = grep(&b, "pattern=beta&path=/srv/g/a.txt&before=1&after=5").await;
    let rows: Vec<(u64, &str)> = v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["line_number"].as_u64().unwrap(), m["type"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, [(1, "context"), (2, "match"), (3, "context")]);
    // A root given through a symlink is resolved inside the image.
    let (_, v) = grep(&b, "pattern=needle&path=/srv/g/rootlink/srv/g/alink").await;
    assert_eq!(files(&v), ["/srv/g/a.txt"]);
    // max_total stops the search and says so.
    let (_, v) = grep(&a, "pattern=needle&path=/srv/g&max_total=1").await;
    assert_eq!(v["matches"].as_array().unwrap().len(), 1);
    assert_eq!(v["truncated"], true);

    // Nothing outside the image: the server's database is not reachable by any root.
    let db = shared().data_dir().join("db.sqlite").display().to_string();
    for p in [format!("/srv/g/rootlink{db}"), format!("/../../..{db}"), format!("/srv/g/rootlink/../..{db}")] {
        let (status, _) = grep(&b, &format!("pattern=SQLite&path={}", encode(&p))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
    }
    let (status, _) = grep(&b, "pattern=x&path=/srv/g/loop1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a symlink loop as a root");

    // Bad input is a 400 that names the parameter; unknown images and paths are 404.
    for (query, name) in [
        ("path=/srv", "pattern"),
        ("pattern=a(", "pattern"),
        ("pattern=a&max_total=0", "max_total"),
        ("pattern=a&before=51", "before"),
        ("pattern=a&case=loud", "case"),
    ] {
        let (status, v) = grep(&b, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert!(v["error"].as_str().unwrap().contains(&format!("`{name}`")), "{query}: {v}");
    }
    assert_eq!(grep(&b, "pattern=a&path=/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(grep(&uuid::Uuid::new_v4().to_string(), "pattern=a").await.0, StatusCode::NOT_FOUND);
}

/// `POST /operations/{id}/subprocesses` and the spid's routes.
async fn exec(api: &Api, op: &str, body: Value) -> (StatusCode, Value, Option<String>) {
    let r = api.req(reqwest::Method::POST, &format!("/operations/{op}/subprocesses")).json(&body).send().await.unwrap();
    let status = r.status();
    let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap_or(Value::Null), loc)
}

/// A process result's stdout (`GET …/subprocesses/{spid}`).
fn sub_stdout(result: &Value) -> String {
    String::from_utf8(stream_bytes(&result["stdout"])).unwrap()
}

/// Polls `GET …/subprocesses/{spid}` until the process has exited.
async fn sub_result(api: &Api, op: &str, spid: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = api.get_json(&format!("/operations/{op}/subprocesses/{spid}")).await;
        if v["state"]["exit_code"] != -1 || v["state"]["signal"] != -1 {
            return v;
        }
        assert!(Instant::now() < deadline, "subprocess {spid} never exited: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn subprocesses_run_inside_the_instance_with_their_own_stdio_and_events() {
    let api = Api::shared();
    // The main process leaves a mark in its sandbox and waits for stdin.
    let op = api
        .spawn(json!({"command": "echo main > /tmp/mark; cat > /dev/null; echo main-done", "shell": true,
                      "image": base_image(), "hostname": "box", "stdin": {"value": "", "close": false}}))
        .await;
    api.wait_status(&op, "EXECUTING").await;
    // Started: sees the main process's filesystem, hostname and PID namespace (init is 1).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body, loc) = loop {
        let (status, body, loc) = exec(
            &api,
            &op,
            json!({"command": "cat /tmp/mark; hostname; echo $FOO; id -u; pwd; tr '\\0' ' ' < /proc/1/cmdline; echo; echo err >&2",
                   "shell": true, "env": {"FOO": "bar"}, "cwd": "/tmp", "uid": 1000, "gid": 1000}),
        )
        .await;
        // The main process may not have written its mark yet (or not be published: 425).
        if status == StatusCode::TOO_EARLY
            || (status == StatusCode::CREATED && Instant::now() < deadline && {
                let v = sub_result(&api, &op, body["spid"].as_u64().unwrap()).await;
                !sub_stdout(&v).starts_with("main")
            })
        {
            assert!(Instant::now() < deadline, "exec never saw the main process's state: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        break (status, body, loc);
    };
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let spid = body["spid"].as_u64().unwrap();
    assert!(spid >= 2, "{body}");
    assert_eq!(loc.unwrap(), format!("/v1/operations/{op}/subprocesses/{spid}"));
    let v = sub_result(&api, &op, spid).await;
    assert_eq!(v["state"]["exit_code"], 0, "{v}");
    let out = sub_stdout(&v);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..5], ["main", "box", "bar", "1000", "/tmp"], "{out}");
    assert_eq!(lines[5].trim(), "contree-init", "PID 1 of the instance is its init: {out}");
    assert_eq!(stream_bytes(&v["stderr"]), b"err\n");

    // stdin kept open, written and closed through its own route; killed by spid.
    let (status, body, _) = exec(&api, &op, json!({"command": "cat", "stdin": {"value": "a", "close": false}})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let cat = body["spid"].as_u64().unwrap();
    let write = |spid: u64, value: &'static str, close: bool| {
        let api = api.clone();
        let op = op.clone();
        async move {
            api.req(reqwest::Method::POST, &format!("/operations/{op}/subprocesses/{spid}/stdin"))
                .json(&json!({"value": value, "close": close}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(write(cat, "b", false).await, StatusCode::NO_CONTENT);
    assert_eq!(write(cat, "c", true).await, StatusCode::NO_CONTENT);
    let v = sub_result(&api, &op, cat).await;
    assert_eq!(sub_stdout(&v), "abc");
    assert_eq!(v["state"]["exit_code"], 0);
    assert_eq!(write(cat, "late", true).await, StatusCode::NOT_FOUND, "it exited");

    let (_, body, _) = exec(&api, &op, json!({"command": "sleep", "args": ["300"]})).await;
    let sleeper = body["spid"].as_u64().unwrap();
    assert_eq!(write(sleeper, "x", true).await, StatusCode::CONFLICT, "started with a closed stdin");
    let r = api
        .req(reqwest::Method::DELETE, &format!("/operations/{op}/subprocesses/{sleeper}?signal=TERM"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v = sub_result(&api, &op, sleeper).await;
    assert_eq!((v["state"]["signal"].as_i64(), v["state"]["exit_code"].as_i64()), (Some(15), Some(-1)), "{v}");
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{op}/subprocesses/{sleeper}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no live process with that spid any more");

    // Not found / not executable are results, like for the main process; a missing cwd is 400.
    let (_, body, _) = exec(&api, &op, json!({"command": "no-such-program"})).await;
    let v = sub_result(&api, &op, body["spid"].as_u64().unwrap()).await;
    assert_eq!(v["state"]["exit_code"], 127);
    let (status, body, _) = exec(&api, &op, json!({"command": "true", "cwd": "/no/such/dir"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("/no/such/dir"), "{body}");

    // Hostile or out-of-place requests are 400 before anything runs.
    for bad in [
        json!({"command": ""}),
        json!({"command": "true", "image": "tag:x"}),
        json!({"command": "true", "timeout": 5}),
        json!({"command": "a\u{0}b"}),
        json!({"command": "true", "env": {"A=B": "x"}}),
        json!({"command": "true", "cwd": "relative"}),
        json!({"command": "true", "uid": 4_000_000_000u64}),
        json!({"command": "true", "args": vec!["x"; 5000]}),
        json!({"command": "true", "args": ["y".repeat(600 * 1024)]}),
        json!({"command": "echo", "shell": true, "args": ["x"]}),
        json!({"command": "true", "truncate_output_at": 1u64 << 40}),
        json!({"args": ["no command"]}),
    ] {
        let (status, body, _) = exec(&api, &op, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // The main process ends: the instance completes, the events name every spid.
    let r = api
        .req(reqwest::Method::POST, &format!("/operations/{op}/subprocesses/1/stdin"))
        .json(&json!({"value": "", "close": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v = api.wait(&op).await;
    assert_eq!(v["status"], "SUCCESS");
    assert_eq!(stdout(&v), "main-done\n", "the main result is spid 1's alone");
    let evs = api.events(&op, "").await;
    let spawned: Vec<u64> = evs.iter().filter(|e| e["type"] == "spawn").map(|e| e["spid"].as_u64().unwrap()).collect();
    assert!(spawned.contains(&1) && spawned.contains(&spid) && spawned.contains(&cat), "{spawned:?}");
    let only: Vec<Value> = api.events(&op, &format!("spid={cat}")).await;
    assert_eq!(types(&only)[0], "spawn");
    assert!(only.iter().all(|e| e["spid"] == cat), "{only:?}");
    assert_eq!(types(&only).last().unwrap(), "exit");
    // Results stay readable from the stored log.
    let v = api.get_json(&format!("/operations/{op}/subprocesses/{cat}")).await;
    assert_eq!(sub_stdout(&v), "abc");
    // A finished instance takes no more processes.
    let (status, _, _) = exec(&api, &op, json!({"command": "true"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let bogus = uuid::Uuid::new_v4();
    let (status, _, _) = exec(&api, &bogus.to_string(), json!({"command": "true"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn subprocesses_start_concurrently_up_to_the_live_cap() {
    let api = Api::shared();
    let op = api.spawn(json!({"command": "sleep", "args": ["300"], "image": base_image()})).await;
    api.wait_status(&op, "EXECUTING").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body, _) = exec(&api, &op, json!({"command": "true"})).await;
        if status == StatusCode::CREATED {
            sub_result(&api, &op, body["spid"].as_u64().unwrap()).await;
            break;
        }
        assert!(status == StatusCode::TOO_EARLY && Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 64 at once, started concurrently: distinct spids, all running.
    let starts = (0..64).map(|_| {
        let api = api.clone();
        let op = op.clone();
        async move { exec(&api, &op, json!({"command": "sleep", "args": ["300"]})).await }
    });
    let started = futures_util::future::join_all(starts).await;
    let mut spids: Vec<u64> = started
        .iter()
        .map(|(status, body, _)| {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            body["spid"].as_u64().unwrap()
        })
        .collect();
    spids.sort_unstable();
    spids.dedup();
    assert_eq!(spids.len(), 64, "every spid is new");
    let (status, body, _) = exec(&api, &op, json!({"command": "true"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "past the live cap: {body}");
    assert!(body["error"].as_str().unwrap().contains("64"), "{body}");
    // One ends: room for another.
    let r =
        api.req(reqwest::Method::DELETE, &format!("/operations/{op}/subprocesses/{}", spids[0])).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    sub_result(&api, &op, spids[0]).await;
    let (status, body, _) = exec(&api, &op, json!({"command": "true"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The instance's end takes every one of them.
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{op}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v = tokio::time::timeout(Duration::from_secs(30), api.wait(&op)).await.expect("the instance ends");
    assert_eq!(v["status"], "CANCELLED");
}

#[tokio::test]
async fn subprocesses_die_with_the_instance() {
    let api = Api::shared();
    let op = api.spawn(json!({"command": "sleep", "args": ["300"], "image": base_image()})).await;
    api.wait_status(&op, "EXECUTING").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let spid = loop {
        let (status, body, _) = exec(&api, &op, json!({"command": "sleep", "args": ["300"]})).await;
        if status == StatusCode::TOO_EARLY && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(status, StatusCode::CREATED, "{body}");
        break body["spid"].as_u64().unwrap();
    };
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{op}/subprocesses/1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v = tokio::time::timeout(Duration::from_secs(20), api.wait(&op)).await.expect("the instance ends at once");
    assert_eq!(v["status"], "SUCCESS");
    let sub = api.get_json(&format!("/operations/{op}/subprocesses/{spid}")).await;
    assert_eq!(sub["state"]["signal"], 9, "{sub}");
    let evs = api.events(&op, "").await;
    let sub_exit = evs.iter().position(|e| e["type"] == "exit" && e["spid"] == spid).expect("its exit is logged");
    let shutdown = evs.iter().position(|e| e["type"] == "shutdown").unwrap();
    assert!(sub_exit < shutdown, "logged before the instance's end");
}

#[tokio::test]
async fn popen_stdin_streaming_and_kill() {
    let api = Api::shared();
    let op = api
        .spawn(json!({"command": "while read l; do echo got:$l; done; echo eof", "shell": true, "image": base_image(),
                      "stdin": {"value": "first\n", "close": false}}))
        .await;
    // Follow the output live.
    let follower = {
        let api = api.clone();
        let op = op.clone();
        tokio::spawn(async move { api.events(&op, "follow=1&spid=1").await })
    };
    let write = |value: &'static str, close: bool| {
        let api = api.clone();
        let op = op.clone();
        async move {
            api.req(reqwest::Method::POST, &format!("/operations/{op}/subprocesses/1/stdin"))
                .json(&json!({"value": value, "close": close}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(write("second\n", false).await, StatusCode::NO_CONTENT);
    // Wait until both lines came out, while the process still runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = api.get_json(&format!("/operations/{op}?inflight=1")).await;
        if v["status"] == "EXECUTING" && stdout(&v) == "got:first\ngot:second\n" {
            assert_eq!(stream_bytes(&v["result"]["stdout"]), b"got:first\ngot:second\n");
            break;
        }
        assert!(Instant::now() < deadline, "never saw the output: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sub = api.get_json(&format!("/operations/{op}/subprocesses/1")).await;
    assert_eq!(sub["state"]["exit_code"], -1, "still running");
    assert_eq!(sub["state"]["signal"], -1);
    assert!(sub["state"]["pid"].as_i64().unwrap() > 0);
    let r = api
        .req(reqwest::Method::DELETE, &format!("/operations/{op}/subprocesses/1?signal=BOGUS"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r =
        api.req(reqwest::Method::DELETE, &format!("/operations/{op}/subprocesses/1?signal=TERM")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v = api.wait(&op).await;
    assert_eq!(v["status"], "SUCCESS");
    let state = &v["metadata"]["result"]["state"];
    assert_eq!(state["signal"], 15);
    assert_eq!(state["exit_code"], -1);
    let evs = follower.await.unwrap();
    assert!(evs.iter().all(|e| e["spid"] == 1));
    let stdin: Vec<u8> = evs.iter().filter(|e| e["type"] == "stdin").flat_map(|e| stream_bytes(&e["data"])).collect();
    assert_eq!(stdin, b"first\nsecond\n");
    assert_eq!(stdout(&v), "got:first\ngot:second\n");
    // The instance ended: no more writes.
    assert_eq!(write("late\n", true).await, StatusCode::GONE);

    // Closing stdin through the API gives EOF; then the pipe is closed for good.
    let op2 = api
        .spawn(json!({"command": "cat; echo done", "shell": true, "image": base_image(), "stdin": {"value": "", "close": false}}))
        .await;
    let w = |value: &'static str, close: bool| {
        let api = api.clone();
        let op = op2.clone();
        async move {
            api.req(reqwest::Method::POST, &format!("/operations/{op}/subprocesses/1/stdin"))
                .json(&json!({"value": value, "close": close}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(w("abc", true).await, StatusCode::NO_CONTENT);
    let status = w("more", true).await;
    assert!(status == StatusCode::CONFLICT || status == StatusCode::GONE, "{status}");
    let v = api.wait(&op2).await;
    assert_eq!(stdout(&v), "abcdone\n");

    // A process started with a closed stdin refuses writes.
    let op3 = api.spawn(json!({"command": "sleep", "args": ["30"], "image": base_image()})).await;
    api.wait_status(&op3, "EXECUTING").await;
    let r = api
        .req(reqwest::Method::POST, &format!("/operations/{op3}/subprocesses/1/stdin"))
        .json(&json!({"value": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{op3}/subprocesses/1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v = api.wait(&op3).await;
    assert_eq!(v["metadata"]["result"]["state"]["signal"], 9);
}

#[tokio::test]
async fn gzip_responses_and_live_gzip_event_streams() {
    let api = Api::shared();
    // Plain responses above 4 KiB are gzipped when asked for (the base image's /bin listing is
    // hundreds of KB); small ones go out as they are, gzip would only cost CPU.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let base = contree_local::BASE_IMAGE_UUID;
    let r = raw
        .get(api.url(&format!("/inspect/{base}/list?path=/bin")))
        .bearer_auth(&api.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let mut json = String::new();
    flate2::read::GzDecoder::new(r.bytes().await.unwrap().as_ref()).read_to_string(&mut json).unwrap();
    assert!(json.len() > 4096, "{} bytes", json.len());
    assert!(serde_json::from_str::<Value>(&json).unwrap()["files"].is_array());
    let small =
        raw.get(api.url("/whoami")).bearer_auth(&api.token).header("accept-encoding", "gzip").send().await.unwrap();
    assert!(small.headers().get("content-encoding").is_none(), "{:?}", small.headers());
    assert!(serde_json::from_slice::<Value>(&small.bytes().await.unwrap()).unwrap()["token_uuid"].is_string());

    // A gzipped event stream delivers each event as it happens, not at the end: decode the
    // chunks as they come and look for the first output long before the run ends.
    let op =
        api.spawn(json!({"command": "echo early; sleep 3; echo late", "shell": true, "image": base_image()})).await;
    let r = raw
        .get(api.url(&format!("/operations/{op}/events?follow=1")))
        .bearer_auth(&api.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let started = Instant::now();
    let mut stream = r.bytes_stream();
    let mut gz = flate2::write::GzDecoder::new(Vec::new());
    let mut early_at = None;
    while let Some(chunk) = stream.next().await {
        std::io::Write::write_all(&mut gz, &chunk.unwrap()).unwrap();
        std::io::Write::flush(&mut gz).unwrap();
        let so_far = String::from_utf8_lossy(gz.get_ref());
        if early_at.is_none() && so_far.contains("\"value\":\"early\\n\"") {
            early_at = Some(started.elapsed());
        }
    }
    let text = String::from_utf8(gz.finish().unwrap()).unwrap();
    let early_at = early_at.expect("saw the early output");
    assert!(early_at < Duration::from_secs(2), "first output arrived after {early_at:?}");
    let evs = parse_sse(&text);
    assert_eq!(evs.last().unwrap()["type"], "completion");
    // Keepalive comments keep idle streams warm (300 ms on the shared server).
    assert!(text.contains(": keepalive"), "{text}");
}

#[tokio::test]
async fn operations_list_filters() {
    let api = Api::shared();
    let v = api.run(json!({"command": "true", "image": base_image()})).await;
    let ops = api.get_json("/operations?status=SUCCESS&kind=instance&limit=1000").await;
    let ops = ops.as_array().unwrap();
    assert!(ops.iter().all(|o| o["status"] == "SUCCESS" && o["kind"] == "instance"));
    let mine = ops.iter().find(|o| o["uuid"] == v["uuid"]).expect("listed");
    assert!(mine["duration"].as_f64().is_some());
    assert!(mine["created_at"].is_string());
    assert_eq!(api.get("/operations?status=NOPE").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(api.get("/operations?kind=nope").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(api.get("/operations?limit=0").await.status(), StatusCode::BAD_REQUEST);
    let none = api.get_json("/operations?until=2000-01-01T00:00:00Z").await;
    assert_eq!(none.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn imports_fail_honestly_and_never_echo_the_password() {
    let api = Api::shared();
    // Port 1 on loopback: nothing listens there (the registry suites use a real registry).
    let r = api
        .req(reqwest::Method::POST, "/images/import")
        .json(&json!({"registry": {"url": "docker://127.0.0.1:1/library/busybox:latest",
                                   "credentials": {"username": "u", "password": "hunter2"}}, "tag": "busybox:latest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let op = r.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_owned();
    let v = api.wait_status(&op, "FAILED").await;
    assert_eq!(v["kind"], "image_import");
    assert!(v["error"].as_str().unwrap().contains("unreachable"), "{v}");
    assert_eq!(v["metadata"]["registry"]["credentials"]["password"], "<MASKED>");
    assert!(!v.to_string().contains("hunter2"));

    // Bad requests are refused before any operation exists.
    for body in [
        json!({"registry": {"url": "ftp://example.com/x:1"}}),
        json!({"registry": {"url": "127.0.0.1:5000/x:1", "credentials": {"username": "u"}}}),
        json!({"registry": {"url": "127.0.0.1:5000/x:1"}, "timeout": 0}),
        // Above images_import_max_timeout (the server's max run timeout, a day by default).
        json!({"registry": {"url": "127.0.0.1:5000/x:1"}, "timeout": 10_000_000}),
    ] {
        let r = api.req(reqwest::Method::POST, "/images/import").json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }

    let tag = format!("imported/base-{}:1", &uuid::Uuid::new_v4().to_string()[..8]);
    let r = api
        .req(reqwest::Method::POST, "/images/import")
        .json(&json!({"registry": {"url": format!("docker://{BASE_IMAGE_TAG}")}, "tag": tag}))
        .send()
        .await
        .unwrap();
    let op = r.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_owned();
    let v = api.wait_status(&op, "SUCCESS").await;
    assert_eq!(v["result"]["tag"], tag.as_str());
    let img = v["result"]["image"].as_str().unwrap().to_owned();
    let run = api.run(json!({"command": "true", "image": format!("tag:{tag}")})).await;
    assert_eq!(run["image_uuid"], img.as_str());
    // The base keeps its own tag.
    assert_eq!(api.get_json(&format!("/inspect/{}/", api.base_uuid().await)).await["tag"], BASE_IMAGE_TAG);
}

#[tokio::test]
async fn restart_keeps_state_and_fails_interrupted_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = || LocalConfig::default().with_data_dir(dir.path()).with_token("restart-token");
    let (img, file_sha, running) = {
        let server = LocalServer::start(config()).await.unwrap();
        let api = Api::new(&server);
        let file = api.upload(b"persisted\n").await;
        let v = api.run(json!({"command": "echo kept > /root/kept", "shell": true, "image": base_image()})).await;
        let img = v["result_image_uuid"].as_str().unwrap().to_owned();
        let r = api
            .req(reqwest::Method::PATCH, &format!("/images/{img}/tag"))
            .json(&json!({"tag": "restart:kept"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let running = api.spawn(json!({"command": "sleep", "args": ["100"], "image": base_image()})).await;
        api.wait_status(&running, "EXECUTING").await;
        server.shutdown().await;
        (img, file["sha256"].as_str().unwrap().to_owned(), running)
    };
    let server = LocalServer::start(config()).await.unwrap();
    assert_eq!(server.token(), "restart-token");
    let api = Api::new(&server);
    let r = api.get("/inspect/?tag=restart:kept").await;
    assert_eq!(r.headers()["location"], format!("{img}/").as_str());
    let v = api.run(json!({"command": "cat", "args": ["/root/kept"], "image": "tag:restart:kept"})).await;
    assert_eq!(stdout(&v), "kept\n", "{v}");
    assert_eq!(
        api.req(reqwest::Method::HEAD, &format!("/files/{file_sha}")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let op = api.get_json(&format!("/operations/{running}")).await;
    assert_eq!(op["status"], "FAILED");
    let evs = api.events(&running, "follow=1").await;
    assert_eq!(evs.last().unwrap()["type"], "completion");
    server.shutdown().await;
}

#[tokio::test]
async fn extra_runs_wait_as_pending() {
    let server = LocalServer::start(LocalConfig::default().with_max_concurrent_runs(1)).await.unwrap();
    let api = Api::new(&server);
    let first = api.spawn(json!({"command": "sleep", "args": ["100"], "image": base_image()})).await;
    api.wait_status(&first, "EXECUTING").await;
    let second = api.spawn(json!({"command": "echo", "args": ["second"], "image": base_image()})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.get_json(&format!("/operations/{second}")).await["status"], "PENDING");
    // Cancelling a queued run works without ever starting it.
    let third = api.spawn(json!({"command": "echo", "args": ["third"], "image": base_image()})).await;
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{third}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(api.wait(&third).await["status"], "CANCELLED");
    assert_eq!(types(&api.events(&third, "").await), ["completion"]);
    // When the first ends, the second runs.
    let r = api.req(reqwest::Method::DELETE, &format!("/operations/{first}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v = api.wait(&second).await;
    assert_eq!(stdout(&v), "second\n");
    server.shutdown().await;
}

#[test]
fn start_blocking_works_outside_a_runtime_and_stops_on_drop() {
    let server = LocalServer::start_blocking(LocalConfig::default()).unwrap();
    let url = format!("{}/v1/whoami", server.base_url());
    let token = server.token().to_owned();
    assert_eq!(token.len(), 64, "a generated 256-bit token");
    assert!(!format!("{server:?}").contains(&token));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status =
        rt.block_on(async { reqwest::Client::new().get(&url).bearer_auth(&token).send().await.unwrap().status() });
    assert_eq!(status, StatusCode::OK);
    let data_dir = server.data_dir().to_path_buf();
    drop(server);
    assert!(!data_dir.exists(), "the temporary data dir is removed");
    let err = rt.block_on(async { reqwest::Client::new().get(&url).send().await });
    assert!(err.is_err(), "the server stopped listening");
}

/// Reads `KEY=value` lines from the binary's stdout until both are seen.
fn read_banner(out: std::process::ChildStdout) -> (String, String) {
    use std::io::BufRead;
    let mut url = None;
    let mut token = None;
    for line in std::io::BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("CONTREE_URL=") {
            url = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("CONTREE_TOKEN=") {
            token = Some(v.to_owned());
        }
        if url.is_some() && token.is_some() {
            break;
        }
    }
    (url.expect("the binary prints its URL"), token.expect("the binary prints its token"))
}

#[tokio::test]
async fn binary_prints_url_and_token_and_a_crash_fails_running_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_contree-local"))
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (url, token) = tokio::task::spawn_blocking(move || read_banner(out)).await.unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(token.len(), 64, "a generated token");
    let api = Api {
        base: url,
        token,
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
    };
    let op = api.spawn(json!({"command": "sleep", "args": ["3"], "image": base_image()})).await;
    api.wait_status(&op, "EXECUTING").await;
    // A crash, not a clean stop: the operation is left EXECUTING in the database.
    child.kill().unwrap();
    child.wait().unwrap();

    let server = LocalServer::start(LocalConfig::default().with_data_dir(dir.path())).await.unwrap();
    let api = Api::new(&server);
    let v = api.get_json(&format!("/operations/{op}")).await;
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["error"], "server restarted");
    let evs = api.events(&op, "follow=1").await;
    assert_eq!(evs.last().unwrap()["data"]["status"], "FAILED");
    assert!(!dir.path().join("runs").join(&op).exists(), "the crashed run's scratch dir is cleaned up");
    server.shutdown().await;
}

/// Kills the server binary when a test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn naive_time_filters_are_wall_clock_times_of_the_servers_zone() {
    // Five hours west of Greenwich, as a POSIX TZ string (no zoneinfo files needed). The
    // official Python SDK lists with `until=datetime.now().isoformat()`: naive, local.
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_contree-local"))
        .args(["--bind", "127.0.0.1:0", "--no-networking", "--data-dir"])
        .arg(dir.path())
        .env("TZ", "XXX5")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _server = KillOnDrop(child);
    let (base, token) = tokio::task::spawn_blocking(move || read_banner(out)).await.unwrap();
    let api = Api { base, token, http: reqwest::Client::new() };
    let v = api.run(json!({"command": "touch /new", "shell": true, "image": base_image()})).await;
    let image = v["result_image_uuid"].as_str().unwrap().to_owned();

    let wall = |offset: time::Duration| {
        let t = time::OffsetDateTime::now_utc() - time::Duration::hours(5) + offset;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let listed = |query: String| {
        let api = api.clone();
        let image = image.clone();
        async move {
            let v = api.get_json(&format!("/images?{query}")).await;
            v["images"].as_array().unwrap().iter().any(|i| i["uuid"] == image.as_str())
        }
    };
    assert!(listed(format!("until={}", wall(time::Duration::minutes(1)))).await, "made before a minute from now");
    assert!(!listed(format!("until={}", wall(time::Duration::minutes(-1)))).await, "not made before a minute ago");
    assert!(listed(format!("since={}", wall(time::Duration::minutes(-1)))).await, "made since a minute ago");
    // An explicit offset still means what it says.
    let utc = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let explicit = utc.format(&time::format_description::well_known::Rfc3339).unwrap();
    assert!(listed(format!("until={}", encode(&explicit))).await);
}
