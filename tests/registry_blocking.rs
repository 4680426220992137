//! Registry imports against a real registry, blocking flavor (scenarios in `registry/mod.rs`).
#![cfg(feature = "blocking")]

pub(crate) use maybe_async::must_be_sync as maybe;

#[path = "support/local.rs"]
mod support_local;

mod support {
    #[path = "../support/registry.rs"]
    pub mod registry;
}

mod flavor {
    pub use contree::blocking::{ContreeImageSync as Image, ContreeSync as Client};

    /// Names the scenarios' repositories apart from the async suite's.
    pub const NAME: &str = "blocking";

    /// A client for the shared embedded server, and its built-in base image.
    pub fn backend() -> (Client, Image) {
        let server = crate::support_local::local_server();
        let client = Client::builder().base_url(server.base_url()).token(server.token()).build().expect("client");
        let base = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("base image");
        (client, base)
    }
}

#[path = "registry/mod.rs"]
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

registry_scenarios!(blocking_tests);
