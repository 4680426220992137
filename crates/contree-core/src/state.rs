//! The image/run state machine (ported from the Python SDK, with its dead states dropped).
//!
//! ```text
//! PULLED ──run()──▶ PREPARED ──execute──▶ EXECUTING ──▶ SUCCEEDED ──run()──▶ PREPARED …
//!                                                  └──▶ FAILED (terminal)
//! ```
//! An image you obtained from the API is PULLED. `run()` yields a PREPARED run; executing it
//! yields a new image in SUCCEEDED (which carries the run's result) or fails. Reading a result
//! is only allowed in SUCCEEDED.

use std::fmt;

/// Where an image value stands in its life.
///
/// ```
/// use contree_core::ImageState;
/// assert!(ImageState::Pulled.can_become(ImageState::Prepared));
/// assert!(!ImageState::Failed.can_become(ImageState::Prepared));
/// assert_eq!(ImageState::Succeeded.to_string(), "SUCCEEDED");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageState {
    /// Known to exist (or referenced by tag); no run attached.
    Pulled,
    /// A run has been described but not started.
    Prepared,
    /// The run's operation is in flight.
    Executing,
    /// The run finished; its result is readable.
    Succeeded,
    /// The run's operation failed, was cancelled or timed out. Terminal.
    Failed,
}

impl ImageState {
    /// The states this one may move to.
    pub fn successors(self) -> &'static [ImageState] {
        use ImageState::*;
        match self {
            Pulled => &[Prepared],
            Prepared => &[Executing],
            Executing => &[Succeeded, Failed],
            Succeeded => &[Prepared],
            Failed => &[],
        }
    }

    /// Whether `self -> next` is a legal transition.
    pub fn can_become(self, next: ImageState) -> bool {
        self.successors().contains(&next)
    }

    /// The states from which `next` may be entered.
    pub fn predecessors(next: ImageState) -> Vec<ImageState> {
        ImageState::ALL.iter().copied().filter(|s| s.can_become(next)).collect()
    }

    /// Every state.
    pub const ALL: [ImageState; 5] =
        [ImageState::Pulled, ImageState::Prepared, ImageState::Executing, ImageState::Succeeded, ImageState::Failed];

    /// Checks `self -> next`, giving an [`ImageState`](crate::ErrorKind::ImageState) error
    /// that names the action when it is illegal.
    pub fn transition(self, next: ImageState, action: &str) -> crate::Result<ImageState> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(crate::Error::image_state(action, self, &ImageState::predecessors(next)))
        }
    }

    /// The upper-case name, as the Python SDK prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageState::Pulled => "PULLED",
            ImageState::Prepared => "PREPARED",
            ImageState::Executing => "EXECUTING",
            ImageState::Succeeded => "SUCCEEDED",
            ImageState::Failed => "FAILED",
        }
    }
}

impl fmt::Display for ImageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ImageState::{self, *};

    #[test]
    fn the_documented_lifecycle_is_legal() {
        let path = [Pulled, Prepared, Executing, Succeeded, Prepared, Executing, Failed];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn everything_else_is_rejected() {
        let legal = [
            (Pulled, Prepared),
            (Prepared, Executing),
            (Executing, Succeeded),
            (Executing, Failed),
            (Succeeded, Prepared),
        ];
        for a in ImageState::ALL {
            for b in ImageState::ALL {
                assert_eq!(a.can_become(b), legal.contains(&(a, b)), "{a} -> {b}");
            }
        }
    }

    #[test]
    fn illegal_transition_is_a_typed_error() {
        let err = Succeeded.transition(Executing, "execute").unwrap_err();
        assert!(err.is_image_state());
        let (state, allowed) = err.image_state_info().unwrap();
        assert_eq!(state, Succeeded);
        assert_eq!(allowed, &[Prepared]);
        assert_eq!(Failed.transition(Prepared, "run").unwrap_err().image_state_info().unwrap().0, Failed);
    }
}
