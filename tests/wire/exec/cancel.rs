//! The polling fallback (events route missing) and cancellation (client deadline, dropped
//! process handles).

use std::time::Duration;

use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path};

use super::fake::{self, OP, RESULT, Reply};

fn running() -> ResponseTemplate {
    let mut reply = Reply::ok("");
    reply.status = "EXECUTING";
    ResponseTemplate::new(200).set_body_json(fake::op_json(OP, &reply))
}

fn finished(reply: &Reply) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(fake::op_json(OP, reply))
}

#[crate::maybe]
pub async fn events_404_falls_back_to_polling_with_retry_after() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_events(&mock, OP, ResponseTemplate::new(404).set_body_json(serde_json::json!({"error": "not found"})));
    let statuses = fake::Sequence::new(vec![
        running().insert_header("retry-after", "1"),
        running(),
        finished(&Reply::ok("polled\n").image(RESULT)),
    ]);
    let seen = statuses.seen.clone();
    mock.mount(wiremock::Mock::given(method("GET")).and(path(fake::op_path(OP))).respond_with(statuses));

    let done = fake::image(&client).run("slow").disposable(false).wait().await.expect("run");
    assert_eq!(done.stdout().unwrap(), b"polled\n");
    assert_eq!(done.uuid().map(|u| u.to_string()).as_deref(), Some(RESULT));

    assert_eq!(mock.requests_to("GET", &fake::events_path(OP)).len(), 1, "the events route is tried once");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "polled until terminal, and the terminal answer is the result");
    // The server asked for one second between the first and second look.
    assert!(seen[1] - seen[0] >= Duration::from_millis(900), "Retry-After ignored: {:?}", seen[1] - seen[0]);
}

#[crate::maybe]
pub async fn events_405_polls_and_failed_is_operation_failed() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_events(&mock, OP, ResponseTemplate::new(405));
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(fake::op_path(OP)))
            .respond_with(fake::Sequence::new(vec![running(), finished(&Reply::failed("Container image not found"))])),
    );
    let err = fake::image(&client).run("x").wait().await.unwrap_err();
    assert!(err.is_operation_failed(), "{err:?}");
    assert_eq!(err.operation_id(), Some(OP));
    assert!(err.to_string().contains("Container image not found"), "{err}");
    assert_eq!(mock.requests_to("GET", &fake::op_path(OP)).len(), 2);
    assert!(mock.requests_to("DELETE", &fake::op_path(OP)).is_empty(), "a finished operation is not cancelled");
}

#[crate::maybe]
pub async fn polled_cancelled_is_operation_cancelled() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_events(&mock, OP, ResponseTemplate::new(404));
    mock.mount(
        wiremock::Mock::given(method("GET")).and(path(fake::op_path(OP))).respond_with(finished(&Reply::cancelled())),
    );
    let err = fake::image(&client).run("x").wait().await.unwrap_err();
    assert!(err.is_operation_cancelled(), "{err:?}");
    assert_eq!(err.operation_id(), Some(OP));

    // The same through the event stream's completion.
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::cancelled());
    let err = fake::image(&client).run("x").wait().await.unwrap_err();
    assert!(err.is_operation_cancelled(), "{err:?}");
}

#[crate::maybe]
pub async fn wait_timeout_cancels_the_operation() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_cancel(&mock, OP);
    // The stream only ever says it is alive, then closes: the client keeps reconnecting.
    fake::mount_events(&mock, OP, fake::sse_response(": keepalive\n\n"));
    mock.mount(wiremock::Mock::given(method("GET")).and(path(fake::op_path(OP))).respond_with(running()));

    let err = fake::image(&client)
        .run("sleep")
        .arg("1000")
        .wait_timeout(Duration::from_millis(400))
        .wait()
        .await
        .unwrap_err();
    assert!(err.is_operation_timed_out(), "{err:?}");
    assert_eq!(err.operation_id(), Some(OP));
    // The cancel is sent before the error is returned, and only once.
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1);
    crate::flavor::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1, "cancelled once");
}

#[crate::maybe]
pub async fn wait_timeout_while_polling_cancels_the_operation() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    // Already cancelled by someone else: 409 is not an error for a cancel.
    mock.mount(
        wiremock::Mock::given(method("DELETE")).and(path(fake::op_path(OP))).respond_with(
            ResponseTemplate::new(409)
                .set_body_json(serde_json::json!({"error": "operation is not cancellable", "status": 409})),
        ),
    );
    fake::mount_events(&mock, OP, ResponseTemplate::new(404));
    mock.mount(wiremock::Mock::given(method("GET")).and(path(fake::op_path(OP))).respond_with(running()));

    let err = fake::image(&client).run("sleep").wait_timeout(Duration::from_millis(300)).wait().await.unwrap_err();
    assert!(err.is_operation_timed_out(), "{err:?}");
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1);
    assert!(mock.requests_to("GET", &fake::op_path(OP)).len() >= 2, "it polled while waiting");
    crate::flavor::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1, "cancelled once");
}

#[crate::maybe]
pub async fn dropping_an_unfinished_process_cancels_it() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_cancel(&mock, OP);
    fake::mount_events(&mock, OP, fake::sse_response(": keepalive\n\n"));
    mock.mount(wiremock::Mock::given(method("GET")).and(path(fake::op_path(OP))).respond_with(running()));

    let process = fake::image(&client).popen(["sleep", "1000"]).await.expect("spawned");
    assert_eq!(process.id(), OP);
    drop(process);
    let cancels = super::wait_for_requests(&mock, "DELETE", &fake::op_path(OP), 1).await;
    assert_eq!(cancels.len(), 1, "dropping a running process cancels its operation");
    crate::flavor::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1, "cancelled once");
}

#[crate::maybe]
pub async fn dropping_a_finished_process_sends_no_cancel() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("done\n"));
    let mut process = fake::image(&client).popen(["echo", "done"]).await.expect("spawned");
    let status = process.wait().await.expect("wait");
    assert!(status.success());
    drop(process);
    crate::flavor::sleep(Duration::from_millis(200)).await;
    assert!(mock.requests_to("DELETE", &fake::op_path(OP)).is_empty());
}

#[crate::maybe]
pub async fn wait_timeout_bounds_an_events_request_that_hangs() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_cancel(&mock, OP);
    // The server accepts the connection and then says nothing for a minute.
    fake::mount_events(&mock, OP, fake::sse_response(": keepalive\n\n").set_delay(Duration::from_secs(60)));
    mock.mount(wiremock::Mock::given(method("GET")).and(path(fake::op_path(OP))).respond_with(running()));

    let started = std::time::Instant::now();
    let err = fake::image(&client).run("sleep").wait_timeout(Duration::from_millis(300)).wait().await.unwrap_err();
    assert!(err.is_operation_timed_out(), "{err:?}");
    // Far below the server's minute: the client deadline, not the server, ended the wait.
    assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}", started.elapsed());
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1);
}

#[crate::maybe]
pub async fn popen_wait_timeout_cancels_once() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_cancel(&mock, OP);
    fake::mount_events(&mock, OP, fake::sse_response(": keepalive\n\n"));
    mock.mount(wiremock::Mock::given(method("GET")).and(path(fake::op_path(OP))).respond_with(running()));

    let mut process =
        fake::image(&client).run("sleep").wait_timeout(Duration::from_millis(300)).spawn().await.expect("spawn");
    let err = process.wait().await.unwrap_err();
    assert!(err.is_operation_timed_out(), "{err:?}");
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1);
    drop(process);
    crate::flavor::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.requests_to("DELETE", &fake::op_path(OP)).len(), 1, "cancelled once");
}

#[crate::maybe]
pub async fn stream_over_polling_fallback_replays_the_output() {
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_events(&mock, OP, ResponseTemplate::new(404));
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(fake::op_path(OP)))
            .respond_with(fake::Sequence::new(vec![running(), finished(&Reply::ok("out\n").stderr("err\n").exit(3))])),
    );
    let run = fake::image(&client).run("x");
    let events = crate::flavor::collect_events(&run).await;
    let names: Vec<String> = events
        .into_iter()
        .map(|e| match e.expect("event") {
            crate::flavor::RunEvent::Stdout(b) => format!("stdout:{}", String::from_utf8_lossy(&b)),
            crate::flavor::RunEvent::Stderr(b) => format!("stderr:{}", String::from_utf8_lossy(&b)),
            crate::flavor::RunEvent::Exit(s) => format!("exit:{}", s.code_or_minus_one()),
            crate::flavor::RunEvent::Finished(_) => "finished".into(),
            other => format!("unexpected:{other:?}"),
        })
        .collect();
    assert_eq!(names, ["stdout:out\n", "stderr:err\n", "exit:3", "finished"]);

    // A popen over the same fallback feeds its readers from the final output.
    let (mock, client) = fake::setup();
    fake::mount_spawn(&mock, OP);
    fake::mount_events(&mock, OP, ResponseTemplate::new(405));
    fake::mount_status(&mock, OP, &Reply::ok("polled out\n"));
    let mut process = fake::image(&client).popen(["x"]).await.expect("popen");
    let mut stdout = process.stdout().expect("reader");
    let text = crate::flavor::read_to_end(&mut stdout).await;
    assert_eq!(text, b"polled out\n");
    let status = process.wait().await.expect("wait");
    assert!(status.success());
}
