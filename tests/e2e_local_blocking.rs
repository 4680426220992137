//! End-to-end suite, blocking flavor, against an embedded contree-local server.
#![cfg(feature = "blocking")]

pub(crate) use maybe_async::must_be_sync as maybe;

#[path = "support/local.rs"]
mod support;

mod flavor {
    pub use contree::UploadFileSpec;
    pub use contree::blocking::{
        ContreeImageSync as Image, ContreeSync as Client, OutputTargetSync as OutputTarget, StdinSync as Stdin,
    };

    /// A client for the shared embedded server, and its built-in base image.
    pub fn backend() -> (Client, Image) {
        let server = crate::support::local_server();
        // HTTP/1.1 (the default for plain http://); the async suite runs the same scenarios
        // over h2c.
        let client = Client::builder().base_url(server.base_url()).token(server.token()).build().expect("client");
        let base = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("base image");
        (client, base)
    }
}

#[path = "e2e/mod.rs"]
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

e2e_scenarios!(blocking_tests);
