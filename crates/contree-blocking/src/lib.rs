//! # contree-blocking
//!
//! The blocking client for Contree, for scripts and tools. Use it through the facade crate
//! with the `blocking` feature: `contree::blocking::ContreeSync`.
//!
//! ```no_run
//! # fn demo() -> contree_blocking::Result<()> {
//! let client = contree_blocking::ContreeSync::from_env()?;
//! let me = client.whoami()?;
//! println!("token {} may list images: {:?}", me.token_uuid, me.permissions.get("list"));
//! # Ok(()) }
//! ```
//!
//! Sharp edge: like `reqwest::blocking`, this client panics if it is used from inside an async
//! runtime. Call it from plain threads, or from `tokio::task::spawn_blocking`.
//!
//! The client logic is shared with `contree-async`: both compile the same driver source
//! (`crates/driver`), this crate with `maybe_async::must_be_sync`.
#![deny(missing_docs)]

pub(crate) use maybe_async::must_be_sync as maybe;

mod driver;
mod streams;
mod transport;

#[doc(inline)]
pub use contree_core::{
    ContreeConfig, Error, ErrorKind, ExitStatus, ImageKind, ImageRef, ImageState, Result, RetryPolicy, RunOutput,
    TimeFilter, models,
};
/// The blocking Contree client. Cheap to clone; clones share one connection pool.
///
/// ```no_run
/// # fn demo() -> contree_blocking::Result<()> {
/// use contree_blocking::ContreeSync;
/// let client = ContreeSync::builder().base_url("http://127.0.0.1:8080").token("…").build()?;
/// let images = client.images().list().tagged(true).limit(10).send()?;
/// # Ok(()) }
/// ```
pub use driver::client::Client as ContreeSync;
/// Builds a [`ContreeSync`] client from explicit settings.
pub use driver::client::ClientBuilder as ContreeSyncBuilder;
pub use driver::files::{Files, UploadSource, UploadedFile};
pub use driver::image::Archive;
/// An image: an immutable value naming one filesystem state.
pub use driver::image::Image as ContreeImageSync;
pub use driver::images::{Images, ImportImage, IntoUuid, ListImages};
/// A live handle to a running command (popen).
pub use driver::process::Process as ContreeProcessSync;
pub use driver::process::{RunEvent, RunEvents};
pub use driver::run::{Detached, FileSource, Output, PreparedRun, ReaderState, RunTarget, Stdin, UploadFileSpec};
/// A session: a cursor that follows each run's result image.
pub use driver::session::Session as ContreeSessionSync;
pub use driver::session::SessionTarget;
pub use streams::{ImageIter, RunEventIter};
pub use transport::{DynRead, DynWrite, PipeReader};
