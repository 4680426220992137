//! Connections dropped around a spawn, and servers slower than the caller's deadline.

use std::time::Duration;

use contree::ErrorKind;

use crate::fault_proxy::{Fault, Rule};

use super::{Clock, behind_proxy, cancelled, expect_error, timed};

#[crate::maybe]
pub async fn spawn_connection_dropped_before_it_reached_the_server() {
    let scenario = "spawn_connection_dropped_before_it_reached_the_server";
    let (proxy, _client, base) = behind_proxy(|_| {});
    proxy.add(Rule::exact("POST", "/v1/instances", Fault::DropBeforeForward).times(1));
    let deadline = Duration::from_secs(10);
    let clock = Clock::start();
    let result = base.shell("echo once").wait_timeout(deadline).wait().await;
    timed(scenario, "wait", deadline, clock.took(), &result);
    // The client cannot know the server never saw it, so it must not resend a spawn.
    let err = expect_error(result, ErrorKind::Transport, "connection lost during POST");
    assert!(err.to_string().contains("POST"), "the error names the request: {err}");
    assert_eq!(proxy.seen_to("POST", "/v1/instances").len(), 1, "not resent");
    assert_eq!(proxy.spawns_forwarded(), 0);

    // The same client works once the link is back.
    let result = base.shell("echo once").wait_timeout(deadline).wait().await;
    assert_eq!(result.expect("healed").stdout_text().unwrap(), "once\n");
    assert_eq!(proxy.spawns_forwarded(), 1);
}

#[crate::maybe]
pub async fn spawn_connection_dropped_after_the_server_took_it() {
    let scenario = "spawn_connection_dropped_after_the_server_took_it";
    let (proxy, _client, base) = behind_proxy(|_| {});
    proxy.add(Rule::exact("POST", "/v1/instances", Fault::DropAfterForward).times(1));
    let deadline = Duration::from_secs(10);
    let clock = Clock::start();
    let result = base.shell("echo once").wait_timeout(deadline).wait().await;
    timed(scenario, "wait", deadline, clock.took(), &result);
    expect_error(result, ErrorKind::Transport, "connection lost during POST");
    assert_eq!(proxy.seen_to("POST", "/v1/instances").len(), 1, "a spawn the server may have taken is never resent");
    assert_eq!(proxy.spawns_forwarded(), 1, "the server ran it once");
}

#[crate::maybe]
pub async fn slow_server_just_under_the_deadline() {
    let scenario = "slow_server_just_under_the_deadline";
    let (proxy, _client, base) = behind_proxy(|_| {});
    let deadline = Duration::from_secs(4);
    // Every answer is late; together they end about a second before the deadline.
    let latency = Duration::from_millis(700);
    proxy.add(Rule::exact("POST", "/v1/instances", Fault::Delay(latency)));
    proxy.add(Rule::ends_with("GET", "/events", Fault::Delay(latency)));
    proxy.add(Rule::contains("GET", "/v1/operations/", Fault::Delay(latency)));
    let clock = Clock::start();
    let result = base.shell("echo slow").wait_timeout(deadline).wait().await;
    let took = clock.took();
    timed(scenario, "wait, 0.7 s per answer", deadline, took, &result);
    assert_eq!(result.expect("in time").stdout_text().unwrap(), "slow\n");
    assert!(took >= latency * 2, "the latency was there: {took:?}");
    assert_eq!(proxy.spawns_forwarded(), 1);
}

#[crate::maybe]
pub async fn slow_server_just_over_the_deadline() {
    let scenario = "slow_server_just_over_the_deadline";
    let (proxy, _client, base) = behind_proxy(|_| {});
    let deadline = Duration::from_secs(2);
    // The event stream answers 0.5 s after the deadline.
    proxy.add(Rule::ends_with("GET", "/events", Fault::Delay(deadline + Duration::from_millis(500))));
    let clock = Clock::start();
    let result = base.shell("sleep 30").wait_timeout(deadline).wait().await;
    timed(scenario, "wait, events answer at deadline + 0.5 s", deadline, clock.took(), &result);
    let err = expect_error(result, ErrorKind::OperationTimedOut, "did not finish within");
    assert!(cancelled(&proxy, err.operation_id().unwrap()), "the timed-out run is cancelled");
    assert_eq!(proxy.spawns_forwarded(), 1);
}

#[crate::maybe]
pub async fn slow_spawn_past_the_deadline() {
    let scenario = "slow_spawn_past_the_deadline";
    let (proxy, _client, base) = behind_proxy(|_| {});
    let deadline = Duration::from_millis(1500);
    proxy.add(Rule::exact("POST", "/v1/instances", Fault::Delay(Duration::from_millis(2500))));
    let clock = Clock::start();
    let result = base.shell("true").wait_timeout(deadline).wait().await;
    timed(scenario, "wait, spawn answered after 2.5 s", deadline, clock.took(), &result);
    expect_error(result, ErrorKind::Timeout, "timed out");
    assert_eq!(proxy.seen_to("POST", "/v1/instances").len(), 1, "a spawn that timed out is not resent");
    assert!(proxy.spawns_forwarded() <= 1);
}
