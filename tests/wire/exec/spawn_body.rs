//! Every run option lands in the `POST /v1/instances` body as the spec says.

use std::time::Duration;

use serde_json::json;

use super::fake::{self, IMAGE, OP, Reply};
use crate::flavor::{DynRead, Stdin, UploadFileSpec};

#[crate::maybe]
pub async fn program_run_sends_every_option() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("hi\n"));
    let image = fake::image(&client);

    image
        .run("/usr/bin/python3")
        .arg("-c")
        .args(["print(1)", "--flag"])
        .env("GREETING", "hello world")
        .envs([("EMPTY", ""), ("PATH", "/opt/bin:/usr/bin")])
        .cwd("/work/dir")
        .hostname("branch-a")
        .user(1000, 1001)
        .networking(false)
        .preserve_env(true)
        .preserve_cwd(true)
        .disposable(false)
        .truncate_output_at(123_456)
        .timeout(Duration::from_secs(30))
        .wait()
        .await
        .expect("run");

    let body = fake::spawn_body(&mock);
    assert_eq!(
        body,
        json!({
            "command": "/usr/bin/python3",
            "image": IMAGE,
            "args": ["-c", "print(1)", "--flag"],
            "shell": false,
            "env": {"GREETING": "hello world", "EMPTY": "", "PATH": "/opt/bin:/usr/bin"},
            "preserve_env": true,
            "preserve_cwd": true,
            "cwd": "/work/dir",
            "uid": 1000,
            "gid": 1001,
            "hostname": "branch-a",
            "disposable": false,
            "timeout": 30,
            "truncate_output_at": 123456,
            "networking": {"enabled": false}
        })
    );
    // Auth travels on every request.
    let spawn = &mock.requests_to("POST", "/v1/instances")[0];
    assert_eq!(
        fake::header(spawn, "authorization").as_deref(),
        Some(format!("Bearer {}", crate::support::TOKEN).as_str())
    );
    assert_eq!(fake::header(spawn, "content-type").as_deref(), Some("application/json"));
}

#[crate::maybe]
pub async fn shell_run_on_a_tag_names_the_tag() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    let image = client.images().use_image("busybox:latest").expect("tag image");
    assert_eq!(image.uuid(), None);

    image.shell("echo \"$HOME\" | tr a-z A-Z").networking(true).wait().await.expect("run");

    let body = fake::spawn_body(&mock);
    assert_eq!(
        body,
        json!({
            "command": "echo \"$HOME\" | tr a-z A-Z",
            "image": "tag:busybox:latest",
            "shell": true,
            "disposable": true,
            "timeout": fake::CONFIG_RUN_TIMEOUT,
            "truncate_output_at": fake::CONFIG_TRUNCATE,
            "networking": {"enabled": true}
        })
    );
}

#[crate::maybe]
pub async fn timeout_is_whole_seconds_rounded_up() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    let image = fake::image(&client);
    for t in [
        Duration::from_millis(1),
        Duration::from_millis(2500),
        Duration::from_secs(7),
        Duration::from_nanos(7_000_000_001),
    ] {
        image.run("true").timeout(t).wait().await.expect("run");
    }
    image.run("true").wait().await.expect("run with the default timeout");
    let timeouts: Vec<_> = fake::spawn_bodies(&mock).iter().map(|b| b["timeout"].clone()).collect();
    assert_eq!(timeouts, [json!(1), json!(3), json!(7), json!(8), json!(fake::CONFIG_RUN_TIMEOUT)]);
}

#[crate::maybe]
pub async fn stdin_text_is_ascii_and_binary_is_base64() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    let image = fake::image(&client);

    image.run("cat").stdin("line one\nline\ttwo\r\n").wait().await.expect("text");
    image.run("cat").stdin(vec![0u8, 1, 2, 0xfe, 0xff]).wait().await.expect("bytes");
    image.run("cat").stdin(String::from("é")).wait().await.expect("non-ascii text");
    image.run("cat").wait().await.expect("no stdin");
    image.run("cat").stdin(Stdin::piped()).wait().await.expect("piped");

    let bodies = fake::spawn_bodies(&mock);
    assert_eq!(bodies[0]["stdin"], json!({"value": "line one\nline\ttwo\r\n", "encoding": "ascii"}));
    assert_eq!(bodies[1]["stdin"], json!({"value": "AAEC/v8=", "encoding": "base64"}));
    assert_eq!(bodies[2]["stdin"], json!({"value": fake::base64("é".as_bytes()), "encoding": "base64"}));
    assert!(bodies[3].get("stdin").is_none(), "no stdin means no field: {}", bodies[3]);
    assert_eq!(bodies[4]["stdin"], json!({"value": "", "encoding": "ascii", "close": false}));
}

#[crate::maybe]
pub async fn stdin_from_path_and_reader_reader_read_once() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    let image = fake::image(&client);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.bin");
    std::fs::write(&input, [0x89u8, b'P', b'N', b'G']).unwrap();

    image.run("cat").stdin(Stdin::path(&input)).wait().await.expect("path");
    image.run("cat").stdin(input.as_path()).wait().await.expect("&Path");

    let reader: DynRead = Box::new(std::io::Cursor::new(b"streamed input\n".to_vec()));
    let prepared = image.run("cat").stdin(Stdin::reader(reader));
    // A clone shares the reader: the second execution reuses the bytes the first one read.
    prepared.clone().wait().await.expect("first execution");
    prepared.wait().await.expect("second execution reuses the bytes");

    let bodies = fake::spawn_bodies(&mock);
    assert_eq!(bodies.len(), 4);
    assert_eq!(bodies[0]["stdin"], json!({"value": "iVBORw==", "encoding": "base64"}));
    assert_eq!(bodies[1]["stdin"], bodies[0]["stdin"]);
    assert_eq!(bodies[2]["stdin"], json!({"value": "streamed input\n", "encoding": "ascii"}));
    assert_eq!(bodies[3]["stdin"], bodies[2]["stdin"], "the reader's bytes are reused, not re-read");
}

#[crate::maybe]
pub async fn files_are_deduplicated_then_placed_with_mode_and_owner() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    let script: &[u8] = b"#!/bin/sh\necho run\n";
    let data: &[u8] = b"plain data\n";
    let config: &[u8] = b"key = value\n";
    // The server already has the script: it must not be uploaded again.
    fake::FileStore::mount(&mock, &[script]);

    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("run.sh");
    let data_path = dir.path().join("data.txt");
    std::fs::write(&script_path, script).unwrap();
    std::fs::write(&data_path, data).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(&data_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }

    fake::image(&client)
        .run("/app/run.sh")
        .file("/app/run.sh", script_path.clone())
        .files_map([("/app/data.txt", data_path.as_path())])
        .file_spec(UploadFileSpec::new("/etc/app.conf", config.to_vec()).mode(0o600).owner(1000, 1001))
        .file_spec(UploadFileSpec::new("/app/data-ro.txt", data_path.as_path()).mode(0o444))
        .wait()
        .await
        .expect("run");

    // Dedup: a lookup per content, an upload only for content the server lacks.
    let lookups: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path().starts_with("/v1/files/"))
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(lookups.contains(&format!("/v1/files/{}", fake::sha256_hex(script))), "{lookups:?}");
    assert!(lookups.contains(&format!("/v1/files/{}", fake::sha256_hex(data))), "{lookups:?}");
    assert!(lookups.contains(&format!("/v1/files/{}", fake::sha256_hex(config))), "{lookups:?}");
    let mut uploaded: Vec<Vec<u8>> = mock.requests_to("POST", "/v1/files").iter().map(|r| r.body.clone()).collect();
    uploaded.sort();
    uploaded.dedup();
    let mut expected = vec![data.to_vec(), config.to_vec()];
    expected.sort();
    assert_eq!(uploaded, expected, "only the missing contents are uploaded");
    // Every upload precedes the spawn.
    let order: Vec<String> = mock.requests().iter().map(|r| format!("{} {}", r.method, r.url.path())).collect();
    let spawn_at = order.iter().position(|r| r == "POST /v1/instances").unwrap();
    assert!(order.iter().rposition(|r| r == "POST /v1/files").unwrap() < spawn_at, "{order:?}");

    let body = fake::spawn_body(&mock);
    assert_eq!(
        body["files"],
        json!({
            "/app/run.sh": {"uuid": fake::file_uuid(script), "mode": "0755", "uid": 0, "gid": 0},
            "/app/data.txt": {"uuid": fake::file_uuid(data), "mode": "0644", "uid": 0, "gid": 0},
            "/etc/app.conf": {"uuid": fake::file_uuid(config), "mode": "0600", "uid": 1000, "gid": 1001},
            "/app/data-ro.txt": {"uuid": fake::file_uuid(data), "mode": "0444", "uid": 0, "gid": 0}
        })
    );
}

#[crate::maybe]
pub async fn image_runs_default_to_disposable() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    let image = fake::image(&client);
    image.run("true").wait().await.expect("default");
    image.run("true").disposable(false).wait().await.expect("kept");
    image.shell("true").disposable(true).wait().await.expect("explicit");
    let disposable: Vec<_> = fake::spawn_bodies(&mock).iter().map(|b| b["disposable"].clone()).collect();
    assert_eq!(disposable, [json!(true), json!(false), json!(true)]);
}
