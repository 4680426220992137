//! Fault-injection suite, blocking flavor: the scenarios of `tests/faults/` against a real
//! contree-local behind the fault proxy (and scripted wiremock sequences).
//!
//! Plain `#[test]`s, outside any runtime (reqwest::blocking panics inside one). Run with
//! `--nocapture` to see each call's outcome and time against its deadline (`FAULT-TIMING`).
#![cfg(feature = "blocking")]

pub(crate) use maybe_async::must_be_sync as maybe;

mod support;

#[path = "support/fault_proxy.rs"]
mod fault_proxy;

#[path = "support/local.rs"]
mod local;

mod flavor {
    pub use contree::blocking::{
        ContreeImageSync as Image, ContreeSync as Client, PreparedRunSync as PreparedRun, RunEventSync as RunEvent,
    };

    /// The flavor's name in the timing lines.
    pub const NAME: &str = "blocking";

    /// Every item of the run's event `Iterator`.
    pub fn collect_events(run: &PreparedRun) -> Vec<contree::Result<RunEvent>> {
        run.clone().stream().collect()
    }

    /// Runs `work` on a plain thread and waits for it.
    pub fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(work).join().expect("helper thread")
    }
}

#[path = "wire/exec/fake.rs"]
mod fake;

#[path = "faults/mod.rs"]
mod scenarios;

/// No scenario may take longer than this, whatever the SDK does.
const OUTER_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

macro_rules! blocking_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (tx, rx) = std::sync::mpsc::channel();
                let scenario = std::thread::spawn(move || {
                    scenarios::$name();
                    let _ = tx.send(());
                });
                match rx.recv_timeout(OUTER_LIMIT) {
                    Ok(()) => scenario.join().expect("scenario thread"),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        panic!("{} hung: no answer within {OUTER_LIMIT:?}", stringify!($name))
                    }
                    // The scenario panicked: report its own message.
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        if let Err(panic) = scenario.join() {
                            std::panic::resume_unwind(panic)
                        }
                    }
                }
            }
        )*
    };
}

fault_scenarios!(blocking_tests);
