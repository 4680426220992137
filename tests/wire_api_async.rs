//! The `api` wire suite, async flavor: `contree::Contree` against wiremock.
//!
//! The scenarios live in `tests/wire/api/` and are shared with `wire_api_blocking.rs`.
#![cfg(feature = "async")]

pub(crate) use maybe_async::must_be_async as maybe;

mod support;

/// The async types under the names the scenarios use, plus the few helpers whose shape
/// differs per flavor (`Stream` here, `Iterator` in the blocking build).
mod flavor {
    pub use contree::{Contree as Client, ContreeImage as Image, DynRead, ListImages, ListOperations, UploadSource};

    /// Every image of the listing, through its lazy `Stream` face.
    pub async fn collect_images(list: ListImages) -> contree::Result<Vec<Image>> {
        use futures_util::TryStreamExt;
        list.stream().try_collect().await
    }

    /// What `Debug` calls the client, the images area, an image and the operations area.
    pub const PUBLIC_NAMES: [&str; 4] = ["Contree", "Images", "ContreeImage", "Operations"];

    /// Every operation of the listing, through its lazy `Stream` face.
    pub async fn collect_operations(list: ListOperations) -> contree::Result<Vec<contree::models::OperationSummary>> {
        use futures_util::TryStreamExt;
        list.stream().try_collect().await
    }

    /// The first `n` items of the listing's lazy `Stream` (errors included).
    pub async fn take_images(list: ListImages, n: usize) -> Vec<contree::Result<Image>> {
        use futures_util::StreamExt;
        list.stream().take(n).collect().await
    }
}

#[macro_use]
#[path = "wire/api/mod.rs"]
mod scenarios;

macro_rules! async_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                scenarios::$name().await
            }
        )*
    };
}

api_scenarios!(async_tests);
