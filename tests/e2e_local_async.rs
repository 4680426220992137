//! End-to-end suite, async flavor, against an embedded contree-local server.
#![cfg(feature = "async")]

pub(crate) use maybe_async::must_be_async as maybe;

#[path = "support/local.rs"]
mod support;

mod flavor {
    pub use contree::{Contree as Client, ContreeImage as Image, OutputTarget, Stdin, UploadFileSpec};

    /// A client for the shared embedded server, and its built-in base image.
    ///
    /// Over h2c, as `LocalServer::client_config` sets it up; the blocking suite speaks
    /// HTTP/1.1 to the same scenarios, so both protocols run end to end.
    pub fn backend() -> (Client, Image) {
        let server = crate::support::local_server();
        let client = Client::builder().config(server.client_config()).build().expect("client");
        let base = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("base image");
        (client, base)
    }
}

#[path = "e2e/mod.rs"]
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

e2e_scenarios!(async_tests);
