//! Reading an image without running it, baking files into it, tagging it.

use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path, query_param};

use super::fake::{self, IMAGE, OP, RESULT, Reply};
use crate::flavor::Client;

fn inspect(what: &str) -> String {
    format!("/v1/inspect/{IMAGE}/{what}")
}

/// Files a temp folder holds besides `keep`.
fn leftovers(dir: &std::path::Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[crate::maybe]
pub async fn ls_read_and_download_an_image() {
    let (mock, client) = fake::setup();
    mock.mount(
        wiremock::Mock::given(method("GET")).and(path(inspect("list"))).and(query_param("path", "/etc")).respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"path": "/etc", "files": [
                {"size": 12, "path": "hosts", "owner": "root", "group": 0, "uid": 0, "gid": 0, "mode": 33188,
                 "mtime": 1700000000, "nlink": 1, "is_dir": false, "is_regular": true, "is_symlink": false,
                 "is_socket": false, "is_fifo": false, "symlink_to": ""},
                {"size": 4096, "path": "ssl", "owner": "root", "group": "root", "uid": 0, "gid": 0, "mode": 16877,
                 "mtime": 1700000000, "nlink": 2, "is_dir": true, "is_regular": false, "is_symlink": false,
                 "is_socket": false, "is_fifo": false, "symlink_to": ""}
            ]})),
        ),
    );
    let content: Vec<u8> = (0u8..=255).cycle().take(300_000).collect();
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(inspect("download")))
            .and(query_param("path", "/var/data/blob.bin"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(content.clone(), "application/octet-stream")),
    );
    let image = fake::image(&client);

    let listing = image.ls("/etc").await.expect("ls");
    assert_eq!(listing.len(), 2);
    assert_eq!(listing[0].path, "hosts");
    assert_eq!(listing[0].mode, 0o100644);
    assert!(listing[1].is_dir);
    let list_call = &mock.requests_to("GET", &inspect("list"))[0];
    assert_eq!(fake::query(list_call, "path").as_deref(), Some("/etc"));

    let bytes = image.read("/var/data/blob.bin").await.expect("read");
    assert_eq!(&bytes[..], &content[..]);

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("blob.bin");
    std::fs::write(&target, b"stale").unwrap();
    let written = image.download("/var/data/blob.bin", &target).await.expect("download");
    assert_eq!(written, target);
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert!(leftovers(dir.path(), &["blob.bin"]).is_empty(), "no temp file is left behind");

    // A missing file is a NotFound error with the server's message, and writes nothing.
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(inspect("download")))
            .and(query_param("path", "/nope"))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "file not found", "status": 404}))),
    );
    let err = image.download("/nope", dir.path().join("nope")).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("file not found"), "{err}");
    assert!(!dir.path().join("nope").exists());
    // Paths inside the image are absolute.
    let err = image.ls("etc").await.unwrap_err();
    assert_eq!(err.argument(), Some("path"));
}

#[crate::maybe]
pub async fn download_is_atomic_when_the_body_breaks() {
    let url = fake::broken_body_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n",
        b"only the first bytes of the file",
    );
    let client = Client::new(fake::config(&url)).expect("client");
    let image = fake::image(&client);
    let dir = tempfile::tempdir().unwrap();

    let fresh = dir.path().join("fresh.bin");
    let err = image.download("/big.bin", &fresh).await.unwrap_err();
    assert!(err.is_transport() || err.is_timeout(), "{err:?}");
    assert!(!fresh.exists(), "no partial file at the target");

    let existing = dir.path().join("existing.bin");
    std::fs::write(&existing, b"previous version").unwrap();
    image.download("/big.bin", &existing).await.unwrap_err();
    assert_eq!(std::fs::read(&existing).unwrap(), b"previous version", "the old file is left intact");
    assert!(leftovers(dir.path(), &["existing.bin"]).is_empty(), "temp files are removed");
}

#[crate::maybe]
pub async fn archive_is_saved_to_a_file() {
    let (mock, client) = fake::setup();
    let tar: Vec<u8> = b"pax header".iter().copied().chain(std::iter::repeat_n(0u8, 10_240)).collect();
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(inspect("archive")))
            .and(query_param("path", "/etc"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(tar.clone(), "application/x-tar")),
    );
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("etc.tar");
    let image = fake::image(&client);
    let saved = image.archive("/etc").await.expect("archive").save(&target).await.expect("save");
    assert_eq!(saved, target);
    assert_eq!(std::fs::read(&target).unwrap(), tar);
    assert!(leftovers(dir.path(), &["etc.tar"]).is_empty());

    // Chunk by chunk gives the same bytes.
    let mut archive = image.archive("/etc").await.expect("archive");
    let mut streamed = Vec::new();
    while let Some(chunk) = archive.chunk().await.expect("chunk") {
        streamed.extend_from_slice(&chunk);
    }
    assert_eq!(streamed, tar);
}

#[crate::maybe]
pub async fn apply_files_runs_true_with_the_files_and_keeps_the_image() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("").image(RESULT));
    fake::FileStore::mount(&mock, &[]);
    let image = fake::image(&client);

    let baked = image.apply_files([("/etc/app.conf", b"k = v\n".to_vec())]).await.expect("apply_files");
    assert_eq!(baked.uuid().map(|u| u.to_string()).as_deref(), Some(RESULT));

    let body = fake::spawn_body(&mock);
    assert_eq!(body["command"], json!("true"));
    assert_eq!(body["image"], json!(IMAGE));
    assert_eq!(body["disposable"], json!(false));
    assert_eq!(
        body["files"],
        json!({"/etc/app.conf": {"uuid": fake::file_uuid(b"k = v\n"), "mode": "0644", "uid": 0, "gid": 0}})
    );
    assert_eq!(mock.requests_to("POST", "/v1/files").len(), 1);

    // No files: rejected before any request.
    let sent = mock.requests().len();
    let err = image.apply_files(Vec::<(&str, Vec<u8>)>::new()).await.unwrap_err();
    assert_eq!(err.argument(), Some("files"));
    assert_eq!(mock.requests().len(), sent);

    // In a session, the session moves onto the baked image.
    let mut session = image.session();
    session.apply_files([("/etc/app.conf", b"k = v\n".to_vec())]).await.expect("session apply_files");
    assert_eq!(session.image().uuid().map(|u| u.to_string()).as_deref(), Some(RESULT));
}

#[crate::maybe]
pub async fn tag_as_and_untag_an_image() {
    let (mock, client) = fake::setup();
    let tag_path = format!("/v1/images/{IMAGE}/tag");
    mock.mount(
        wiremock::Mock::given(method("PATCH")).and(path(tag_path.clone())).respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"uuid": IMAGE, "tag": "app:v1", "created_at": "2026-01-01T00:00:00Z"})),
        ),
    );
    mock.mount(
        wiremock::Mock::given(method("DELETE")).and(path(tag_path.clone())).respond_with(ResponseTemplate::new(204)),
    );
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path("/v1/inspect/"))
            .and(query_param("tag", "app:v1"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", format!("{IMAGE}/").as_str())),
    );
    let image = fake::image(&client);

    let tagged = image.tag_as("app:v1").await.expect("tag_as");
    assert_eq!(tagged.tag(), Some("app:v1"));
    assert_eq!(tagged.uuid(), image.uuid());
    assert_eq!(image.tag(), None, "the value tagged is a new value");
    let patches = mock.requests_to("PATCH", &tag_path);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&patches[0].body).unwrap(), json!({"tag": "app:v1"}));

    let untagged = tagged.untag().await.expect("untag");
    assert_eq!(untagged.tag(), None);
    let deletes = mock.requests_to("DELETE", &tag_path);
    assert_eq!(deletes.len(), 1);
    assert_eq!(fake::query(&deletes[0], "tag").as_deref(), Some("app:v1"));

    // A tag-only image is resolved through the inspect redirect first.
    let by_tag = client.images().use_image("app:v1").expect("tag image");
    by_tag.untag().await.expect("untag by tag");
    assert_eq!(mock.requests_to("GET", "/v1/inspect/").len(), 1);
    assert_eq!(mock.requests_to("DELETE", &tag_path).len(), 2);

    // Bad tags never reach the server.
    let sent = mock.requests().len();
    let err = image.tag_as("bad tag").await.unwrap_err();
    assert_eq!(err.argument(), Some("tag"));
    assert_eq!(mock.requests().len(), sent);
}
