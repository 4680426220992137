//! The unprivileged id range a sandbox's user namespace is mapped to.
//!
//! Root in a sandbox is uid 0 of its own user namespace, which the server maps to
//! `base..base + count` on the host: by default `2_000_000_000..2_000_065_536`, far above
//! the ids of host accounts (and refused when `/etc/passwd` or `/etc/group` uses any of
//! it). Everything a run creates is owned by ids in that range on the host, so a setuid
//! binary, a file capability (stored with the namespace's root id) or a device node made in
//! a run gives nothing to host users; and capabilities hold only inside the namespace.
//!
//! The base image's host-owned directories (the host's `/usr`, the skeleton) are shown
//! through idmapped mounts so that their root-owned files are root-owned inside. Those
//! mounts need a user namespace that carries the mapping: [`mapping_namespace`] keeps one
//! per range for the life of the process.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

use super::{SandboxError, SandboxUnavailable, init, sys};

/// A host uid/gid range for sandboxes' user namespaces.
///
/// ```
/// use contree_local::IdRange;
/// let ids = IdRange::new(3_000_000_000, 65_536).unwrap();
/// assert_eq!(ids.base(), 3_000_000_000);
/// assert_eq!(IdRange::default().count(), 65_536);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdRange {
    base: u32,
    count: u32,
}

impl Default for IdRange {
    fn default() -> Self {
        IdRange { base: 2_000_000_000, count: 65_536 }
    }
}

impl IdRange {
    /// The range `base..base + count`. `count` must be at least 65,536 (a Debian image
    /// uses `nobody` = 65534) and the range must stay below 4,294,967,295 and leave
    /// host root (0) out.
    ///
    /// Errors are `InvalidArgument` naming `id_range`.
    pub fn new(base: u32, count: u32) -> Result<Self, contree_core::Error> {
        let invalid = |why: String| contree_core::Error::invalid_argument("id_range", why);
        if count < 65_536 {
            return Err(invalid(format!("count {count} is below 65536")));
        }
        if base == 0 {
            return Err(invalid("the range must not contain host root (uid 0)".into()));
        }
        if base.checked_add(count).is_none_or(|end| end == u32::MAX) {
            return Err(invalid(format!("{base} + {count} passes the last valid id")));
        }
        Ok(IdRange { base, count })
    }

    /// First host id of the range (root of every sandbox).
    pub fn base(&self) -> u32 {
        self.base
    }

    /// Number of ids: sandbox ids run from 0 to `count - 1`.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The host id of sandbox id `id`, if it is in the range.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        (id < self.count).then(|| self.base + id)
    }

    /// The sandbox id of host id `host`, if it is in the range.
    pub fn from_host(&self, host: u32) -> Option<u32> {
        host.checked_sub(self.base).filter(|id| *id < self.count)
    }

    /// The `uid_map`/`gid_map` line.
    fn map_line(&self) -> String {
        format!("0 {} {}\n", self.base, self.count)
    }

    /// Refuses a range that a host account or group uses.
    pub(crate) fn check_unused(&self) -> Result<(), SandboxUnavailable> {
        for file in ["/etc/passwd", "/etc/group"] {
            let Ok(text) = fs::read_to_string(file) else { continue };
            for line in text.lines() {
                let id = line.split(':').nth(2).and_then(|f| f.parse::<u32>().ok());
                if let Some(id) = id
                    && self.from_host(id).is_some()
                {
                    let name = line.split(':').next().unwrap_or("?");
                    return Err(SandboxUnavailable::new(format!(
                        "the sandbox id range {}..{} contains id {id} of {name:?} in {file}; choose another range (--id-range)",
                        self.base,
                        u64::from(self.base) + u64::from(self.count)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Writes `range` as the uid and gid map of `pid`'s (fresh) user namespace.
pub(crate) fn write_maps(pid: libc::pid_t, range: &IdRange) -> io::Result<()> {
    let line = range.map_line();
    fs::write(format!("/proc/{pid}/uid_map"), &line)?;
    fs::write(format!("/proc/{pid}/gid_map"), &line)
}

/// A user namespace mapped to `range`, kept open for the life of the process: the
/// mapping that idmapped mounts of host directories use.
pub(crate) fn mapping_namespace(range: &IdRange) -> Result<RawFd, SandboxError> {
    static NAMESPACES: OnceLock<Mutex<HashMap<IdRange, OwnedFd>>> = OnceLock::new();
    let mut map = NAMESPACES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(fd) = map.get(range) {
        return Ok(fd.as_raw_fd());
    }
    let fd = create_mapping_namespace(range)
        .map_err(|e| SandboxError::io("creating the user namespace of the sandbox id range", e))?;
    let raw = fd.as_raw_fd();
    map.insert(*range, fd);
    Ok(raw)
}

fn create_mapping_namespace(range: &IdRange) -> io::Result<OwnedFd> {
    let (ours, theirs) = sys::seqpacket_pair()?;
    let pid = init::spawn(&["userns"], &[theirs.as_raw_fd()])?;
    drop(theirs);
    let result = (|| {
        let mut b = [0u8; 1];
        // SAFETY: a one-byte recv into a stack buffer on our socket.
        let n = unsafe { libc::recv(ours.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 1, 0) };
        if n != 1 || b[0] != b'U' {
            return Err(io::Error::other(
                "the helper could not create a user namespace (are user namespaces enabled? see /proc/sys/user/max_user_namespaces)",
            ));
        }
        write_maps(pid, range)?;
        Ok(OwnedFd::from(fs::File::open(format!("/proc/{pid}/ns/user"))?))
    })();
    drop(ours);
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && sys::errno() == libc::EINTR {}
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(IdRange::new(1000, 10).is_err());
        assert!(IdRange::new(0, 65_536).is_err());
        assert!(IdRange::new(u32::MAX - 100, 65_536).is_err());
        let r = IdRange::new(100_000, 65_536).unwrap();
        assert_eq!(r.to_host(0), Some(100_000));
        assert_eq!(r.to_host(65_536), None);
        assert_eq!(r.from_host(100_001), Some(1));
        assert_eq!(r.from_host(99_999), None);
    }

    #[test]
    fn the_default_range_is_unused_here_and_root_is_refused() {
        IdRange::default().check_unused().unwrap();
        // Host root's group and account are in every /etc/passwd.
        let low = IdRange { base: 0, count: 65_536 };
        assert!(low.check_unused().is_err());
    }
}
