//! Errors of the sandbox and image modules.

use std::fmt;
use std::io;

/// The host cannot sandbox commands, so the server must not start.
///
/// Returned by [`check_support`](super::check_support). Its message says what
/// is missing and how to fix it; nothing is ever run unsandboxed instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxUnavailable {
    reason: String,
}

impl SandboxUnavailable {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }

    /// What is missing, in one sentence.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for SandboxUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sandboxing is not available on this host: {}", self.reason)
    }
}

impl std::error::Error for SandboxUnavailable {}

/// Why a sandbox could not be prepared, started or finished.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A field of the [`SandboxSpec`](super::SandboxSpec) (or another argument) is invalid.
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// The name of the offending field or argument.
        argument: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The host cannot sandbox commands.
    #[error(transparent)]
    Unavailable(#[from] SandboxUnavailable),
    /// Setting up the sandbox failed inside its namespaces, before the command started
    /// (mounting the image, placing a file, switching user, entering the working directory, …).
    #[error("sandbox setup failed while {stage}: {source}")]
    Setup {
        /// What the sandbox was doing, e.g. `placing file /etc/app.conf`.
        stage: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The sandbox has ended: nothing can be started in it any more.
    #[error("the sandbox has ended")]
    Ended,
    /// A host-side I/O operation failed (preparing the run directory, reading a blob, …).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl SandboxError {
    pub(crate) fn invalid(argument: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { argument, reason: reason.into() }
    }

    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}

impl From<SandboxError> for contree_core::Error {
    fn from(err: SandboxError) -> Self {
        match err {
            SandboxError::InvalidArgument { argument, reason } => {
                contree_core::Error::invalid_argument(argument, reason)
            }
            SandboxError::Unavailable(u) => contree_core::Error::config(u.to_string()),
            SandboxError::Setup { stage, source } => {
                contree_core::Error::io(format!("sandbox setup failed while {stage}"), source)
            }
            SandboxError::Io { what, source } => contree_core::Error::io(what, source),
            SandboxError::Ended => {
                contree_core::Error::io("the sandbox has ended", std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            }
        }
    }
}
