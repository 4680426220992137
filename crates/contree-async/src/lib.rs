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
pub use driver::client::{Contree, ContreeBuilder};
pub use driver::files::{Files, UploadSource};
pub use driver::grep::GrepImage;
pub use driver::image::{Archive, ContreeImage, DirEntry};
pub use driver::images::{Images, ImportImage, ListImages};
pub use driver::operations::{ListOperations, Operations};
pub use driver::process::{ContreeProcess, LineReader, RunEvent, RunEvents};
pub use driver::run::{Detached, OutputTarget, PreparedRun, Stdin};
pub use driver::session::{ContreeSession, SessionProcess, SessionTarget};
pub use driver::subprocess::{ContreeSubprocess, PreparedExec};
pub use transport::{DynRead, DynWrite, PipeReader};
