//! What a finished run gives: output, status, timing and the result image, read from
//! `GET /v1/operations/{id}` once the event stream reported `completion`.

use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path};

use super::fake::{self, IMAGE, OP, RESULT, Reply};
use crate::flavor::OutputTarget;
use contree::ImageState;

#[crate::maybe]
pub async fn result_fields_come_from_the_operation_after_completion() {
    let (mock, client) = fake::setup();
    let mut reply = Reply::ok("out line\n").stderr("warn line\n").image(RESULT);
    reply.truncated = true;
    reply.elapsed = 1.5;
    fake::mount_run(&mock, OP, &reply);
    let image = fake::image(&client);

    let done = image.run("build").disposable(false).wait().await.expect("run");

    assert_eq!(done.state(), ImageState::Succeeded);
    assert_eq!(done.stdout().unwrap(), b"out line\n");
    assert_eq!(done.stderr().unwrap(), b"warn line\n");
    assert_eq!(done.stdout_text().unwrap(), "out line\n");
    assert_eq!(done.stderr_text().unwrap(), "warn line\n");
    assert_eq!(done.exit_code().unwrap(), 0);
    assert!(done.exit_status().unwrap().success());
    assert_eq!(done.elapsed().unwrap(), Duration::from_millis(1500));
    assert!(done.truncated().unwrap());
    let resources = done.resources().unwrap();
    assert_eq!(resources.max_rss, Some(2048));
    assert_eq!(resources.cost, Some(0.5));
    assert_eq!(resources.user_cpu_time, Some(0.125));
    assert_eq!(done.uuid().map(|u| u.to_string()).as_deref(), Some(RESULT));
    let output = done.output().unwrap();
    assert_eq!(output.operation_id.to_string(), OP);
    assert_eq!(output.command, ["build"]);
    // The source image is a value: running it changed nothing.
    assert_eq!(image.uuid().map(|u| u.to_string()).as_deref(), Some(IMAGE));
    assert_eq!(image.state(), ImageState::Pulled);

    // The events are followed first (follow=1), then the status is read once.
    let order: Vec<String> = mock.requests().iter().map(|r| format!("{} {}", r.method, r.url.path())).collect();
    let events_at = order.iter().position(|r| *r == format!("GET {}", fake::events_path(OP))).expect("events followed");
    let status_at = order.iter().position(|r| *r == format!("GET {}", fake::op_path(OP))).expect("status read");
    assert!(events_at < status_at, "{order:?}");
    let events = &mock.requests_to("GET", &fake::events_path(OP))[0];
    assert_eq!(fake::query(events, "follow").as_deref(), Some("1"));
    assert_eq!(fake::header(events, "accept").as_deref(), Some("text/event-stream"));
    assert_eq!(mock.requests_to("GET", &fake::op_path(OP)).len(), 1);
    assert!(mock.requests_to("DELETE", &fake::op_path(OP)).is_empty(), "a finished run is not cancelled");
}

#[crate::maybe]
pub async fn nonzero_exit_is_a_result_and_check_reports_it() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("partial\n").stderr("ls: /nope: No such file\n").exit(2));
    let done = fake::image(&client).run("ls").args(["-l", "/nope"]).wait().await.expect("a non-zero exit is a result");
    assert_eq!(done.exit_code().unwrap(), 2);
    assert!(!done.exit_status().unwrap().success());

    let err = done.check().unwrap_err();
    assert!(err.is_process_failed(), "{err}");
    assert_eq!(err.exit_code(), Some(2));
    assert_eq!(err.operation_id(), Some(OP));
    let failure = err.process_failure().unwrap();
    assert_eq!(failure.command, ["ls", "-l", "/nope"]);
    assert_eq!(failure.exit_code, 2);
    assert_eq!(failure.stdout, b"partial\n");
    assert_eq!(failure.stderr, b"ls: /nope: No such file\n");
    assert!(err.to_string().contains("ls -l /nope"), "{err}");

    // A zero exit passes check() unchanged, shell commands report `sh -c`.
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("fine\n").exit(1));
    let err = fake::image(&client).shell("exit 1").wait().await.unwrap().check().unwrap_err();
    assert_eq!(err.process_failure().unwrap().command, ["sh", "-c", "exit 1"]);
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("fine\n"));
    let ok = fake::image(&client).run("true").wait().await.unwrap().check().expect("exit 0 passes");
    assert_eq!(ok.stdout().unwrap(), b"fine\n");
}

#[crate::maybe]
pub async fn output_goes_to_a_path_a_writer_or_nowhere() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("to the file\n").stderr("to the writer\n"));
    let image = fake::image(&client);
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout.txt");
    std::fs::write(&out_path, "old content that must be replaced entirely").unwrap();
    let sink = fake::SharedBuf::default();

    let prepared = image
        .run("job")
        .stdout(OutputTarget::path(&out_path))
        .stderr(OutputTarget::writer(Box::new(sink.clone()) as crate::flavor::DynWrite));
    // A clone is the same prepared run (its writer is shared), executed again below.
    let done = prepared.clone().wait().await.expect("run");
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "to the file\n");
    assert_eq!(sink.contents(), b"to the writer\n");
    // The bytes stay readable on the result too.
    assert_eq!(done.stdout().unwrap(), b"to the file\n");
    // The same prepared run again: the writer is reused and appended to.
    prepared.wait().await.expect("second execution");
    assert_eq!(sink.contents(), b"to the writer\nto the writer\n");

    let done = image.run("job").stdout(OutputTarget::discard()).stderr(OutputTarget::text()).wait().await.expect("run");
    assert_eq!(done.stdout().unwrap(), b"");
    assert_eq!(done.stderr_text().unwrap(), "to the writer\n");
}

#[crate::maybe]
pub async fn invalid_utf8_with_text_output_is_a_decode_error() {
    let (mock, client) = fake::setup();
    let mut reply = Reply::ok("");
    reply.stdout = vec![b'o', b'k', 0xff, 0xfe];
    fake::mount_run(&mock, OP, &reply);
    let image = fake::image(&client);
    let err = image.run("cat").stdout(OutputTarget::text()).wait().await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert!(err.to_string().contains("stdout"), "{err}");
    // As bytes the same output is fine.
    let done = image.run("cat").wait().await.expect("bytes");
    assert_eq!(done.stdout().unwrap(), [b'o', b'k', 0xff, 0xfe]);
    assert_eq!(done.stdout_text().unwrap(), "ok\u{fffd}\u{fffd}");
}

#[crate::maybe]
pub async fn tag_on_a_run_patches_the_result_after_success() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("").image(RESULT));
    mock.mount(
        wiremock::Mock::given(method("PATCH")).and(path(format!("/v1/images/{RESULT}/tag"))).respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"uuid": RESULT, "tag": "app:v2", "created_at": "2026-01-01T00:00:00Z"})),
        ),
    );
    let done = fake::image(&client).run("make").disposable(false).tag("app:v2").wait().await.expect("run");
    assert_eq!(done.tag(), Some("app:v2"));
    assert_eq!(done.uuid().map(|u| u.to_string()).as_deref(), Some(RESULT));
    assert_eq!(done.state(), ImageState::Succeeded);
    assert_eq!(done.exit_code().unwrap(), 0, "the tagged result keeps its output");
    let patches = mock.requests_to("PATCH", &format!("/v1/images/{RESULT}/tag"));
    assert_eq!(patches.len(), 1);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&patches[0].body).unwrap(), json!({"tag": "app:v2"}));
    // The tag is not a spawn option: it is applied after success.
    assert!(fake::spawn_body(&mock).get("tag").is_none());
    let order: Vec<String> = mock.requests().iter().map(|r| r.method.to_string()).collect();
    assert_eq!(order.last().map(String::as_str), Some("PATCH"), "{order:?}");
}

#[crate::maybe]
pub async fn tag_on_a_disposable_run_is_rejected_before_any_request() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    let err = fake::image(&client).run("make").tag("app:v2").wait().await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    assert_eq!(err.argument(), Some("tag"));
    assert!(mock.requests().is_empty(), "nothing may be sent for a run that cannot be tagged");
}
