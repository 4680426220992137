//! Following `GET /v1/operations/{id}/events`: framing, reconnects, compression, live events.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Request, Respond, ResponseTemplate};

use super::fake::{self, OP, RESULT, Reply};
use crate::flavor::RunEvent;

fn stdout_chunks(events: &[RunEvent]) -> Vec<Vec<u8>> {
    events.iter().filter_map(|e| if let RunEvent::Stdout(b) = e { Some(b.to_vec()) } else { None }).collect()
}

/// A short name per event, to assert the order.
fn names(events: &[RunEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            RunEvent::Stdout(b) => format!("stdout:{}", String::from_utf8_lossy(b)),
            RunEvent::Stderr(b) => format!("stderr:{}", String::from_utf8_lossy(b)),
            RunEvent::Exit(s) => format!("exit:{}", s.code_or_minus_one()),
            RunEvent::Finished(_) => "finished".to_string(),
            other => format!("unexpected:{other:?}"),
        })
        .collect()
}

#[crate::maybe]
pub async fn keepalives_multiline_data_and_unknown_events_are_handled() {
    let (mock, client) = fake::setup();
    let reply = Reply::ok("one\ntwo\n").image(RESULT);
    fake::mount_spawn(&mock, OP);
    fake::mount_status(&mock, OP, &reply);
    // One JSON event spread over three `data:` lines (joined with `\n`, still valid JSON),
    // comments between frames, CRLF line ends, an event type nobody knows, and a frame
    // without data.
    let multi = "id: 2\nevent: stdout\ndata: {\"id\":2,\"ts\":\"t\",\ndata: \"spid\":1,\"type\":\"stdout\",\ndata: \"data\":{\"value\":\"two\\n\",\"encoding\":\"ascii\"}}\n\n";
    let body = [
        ": keepalive\n\n".to_string(),
        fake::stdout_frame(1, b"one\n").replace('\n', "\r\n"),
        ": keepalive\n\n".to_string(),
        multi.to_string(),
        fake::frame(3, "heartbeat", Some(0), json!({"beat": 1})),
        "event: stdout\n\n".to_string(),
        fake::frame(4, "network", Some(0), json!({"interfaces": []})),
        ": keepalive\n\n".to_string(),
        fake::exit_frame(5, 0),
        fake::completion_frame(6, &reply),
        // Anything after completion is never read.
        fake::stdout_frame(7, b"late\n"),
    ]
    .concat();
    fake::mount_events(&mock, OP, fake::sse_response(body));

    let run = fake::image(&client).run("printer");
    let events: Vec<RunEvent> =
        crate::flavor::collect_events(&run).await.into_iter().collect::<Result<_, _>>().expect("events");
    assert_eq!(names(&events), ["stdout:one\n", "stdout:two\n", "exit:0", "finished"]);
    let RunEvent::Finished(done) = events.last().unwrap() else { unreachable!() };
    assert_eq!(done.stdout().unwrap(), b"one\ntwo\n");
    assert_eq!(mock.requests_to("GET", &fake::events_path(OP)).len(), 1, "no reconnect was needed");
}

/// First connection: two events, then an in-band `sse_error` (and an event after it that a
/// broken stream must not deliver). Reconnection with `Last-Event-Id`: the server replays from
/// the id it was given, including one the client already has.
struct BreakOnce;

impl Respond for BreakOnce {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let reply = Reply::ok("abc").image(RESULT);
        match fake::header(request, "last-event-id") {
            None => fake::sse_response(
                [
                    fake::stdout_frame(1, b"a"),
                    fake::stdout_frame(2, b"b"),
                    ": stream ended with error, retry since last event id\n\n".to_string(),
                    "event: sse_error\ndata: upstream event source closed unexpectedly\n\n".to_string(),
                    fake::stdout_frame(3, b"X"),
                ]
                .concat(),
            ),
            Some(_) => fake::sse_response(
                [
                    fake::stdout_frame(2, b"b"),
                    fake::stdout_frame(3, b"c"),
                    fake::exit_frame(4, 0),
                    fake::completion_frame(5, &reply),
                ]
                .concat(),
            ),
        }
    }
}

#[crate::maybe]
pub async fn sse_error_reconnects_with_last_event_id_without_duplicates() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_status(&mock, OP, &Reply::ok("abc").image(RESULT));
    mock.mount(wiremock::Mock::given(method("GET")).and(path(fake::events_path(OP))).respond_with(BreakOnce));

    let run = fake::image(&client).run("abc");
    let events: Vec<RunEvent> =
        crate::flavor::collect_events(&run).await.into_iter().collect::<Result<_, _>>().expect("events");
    assert_eq!(stdout_chunks(&events), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(names(&events)[3..], ["exit:0", "finished"]);

    let connects = mock.requests_to("GET", &fake::events_path(OP));
    assert_eq!(connects.len(), 2, "exactly one reconnect");
    assert_eq!(fake::header(&connects[0], "last-event-id"), None);
    assert_eq!(fake::header(&connects[1], "last-event-id").as_deref(), Some("2"));
    assert_eq!(fake::query(&connects[1], "follow").as_deref(), Some("1"));

    // The finishing wait() of the same scenario also survives the break.
    let done = fake::image(&client).run("abc").disposable(false).wait().await.expect("run");
    assert_eq!(done.uuid().map(|u| u.to_string()).as_deref(), Some(RESULT));
}

#[crate::maybe]
pub async fn gzip_compressed_event_stream_is_read() {
    let (mock, client) = fake::setup();
    let reply = Reply::ok("zipped\n").stderr("also zipped\n");
    fake::mount_spawn(&mock, OP);
    fake::mount_status(&mock, OP, &reply);
    let body = fake::gzip(fake::events_for(&reply).as_bytes());
    fake::mount_events(
        &mock,
        OP,
        ResponseTemplate::new(200).insert_header("content-encoding", "gzip").set_body_raw(body, "text/event-stream"),
    );

    let run = fake::image(&client).run("zip");
    let events: Vec<RunEvent> =
        crate::flavor::collect_events(&run).await.into_iter().collect::<Result<_, _>>().expect("events");
    assert_eq!(names(&events), ["stdout:zipped\n", "stderr:also zipped\n", "exit:0", "finished"]);
    // The client asks for events uncompressed (one deflate block per event costs more CPU than
    // it saves), and still reads a stream a server gzips anyway.
    let connect = &mock.requests_to("GET", &fake::events_path(OP))[0];
    assert_eq!(fake::header(connect, "accept-encoding").as_deref(), Some("identity"), "the client asks for identity");
}

#[crate::maybe]
pub async fn stream_yields_stdout_stderr_exit_finished_in_order() {
    let (mock, client) = fake::setup();
    let reply = Reply::ok("first\nthird\n").stderr("second\n").exit(4).image(RESULT);
    fake::mount_spawn(&mock, OP);
    fake::mount_status(&mock, OP, &reply);
    let body = [
        fake::frame(1, "init", Some(0), json!({"started_at": "t", "runtime_path": "/r", "verbose": false, "init_pid": 1})),
        fake::frame(2, "spawn", Some(1), json!({"pid": 7, "command": "x", "args": [], "shell": false, "cwd": "/", "uid": 0, "gid": 0, "timeout": 5, "truncate_at": 10})),
        fake::stdout_frame(3, b"first\n"),
        fake::stderr_frame(4, b"second\n"),
        // Output of another process of the sandbox is not this run's.
        fake::frame(5, "stdout", Some(2), fake::stream_repr(b"other process\n")),
        fake::stdout_frame(6, b"third\n"),
        fake::exit_frame(7, 4),
        fake::frame(8, "shutdown", Some(0), json!({"stopped_at": "t", "reason": "job_complete"})),
        fake::completion_frame(9, &reply),
    ]
    .concat();
    fake::mount_events(&mock, OP, fake::sse_response(body));

    let run = fake::image(&client).run("x").disposable(false);
    let events: Vec<RunEvent> =
        crate::flavor::collect_events(&run).await.into_iter().collect::<Result<_, _>>().expect("events");
    assert_eq!(names(&events), ["stdout:first\n", "stderr:second\n", "stdout:third\n", "exit:4", "finished"]);
    let RunEvent::Finished(done) = &events[4] else { unreachable!() };
    assert_eq!(done.exit_code().unwrap(), 4);
    assert_eq!(done.uuid().map(|u| u.to_string()).as_deref(), Some(RESULT));
    assert_eq!(fake::spawn_bodies(&mock).len(), 1, "the stream runs the command once");
}
