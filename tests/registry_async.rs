//! Registry imports against a real registry, async flavor (scenarios in `registry/mod.rs`).
#![cfg(feature = "async")]

pub(crate) use maybe_async::must_be_async as maybe;

#[path = "support/local.rs"]
mod support_local;

mod support {
    #[path = "../support/registry.rs"]
    pub mod registry;
}

mod flavor {
    pub use contree::{Contree as Client, ContreeImage as Image};

    /// Names the scenarios' repositories apart from the blocking suite's.
    pub const NAME: &str = "async";

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

macro_rules! async_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                scenarios::$name().await
            }
        )*
    };
}

registry_scenarios!(async_tests);

