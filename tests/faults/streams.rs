//! Event streams that break: cut mid-event or after an event, ended without `completion`,
//! or silent past the keep-alive window.

use std::time::Duration;

use crate::fault_proxy::{Cut, Fault, Rule};
use crate::flavor::RunEvent;

use super::{Clock, behind_proxy, timed};

/// The run's events, each as a short name; fails on any error.
#[crate::maybe]
async fn event_names(run: &crate::flavor::PreparedRun) -> contree::Result<Vec<String>> {
    let mut names = Vec::new();
    for event in crate::flavor::collect_events(run).await {
        names.push(match event? {
            RunEvent::Stdout(b) => format!("stdout:{}", String::from_utf8_lossy(&b)),
            RunEvent::Stderr(b) => format!("stderr:{}", String::from_utf8_lossy(&b)),
            RunEvent::Exit(s) => format!("exit:{}", s.code_or_minus_one()),
            RunEvent::Finished(_) => "finished".to_string(),
            _ => "unexpected event".to_string(),
        });
    }
    Ok(names)
}

/// Everything the named events printed on one stream, in order.
fn printed(names: &[String], stream: &str) -> String {
    names.iter().filter_map(|n| n.strip_prefix(&format!("{stream}:"))).collect()
}

#[crate::maybe]
pub async fn events_cut_inside_an_event_resume_without_duplicates() {
    let scenario = "events_cut_inside_an_event_resume_without_duplicates";
    let (proxy, _client, base) = behind_proxy(|_| {});
    proxy.add(Rule::ends_with("GET", "/events", Fault::CutEvents(Cut::Inside { event: "stdout" })).times(1));
    let deadline = Duration::from_secs(15);
    let run = base.shell("echo one; echo two >&2; echo three").wait_timeout(deadline);
    let clock = Clock::start();
    let result = event_names(&run).await;
    timed(scenario, "stream, cut inside the first stdout event", deadline, clock.took(), &result);
    let names = result.expect("the stream survives the cut");
    assert_eq!(printed(&names, "stdout"), "one\nthree\n", "{names:?}");
    assert_eq!(printed(&names, "stderr"), "two\n", "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("exit:")).count(), 1, "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("finished"));
    let connects = proxy.event_connects();
    assert_eq!(connects.len(), 2, "one reconnect: {connects:?}");
    assert!(connects[1].last_event_id.is_some(), "the reconnect resumes: {connects:?}");
    assert_eq!(proxy.spawns_forwarded(), 1);
}

#[crate::maybe]
pub async fn events_cut_after_each_kind_of_event_resume_without_duplicates() {
    let scenario = "events_cut_after_each_kind_of_event_resume_without_duplicates";
    let (proxy, _client, base) = behind_proxy(|_| {});
    let deadline = Duration::from_secs(15);
    for (i, kind) in ["init", "spawn", "stdout", "stderr", "exit", "shutdown"].into_iter().enumerate() {
        let before = proxy.event_connects().len();
        proxy.add(
            Rule::ends_with("GET", "/events", Fault::CutEvents(Cut::After { event: kind, clean: false })).times(1),
        );
        let run = base.shell("echo out; echo err >&2").wait_timeout(deadline);
        let clock = Clock::start();
        let result = event_names(&run).await;
        timed(scenario, &format!("stream, broken after `{kind}`"), deadline, clock.took(), &result);
        let names = result.unwrap_or_else(|e| panic!("cut after {kind}: {e}"));
        assert_eq!(names, ["stdout:out\n", "stderr:err\n", "exit:0", "finished"], "cut after {kind}");
        let connects = &proxy.event_connects()[before..];
        assert_eq!(connects.len(), 2, "cut after {kind}: the cut happened and one reconnect followed: {connects:?}");
        assert!(connects[1].last_event_id.is_some(), "cut after {kind}: {connects:?}");
        assert_eq!(proxy.spawns_forwarded(), i + 1, "cut after {kind}: one spawn per run");
    }
}

#[crate::maybe]
pub async fn stream_ends_without_completion_after_the_run_finished() {
    let scenario = "stream_ends_without_completion_after_the_run_finished";
    let (proxy, _client, base) = behind_proxy(|_| {});
    // Every connect ends cleanly just before `completion`: the stream never says it is done.
    proxy.add(Rule::ends_with("GET", "/events", Fault::CutEvents(Cut::Before { event: "completion" })));
    let deadline = Duration::from_secs(10);
    let clock = Clock::start();
    let result = base.shell("echo finished").disposable(false).wait_timeout(deadline).wait().await;
    timed(scenario, "wait", deadline, clock.took(), &result);
    let done = result.expect("the run succeeded");
    assert_eq!(done.stdout_text().unwrap(), "finished\n");
    assert!(done.uuid().is_some());
    assert!(clock.took() < Duration::from_secs(5), "finished from the status: {:?}", clock.took());
    let op = super::op_of(&done);
    assert!(!proxy.seen_to("GET", &format!("/v1/operations/{op}")).is_empty(), "the status was read");
    assert!(proxy.event_connects().len() <= 4, "no reconnect loop: {:?}", proxy.event_connects());
    assert!(!super::cancelled(&proxy, &op), "a finished run is never cancelled");

    let run = base.shell("echo streamed").wait_timeout(deadline);
    let clock = Clock::start();
    let result = event_names(&run).await;
    timed(scenario, "stream", deadline, clock.took(), &result);
    let names = result.expect("stream");
    assert_eq!(printed(&names, "stdout"), "streamed\n", "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("exit:")).count(), 1, "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("finished"));
    assert_eq!(proxy.spawns_forwarded(), 2);
}

#[crate::maybe]
pub async fn stream_ends_without_completion_while_the_run_is_still_going() {
    let scenario = "stream_ends_without_completion_while_the_run_is_still_going";
    let (proxy, _client, base) = behind_proxy(|_| {});
    proxy.add(Rule::ends_with("GET", "/events", Fault::CutEvents(Cut::After { event: "spawn", clean: true })).times(1));
    let deadline = Duration::from_secs(15);
    let clock = Clock::start();
    let result = base.shell("sleep 1; echo late").wait_timeout(deadline).wait().await;
    timed(scenario, "wait", deadline, clock.took(), &result);
    let done = result.expect("the run succeeded");
    assert_eq!(done.stdout_text().unwrap(), "late\n");
    let op = super::op_of(&done);
    let connects = proxy.event_connects();
    assert_eq!(connects.len(), 2, "the status said EXECUTING, so one reconnect: {connects:?}");
    assert!(connects[1].last_event_id.is_some(), "{connects:?}");
    assert!(!proxy.seen_to("GET", &format!("/v1/operations/{op}")).is_empty(), "the status was read first");
    assert_eq!(proxy.spawns_forwarded(), 1);
}

#[crate::maybe]
pub async fn stalled_event_stream_reconnects_after_the_keepalive_window() {
    let scenario = "stalled_event_stream_reconnects_after_the_keepalive_window";
    let (proxy, _client, base) = behind_proxy(|c| c.sse_keepalive_timeout = Duration::from_secs(1));
    proxy
        .add(Rule::ends_with("GET", "/events", Fault::StallBody { after: 0, pause: Duration::from_secs(20) }).times(1));
    let deadline = Duration::from_secs(10);
    let clock = Clock::start();
    let result = base.shell("echo through").wait_timeout(deadline).wait().await;
    let took = clock.took();
    timed(scenario, "wait, first stream silent for 20 s", deadline, took, &result);
    let done = result.expect("the run succeeded");
    assert_eq!(done.stdout_text().unwrap(), "through\n");
    assert!(took < Duration::from_secs(4), "the silent stream was dropped after about 1 s: {took:?}");
    assert_eq!(proxy.event_connects().len(), 2);
    assert_eq!(proxy.spawns_forwarded(), 1);

    // Silent until the deadline: the wait ends at the deadline, not at the server's pace.
    proxy.add(Rule::ends_with("GET", "/events", Fault::StallBody { after: 0, pause: Duration::from_secs(20) }));
    let deadline = Duration::from_secs(3);
    let clock = Clock::start();
    let result = base.shell("sleep 20").wait_timeout(deadline).wait().await;
    timed(scenario, "wait, every stream silent", deadline, clock.took(), &result);
    let err = super::expect_error(result, contree::ErrorKind::OperationTimedOut, "did not finish within");
    let op = err.operation_id().expect("the error names the operation").to_string();
    assert!(super::cancelled(&proxy, &op), "the timed-out run is cancelled");
    assert_eq!(proxy.spawns_forwarded(), 2);
}
