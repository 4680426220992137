//! What the Python SDK has: popen on a session, a prepared run's stdin, text mode, `tag_as`
//! on a session, `apply_files` with file specs and plain paths, `download` to `./<name>`,
//! and directory entries that can be read and listed.

use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path, query_param};

use super::fake::{self, IMAGE, OP, Reply};
use crate::flavor::Stdin;

const OP1: &str = "aaaaaaaa-0000-4000-8000-000000000011";
const OP2: &str = "aaaaaaaa-0000-4000-8000-000000000012";
const R1: &str = "bbbbbbbb-0000-4000-8000-000000000011";

fn uuid_of(image: &crate::flavor::Image) -> String {
    image.uuid().map(|u| u.to_string()).unwrap_or_default()
}

/// A session's popen: when the process finishes, a non-disposable run moves the session to
/// its result; a disposable one leaves it in place.
#[crate::maybe]
pub async fn session_popen_moves_the_session_when_it_finishes() {
    let (mock, client) = fake::setup();
    fake::mount_spawn_for(&mock, "build", OP1);
    fake::mount_run_events(&mock, OP1, &Reply::ok("built\n").image(R1));
    fake::mount_spawn_for(&mock, "peek", OP2);
    fake::mount_run_events(&mock, OP2, &Reply::ok("looked\n"));

    let mut session = fake::image(&client).session();
    let mut process = session.popen(["build", "--all"]).await.expect("popen");
    let status = process.wait().await.expect("wait");
    assert!(status.success());
    drop(process);
    assert_eq!(uuid_of(session.image()), R1, "the finished process moved the session");
    let history: Vec<String> = session.history().iter().map(uuid_of).collect();
    assert_eq!(history, [IMAGE, R1]);

    let process = session.run("peek").disposable(true).spawn().await.expect("spawn");
    let result = process.wait_with_output().await.expect("wait_with_output");
    assert_eq!(result.stdout().unwrap(), b"looked\n");
    assert_eq!(uuid_of(session.image()), R1, "a disposable process leaves the session in place");

    let bodies = fake::spawn_bodies(&mock);
    assert_eq!(bodies[0]["command"], json!("build"));
    assert_eq!(bodies[0]["args"], json!(["--all"]));
    assert_eq!(bodies[0]["image"], json!(IMAGE));
    assert_eq!(bodies[0]["disposable"], json!(false));
    assert_eq!(bodies[1]["image"], json!(R1), "the next run starts from the process's result");
    assert_eq!(bodies[1]["disposable"], json!(true));

    // Bad input: nothing is sent.
    let sent = mock.requests().len();
    let err = session.popen(Vec::<String>::new()).await.unwrap_err();
    assert_eq!(err.argument(), Some("argv"));
    assert_eq!(mock.requests().len(), sent);
}

/// `tag_as` on a session tags the current image and moves the session onto the tagged image.
#[crate::maybe]
pub async fn session_tag_as_moves_the_session() {
    let (mock, client) = fake::setup();
    let tag_path = format!("/v1/images/{IMAGE}/tag");
    mock.mount(wiremock::Mock::given(method("PATCH")).and(path(tag_path.clone())).respond_with(
        ResponseTemplate::new(200).set_body_json(json!({"uuid": IMAGE, "tag": "app:v2", "created_at": null})),
    ));
    let mut session = fake::image(&client).session();
    let tagged = session.tag_as("app:v2").await.expect("tag_as");
    assert_eq!(tagged.tag(), Some("app:v2"));
    assert_eq!(session.image().tag(), Some("app:v2"));
    assert_eq!(uuid_of(session.image()), IMAGE);
    assert_eq!(session.history().last().and_then(|i| i.tag()), Some("app:v2"));
    assert_eq!(mock.requests_to("PATCH", &tag_path).len(), 1);

    let sent = mock.requests().len();
    let e = session.tag_as("bad tag").await.unwrap_err();
    assert_eq!(e.argument(), Some("tag"));
    assert_eq!(mock.requests().len(), sent, "a bad tag is never sent");
    assert_eq!(session.image().tag(), Some("app:v2"), "a rejected tag leaves the session as it was");
}

/// A prepared run shows the stdin it was configured with, without sending anything.
#[crate::maybe]
pub async fn prepared_run_shows_its_stdin() {
    let (mock, client) = fake::setup();
    let image = fake::image(&client);
    assert!(image.run("cat").stdin_config().is_empty());
    let text = image.run("cat").stdin("abc");
    assert_eq!(text.stdin_config().as_bytes(), Some(&b"abc"[..]));
    assert!(!text.stdin_config().is_piped());
    assert!(image.run("cat").stdin(Stdin::piped()).stdin_config().is_piped());
    let from_file = image.run("cat").stdin(Stdin::path("/tmp/input.txt"));
    assert_eq!(from_file.stdin_config().as_path(), Some(std::path::Path::new("/tmp/input.txt")));
    assert_eq!(from_file.stdin_config().as_bytes(), None);
    assert!(mock.requests().is_empty(), "configuring stdin sends nothing");
}

/// Text mode: live output as lines of UTF-8 (chunks split anywhere, `\r\n` endings, a last
/// line without newline); a line that is not UTF-8 is a Decode error.
#[crate::maybe]
pub async fn process_text_mode_yields_checked_lines() {
    let (mock, client) = fake::setup();
    let reply = Reply::ok("one\ntwo\r\nthree").stderr("bad");
    let events = [
        fake::stdout_frame(1, b"on"),
        fake::stdout_frame(2, b"e\ntw"),
        fake::stderr_frame(3, b"\xff\xfe\n"),
        fake::stdout_frame(4, "o\r\nthr\u{e9}e".as_bytes()),
        fake::exit_frame(5, 0),
        fake::completion_frame(6, &reply),
    ]
    .concat();
    fake::mount_spawn(&mock, OP);
    fake::mount_status(&mock, OP, &reply);
    fake::mount_cancel(&mock, OP);
    fake::mount_events(&mock, OP, fake::sse_response(events));

    let mut process = fake::image(&client).popen(["emit"]).await.expect("popen");
    let mut lines = process.stdout_lines().expect("stdout lines");
    assert!(process.stdout().is_none(), "text mode takes the stdout reader");
    let mut got = Vec::new();
    while let Some(line) = lines.next_line().await.expect("utf-8 line") {
        got.push(line);
    }
    assert_eq!(got, ["one", "two", "thr\u{e9}e"]);
    let mut errors = process.stderr_lines().expect("stderr lines");
    let err = errors.next_line().await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    process.wait().await.expect("wait");

    // The lazy face (a `Stream` in async, an `Iterator` in blocking) gives the same lines.
    let mut again = fake::image(&client).popen(["emit"]).await.expect("popen again");
    let lines = crate::flavor::collect_lines(again.stdout_lines().expect("stdout lines")).await;
    assert_eq!(lines.expect("utf-8 lines"), ["one", "two", "thr\u{e9}e"]);
    again.wait().await.expect("wait again");
}

/// `apply_files` takes file specs (mode, owner) and plain local paths (placed at
/// `/<file name>`, as in Python) as well as destination → source pairs.
#[crate::maybe]
pub async fn apply_files_takes_specs_and_plain_paths() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("").image(R1));
    fake::FileStore::mount(&mock, &[]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("tool.sh");
    std::fs::write(&local, b"echo tool\n").unwrap();
    let image = fake::image(&client);

    let spec = contree::UploadFileSpec::new("/etc/secret.conf", b"k=v\n".to_vec()).mode(0o600).owner(1000, 1001);
    let baked = image.apply_files([spec]).await.expect("specs");
    assert_eq!(uuid_of(&baked), R1);
    let baked = image.apply_files([local.clone()]).await.expect("plain paths");
    assert_eq!(uuid_of(&baked), R1);
    let bodies = fake::spawn_bodies(&mock);
    assert_eq!(
        bodies[0]["files"],
        json!({"/etc/secret.conf": {"uuid": fake::file_uuid(b"k=v\n"), "mode": "0600", "uid": 1000, "gid": 1001}})
    );
    assert_eq!(
        bodies[1]["files"],
        json!({"/tool.sh": {"uuid": fake::file_uuid(b"echo tool\n"), "mode": "0644", "uid": 0, "gid": 0}})
    );

    // A path with no file name, or a missing local file: rejected before any request.
    let sent = mock.requests().len();
    let err = image.apply_files([std::path::PathBuf::from("/")]).await.unwrap_err();
    assert_eq!(err.argument(), Some("files"));
    let err = image.apply_files([dir.path().join("missing.txt")]).await.unwrap_err();
    assert_eq!(err.argument(), Some("files"));
    assert_eq!(mock.requests().len(), sent);
}

/// Entries from `ls` know their full path: they can be read, downloaded and listed; and a
/// download with no local path writes `./<file name>`.
#[crate::maybe]
pub async fn dir_entries_read_list_and_download() {
    let (mock, client) = fake::setup();
    let inspect = |what: &str| format!("/v1/inspect/{IMAGE}/{what}");
    let item = |name: &str, is_dir: bool| {
        json!({"size": 3, "path": name, "owner": "root", "group": "root", "uid": 0, "gid": 0,
               "mode": if is_dir { 16877 } else { 33188 }, "mtime": 1700000000, "nlink": 1, "is_dir": is_dir,
               "is_regular": !is_dir, "is_symlink": false, "is_socket": false, "is_fifo": false, "symlink_to": ""})
    };
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(inspect("list")))
            .and(query_param("path", "/srv/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"files": [item("d", true)]}))),
    );
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(inspect("list")))
            .and(query_param("path", "/srv/d"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"files": [item("f.txt", false)]}))),
    );
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(inspect("download")))
            .and(query_param("path", "/srv/d/f.txt"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(b"abc".to_vec(), "application/octet-stream")),
    );
    let image = fake::image(&client);
    let top = image.ls("/srv/").await.expect("ls");
    assert_eq!(top[0].path(), "/srv/d");
    assert!(top[0].is_dir);
    let inner = top[0].ls().await.expect("entry ls");
    assert_eq!(inner[0].name(), "f.txt");
    assert_eq!(inner[0].path(), "/srv/d/f.txt");
    let bytes = inner[0].read().await.expect("entry read");
    assert_eq!(&bytes[..], b"abc");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("copy.txt");
    let written = inner[0].download(&target).await.expect("entry download");
    assert_eq!(written, target);
    assert_eq!(std::fs::read(&target).unwrap(), b"abc");

    // The default local path is ./<file name>, relative to the working directory.
    let here = image.download_here("/srv/d/f.txt").await.expect("download_here");
    assert_eq!(here, std::path::Path::new("./f.txt"));
    let written = std::fs::read(&here);
    let _ = std::fs::remove_file(&here);
    assert_eq!(written.unwrap(), b"abc");

    let sent = mock.requests().len();
    let e = image.download_here("/").await.unwrap_err();
    assert_eq!(e.argument(), Some("path"));
    let e = image.download_here("srv/d").await.unwrap_err();
    assert_eq!(e.argument(), Some("path"));
    assert_eq!(mock.requests().len(), sent, "bad paths are never sent");
}
