//! Async-only scenarios: dropping an in-flight future or stream cancels the operation on the
//! server (a blocking call cannot be dropped half-way).

use std::future::IntoFuture;
use std::time::Duration;

use futures_util::StreamExt;
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path};

use crate::scenarios::fake::{self, OP};
use crate::scenarios::wait_for_requests;

/// A run that never finishes: the stream only says it is alive, the status stays EXECUTING.
fn mount_endless_run(mock: &crate::support::Mock, first_events: &str) {
    fake::mount_spawn(mock, OP);
    fake::mount_cancel(mock, OP);
    fake::mount_events(mock, OP, fake::sse_response(format!("{first_events}: keepalive\n\n")));
    let mut reply = fake::Reply::ok("");
    reply.status = "EXECUTING";
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(fake::op_path(OP)))
            .respond_with(ResponseTemplate::new(200).set_body_json(fake::op_json(OP, &reply))),
    );
}

pub async fn aborting_a_task_running_a_run_cancels_it() {
    let (mock, client) = fake::setup();
    mount_endless_run(&mock, "");
    let task = tokio::spawn(fake::image(&client).run("sleep").arg("1000").into_future());
    // The run is in flight once it follows its events.
    assert!(!wait_for_requests(&mock, "GET", &fake::events_path(OP), 1).await.is_empty());
    assert!(mock.requests_to("DELETE", &fake::op_path(OP)).is_empty());
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let cancels = wait_for_requests(&mock, "DELETE", &fake::op_path(OP), 1).await;
    assert_eq!(cancels.len(), 1, "the dropped run cancelled its operation");
}

pub async fn timing_out_a_run_future_cancels_it() {
    let (mock, client) = fake::setup();
    mount_endless_run(&mock, "");
    let run = fake::image(&client).run("sleep").arg("1000");
    let outcome = tokio::time::timeout(Duration::from_millis(1500), run.into_future()).await;
    assert!(outcome.is_err(), "the run cannot finish: {outcome:?}");
    let cancels = wait_for_requests(&mock, "DELETE", &fake::op_path(OP), 1).await;
    assert_eq!(cancels.len(), 1, "the dropped run cancelled its operation");
}

pub async fn dropping_a_run_stream_mid_run_cancels_it() {
    let (mock, client) = fake::setup();
    mount_endless_run(&mock, &fake::stdout_frame(1, b"started\n"));
    let run = fake::image(&client).run("server");
    let mut stream = Box::pin(run.stream());
    match stream.next().await {
        Some(Ok(crate::flavor::RunEvent::Stdout(b))) => assert_eq!(&b[..], b"started\n"),
        other => panic!("unexpected {other:?}"),
    }
    drop(stream);
    let cancels = wait_for_requests(&mock, "DELETE", &fake::op_path(OP), 1).await;
    assert_eq!(cancels.len(), 1, "the dropped stream cancelled its operation");
    // A finished stream cancels nothing.
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &fake::Reply::ok("x"));
    let events: Vec<_> = fake::image(&client).run("x").stream().collect().await;
    assert!(events.iter().all(Result::is_ok));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(mock.requests_to("DELETE", &fake::op_path(OP)).is_empty());
}

/// A grep builder is `IntoFuture`: awaiting it sends it.
pub async fn awaiting_a_grep_builder_sends_it() {
    let (mock, client) = fake::setup();
    mock.mount(
        wiremock::Mock::given(method("GET")).and(path(format!("/v1/inspect/{}/grep", fake::IMAGE))).respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"path": "/", "patterns": ["x"], "matches": [], "truncated": false})),
        ),
    );
    let found = fake::image(&client).grep("x").path("/etc").await.expect("grep");
    assert_eq!(found.patterns, ["x"]);
    assert_eq!(mock.requests().len(), 1);
}
