//! popen: live process handles fed by the event stream.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path};

use super::fake::{self, OP, Reply};
use crate::flavor::Stdin;

fn stdin_path() -> String {
    format!("/v1/operations/{OP}/subprocesses/1/stdin")
}

fn subprocess_path() -> String {
    format!("/v1/operations/{OP}/subprocesses/1")
}

fn mount_subprocess_routes(mock: &crate::support::Mock) {
    mock.mount(wiremock::Mock::given(method("POST")).and(path(stdin_path())).respond_with(ResponseTemplate::new(204)));
    mock.mount(
        wiremock::Mock::given(method("DELETE")).and(path(subprocess_path())).respond_with(ResponseTemplate::new(204)),
    );
}

/// A run whose event stream answers only after `delay`, so the process is still running
/// while the scenario works with it.
fn mount_slow_run(mock: &crate::support::Mock, reply: &Reply, events: String, delay: Duration) {
    fake::mount_spawn(mock, OP);
    fake::mount_status(mock, OP, reply);
    fake::mount_cancel(mock, OP);
    fake::mount_events(mock, OP, fake::sse_response(events).set_delay(delay));
}

#[crate::maybe]
pub async fn popen_returns_at_once_and_streams_live_stdout() {
    let (mock, client) = fake::setup();
    let reply = Reply::ok("hello\n").stderr("warn\n");
    let events = [
        fake::stdout_frame(1, b"hel"),
        fake::stderr_frame(2, b"warn\n"),
        fake::stdout_frame(3, b"lo\n"),
        fake::exit_frame(4, 0),
        fake::completion_frame(5, &reply),
    ]
    .concat();
    mount_slow_run(&mock, &reply, events, Duration::from_millis(800));

    let mut process = fake::image(&client).popen(["printf", "hello"]).await.expect("popen");
    assert_eq!(process.try_wait().expect("try_wait"), None, "the process is still running");
    assert_eq!(process.poll().expect("poll"), None);
    assert_eq!(fake::spawn_body(&mock)["command"], json!("printf"));
    assert_eq!(fake::spawn_body(&mock)["args"], json!(["hello"]));

    let mut stdout = process.stdout().expect("stdout reader");
    assert!(process.stdout().is_none(), "the reader is taken once");
    let mut stderr = process.stderr().expect("stderr reader");
    let first = stdout.chunk().await;
    assert_eq!(first.as_deref(), Some(&b"hel"[..]), "chunks arrive as the server sent them");
    let second = stdout.chunk().await;
    assert_eq!(second.as_deref(), Some(&b"lo\n"[..]));
    let end = stdout.chunk().await;
    assert_eq!(end, None, "EOF after the run");
    let err_text = crate::flavor::read_to_end(&mut stderr).await;
    assert_eq!(err_text, b"warn\n");

    let status = process.wait().await.expect("wait");
    assert!(status.success());
    assert_eq!(status.code, Some(0));
    assert_eq!(process.try_wait().expect("try_wait"), Some(status));
    // wait() again gives the same answer without new requests.
    let before = mock.requests().len();
    let again = process.wait().await.expect("wait again");
    assert_eq!(again, status);
    assert_eq!(mock.requests().len(), before);
}

#[crate::maybe]
pub async fn popen_writes_stdin_and_kills_through_the_subprocess_route() {
    let (mock, client) = fake::setup();
    let mut reply = Reply::ok("abc");
    reply.exit_code = -1;
    reply.signal = 9;
    let events = [
        fake::stdout_frame(1, b"abc"),
        fake::frame(
            2,
            "exit",
            Some(1),
            json!({"pid": 7, "code": -1, "signal": 9, "timed_out": false, "duration_ms": 5}),
        ),
        fake::completion_frame(3, &reply),
    ]
    .concat();
    mount_slow_run(&mock, &reply, events, Duration::from_millis(500));
    mount_subprocess_routes(&mock);

    let mut process = fake::image(&client).run("cat").stdin(Stdin::piped()).spawn().await.expect("spawn");
    assert_eq!(fake::spawn_body(&mock)["stdin"], json!({"value": "", "encoding": "ascii", "close": false}));
    process.write_stdin("abc").await.expect("write text");
    process.write_stdin(vec![0u8, 0xff]).await.expect("write bytes");
    process.kill().await.expect("kill");

    let writes: Vec<Value> =
        mock.requests_to("POST", &stdin_path()).iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(
        writes,
        [
            json!({"value": "abc", "encoding": "ascii", "close": false}),
            json!({"value": "AP8=", "encoding": "base64", "close": false})
        ]
    );
    let kills = mock.requests_to("DELETE", &subprocess_path());
    assert_eq!(kills.len(), 1);
    assert_eq!(fake::query(&kills[0], "signal").as_deref(), Some("KILL"));
    assert!(mock.requests_to("DELETE", &fake::op_path(OP)).is_empty(), "kill signals the process, not the operation");

    let status = process.wait().await.expect("wait");
    assert_eq!(status.signal, Some(9));
    assert_eq!(status.code, None);
    assert!(!status.success());

    // A server without the subprocess route: kill cancels the operation instead.
    let (mock, client) = fake::setup();
    mount_slow_run(&mock, &Reply::cancelled(), fake::events_for(&Reply::cancelled()), Duration::from_millis(300));
    mock.mount(
        wiremock::Mock::given(method("DELETE"))
            .and(path(subprocess_path()))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "not found"}))),
    );
    let mut process = fake::image(&client).popen(["sleep", "9"]).await.expect("popen");
    process.signal("TERM").await.expect("signal");
    let signals = mock.requests_to("DELETE", &subprocess_path());
    assert_eq!(fake::query(&signals[0], "signal").as_deref(), Some("TERM"));
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1, "fell back to cancelling");
    let err = process.wait().await.unwrap_err();
    assert!(err.is_operation_cancelled(), "{err:?}");
    let err = process.signal("KILL; rm").await.unwrap_err();
    assert_eq!(err.argument(), Some("signal"));

    // Without Stdin::piped() there is no pipe to write to: nothing is sent.
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    mount_subprocess_routes(&mock);
    let mut process = fake::image(&client).popen(["true"]).await.expect("popen");
    let err = process.write_stdin("late").await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    assert_eq!(err.argument(), Some("stdin"));
    process.wait().await.expect("wait");
    assert!(mock.requests_to("POST", &stdin_path()).is_empty());
}

#[crate::maybe]
pub async fn popen_communicate_writes_closes_and_collects() {
    let (mock, client) = fake::setup();
    let reply = Reply::ok("INPUT\n").stderr("note\n");
    mount_slow_run(&mock, &reply, fake::events_for(&reply), Duration::from_millis(300));
    mount_subprocess_routes(&mock);

    let mut process = fake::image(&client).shell("tr a-z A-Z").stdin(Stdin::piped()).spawn().await.expect("spawn");
    let (stdout, stderr) = process.communicate("input\n").await.expect("communicate");
    assert_eq!(&stdout[..], b"INPUT\n");
    assert_eq!(&stderr[..], b"note\n");
    let writes: Vec<Value> =
        mock.requests_to("POST", &stdin_path()).iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0], json!({"value": "input\n", "encoding": "ascii", "close": false}));
    assert_eq!(writes[1]["value"], json!(""));
    assert_eq!(writes[1]["close"], json!(true), "communicate closes stdin (EOF)");
    assert_eq!(process.try_wait().expect("try_wait").map(|s| s.success()), Some(true));
}

#[crate::maybe]
pub async fn popen_check_turns_a_nonzero_exit_into_process_failed() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("").stderr("bad\n").exit(1));
    let mut process = fake::image(&client).popen_shell("false").await.expect("popen").check(true);
    let err = process.wait().await.unwrap_err();
    assert!(err.is_process_failed(), "{err:?}");
    assert_eq!(err.exit_code(), Some(1));
    assert_eq!(err.operation_id(), Some(OP));
    let failure = err.process_failure().unwrap();
    assert_eq!(failure.command, ["sh", "-c", "false"]);
    assert_eq!(failure.stderr, b"bad\n");
    assert_eq!(fake::spawn_body(&mock)["shell"], json!(true));

    // Unchecked, the same exit is a status.
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("").exit(1));
    let mut process = fake::image(&client).popen_shell("false").await.expect("popen");
    let status = process.wait().await.expect("wait");
    assert_eq!(status.code, Some(1));
}

fn exec_path() -> String {
    format!("/v1/operations/{OP}/subprocesses")
}

/// `exec` on a live process: `POST …/subprocesses` with an ExecSpec, then the new process is
/// followed on its own spid (`events?spid=2`), written to and signalled on its own routes.
#[crate::maybe]
pub async fn exec_posts_an_exec_spec_and_drives_its_own_spid() {
    let (mock, client) = fake::setup();
    let spid_events = [
        fake::frame(
            11,
            "spawn",
            Some(2),
            json!({"pid": 9, "command": "sh", "args": [], "shell": false, "cwd": "/tmp",
                                                 "uid": 5, "gid": 0, "timeout": 0, "truncate_at": 1048576}),
        ),
        fake::frame(12, "stdout", Some(2), fake::stream_repr(b"sub-out\n")),
        fake::frame(13, "stderr", Some(2), fake::stream_repr(b"sub-err\n")),
        fake::frame(
            14,
            "exit",
            Some(2),
            json!({"pid": 9, "code": 4, "signal": -1, "timed_out": false, "duration_ms": 3, "resources": {}}),
        ),
    ]
    .concat();
    // Mounted first: it wins over the main process's (unfiltered) event stream.
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(fake::events_path(OP)))
            .and(wiremock::matchers::query_param("spid", "2"))
            .respond_with(fake::sse_response(spid_events)),
    );
    mock.mount(
        wiremock::Mock::given(method("POST")).and(path(exec_path())).respond_with(
            ResponseTemplate::new(201)
                .insert_header("location", format!("/v1/operations/{OP}/subprocesses/2"))
                .set_body_json(json!({"spid": 2})),
        ),
    );
    mock.mount(
        wiremock::Mock::given(method("GET")).and(path(format!("/v1/operations/{OP}/subprocesses/2"))).respond_with(
            ResponseTemplate::new(200).set_body_json(json!({
                "resources": {"elapsed_time": 0.5},
                "state": {"exit_code": 4, "pid": 9, "signal": -1, "timed_out": false},
                "stdout": {"value": "sub-out\n", "encoding": "ascii"},
                "stderr": {"value": "sub-err\n", "encoding": "ascii"}
            })),
        ),
    );
    let stdin2 = format!("/v1/operations/{OP}/subprocesses/2/stdin");
    let kill2 = format!("/v1/operations/{OP}/subprocesses/2");
    mock.mount(
        wiremock::Mock::given(method("POST")).and(path(stdin2.clone())).respond_with(ResponseTemplate::new(204)),
    );
    mock.mount(
        wiremock::Mock::given(method("DELETE")).and(path(kill2.clone())).respond_with(ResponseTemplate::new(204)),
    );
    let reply = Reply::ok("main\n");
    mount_slow_run(&mock, &reply, fake::events_for(&reply), Duration::from_millis(1500));

    let mut main = fake::image(&client).popen(["sleep", "9"]).await.expect("popen");
    // Bad arguments: refused before any request.
    let err = main.exec(Vec::<String>::new()).spawn().await.unwrap_err();
    assert_eq!(err.argument(), Some("argv"), "{err}");
    let err = main.exec_shell("echo").arg("x").spawn().await.unwrap_err();
    assert_eq!(err.argument(), Some("args"), "{err}");
    let err = main.exec(["true"]).env("A=B", "1").spawn().await.unwrap_err();
    assert_eq!(err.argument(), Some("env"), "{err}");
    let err = main.exec(["true"]).cwd("tmp").spawn().await.unwrap_err();
    assert_eq!(err.argument(), Some("cwd"), "{err}");
    assert!(mock.requests_to("POST", &exec_path()).is_empty());

    let mut sub = main
        .exec(["sh", "-c", "work"])
        .env("A", "1")
        .cwd("/tmp")
        .uid(5)
        .stdin(Stdin::piped())
        .truncate_output_at(4096)
        .spawn()
        .await
        .expect("exec")
        .check(true);
    assert_eq!(sub.spid(), 2);
    assert_eq!(sub.id(), OP);
    let posts = mock.requests_to("POST", &exec_path());
    assert_eq!(posts.len(), 1);
    let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(
        body,
        json!({"command": "sh", "args": ["-c", "work"], "env": {"A": "1"}, "cwd": "/tmp", "uid": 5,
               "stdin": {"value": "", "encoding": "ascii", "close": false}, "truncate_output_at": 4096})
    );
    sub.write_stdin("in").await.expect("write stdin");
    sub.signal("TERM").await.expect("signal");
    let writes = mock.requests_to("POST", &stdin2);
    assert_eq!(serde_json::from_slice::<Value>(&writes[0].body).unwrap()["close"], json!(false));
    let kills = mock.requests_to("DELETE", &kill2);
    assert_eq!(fake::query(&kills[0], "signal").as_deref(), Some("TERM"));
    assert!(mock.requests_to("DELETE", &fake::op_path(OP)).is_empty(), "the instance is not cancelled");
    assert!(mock.requests_to("DELETE", &subprocess_path()).is_empty(), "the main process is not signalled");

    let mut stdout = sub.stdout().expect("stdout");
    let out = crate::flavor::read_to_end(&mut stdout).await;
    assert_eq!(out, b"sub-out\n", "only spid 2's output");
    let err = sub.wait().await.unwrap_err();
    assert!(err.is_process_failed(), "{err}");
    assert_eq!(err.exit_code(), Some(4));
    assert_eq!(err.process_failure().unwrap().stderr, b"sub-err\n");
    let follows: Vec<_> = mock
        .requests_to("GET", &fake::events_path(OP))
        .into_iter()
        .filter(|r| fake::query(r, "spid").as_deref() == Some("2"))
        .collect();
    assert!(!follows.is_empty(), "followed on its spid");

    // A plain exec sends no stdin; the main process is unaffected.
    let plain = main.exec_shell("true").spawn().await.expect("exec shell");
    let body: Value = serde_json::from_slice(&mock.requests_to("POST", &exec_path())[1].body).unwrap();
    assert_eq!(body, json!({"command": "true", "shell": true}));
    let err = plain.write_stdin("x").await.unwrap_err();
    assert_eq!(err.argument(), Some("stdin"));
    let output = plain.wait_with_output().await.expect("output");
    assert_eq!(output.status.code, Some(4));
    assert_eq!(output.stdout_text(), "sub-out\n");
    let status = main.wait().await.expect("main");
    assert!(status.success());

    // A finished instance: the server's 409 is a Conflict error.
    let (mock, client) = fake::setup();
    mock.mount(
        wiremock::Mock::given(method("POST")).and(path(exec_path())).respond_with(
            ResponseTemplate::new(409)
                .set_body_json(json!({"error": "the operation is not a running instance", "status": 409})),
        ),
    );
    fake::mount_run(&mock, OP, &Reply::ok(""));
    let mut main = fake::image(&client).popen(["true"]).await.expect("popen");
    main.wait().await.expect("wait");
    let err = main.exec(["true"]).spawn().await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(err.operation_id(), Some(OP));
}
