//! The server stops in the middle of a run and comes back on the same data dir.

use std::time::Duration;

use contree::ErrorKind;
use contree_local::{LocalConfig, LocalServer};

use crate::fault_proxy::FaultProxy;
use crate::flavor::Client;

use super::{Clock, config_for, expect_error, timed};

const TOKEN: &str = "fault-suite-restart-token";

#[crate::maybe]
pub async fn server_restart_mid_run() {
    let scenario = "server_restart_mid_run";
    let dir = tempfile::tempdir().expect("data dir");
    let data = dir.path().to_path_buf();
    let config = move || LocalConfig::default().with_data_dir(data.clone()).with_token(TOKEN);
    let first_config = config.clone();
    let first = crate::flavor::off_runtime(move || LocalServer::start_blocking(first_config()).expect("server")).await;
    let proxy = std::sync::Arc::new(FaultProxy::start(first.base_url()));
    let client = Client::new(config_for(&proxy.url(), TOKEN, |_| {})).expect("client");
    let base = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("base");

    // A second thread takes the server away one second into the run: the proxy breaks the
    // open event stream and answers 502 (as a reverse proxy does when its server is gone), the
    // server stops, and starts again on the same data dir; the proxy then points at the new
    // one (its port changed) and the outage ends.
    let restarter = {
        let proxy = proxy.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            proxy.set_down(true);
            drop(first);
            let second = LocalServer::start_blocking(config()).expect("restart the server");
            proxy.set_upstream(second.base_url());
            proxy.set_down(false);
            second
        })
    };
    let deadline = Duration::from_secs(20);
    let clock = Clock::start();
    let result = base.shell("sleep 4; echo survived").wait_timeout(deadline).wait().await;
    timed(scenario, "wait, server restarted after 1 s", deadline, clock.took(), &result);
    let second = crate::flavor::off_runtime(move || restarter.join().expect("restarter")).await;
    // The run was killed with the server: it failed, and the error says why (a clean stop
    // records "the server shut down"; a crash is found at start as "server restarted").
    let err = expect_error(result, ErrorKind::OperationFailed, "server");
    let shown = err.to_string();
    assert!(shown.contains("shut down") || shown.contains("restarted"), "{shown}");
    assert!(err.operation_id().is_some(), "{err}");
    let outage: Vec<_> = proxy.seen().into_iter().filter(|s| !s.forwarded && s.fault.is_some()).collect();
    assert!(!outage.is_empty(), "the client kept asking during the outage");
    assert!(outage.iter().all(|s| s.method == "GET"), "only reads were retried during the outage: {outage:?}");
    let op = err.operation_id().unwrap();
    let after = proxy.seen().into_iter().filter(|s| s.forwarded && s.path.contains(op)).count();
    assert!(after >= 2, "the answer came from the restarted server after the outage");
    assert_eq!(proxy.spawns_forwarded(), 1);

    // The restarted server serves the same client.
    let clock = Clock::start();
    let result = base.shell("echo again").wait_timeout(deadline).wait().await;
    timed(scenario, "wait, after the restart", deadline, clock.took(), &result);
    assert_eq!(result.expect("after restart").stdout_text().unwrap(), "again\n");
    assert_eq!(proxy.spawns_forwarded(), 2);
    crate::flavor::off_runtime(move || drop(second)).await;
}
