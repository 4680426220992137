//! The driver's side of [`Progress`]: one transfer's start, per-chunk counts and end.
//!
//! Every method is a no-op when the caller gave no `Progress`, so a transfer without one
//! pays an `Option` check per chunk and nothing else.

use contree_core::progress::{Progress, ProgressKind};

/// Follows one transfer. Dropped before [`succeed`](Tracker::succeed) (an error returned with
/// `?`, a dropped future), it reports the transfer as failed, so a watcher never waits on a
/// transfer that is gone.
pub(crate) struct Tracker {
    progress: Option<Progress>,
    ended: bool,
}

impl Tracker {
    /// Starts `kind` on `progress` (if any), with its total when known.
    pub(crate) fn start(progress: Option<&Progress>, kind: ProgressKind, total: Option<u64>) -> Tracker {
        if let Some(p) = progress {
            p.start(kind, total);
        }
        Tracker { progress: progress.cloned(), ended: false }
    }

    /// The observer, to hand to a request body (`Call::progress`).
    pub(crate) fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }

    /// Counts `n` bytes done.
    #[inline]
    pub(crate) fn advance(&self, n: usize) {
        if let Some(p) = &self.progress {
            p.advance(n as u64);
        }
    }

    /// Moves the count to `position` when that is further.
    pub(crate) fn advance_to(&self, position: u64) {
        if let Some(p) = &self.progress {
            p.advance_to(position);
        }
    }

    /// Sets the total once it is known.
    pub(crate) fn set_total(&self, total: Option<u64>) {
        if let Some(p) = &self.progress {
            p.set_total(total);
        }
    }

    /// Names the current step.
    pub(crate) fn phase(&self, phase: &str) {
        if let Some(p) = &self.progress {
            p.set_phase(phase);
        }
    }

    /// The transfer completed.
    pub(crate) fn succeed(&mut self) {
        self.ended = true;
        if let Some(p) = &self.progress {
            p.finish();
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.ended
            && let Some(p) = &self.progress
        {
            p.fail();
        }
    }
}
