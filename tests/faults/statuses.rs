//! Bursts of 5xx, 429, 425 and 410 answers, with `Retry-After` inside and past the deadline,
//! and a 403 on the event stream.

use std::time::Duration;

use contree::ErrorKind;

use crate::fault_proxy::{Fault, Rule};

use super::{Clock, behind_proxy, cancelled, expect_error, timed};

#[crate::maybe]
pub async fn bursts_with_retry_after_inside_the_deadline_are_ridden_out() {
    let scenario = "bursts_with_retry_after_inside_the_deadline_are_ridden_out";
    let (proxy, _client, base) = behind_proxy(|_| {});
    let deadline = Duration::from_secs(8);
    let mut runs = 0;
    // On the event stream: two answers of each status, each asking for 0.3 s.
    for status in [500u16, 502, 503, 429, 425, 410] {
        proxy.add(Rule::ends_with("GET", "/events", Fault::Status { status, retry_after: Some("0.3") }).times(2));
        let clock = Clock::start();
        let result = base.shell("echo ok").wait_timeout(deadline).wait().await;
        timed(scenario, &format!("events {status} x2, Retry-After 0.3 s"), deadline, clock.took(), &result);
        runs += 1;
        assert_eq!(result.expect("the burst is ridden out").stdout_text().unwrap(), "ok\n", "{status}");
        assert_eq!(proxy.spawns_forwarded(), runs);
    }
    // On the spawn: 429 then 425, which the server answers before doing anything, so even a
    // spawn is resent, once each.
    proxy.add(Rule::exact("POST", "/v1/instances", Fault::Status { status: 429, retry_after: Some("0.3") }).times(1));
    proxy.add(Rule::exact("POST", "/v1/instances", Fault::Status { status: 425, retry_after: Some("0.3") }).times(1));
    let posts_before = proxy.seen_to("POST", "/v1/instances").len();
    let clock = Clock::start();
    let result = base.shell("echo spawned").wait_timeout(deadline).wait().await;
    timed(scenario, "spawn 429 then 425, Retry-After 0.3 s", deadline, clock.took(), &result);
    assert_eq!(result.expect("spawned after the burst").stdout_text().unwrap(), "spawned\n");
    assert_eq!(proxy.seen_to("POST", "/v1/instances").len() - posts_before, 3, "two refused, one taken");
    assert_eq!(proxy.spawns_forwarded(), runs + 1, "exactly one spawn reached the server");
}

#[crate::maybe]
pub async fn bursts_with_retry_after_past_the_deadline_end_at_the_deadline() {
    let scenario = "bursts_with_retry_after_past_the_deadline_end_at_the_deadline";
    let (proxy, _client, base) = behind_proxy(|_| {});
    let deadline = Duration::from_millis(1500);
    let mut spawned = 0;
    for status in [503u16, 429, 425, 410] {
        proxy.heal();
        proxy.add(Rule::ends_with("GET", "/events", Fault::Status { status, retry_after: Some("4") }));
        let clock = Clock::start();
        let result = base.shell("sleep 30").wait_timeout(deadline).wait().await;
        let took = clock.took();
        timed(scenario, &format!("events {status}, Retry-After 4 s"), deadline, took, &result);
        spawned += 1;
        let err = expect_error(result, ErrorKind::OperationTimedOut, "did not finish within");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(4)), "{status}: the hint is kept");
        assert!(err.to_string().contains("asked to retry after 4.0s"), "{err}");
        assert!(took >= deadline - Duration::from_millis(100), "{status}: the wait used its time: {took:?}");
        let op = err.operation_id().expect("operation id").to_string();
        assert!(cancelled(&proxy, &op), "{status}: the timed-out run is cancelled");
        assert_eq!(proxy.spawns_forwarded(), spawned);
    }
    for status in [429u16, 425] {
        proxy.heal();
        proxy.add(Rule::exact("POST", "/v1/instances", Fault::Status { status, retry_after: Some("4") }));
        let posts_before = proxy.seen_to("POST", "/v1/instances").len();
        let clock = Clock::start();
        let result = base.shell("echo never").wait_timeout(deadline).wait().await;
        timed(scenario, &format!("spawn {status}, Retry-After 4 s"), deadline, clock.took(), &result);
        let err = expect_error(result, ErrorKind::Timeout, "retry after 4.0s");
        assert!(err.to_string().contains(&format!("HTTP {status}")), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(4)));
        assert_eq!(proxy.seen_to("POST", "/v1/instances").len() - posts_before, 1, "not resent past the deadline");
        assert_eq!(proxy.spawns_forwarded(), spawned, "nothing reached the server");
    }
}

/// The case of the issue: a 2 s wait, an events route answering 410 with `Retry-After: 3`.
#[crate::maybe]
pub async fn events_410_with_retry_after_past_a_2s_deadline() {
    let scenario = "events_410_with_retry_after_past_a_2s_deadline";
    let (proxy, _client, base) = behind_proxy(|_| {});
    proxy.add(Rule::ends_with("GET", "/events", Fault::Status { status: 410, retry_after: Some("3") }));
    let deadline = Duration::from_secs(2);
    let clock = Clock::start();
    let result = base.shell("sleep 30").wait_timeout(deadline).wait().await;
    let took = clock.took();
    timed(scenario, "wait", deadline, took, &result);
    let err = expect_error(result, ErrorKind::OperationTimedOut, "did not finish within");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(proxy.event_connects().len() <= 2, "no retry inside a Retry-After: {:?}", proxy.event_connects());
    assert!(cancelled(&proxy, err.operation_id().unwrap()));
    assert_eq!(proxy.spawns_forwarded(), 1);
}

#[crate::maybe]
pub async fn events_403_is_a_forbidden_error() {
    let scenario = "events_403_is_a_forbidden_error";
    let (proxy, _client, base) = behind_proxy(|_| {});
    proxy.add(Rule::ends_with("GET", "/events", Fault::Status { status: 403, retry_after: None }));
    let deadline = Duration::from_secs(10);
    let clock = Clock::start();
    let result = base.shell("sleep 30").wait_timeout(deadline).wait().await;
    let took = clock.took();
    timed(scenario, "wait", deadline, took, &result);
    let err = expect_error(result, ErrorKind::Forbidden, "HTTP 403");
    assert!(err.operation_id().is_some(), "the error names the operation: {err}");
    assert!(took < Duration::from_secs(2), "a 403 is final at once: {took:?}");
    assert_eq!(proxy.event_connects().len(), 1, "a 403 is not retried");
    assert_eq!(proxy.spawns_forwarded(), 1);
}

#[crate::maybe]
pub async fn spawn_503_is_not_replayed() {
    let scenario = "spawn_503_is_not_replayed";
    let (proxy, _client, base) = behind_proxy(|_| {});
    proxy.add(Rule::exact("POST", "/v1/instances", Fault::Status { status: 503, retry_after: Some("0.1") }));
    let deadline = Duration::from_secs(5);
    let clock = Clock::start();
    let result = base.shell("echo never").wait_timeout(deadline).wait().await;
    timed(scenario, "wait", deadline, clock.took(), &result);
    expect_error(result, ErrorKind::Server, "HTTP 503");
    assert_eq!(proxy.seen_to("POST", "/v1/instances").len(), 1, "a spawn is never resent after a 5xx");
    assert_eq!(proxy.spawns_forwarded(), 0);
}
