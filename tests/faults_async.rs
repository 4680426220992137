//! Fault-injection suite, async flavor: the scenarios of `tests/faults/` against a real
//! contree-local behind the fault proxy (and scripted wiremock sequences).
//!
//! Run with `--nocapture` to see each call's outcome and time against its deadline
//! (`FAULT-TIMING` lines).
#![cfg(feature = "async")]

pub(crate) use maybe_async::must_be_async as maybe;

mod support;

#[path = "support/fault_proxy.rs"]
mod fault_proxy;

#[path = "support/local.rs"]
mod local;

mod flavor {
    pub use contree::{Contree as Client, ContreeImage as Image, PreparedRun, RunEvent};

    /// The flavor's name in the timing lines.
    pub const NAME: &str = "async";

    /// Every item of the run's event `Stream`.
    pub async fn collect_events(run: &PreparedRun) -> Vec<contree::Result<RunEvent>> {
        use futures_util::StreamExt;
        run.clone().stream().collect().await
    }

    /// Runs `work` on a plain thread (starting and stopping an embedded server must happen
    /// outside any runtime) and waits for it without blocking the runtime.
    pub async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(work());
        });
        rx.await.expect("helper thread")
    }
}

#[path = "wire/exec/fake.rs"]
mod fake;

#[path = "faults/mod.rs"]
mod scenarios;

/// No scenario may take longer than this, whatever the SDK does.
const OUTER_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

macro_rules! async_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                match tokio::time::timeout(OUTER_LIMIT, scenarios::$name()).await {
                    Ok(()) => {}
                    Err(_) => panic!("{} hung: no answer within {OUTER_LIMIT:?}", stringify!($name)),
                }
            }
        )*
    };
}

fault_scenarios!(async_tests);
