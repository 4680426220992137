//! # contree-core
//!
//! The part of the Contree SDK that does no network I/O: wire models, the stream value
//! codec, the image state machine, OCI references, URL building, configuration and
//! profiles, errors and the retry policy. The async and blocking clients
//! (`contree-async`, `contree-blocking`) are thin layers over this crate, and the local
//! server (`contree-local`) speaks the same models.
//!
//! Most users want the facade crate `contree` instead.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod error;
pub mod image_ref;
pub mod models;
pub mod oci;
pub mod poll;
pub mod retry;
pub mod run_files;
pub mod run_output;
pub mod sse;
pub mod state;
pub mod url;
pub mod validate;

pub use config::{AuthKind, ContreeConfig, HttpVersion, Secret};
pub use error::{Error, ErrorKind, ProcessFailure, Result};
pub use image_ref::{ImageKind, ImageRef, IntoImageRef, TimeFilter};
pub use oci::OciReference;
pub use retry::RetryPolicy;
pub use run_files::{FileSource, IntoUuid, UploadFileSpec, UploadedFile};
pub use run_output::{ExitStatus, RunOutput};
pub use state::ImageState;
pub use url::ApiUrl;
