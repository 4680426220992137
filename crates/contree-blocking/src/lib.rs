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

mod doc_examples;
mod driver;
mod flavor;
mod streams;
mod transport;

#[doc(inline)]
pub use contree_core::{
    ContreeConfig, Error, ErrorKind, ExitStatus, FileSource, HttpVersion, ImageKind, ImageRef, ImageState, IntoUuid,
    ProcessFailure, Result, RetryPolicy, RunOutput, TimeFilter, UploadFileSpec, UploadedFile, models,
};
pub use driver::client::{ContreeBuilderSync, ContreeSync};
pub use driver::files::{FilesSync, UploadSourceSync};
pub use driver::grep::GrepImageSync;
pub use driver::image::{ArchiveSync, ContreeImageSync, DirEntrySync};
pub use driver::images::{ImagesSync, ImportImageSync, ListImagesSync};
pub use driver::operations::{ListOperationsSync, OperationsSync};
pub use driver::process::{ContreeProcessSync, LineReaderSync, RunEventSync, RunEventsSync};
pub use driver::run::{DetachedSync, OutputTargetSync, PreparedRunSync, StdinSync};
pub use driver::session::{ContreeSessionSync, SessionProcessSync, SessionTargetSync};
pub use driver::subprocess::{ContreeSubprocessSync, PreparedExecSync};
pub use streams::{ImageIter, OperationIter, RunEventIter};
pub use transport::{DynReadSync, DynWriteSync, PipeReaderSync};
