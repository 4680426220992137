//! After a run: fold the run's upper dirs into one layer and clear the scratch dirs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Sender};

use super::SandboxError;

/// Whether a finished run changed the image's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpperState {
    /// Nothing changed; the run dir is gone.
    Unchanged,
    /// The run's upper dir (`run_dir/upper`), holding every change in overlayfs format
    /// (including `usr/…` for changes under `/usr`), ready to be adopted as a layer. The rest
    /// of the run dir is gone; remove `run_dir` itself after adopting the upper (or call
    /// [`discard`] to drop the changes).
    Changed(PathBuf),
}

fn has_entries(dir: &Path) -> Result<bool, SandboxError> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SandboxError::io(format!("reading {}", dir.display()), e)),
    }
}

fn remove_all(p: &Path) -> Result<(), SandboxError> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SandboxError::io(format!("removing {}", p.display()), e)),
        _ => Ok(()),
    }
}

/// Collects the result of a run whose sandbox has exited (call it after
/// [`SandboxEvent::Exited`](super::SandboxEvent::Exited) or
/// [`RunningSandbox::wait`](super::RunningSandbox::wait), never while it runs).
///
/// The sandbox's mounts lived only in its own mount namespace, which died with it, so
/// nothing needs unmounting: this moves changes under host-backed directories (`/usr`)
/// into `upper/usr`, clears the scratch dirs, and tells whether `upper/` holds anything.
/// An empty upper means the filesystem is unchanged (creating and deleting a new file
/// leaves nothing; touching an existing directory's content copies it up and counts as a
/// change).
///
/// Clearing is a `rename` into `<run_dir>/../.trash/`, emptied by a background thread:
/// deleting directories is slow on some disks and need not delay the run's result.
/// [`check_support`](super::check_support) empties what a previous process left there.
pub fn finish(run_dir: &Path) -> Result<UpperState, SandboxError> {
    let upper = run_dir.join("upper");
    let scratch = run_dir.join("scratch");
    if scratch.is_dir() {
        let entries =
            fs::read_dir(&scratch).map_err(|e| SandboxError::io(format!("reading {}", scratch.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SandboxError::io(format!("reading {}", scratch.display()), e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".upper")) else {
                continue;
            };
            let host_upper = entry.path();
            if !has_entries(&host_upper)? {
                continue;
            }
            let dest = upper.join(name);
            // The root overlay never writes there: the host dir's own overlay is mounted on
            // top of that path for the whole run.
            if fs::symlink_metadata(&dest).is_ok() {
                return Err(SandboxError::io(
                    format!("merging {} into {}", host_upper.display(), dest.display()),
                    io::Error::new(io::ErrorKind::AlreadyExists, "the root upper dir unexpectedly has this entry"),
                ));
            }
            fs::rename(&host_upper, &dest)
                .map_err(|e| SandboxError::io(format!("moving {} to {}", host_upper.display(), dest.display()), e))?;
        }
    }
    if has_entries(&upper)? {
        trash(&scratch, run_dir)?;
        return Ok(UpperState::Changed(upper));
    }
    trash(run_dir, run_dir)?;
    Ok(UpperState::Unchanged)
}

/// Removes a run dir entirely: the changes of a disposable run, or what is left after the
/// upper dir was adopted as a layer. A missing run dir is fine. Like [`finish`], the
/// deletion itself happens in the background.
pub fn discard(run_dir: &Path) -> Result<(), SandboxError> {
    trash(run_dir, run_dir)
}

/// The trash dir for runs under `run_dir`'s parent.
pub(crate) fn trash_dir(run_dir: &Path) -> Option<PathBuf> {
    run_dir.parent().map(|p| p.join(".trash"))
}

/// Moves `p` out of the way at once and deletes it on the deleter thread; deletes it
/// synchronously when it cannot be moved (no parent, another filesystem, …).
fn trash(p: &Path, run_dir: &Path) -> Result<(), SandboxError> {
    if fs::symlink_metadata(p).is_err() {
        return Ok(());
    }
    if let (Some(dir), Some(deleter)) = (trash_dir(run_dir), deleter()) {
        if !dir.is_dir() {
            let _ = fs::create_dir(&dir);
        }
        let dest = dir.join(uuid::Uuid::new_v4().simple().to_string());
        if fs::rename(p, &dest).is_ok() {
            if let Err(mpsc::SendError(dest)) = deleter.send(dest) {
                return remove_all(&dest);
            }
            return Ok(());
        }
    }
    remove_all(p)
}

fn deleter() -> Option<&'static Sender<PathBuf>> {
    static DELETER: OnceLock<Option<Sender<PathBuf>>> = OnceLock::new();
    DELETER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<PathBuf>();
            std::thread::Builder::new()
                .name("contree-sandbox-trash".into())
                .spawn(move || {
                    for p in rx {
                        if let Err(e) = fs::remove_dir_all(&p) {
                            tracing::warn!(path = %p.display(), error = %e, "could not delete a finished run's scratch dir");
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Deletes what a previous process left in a trash dir (synchronously).
pub(crate) fn purge_trash(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if let Err(e) = fs::remove_dir_all(entry.path()) {
            tracing::warn!(path = %entry.path().display(), error = %e, "could not delete a stale scratch dir");
        }
    }
}
