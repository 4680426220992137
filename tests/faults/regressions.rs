//! The defects of issue 8 that need an exact answer sequence, on wiremock.

use std::time::Duration;

use contree::ErrorKind;
use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path};

use super::{Clock, expect_error, timed};
use crate::fake::{self, OP, RESULT, Reply};

/// Defect 1: the server sent `init`, `spawn` and `exit`, then closed the stream cleanly with
/// no `completion`, while the operation's status was SUCCESS. The SDK used to reconnect for
/// the whole wait and end with OperationTimedOut after cancelling a run that had succeeded.
#[crate::maybe]
pub async fn regression_stream_ending_without_completion_finishes_from_the_status() {
    let scenario = "regression_stream_ending_without_completion_finishes_from_the_status";
    let (mock, client) = fake::setup();
    let reply = Reply::ok("done\n").image(RESULT);
    fake::mount_spawn(&mock, OP);
    fake::mount_status(&mock, OP, &reply);
    fake::mount_cancel(&mock, OP);
    let body = [
        fake::frame(1, "init", Some(0), json!({"started_at": "t", "runtime_path": "/r", "verbose": false, "init_pid": 1})),
        fake::frame(2, "spawn", Some(1), json!({"pid": 7, "command": "x", "args": [], "shell": false, "cwd": "/", "uid": 0, "gid": 0, "timeout": 5, "truncate_at": 10})),
        fake::exit_frame(3, 0),
    ]
    .concat();
    fake::mount_events(&mock, OP, fake::sse_response(body));

    let deadline = Duration::from_secs(6);
    let clock = Clock::start();
    let result = fake::image(&client).run("x").disposable(false).wait_timeout(deadline).wait().await;
    timed(scenario, "wait", deadline, clock.took(), &result);
    let done = result.expect("the run succeeded and the SDK must say so");
    assert_eq!(done.stdout_text().unwrap(), "done\n");
    assert_eq!(done.uuid().map(|u| u.to_string()).as_deref(), Some(RESULT));
    assert!(clock.took() < Duration::from_secs(2), "finished from the status, not at the deadline: {:?}", clock.took());
    let connects = mock.requests_to("GET", &fake::events_path(OP));
    assert!(connects.len() <= 2, "one reconnect at most once the status is terminal: {}", connects.len());
    assert!(!mock.requests_to("GET", &fake::op_path(OP)).is_empty(), "the status was read");
    assert!(mock.requests_to("DELETE", &fake::op_path(OP)).is_empty(), "a finished run is never cancelled");
    assert_eq!(fake::spawn_bodies(&mock).len(), 1);

    // The live stream of the same run: the output missed by the stream is replayed once.
    let events = crate::flavor::collect_events(&fake::image(&client).run("x")).await;
    let names: Vec<String> = events
        .into_iter()
        .map(|e| match e.expect("event") {
            crate::flavor::RunEvent::Stdout(b) => format!("stdout:{}", String::from_utf8_lossy(&b)),
            crate::flavor::RunEvent::Stderr(b) => format!("stderr:{}", String::from_utf8_lossy(&b)),
            crate::flavor::RunEvent::Exit(s) => format!("exit:{}", s.code_or_minus_one()),
            crate::flavor::RunEvent::Finished(_) => "finished".into(),
            _ => "unexpected event".into(),
        })
        .collect();
    assert_eq!(names, ["exit:0", "stdout:done\n", "finished"]);
}

/// Defect 2: a 2 s wait against an events route that answers 410 with `Retry-After: 3` must
/// end at about 2 s (the blocking flavor took 9 s and 4 attempts), with the hint kept.
#[crate::maybe]
pub async fn regression_retry_after_past_the_deadline_ends_at_the_deadline() {
    let scenario = "regression_retry_after_past_the_deadline_ends_at_the_deadline";
    let mock = crate::support::Mock::start();
    // The default policy, as in the report: 4 attempts, Retry-After honoured up to 30 s.
    let mut config = fake::config(&mock.uri());
    config.retry = contree::RetryPolicy::default();
    let client = crate::flavor::Client::new(config).expect("client");
    fake::mount_spawn(&mock, OP);
    let running = Reply { status: "EXECUTING", ..Reply::ok("") };
    fake::mount_status(&mock, OP, &running);
    fake::mount_cancel(&mock, OP);
    mock.mount(
        wiremock::Mock::given(method("GET")).and(path(fake::events_path(OP))).respond_with(
            ResponseTemplate::new(410)
                .insert_header("retry-after", "3")
                .set_body_json(json!({"error": "gone for now", "status": 410})),
        ),
    );

    let deadline = Duration::from_secs(2);
    let clock = Clock::start();
    let result = fake::image(&client).run("x").wait_timeout(deadline).wait().await;
    let took = clock.took();
    timed(scenario, "wait", deadline, took, &result);
    let err = expect_error(result, ErrorKind::OperationTimedOut, "did not finish within");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)), "the server's hint is kept");
    assert!(err.to_string().contains("asked to retry after 3.0s"), "{err}");
    assert_eq!(err.operation_id(), Some(OP));
    assert!(took >= Duration::from_millis(1900), "the wait used its time: {took:?}");
    let connects = mock.requests_to("GET", &fake::events_path(OP)).len();
    assert_eq!(connects, 1, "a Retry-After past the deadline is not waited for");
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1, "the timed-out run is cancelled once");
    assert_eq!(fake::spawn_bodies(&mock).len(), 1);
}

/// Defect 2, on a request that is not a wait: a spawn answered 429 with a `Retry-After`
/// longer than the deadline ends at once with the timeout error and the server's hint.
#[crate::maybe]
pub async fn regression_spawn_retry_after_past_the_deadline_is_a_timeout_with_the_hint() {
    let scenario = "regression_spawn_retry_after_past_the_deadline_is_a_timeout_with_the_hint";
    let (mock, client) = fake::setup();
    mock.mount(
        wiremock::Mock::given(method("POST")).and(path("/v1/instances")).respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "5")
                .set_body_json(json!({"error": "slow down", "status": 429})),
        ),
    );
    let deadline = Duration::from_millis(1500);
    let clock = Clock::start();
    let result = fake::image(&client).run("x").wait_timeout(deadline).wait().await;
    timed(scenario, "wait", deadline, clock.took(), &result);
    let err = expect_error(result, ErrorKind::Timeout, "retry after 5.0s");
    assert!(err.to_string().contains("HTTP 429"), "the last answer is named: {err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(mock.requests_to("POST", "/v1/instances").len(), 1, "no second spawn attempt");
}
