//! Progress of long transfers: uploads, downloads, archives and registry imports.
//!
//! A [`Progress`] is an observer that the caller hands to a transfer (for example
//! `client.files().upload_with_progress(path, &progress)` or `.progress(&progress)` on an
//! import). It is the same type in both flavors and needs no runtime: the counters are
//! atomics, so it can be read from any thread or task while the transfer runs.
//!
//! Two ways to observe it:
//! - a callback, [`Progress::callback`], called on the transfer's own thread or task with a
//!   borrowed [`ProgressUpdate`] after every chunk (keep it quick: it runs on the transfer's
//!   path; an `indicatif` bar's `set_position` is fine);
//! - a watch handle, [`Progress::watch`], whose [`ProgressWatch::snapshot`] reads the latest
//!   state without blocking the transfer, for a UI that polls on its own schedule.
//!
//! It costs nothing when unused (transfers take an `Option` and skip every update), and one
//! atomic add plus the callback, with no allocation, per chunk when used. `phase` text (an
//! import's steps) is the one part behind a lock, and it changes a few times per transfer.
//!
//! One `Progress` follows one transfer at a time: each transfer [`start`](Progress::start)s it
//! again (bytes back to 0, its own total), so it can be reused for the next one, but two
//! concurrent transfers sharing one would mix their counts.
//!
//! ```
//! use contree_core::progress::Progress;
//!
//! let (progress, watch) = Progress::watch();
//! // What a transfer does with it:
//! progress.start(contree_core::progress::ProgressKind::Upload, Some(10));
//! progress.advance(4);
//! progress.advance(6);
//! progress.finish();
//! let now = watch.snapshot();
//! assert_eq!((now.done, now.total, now.finished, now.failed), (10, Some(10), true, false));
//! ```

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What kind of transfer a [`Progress`] is following.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgressKind {
    /// Nothing has started yet.
    Idle,
    /// A file upload (`POST /files`): bytes sent.
    Upload,
    /// A file download from an image: bytes received.
    Download,
    /// A tar archive of an image's files: bytes received.
    Archive,
    /// A registry import: bytes of the image's layers the server downloaded, as its events
    /// say, and the import's current step as `phase`.
    Import,
}

impl ProgressKind {
    fn to_u8(self) -> u8 {
        match self {
            ProgressKind::Idle => 0,
            ProgressKind::Upload => 1,
            ProgressKind::Download => 2,
            ProgressKind::Archive => 3,
            ProgressKind::Import => 4,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => ProgressKind::Upload,
            2 => ProgressKind::Download,
            3 => ProgressKind::Archive,
            4 => ProgressKind::Import,
            _ => ProgressKind::Idle,
        }
    }
}

/// One update, as a callback sees it: borrowed, so making it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressUpdate<'a> {
    /// What is being transferred.
    pub kind: ProgressKind,
    /// Bytes done so far. Never goes down during one transfer (a retried upload is counted
    /// once: the resent bytes only count past the furthest point reached).
    pub done: u64,
    /// Bytes in all, when known (a file's size, a download's `Content-Length`, an import's
    /// compressed layer bytes once its manifest is read).
    pub total: Option<u64>,
    /// The current step, for transfers that have steps (imports: `resolving …`,
    /// `layer 1/3 …: downloaded N bytes`, …; uploads: `hashing`, `uploading`).
    pub phase: Option<&'a str>,
    /// The transfer has ended (see `failed`).
    pub finished: bool,
    /// The transfer ended without completing (an error, or it was dropped).
    pub failed: bool,
}

/// The latest state of a [`Progress`], read through a [`ProgressWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressSnapshot {
    /// What is being transferred.
    pub kind: ProgressKind,
    /// Bytes done so far.
    pub done: u64,
    /// Bytes in all, when known.
    pub total: Option<u64>,
    /// The current step, if the transfer has steps.
    pub phase: Option<String>,
    /// The transfer has ended (see `failed`).
    pub finished: bool,
    /// The transfer ended without completing.
    pub failed: bool,
}

impl ProgressSnapshot {
    /// `done / total` in `0.0..=1.0`, when the total is known (a total of 0 is complete).
    pub fn fraction(&self) -> Option<f64> {
        self.total.map(|t| if t == 0 { 1.0 } else { (self.done as f64 / t as f64).min(1.0) })
    }
}

type Callback = dyn Fn(&ProgressUpdate<'_>) + Send + Sync + 'static;

const UNKNOWN: u64 = u64::MAX;
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const FAILED: u8 = 2;

struct Inner {
    done: AtomicU64,
    /// `UNKNOWN` when not known.
    total: AtomicU64,
    kind: AtomicU8,
    state: AtomicU8,
    /// Whether `phase` may hold text: lets per-chunk updates skip the lock when it doesn't.
    has_phase: AtomicBool,
    phase: Mutex<Option<String>>,
    callback: Option<Box<Callback>>,
}

/// An observer of one transfer's progress: a callback, a watch handle, or both. Cheap to
/// clone (the clones share one state). See the [module doc](self).
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Progress")
            .field("kind", &s.kind)
            .field("done", &s.done)
            .field("total", &s.total)
            .field("phase", &s.phase)
            .field("finished", &s.finished)
            .field("failed", &s.failed)
            .field("callback", &self.inner.callback.is_some())
            .finish()
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    fn with_callback(callback: Option<Box<Callback>>) -> Self {
        Progress {
            inner: Arc::new(Inner {
                done: AtomicU64::new(0),
                total: AtomicU64::new(UNKNOWN),
                kind: AtomicU8::new(ProgressKind::Idle.to_u8()),
                state: AtomicU8::new(RUNNING),
                has_phase: AtomicBool::new(false),
                phase: Mutex::new(None),
                callback,
            }),
        }
    }

    /// A progress without a callback: read it through [`watcher`](Self::watcher) (or
    /// [`snapshot`](Self::snapshot)).
    pub fn new() -> Self {
        Progress::with_callback(None)
    }

    /// A progress that calls `f` after every change (each chunk, each phase, the end), on the
    /// transfer's own thread or task. Keep `f` quick and non-blocking.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use contree_core::progress::{Progress, ProgressKind};
    ///
    /// let seen = Arc::new(AtomicU64::new(0));
    /// let progress = Progress::callback({
    ///     let seen = seen.clone();
    ///     move |update| seen.store(update.done, Ordering::Relaxed)
    /// });
    /// progress.start(ProgressKind::Download, None);
    /// progress.advance(42);
    /// assert_eq!(seen.load(Ordering::Relaxed), 42);
    /// ```
    pub fn callback<F>(f: F) -> Self
    where
        F: Fn(&ProgressUpdate<'_>) + Send + Sync + 'static,
    {
        Progress::with_callback(Some(Box::new(f)))
    }

    /// A progress and a watch handle on it: hand the first to the transfer, read the second
    /// from anywhere (another thread, a UI task) with [`ProgressWatch::snapshot`].
    pub fn watch() -> (Progress, ProgressWatch) {
        let progress = Progress::new();
        let watch = progress.watcher();
        (progress, watch)
    }

    /// A watch handle on this progress (also works for one made with a callback).
    pub fn watcher(&self) -> ProgressWatch {
        ProgressWatch { inner: self.inner.clone() }
    }

    /// The current state (allocates only to copy the phase text, if any).
    pub fn snapshot(&self) -> ProgressSnapshot {
        snapshot(&self.inner)
    }

    /// Begins a transfer of `kind`: bytes back to 0, the total when known, no phase, not
    /// finished. Transfers call this; call it yourself only to drive a `Progress` from your
    /// own code.
    pub fn start(&self, kind: ProgressKind, total: Option<u64>) {
        let inner = &self.inner;
        inner.kind.store(kind.to_u8(), Ordering::Relaxed);
        inner.done.store(0, Ordering::Relaxed);
        inner.total.store(total.unwrap_or(UNKNOWN), Ordering::Relaxed);
        inner.state.store(RUNNING, Ordering::Relaxed);
        if inner.has_phase.swap(false, Ordering::Relaxed) {
            *lock(&inner.phase) = None;
        }
        self.notify(0);
    }

    /// Sets the total, when it becomes known (or `None` when it turns out not to be).
    pub fn set_total(&self, total: Option<u64>) {
        self.inner.total.store(total.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.notify(self.inner.done.load(Ordering::Relaxed));
    }

    /// Sets the current step's text. Transfers call this a few times each, never per chunk.
    pub fn set_phase(&self, phase: impl Into<String>) {
        *lock(&self.inner.phase) = Some(phase.into());
        self.inner.has_phase.store(true, Ordering::Release);
        self.notify(self.inner.done.load(Ordering::Relaxed));
    }

    /// Counts `n` more bytes done: one atomic add, then the callback if there is one. This is
    /// the per-chunk hook of a transfer that sends or receives each byte once.
    #[inline]
    pub fn advance(&self, n: u64) {
        let done = self.inner.done.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if self.inner.callback.is_some() {
            self.notify(done);
        }
    }

    /// Moves the count to `position` bytes if that is further than it is: the per-chunk hook
    /// of a transfer that may start over (a retried upload resends from byte 0 and is counted
    /// only past the furthest point reached, so the count never goes down).
    #[inline]
    pub fn advance_to(&self, position: u64) {
        let before = self.inner.done.fetch_max(position, Ordering::Relaxed);
        if position > before && self.inner.callback.is_some() {
            self.notify(position);
        }
    }

    /// Ends the transfer successfully.
    pub fn finish(&self) {
        self.inner.state.store(FINISHED, Ordering::Release);
        self.notify(self.inner.done.load(Ordering::Relaxed));
    }

    /// Ends the transfer without completing it (an error, or it was abandoned).
    pub fn fail(&self) {
        self.inner.state.store(FAILED, Ordering::Release);
        self.notify(self.inner.done.load(Ordering::Relaxed));
    }

    fn notify(&self, done: u64) {
        let inner = &self.inner;
        let Some(callback) = &inner.callback else { return };
        let state = inner.state.load(Ordering::Acquire);
        let kind = ProgressKind::from_u8(inner.kind.load(Ordering::Relaxed));
        let total = total(inner);
        let (finished, failed) = (state != RUNNING, state == FAILED);
        if inner.has_phase.load(Ordering::Acquire) {
            // Clone out of the lock so a callback that reads this progress cannot deadlock.
            // Only transfers with phases (imports, a few times each) get here.
            let phase = lock(&inner.phase).clone();
            callback(&ProgressUpdate { kind, done, total, phase: phase.as_deref(), finished, failed });
        } else {
            callback(&ProgressUpdate { kind, done, total, phase: None, finished, failed });
        }
    }
}

/// A read-only handle on a [`Progress`]: the latest state, without blocking the transfer.
/// Cheap to clone; works from any thread, with or without an async runtime.
#[derive(Clone)]
pub struct ProgressWatch {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProgressWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProgressWatch").field(&self.snapshot()).finish()
    }
}

impl ProgressWatch {
    /// The latest state.
    pub fn snapshot(&self) -> ProgressSnapshot {
        snapshot(&self.inner)
    }

    /// Bytes done so far (one atomic load).
    pub fn done(&self) -> u64 {
        self.inner.done.load(Ordering::Relaxed)
    }

    /// Bytes in all, when known.
    pub fn total(&self) -> Option<u64> {
        total(&self.inner)
    }

    /// Whether the transfer has ended (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) != RUNNING
    }
}

fn total(inner: &Inner) -> Option<u64> {
    match inner.total.load(Ordering::Relaxed) {
        UNKNOWN => None,
        t => Some(t),
    }
}

fn snapshot(inner: &Inner) -> ProgressSnapshot {
    let state = inner.state.load(Ordering::Acquire);
    let phase = if inner.has_phase.load(Ordering::Acquire) { lock(&inner.phase).clone() } else { None };
    ProgressSnapshot {
        kind: ProgressKind::from_u8(inner.kind.load(Ordering::Relaxed)),
        done: inner.done.load(Ordering::Relaxed),
        total: total(inner),
        phase,
        finished: state != RUNNING,
        failed: state == FAILED,
    }
}

/// The phase text survives a panicking callback: a poisoned lock still holds valid text.
fn lock(m: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one progress line of an import's events says about bytes (contree-local writes them
/// as `stdout` lines; see its README). Best effort: unknown lines say nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ImportLine {
    /// The compressed size of all the image's layers (`manifest …: N layer(s), T bytes
    /// compressed`).
    pub total: Option<u64>,
    /// Bytes of one layer downloaded (`layer i/n …: downloaded N bytes`).
    pub downloaded: Option<u64>,
}

impl ImportLine {
    /// Reads one line (without its newline).
    ///
    /// ```
    /// use contree_core::progress::ImportLine;
    /// let l = ImportLine::parse("manifest sha256:ab: 2 layer(s), 1234 bytes compressed");
    /// assert_eq!(l.total, Some(1234));
    /// let l = ImportLine::parse("layer 1/2 sha256:cd: downloaded 1000 bytes");
    /// assert_eq!(l.downloaded, Some(1000));
    /// assert_eq!(ImportLine::parse("resolving x"), ImportLine::default());
    /// ```
    pub fn parse(line: &str) -> ImportLine {
        let number_before = |text: &str, suffix: &str| -> Option<u64> {
            let head = text.strip_suffix(suffix)?;
            let digits = head.rsplit(' ').next()?;
            digits.parse().ok()
        };
        let line = line.trim_end();
        let mut out = ImportLine::default();
        if line.starts_with("manifest ") {
            out.total = number_before(line, " bytes compressed");
        } else if line.starts_with("layer ") {
            out.downloaded = line.rsplit_once(": downloaded ").and_then(|(_, rest)| number_before(rest, " bytes"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    #[test]
    fn callback_sees_every_change_and_watch_the_last() {
        type Seen = Arc<StdMutex<Vec<(u64, Option<u64>, bool)>>>;
        let seen = Seen::default();
        let progress = Progress::callback({
            let seen = seen.clone();
            move |u| seen.lock().unwrap().push((u.done, u.total, u.finished))
        });
        let watch = progress.watcher();
        progress.start(ProgressKind::Upload, Some(10));
        progress.advance(3);
        progress.advance_to(2); // behind: ignored
        progress.advance_to(7);
        progress.advance(3);
        progress.finish();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (0, Some(10), false),
                (3, Some(10), false),
                (7, Some(10), false),
                (10, Some(10), false),
                (10, Some(10), true)
            ]
        );
        let s = watch.snapshot();
        assert_eq!((s.kind, s.done, s.total, s.finished, s.failed), (ProgressKind::Upload, 10, Some(10), true, false));
        assert_eq!(s.fraction(), Some(1.0));
    }

    #[test]
    fn start_resets_and_fail_is_reported() {
        let (progress, watch) = Progress::watch();
        progress.start(ProgressKind::Import, None);
        progress.set_phase("resolving");
        progress.advance(5);
        progress.fail();
        let s = watch.snapshot();
        assert!(s.finished && s.failed);
        assert_eq!(s.phase.as_deref(), Some("resolving"));
        progress.start(ProgressKind::Download, None);
        let s = watch.snapshot();
        assert_eq!((s.done, s.total, s.phase.as_deref(), s.finished), (0, None, None, false));
        assert_eq!(s.fraction(), None);
    }

    #[test]
    fn a_callback_may_read_its_own_progress() {
        let slot: Arc<StdMutex<Option<ProgressWatch>>> = Arc::default();
        let progress = Progress::callback({
            let slot = slot.clone();
            move |_| {
                if let Some(w) = slot.lock().unwrap().as_ref() {
                    let _ = w.snapshot();
                }
            }
        });
        *slot.lock().unwrap() = Some(progress.watcher());
        progress.start(ProgressKind::Import, None);
        progress.set_phase("manifest");
        progress.advance(1);
        progress.finish();
    }

    #[test]
    fn import_lines() {
        assert_eq!(ImportLine::parse("manifest sha256:00: 3 layer(s), 99 bytes compressed\n").total, Some(99));
        assert_eq!(ImportLine::parse("layer 2/3 sha256:00: downloaded 12 bytes").downloaded, Some(12));
        assert_eq!(ImportLine::parse("layer 2/3 sha256:00: already present"), ImportLine::default());
        assert_eq!(
            ImportLine::parse("layer 2/3 sha256:00: unpacked 3 entries, 9 bytes, 0 whiteout(s)"),
            ImportLine::default()
        );
        assert_eq!(ImportLine::parse("manifest x: garbage bytes compressed"), ImportLine::default());
    }
}
