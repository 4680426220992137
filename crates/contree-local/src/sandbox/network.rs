//! TEMPORARY placeholder, replaced by slirp4netns networking on merge.
use super::SandboxError;

/// A run's network helper.
#[derive(Debug)]
pub(crate) struct Network;

/// Gives `pid`'s network namespace outbound access.
pub(crate) fn attach(_pid: i32) -> Result<Network, SandboxError> {
    Err(SandboxError::invalid("network", "not available yet"))
}
