//! Files: content-addressed uploads (hash locally, `GET /v1/files/{sha256}`, `POST` only on
//! 404 with the raw bytes), `get`, `exists` and `list`.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock as Rule, ResponseTemplate};

use super::*;
use crate::flavor::{DynRead, UploadSource};
use crate::support::Mock;

fn file_info(sha: &str, size: usize) -> Value {
    json!({
        "uuid": FILE,
        "sha256": sha,
        "size": size,
        "created_at": "2025-01-01T12:00:00+00:00",
        "updated_at": "2025-01-02T12:00:00+00:00",
    })
}

/// The server does not have `sha` and stores whatever is posted as `sha`.
fn mount_upload(mock: &Mock, sha: &str, size: usize) {
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/files/{sha}")))
            .respond_with(error_response(404, "file not found")),
    );
    mock.mount(
        Rule::given(method("POST"))
            .and(path("/v1/files"))
            .respond_with(json_response(201, json!({ "uuid": FILE, "sha256": sha, "size": size }))),
    );
}

/// Asserts the exchange was exactly: the dedup lookup by the correct hash, then one POST of
/// exactly `content` as `application/octet-stream`.
fn assert_lookup_then_post(mock: &Mock, content: &[u8]) {
    let sha = sha256_hex(content);
    let reqs = mock.requests();
    let seen: Vec<String> = reqs.iter().map(|r| format!("{} {}", r.method, r.url.path())).collect();
    assert_eq!(seen, [format!("GET /v1/files/{sha}"), "POST /v1/files".to_string()]);
    let post = &reqs[1];
    assert_eq!(post.body.len(), content.len());
    assert!(post.body == content, "the POST body differs from the source");
    assert_eq!(header(post, "content-type").as_deref(), Some("application/octet-stream"));
    assert_eq!(post.url.query(), None);
    reqs.iter().for_each(assert_bearer);
}

/// Bytes in memory: lookup by the locally computed SHA-256, POST on 404.
#[crate::maybe]
pub async fn upload_bytes_posts_only_after_a_404() {
    let content = b"hello contree\n".to_vec();
    let sha = sha256_hex(&content);
    // Known answer (`printf 'hello contree\\n' | sha256sum`), so the lookup path is checked
    // against an independent value, not only against the helper.
    assert_eq!(sha, "fb6fea91f04e5570c6b51c0c0a770a2f6bed1ed1b22b89422c62d264cfa6464b");
    let mock = Mock::start();
    mount_upload(&mock, &sha, content.len());
    let client = client(&mock);
    let stored = client.files().upload(content.clone()).await.unwrap();
    assert_eq!(stored.uuid.to_string(), FILE);
    assert_eq!(stored.sha256, sha);
    assert_eq!(stored.size, content.len() as i64);
    assert_lookup_then_post(&mock, &content);
}

/// A local path, larger than one hashing chunk and not UTF-8, is streamed as is.
#[crate::maybe]
pub async fn upload_path_streams_the_exact_file() {
    let content = binary_content(10_000);
    let sha = sha256_hex(&content);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, &content).unwrap();
    let mock = Mock::start();
    mount_upload(&mock, &sha, content.len());
    let client = client_with(&mock, |c| c.file_upload_chunk_size = 4096);
    let stored = client.files().upload(file.as_path()).await.unwrap();
    assert_eq!(stored.sha256, sha);
    assert_lookup_then_post(&mock, &content);
}

/// Any reader: hashed (spooled) first, then the same bytes are posted.
#[crate::maybe]
pub async fn upload_reader_streams_the_exact_bytes() {
    let content = binary_content(9_001);
    let sha = sha256_hex(&content);
    let mock = Mock::start();
    mount_upload(&mock, &sha, content.len());
    let client = client_with(&mock, |c| c.file_upload_chunk_size = 4096);
    let reader: DynRead = Box::new(std::io::Cursor::new(content.clone()));
    let stored = client.files().upload(UploadSource::reader(reader)).await.unwrap();
    assert_eq!(stored.sha256, sha);
    assert_lookup_then_post(&mock, &content);
}

/// When the lookup finds the content, nothing is posted, whatever the source.
#[crate::maybe]
pub async fn upload_skips_the_post_when_the_server_has_the_file() {
    let content = b"already there".to_vec();
    let sha = sha256_hex(&content);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("same.txt");
    std::fs::write(&file, &content).unwrap();
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/files/{sha}")))
            .respond_with(json_response(200, file_info(&sha, content.len()))),
    );
    mock.mount(
        Rule::given(method("POST")).and(path("/v1/files")).respond_with(error_response(500, "must not be called")),
    );
    let client = client(&mock);
    let files = client.files();
    let from_bytes = files.upload(content.clone()).await.unwrap();
    let from_path = files.upload(file.clone()).await.unwrap();
    let reader: DynRead = Box::new(std::io::Cursor::new(content.clone()));
    let from_reader = files.upload(UploadSource::reader(reader)).await.unwrap();
    for stored in [&from_bytes, &from_path, &from_reader] {
        assert_eq!(stored.uuid.to_string(), FILE);
        assert_eq!(stored.sha256, sha);
        assert_eq!(stored.size, content.len() as i64);
    }
    assert!(mock.requests_to("POST", "/v1/files").is_empty());
    assert_eq!(mock.requests_to("GET", &format!("/v1/files/{sha}")).len(), 3);
}

/// The server storing other content than what was hashed is reported, not returned.
#[crate::maybe]
pub async fn upload_detects_a_sha256_mismatch() {
    let content = b"one thing".to_vec();
    let sha = sha256_hex(&content);
    let other = sha256_hex(b"another thing");
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET")).and(path(format!("/v1/files/{sha}"))).respond_with(ResponseTemplate::new(404)),
    );
    mock.mount(
        Rule::given(method("POST"))
            .and(path("/v1/files"))
            .respond_with(json_response(201, json!({ "uuid": FILE, "sha256": other, "size": 13 }))),
    );
    let client = client(&mock);
    let err = client.files().upload(content).await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert!(err.to_string().contains(&other), "{err}");
}

/// `get` (`GET /v1/files/{sha}`, lowercased), `exists` (`HEAD`: 200 → true, 404 → false,
/// other statuses are errors) and `list` (`GET /v1/files?limit&offset`).
#[crate::maybe]
pub async fn files_get_exists_and_list() {
    let present = sha256_hex(b"present");
    let absent = sha256_hex(b"absent");
    let forbidden = sha256_hex(b"forbidden");
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/files/{present}")))
            .respond_with(json_response(200, file_info(&present, 7))),
    );
    mock.mount(
        Rule::given(method("HEAD")).and(path(format!("/v1/files/{present}"))).respond_with(ResponseTemplate::new(200)),
    );
    mock.mount(
        Rule::given(method("HEAD")).and(path(format!("/v1/files/{absent}"))).respond_with(ResponseTemplate::new(404)),
    );
    mock.mount(
        Rule::given(method("HEAD"))
            .and(path(format!("/v1/files/{forbidden}")))
            .respond_with(ResponseTemplate::new(403)),
    );
    mock.mount(Rule::given(method("GET")).and(path("/v1/files")).respond_with(json_response(
        200,
        json!({ "files": [file_info(&present, 7), { "uuid": IMG, "sha256": absent, "size": null }] }),
    )));
    let client = client(&mock);
    let files = client.files();

    let info = files.get(&present.to_uppercase()).await.unwrap();
    assert_eq!(info.uuid.to_string(), FILE);
    assert_eq!(info.sha256, present);
    assert_eq!(info.size, 7);
    assert_eq!(info.created_at, "2025-01-01T12:00:00+00:00");
    assert_eq!(info.updated_at, "2025-01-02T12:00:00+00:00");

    let yes = files.exists(&present).await.unwrap();
    let no = files.exists(&absent).await.unwrap();
    assert!(yes && !no);
    let err = files.exists(&forbidden).await.unwrap_err();
    assert!(err.is_forbidden(), "{err:?}");
    assert_eq!(err.method(), Some("HEAD"));

    let listed = files.list(10, 20).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].sha256, present);
    assert_eq!(listed[1].size, -1, "a null size is unknown, not 0");

    let seen: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| format!("{} {}{}", r.method, r.url.path(), r.url.query().map(|q| format!("?{q}")).unwrap_or_default()))
        .collect();
    assert_eq!(
        seen,
        [
            format!("GET /v1/files/{present}"),
            format!("HEAD /v1/files/{present}"),
            format!("HEAD /v1/files/{absent}"),
            format!("HEAD /v1/files/{forbidden}"),
            "GET /v1/files?limit=10&offset=20".to_string(),
        ]
    );
}

/// Large enough to be hashed and posted at the same time (`PIPELINE_MIN_BYTES` is 4 MiB).
const LARGE: usize = 5 * 1024 * 1024 + 123;

/// A large file is posted whole and exactly, while it is hashed: one POST, and at most the
/// one lookup by the right hash (made if the hash ends before the POST).
#[crate::maybe]
pub async fn upload_large_path_posts_while_hashing() {
    let content = binary_content(LARGE);
    let sha = sha256_hex(&content);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large.bin");
    std::fs::write(&file, &content).unwrap();
    let mock = Mock::start();
    mount_upload(&mock, &sha, content.len());
    let client = client(&mock);
    let stored = client.files().upload(file.as_path()).await.unwrap();
    assert_eq!(stored.sha256, sha);
    assert_eq!(stored.size, content.len() as i64);
    let reqs = mock.requests();
    let posts: Vec<_> = reqs.iter().filter(|r| r.method.as_str() == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].url.path() == "/v1/files" && posts[0].url.query().is_none());
    assert_eq!(posts[0].body.len(), content.len());
    assert!(posts[0].body == content, "the POST body differs from the file");
    assert_eq!(header(posts[0], "content-type").as_deref(), Some("application/octet-stream"));
    let others: Vec<String> =
        reqs.iter().filter(|r| r.method.as_str() != "POST").map(|r| format!("{} {}", r.method, r.url.path())).collect();
    assert!(others.is_empty() || others == [format!("GET /v1/files/{sha}")], "{others:?}");
    reqs.iter().for_each(assert_bearer);
}

/// A large file whose stored hash differs from the local one is an error naming both (the
/// file changed while it was read), as for small ones.
#[crate::maybe]
pub async fn upload_large_path_detects_a_sha256_mismatch() {
    let content = binary_content(LARGE);
    let sha = sha256_hex(&content);
    let other = sha256_hex(b"another thing");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large.bin");
    std::fs::write(&file, &content).unwrap();
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET")).and(path(format!("/v1/files/{sha}"))).respond_with(ResponseTemplate::new(404)),
    );
    mock.mount(
        Rule::given(method("POST"))
            .and(path("/v1/files"))
            .respond_with(json_response(201, json!({ "uuid": FILE, "sha256": other, "size": LARGE }))),
    );
    let err = client(&mock).files().upload(file).await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert!(err.to_string().contains(&other) && err.to_string().contains(&sha), "{err}");
}

/// A server that knows every file and reads POST bodies slowly, never answering them: an
/// upload can only end through the lookup. Reports, per POST connection, how many body bytes
/// it read before the client closed it.
struct SlowServer {
    url: String,
    posts: std::sync::mpsc::Receiver<u64>,
}

impl SlowServer {
    fn start(sha: String, size: usize) -> SlowServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, posts) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let (tx, sha) = (tx.clone(), sha.clone());
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    if head.starts_with("GET ") && head.contains(&format!("/v1/files/{sha}")) {
                        let body = file_info(&sha, size).to_string();
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    } else if head.starts_with("POST ") {
                        // 64 KiB every 20 ms (~3 MiB/s): far slower than hashing, so the whole
                        // body cannot arrive before the lookup.
                        let mut read = 0u64;
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => read += n as u64,
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        let _ = tx.send(read);
                    } else {
                        let _ =
                            conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    }
                });
            }
        });
        SlowServer { url, posts }
    }
}

/// When the hash ends first and the server has the content, the POST in flight is abandoned
/// (its connection closed before the whole body was sent) and the stored file is returned.
#[crate::maybe]
pub async fn upload_large_path_abandons_the_post_when_the_server_has_it() {
    let content = binary_content(48 * 1024 * 1024);
    let sha = sha256_hex(&content);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known.bin");
    std::fs::write(&file, &content).unwrap();
    let server = SlowServer::start(sha.clone(), content.len());
    let client = Client::new(config(&server.url)).unwrap();
    let stored = client.files().upload(file.as_path()).await.unwrap();
    assert_eq!(stored.uuid.to_string(), FILE);
    assert_eq!(stored.sha256, sha);
    assert_eq!(stored.size, content.len() as i64);
    let read = server.posts.recv_timeout(Duration::from_secs(60)).expect("the POST connection was never closed");
    assert!(read < content.len() as u64, "the whole body was sent ({read} bytes): the POST was not abandoned");
}
