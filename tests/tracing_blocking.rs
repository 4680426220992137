//! The SDK's span tree, blocking flavor, against an embedded contree-local server.
#![cfg(feature = "blocking")]

pub(crate) use maybe_async::must_be_sync as maybe;

mod support {
    #[path = "../support/local.rs"]
    mod local;
    pub use local::local_server;
    #[path = "../support/registry.rs"]
    pub mod registry;
}

mod flavor {
    pub use contree::blocking::{ContreeImageSync as Image, ContreeSync as Client, RunEventSync as RunEvent};

    /// Names the scenarios' registry repositories apart from the other flavor's.
    pub const NAME: &str = "blocking";
}

#[path = "tracing/mod.rs"]
mod scenarios;

macro_rules! blocking_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                scenarios::$name()
            }
        )*
    };
}

tracing_scenarios!(blocking_tests);
