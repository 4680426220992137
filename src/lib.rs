//! # contree
//!
//! The Rust SDK for [Contree](https://contree.dev): sandboxes that branch like git. Every
//! command runs in an isolated sandbox and every run produces a new, addressable filesystem
//! image, so you can run, fork N branches from one state, compare and roll back.
//!
//! Two flavors, written once and picked with cargo features:
//!
//! | feature | types | for |
//! |---|---|---|
//! | `async` (default) | [`Contree`], [`ContreeImage`], … | tokio services |
//! | `blocking` | [`blocking::ContreeSync`], [`blocking::ContreeImageSync`], … | scripts and tools |
//!
//! Both may be enabled in one build.
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn demo() -> contree::Result<()> {
//! let client = contree::Contree::from_env()?;
//! for image in client.images().list().tagged(true).limit(5).send().await? {
//!     println!("{:?} {:?}", image.uuid(), image.tag());
//! }
//! # Ok(()) }
//! ```
//!
//! Configuration follows the official tools: `CONTREE_TOKEN`/`CONTREE_URL`/`CONTREE_PROJECT`
//! (or `NEBIUS_API_KEY`/`NEBIUS_PROJECT_ID`) over the active profile in
//! `$CONTREE_HOME/auth.ini`, so a user who ran `contree auth` needs no configuration.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[doc(inline)]
pub use contree_core::{
    ApiUrl, ContreeConfig, Error, ErrorKind, ImageKind, ImageRef, ImageState, OciReference, ProcessFailure, Result,
    RetryPolicy, Secret, TimeFilter, models,
};

/// The wire-level core (models, codec, retry policy, config), re-exported whole.
pub use contree_core as core;

#[cfg(feature = "async")]
#[doc(inline)]
pub use contree_async::*;

/// The blocking flavor: the same API without `async`, for scripts and tools.
///
/// Sharp edge: like `reqwest::blocking`, it panics if used from inside an async runtime.
#[cfg(feature = "blocking")]
pub mod blocking {
    #[doc(inline)]
    pub use contree_blocking::*;
}
