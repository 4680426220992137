//! # contree-async
//!
//! The async (tokio + reqwest) client for Contree. Use it through the facade crate:
//! `contree::Contree`.
//!
//! ```no_run
//! # async fn demo() -> contree_async::Result<()> {
//! let client = contree_async::Contree::from_env()?;
//! let me = client.whoami().await?;
//! println!("token {} may list images: {:?}", me.token_uuid, me.permissions.get("list"));
//! # Ok(()) }
//! ```
//!
//! The client logic is shared with `contree-blocking`: both compile the same driver source
//! (`crates/driver`), this crate with `maybe_async::must_be_async`.
#![deny(missing_docs)]

pub(crate) use maybe_async::must_be_async as maybe;

mod driver;
mod streams;
mod transport;

#[doc(inline)]
pub use contree_core::{
    ContreeConfig, Error, ErrorKind, ExitStatus, ImageKind, ImageRef, ImageState, Result, RetryPolicy, RunOutput,
    TimeFilter, models,
};
/// The async Contree client. Cheap to clone; clones share one connection pool.
///
/// ```no_run
/// # async fn demo() -> contree_async::Result<()> {
/// use contree_async::Contree;
/// let client = Contree::builder().base_url("http://127.0.0.1:8080").token("…").build()?;
/// let images = client.images().list().tagged(true).limit(10).send().await?;
/// # Ok(()) }
/// ```
pub use driver::client::Client as Contree;
/// Builds a [`Contree`] client from explicit settings.
pub use driver::client::ClientBuilder as ContreeBuilder;
pub use driver::files::{Files, UploadSource, UploadedFile};
pub use driver::image::Archive;
/// An image: an immutable value naming one filesystem state.
pub use driver::image::Image as ContreeImage;
pub use driver::images::{Images, ImportImage, IntoUuid, ListImages};
/// A live handle to a running command (popen).
pub use driver::process::Process as ContreeProcess;
pub use driver::process::{RunEvent, RunEvents};
pub use driver::run::{Detached, FileSource, Output, PreparedRun, ReaderState, RunTarget, Stdin, UploadFileSpec};
/// A session: a cursor that follows each run's result image.
pub use driver::session::Session as ContreeSession;
pub use driver::session::SessionTarget;
pub use transport::{DynRead, DynWrite, PipeReader};
