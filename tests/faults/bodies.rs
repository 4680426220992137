//! Bodies that stall half-way: downloads, archives and reads end after `body_idle_timeout`.

use std::time::Duration;

use contree::ErrorKind;

use crate::fault_proxy::{Fault, Rule};

use super::{Clock, behind_proxy, expect_error, timed};

/// Defect 3: with a 1 s idle limit, a body that stalls for 10 s used to be waited for (the
/// limit was `max(transport_timeout, 90 s)` with no setting).
#[crate::maybe]
pub async fn regression_stalled_bodies_honour_body_idle_timeout() {
    let scenario = "regression_stalled_bodies_honour_body_idle_timeout";
    let idle = Duration::from_secs(1);
    let (proxy, _client, base) = behind_proxy(|c| c.body_idle_timeout = idle);
    let img = base
        .shell("head -c 300000 /dev/urandom > /big")
        .disposable(false)
        .wait_timeout(Duration::from_secs(15))
        .wait()
        .await
        .expect("an image with a big file");
    // Healthy first: the file reads whole through the proxy.
    let whole = img.read("/big").await.expect("read");
    assert_eq!(whole.len(), 300_000);

    let stall = || Fault::StallBody { after: 4096, pause: Duration::from_secs(10) };
    proxy.add(Rule::ends_with("GET", "/download", stall()));
    proxy.add(Rule::ends_with("GET", "/archive", stall()));
    let dir = tempfile::tempdir().expect("temp dir");

    let clock = Clock::start();
    let result = img.read("/big").await;
    timed(scenario, "read, body stalls 10 s", idle, clock.took(), &result);
    expect_error(result, ErrorKind::Timeout, "sent no data for 1.0s");

    let target = dir.path().join("big");
    let clock = Clock::start();
    let result = img.download("/big", &target).await;
    timed(scenario, "download, body stalls 10 s", idle, clock.took(), &result);
    expect_error(result, ErrorKind::Timeout, "sent no data for 1.0s");
    assert!(!target.exists(), "a failed download leaves nothing at the target");

    let tar = dir.path().join("big.tar");
    let clock = Clock::start();
    let result = match img.archive("/big").await {
        Ok(archive) => archive.save(&tar).await,
        Err(e) => Err(e),
    };
    timed(scenario, "archive, body stalls 10 s", idle, clock.took(), &result);
    expect_error(result, ErrorKind::Timeout, "sent no data for 1.0s");
    assert!(!tar.exists());
    assert_eq!(proxy.spawns_forwarded(), 1);
}
