//! The SDK's span tree, async flavor, against an embedded contree-local server.
#![cfg(feature = "async")]

pub(crate) use maybe_async::must_be_async as maybe;

mod support {
    #[path = "../support/local.rs"]
    mod local;
    pub use local::local_server;
    #[path = "../support/registry.rs"]
    pub mod registry;
}

mod flavor {
    pub use contree::{Contree as Client, ContreeImage as Image, RunEvent};

    /// Names the scenarios' registry repositories apart from the other flavor's.
    pub const NAME: &str = "async";
}

#[path = "tracing/mod.rs"]
mod scenarios;

macro_rules! async_tests {
    ($($name:ident),* $(,)?) => {
        $(
            // One thread: the subscriber is the thread's default, and every task the SDK
            // spawns runs here too (the SDK also carries the subscriber into its tasks).
            #[tokio::test(flavor = "current_thread")]
            async fn $name() {
                scenarios::$name().await
            }
        )*
    };
}

tracing_scenarios!(async_tests);
