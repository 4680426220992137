//! The `api` wire suite, blocking flavor: `contree::blocking::ContreeSync` against wiremock.
//!
//! The scenarios live in `tests/wire/api/` and are shared with `wire_api_async.rs`. Tests are
//! plain `#[test]`s: `reqwest::blocking` panics inside a runtime, and the mock server runs on
//! a runtime of its own (see `support`).
#![cfg(feature = "blocking")]

pub(crate) use maybe_async::must_be_sync as maybe;

mod support;

/// The blocking types under the names the scenarios use, plus the few helpers whose shape
/// differs per flavor (`Iterator` here, `Stream` in the async build).
mod flavor {
    pub use contree::blocking::{
        ContreeImageSync as Image, ContreeSync as Client, DynReadSync as DynRead, ListImagesSync as ListImages,
        ListOperationsSync as ListOperations, UploadSourceSync as UploadSource,
    };

    /// Every image of the listing, through its lazy `Iterator` face.
    pub fn collect_images(list: ListImages) -> contree::Result<Vec<Image>> {
        list.iter().collect()
    }

    /// What `Debug` calls the client, the images area, an image and the operations area.
    pub const PUBLIC_NAMES: [&str; 4] = ["ContreeSync", "ImagesSync", "ContreeImageSync", "OperationsSync"];

    /// Every operation of the listing, through its lazy `Iterator` face.
    pub fn collect_operations(list: ListOperations) -> contree::Result<Vec<contree::models::OperationSummary>> {
        list.iter().collect()
    }

    /// The first `n` items of the listing's lazy `Iterator` (errors included).
    pub fn take_images(list: ListImages, n: usize) -> Vec<contree::Result<Image>> {
        list.iter().take(n).collect()
    }
}

#[macro_use]
#[path = "wire/api/mod.rs"]
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

api_scenarios!(blocking_tests);
