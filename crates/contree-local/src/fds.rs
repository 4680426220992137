//! File descriptors as a server resource: the soft `RLIMIT_NOFILE` is raised at start, and
//! spawns are admitted only while enough descriptors are free for the runs to start.
//!
//! Every HTTP connection costs the server a descriptor, and starting a sandbox briefly needs
//! a few dozen (pipes, socketpairs, an eventfd, a pidfd, the plan's memfd, the network
//! helper's ends). Without a check, many idle connections leave too few for a run, which
//! then ends FAILED with `EMFILE` although nothing was wrong with it. The server instead
//! answers the spawn with 429 before doing anything, which a client may replay.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A generous upper bound of the descriptors starting one sandbox holds at its peak on the
/// server's side (about twenty today, see `sandbox::run`), so that a change there does not
/// silently turn the headroom check into a lie.
pub(crate) const FDS_PER_RUN: u64 = 48;

/// Descriptors kept free for everything that is not a run: SQLite's files, accepting and
/// answering requests, reading layers for `/inspect`, logging.
pub(crate) const FDS_MARGIN: u64 = 64;

/// How many runs may queue with a soft limit of `limit` descriptors: what is left once the
/// executing runs and the margin are provided for, at two per queued run (its client's
/// spawn connection and the event stream it follows). A queue longer than that fills the
/// table with followers of runs that then cannot start.
pub(crate) fn queue_budget(limit: u64, max_concurrent_runs: usize) -> usize {
    let reserved = FDS_PER_RUN.saturating_mul(max_concurrent_runs as u64 + 1).saturating_add(FDS_MARGIN);
    usize::try_from(limit.saturating_sub(reserved) / 2).unwrap_or(usize::MAX).max(1)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Returns `(old, new)` soft limits.
///
/// Children (sandboxes, `slirp4netns`) inherit the raised soft limit; they could raise it to
/// the unchanged hard limit themselves anyway, so this grants them nothing.
// `rlim_t` is 32 bits on some 32-bit targets: the casts are needed there.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((old as u64, lim.rlim_cur as u64))
}

/// The current soft `RLIMIT_NOFILE` (`None` if it can't be read).
#[allow(clippy::unnecessary_cast)] // see `raise_nofile_limit`
fn soft_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some(lim.rlim_cur as u64)
}

/// How many descriptors this process has open, counted in `/proc/self/fd` (which itself
/// costs one, so when none is free the count fails and the caller treats that as "short").
fn open_count() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory's own descriptor is listed too.
    Some((dir.count() as u64).saturating_sub(1))
}

/// How many more descriptors this process may open before hitting its soft limit, or `None`
/// when that can't be told (which callers treat as none free: better a replayable 429 than
/// a failed run).
pub(crate) fn free() -> Option<u64> {
    let limit = soft_limit()?;
    let open = open_count()?;
    Some(limit.saturating_sub(open))
}

/// How long a count of free descriptors may be reused. Counting walks `/proc/self/fd`, which
/// costs about half a microsecond per open descriptor (2 ms with 4,000 connections open):
/// too much to repeat for every spawn and every run start under load.
const COUNT_MAX_AGE: Duration = Duration::from_millis(50);

/// A reused count must leave at least this many descriptors beyond the need: more than
/// connections can take within [`COUNT_MAX_AGE`] in practice. Closer to the limit, every
/// check counts afresh.
const COUNT_SLACK: u64 = 512;

/// The last count: when it was taken and how many descriptors were free.
static LAST_COUNT: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// Whether at least `need` descriptors are free. Far from the limit a count up to
/// [`COUNT_MAX_AGE`] old answers; near it, a fresh one.
pub(crate) fn has_headroom(need: u64) -> bool {
    let last = *LAST_COUNT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((at, free)) = last
        && at.elapsed() < COUNT_MAX_AGE
        && free >= need.saturating_add(COUNT_SLACK)
    {
        return true;
    }
    let now = free();
    if let Some(f) = now {
        *LAST_COUNT.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), f));
    }
    now.is_some_and(|f| f >= need)
}

/// Whether `e` (or an error it wraps) says the process or the system ran out of
/// descriptors: a condition that passes, unlike a broken sandbox.
pub(crate) fn is_exhaustion(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Error chains are short; the bound only guards against a cyclic `source`.
    for _ in 0..16 {
        let Some(err) = cur else { return false };
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// Set in the child process that [`headroom_follows_the_soft_limit`] starts.
    const CHILD_ENV: &str = "CONTREE_FDS_TEST_CHILD";
    /// The soft limit the child runs under.
    const CHILD_LIMIT: u64 = 200;

    /// The check must see descriptors run short under a low soft limit and recover when they
    /// are closed. Lowering the limit of the test process itself would break tests running
    /// alongside, so the check runs in a child (this test binary, re-executed) whose soft
    /// limit is set before it starts.
    #[test]
    fn headroom_follows_the_soft_limit() {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", "fds::tests::child_under_low_limit", "--include-ignored", "--test-threads=1"])
            .env(CHILD_ENV, "1");
        // SAFETY: setrlimit is async-signal-safe; only the soft limit is lowered.
        unsafe {
            cmd.pre_exec(|| {
                let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
                lim.rlim_cur = CHILD_LIMIT as libc::rlim_t;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("1 passed"), "the child test did not run:\n{text}");
    }

    /// The child half of [`headroom_follows_the_soft_limit`]; does nothing elsewhere.
    #[test]
    #[ignore = "run by headroom_follows_the_soft_limit in a child process"]
    fn child_under_low_limit() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        assert_eq!(soft_limit(), Some(CHILD_LIMIT));
        let before = free().unwrap();
        assert!(before > 0 && before < CHILD_LIMIT, "{before}");
        assert!(has_headroom(before));
        // Fill all but a few descriptors (bounded by the limit itself).
        let mut held = Vec::new();
        while free().unwrap_or(0) > 5 && held.len() < CHILD_LIMIT as usize {
            held.push(std::fs::File::open("/dev/null").unwrap());
        }
        assert!(!has_headroom(FDS_PER_RUN), "free: {:?}", free());
        // Exhaust the rest: opening fails with EMFILE, which is recognised as exhaustion.
        let err = loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) if held.len() < 2 * CHILD_LIMIT as usize => held.push(f),
                Ok(_) => panic!("the soft limit was not enforced"),
                Err(e) => break e,
            }
        };
        assert!(is_exhaustion(&err), "{err}");
        assert_eq!(free(), None, "no descriptor is left even to count them");
        assert!(!has_headroom(1));
        drop(held);
        assert_eq!(free(), Some(before));
        assert!(has_headroom(FDS_PER_RUN));
    }

    #[test]
    fn the_queue_fits_the_descriptors() {
        // 4 slots: 5 × 48 + 64 = 304 reserved; two per queued run.
        assert_eq!(queue_budget(1024, 4), 360);
        assert_eq!(queue_budget(200, 4), 1, "never zero: one run may always wait");
        assert!(queue_budget(1 << 20, 4) > 4096);
    }

    #[test]
    fn other_errors_are_not_exhaustion() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert!(!is_exhaustion(&e));
        let e = io::Error::from_raw_os_error(libc::ENFILE);
        assert!(is_exhaustion(&e));
        let wrapped = crate::sandbox::SandboxError::io("creating pipes", io::Error::from_raw_os_error(libc::EMFILE));
        assert!(is_exhaustion(&wrapped));
    }
}
