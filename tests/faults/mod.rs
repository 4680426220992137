//! Fault scenarios, written once and compiled for both flavors (see `tests/wire/README.md`).
//!
//! Most scenarios put the fault proxy (`tests/support/fault_proxy.rs`) between the SDK and a
//! real contree-local server embedded in the test binary; the regressions of the three
//! defects of issue 8 that need an exact answer sequence use wiremock. Every scenario checks:
//! - no duplicate spawns: `POST /v1/instances` is counted where it reaches the server;
//! - deadlines hold: no call outlives its deadline by more than [`SLACK`];
//! - typed failures: the error's kind, and a Display that says what happened;
//! - no hangs: the entry files bound every scenario by an outer limit.
//!
//! Each measured call prints one `FAULT-TIMING | flavor | scenario | outcome | took | deadline`
//! line (visible with `--nocapture`).

use std::time::{Duration, Instant};

use contree::{ContreeConfig, ErrorKind, RetryPolicy};

use crate::fault_proxy::FaultProxy;
use crate::flavor::{Client, Image};

mod bodies;
mod regressions;
mod restart;
mod spawn;
mod statuses;
mod streams;

pub use bodies::*;
pub use regressions::*;
pub use restart::*;
pub use spawn::*;
pub use statuses::*;
pub use streams::*;

/// The scenarios of both flavors, kept in one place so none runs in one flavor only.
#[macro_export]
macro_rules! fault_scenarios {
    ($m:ident) => {
        $m!(
            // regressions of issue 8's defects (wiremock)
            regression_stream_ending_without_completion_finishes_from_the_status,
            regression_retry_after_past_the_deadline_ends_at_the_deadline,
            regression_spawn_retry_after_past_the_deadline_is_a_timeout_with_the_hint,
            // event streams (proxy + contree-local)
            events_cut_inside_an_event_resume_without_duplicates,
            events_cut_after_each_kind_of_event_resume_without_duplicates,
            stream_ends_without_completion_after_the_run_finished,
            stream_ends_without_completion_while_the_run_is_still_going,
            stalled_event_stream_reconnects_after_the_keepalive_window,
            // status bursts
            bursts_with_retry_after_inside_the_deadline_are_ridden_out,
            bursts_with_retry_after_past_the_deadline_end_at_the_deadline,
            events_410_with_retry_after_past_a_2s_deadline,
            events_403_is_a_forbidden_error,
            spawn_503_is_not_replayed,
            // bodies
            regression_stalled_bodies_honour_body_idle_timeout,
            // spawn transport faults and slow servers
            spawn_connection_dropped_before_it_reached_the_server,
            spawn_connection_dropped_after_the_server_took_it,
            slow_server_just_under_the_deadline,
            slow_server_just_over_the_deadline,
            slow_spawn_past_the_deadline,
            // restart
            server_restart_mid_run
        );
    };
}

/// How far past its deadline a call may end (the cancel of a timed-out run included).
pub const SLACK: Duration = Duration::from_secs(1);

/// One measured call: prints its timing line and checks the deadline held.
pub fn timed<T>(scenario: &str, case: &str, deadline: Duration, took: Duration, result: &contree::Result<T>) {
    let outcome = match result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?}: {e}", e.kind()),
    };
    println!(
        "FAULT-TIMING | {} | {scenario} | {case} | {outcome} | {:.2}s | {:.1}s",
        crate::flavor::NAME,
        took.as_secs_f64(),
        deadline.as_secs_f64()
    );
    assert!(
        took <= deadline + SLACK,
        "{scenario} ({case}): took {took:?}, more than {SLACK:?} past its deadline {deadline:?}: {outcome}"
    );
}

/// The error of `result`, checked to be of `kind` with a Display containing `says`.
pub fn expect_error<T: std::fmt::Debug>(result: contree::Result<T>, kind: ErrorKind, says: &str) -> contree::Error {
    let err = result.expect_err("the call should fail");
    assert_eq!(err.kind(), kind, "unexpected error: {err}");
    let shown = err.to_string();
    assert!(shown.contains(says), "the error should say `{says}`: {shown}");
    assert!(!shown.contains(crate::local::local_server().token()), "the token leaked: {shown}");
    err
}

/// A clock for one call.
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn took(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Settings for a client behind the proxy: quick retries so bursts resolve in well under a
/// second, and everything else at its default unless `tune` changes it.
pub fn config_for(base_url: &str, token: &str, tune: impl FnOnce(&mut ContreeConfig)) -> ContreeConfig {
    let mut config = ContreeConfig::default().with_base_url(base_url).with_token(token.to_string());
    config.retry = RetryPolicy {
        max_attempts: 4,
        delays: vec![Duration::from_millis(50), Duration::from_millis(100), Duration::from_millis(200)],
        jitter: 0.0,
        retry_after_cap: Duration::from_secs(30),
    };
    config.operation_poll_min = Duration::from_millis(50);
    config.operation_poll_max = Duration::from_millis(500);
    config.transport_timeout = Duration::from_secs(5);
    tune(&mut config);
    config
}

/// A proxy in front of the shared embedded server, a client through it, and the base image.
pub fn behind_proxy(tune: impl FnOnce(&mut ContreeConfig)) -> (FaultProxy, Client, Image) {
    let server = crate::local::local_server();
    let proxy = FaultProxy::start(server.base_url());
    let client = Client::new(config_for(&proxy.url(), server.token(), tune)).expect("client");
    let base = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("base image");
    (proxy, client, base)
}

/// The operation id of a finished run's result.
pub fn op_of(image: &Image) -> String {
    image.output().expect("a run result").operation_id.to_string()
}

/// Whether the proxy saw (and forwarded) a cancel of `op`.
pub fn cancelled(proxy: &FaultProxy, op: &str) -> bool {
    proxy.seen_to("DELETE", &format!("/v1/operations/{op}")).iter().any(|s| s.forwarded)
}
