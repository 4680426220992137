//! The few btrfs ioctls that cap a run's writable layer: a subvolume per run, with a qgroup
//! limit on the bytes it references.
//!
//! No crate binds these without linking the C `libbtrfsutil`, which hosts rarely have; the
//! structures are small and fixed by the kernel's UAPI (`linux/btrfs.h`).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `statfs.f_type` of btrfs.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
/// The inode number of every subvolume's root directory.
const FIRST_FREE_OBJECTID: u64 = 256;
const BTRFS_IOCTL_MAGIC: u64 = 0x94;
/// `BTRFS_PATH_NAME_MAX + 1` in `struct btrfs_ioctl_vol_args`.
const VOL_NAME_LEN: usize = 4088;

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (BTRFS_IOCTL_MAGIC << 8) | nr
}

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; VOL_NAME_LEN],
}

#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

#[repr(C)]
struct QgroupLimit {
    flags: u64,
    max_referenced: u64,
    max_exclusive: u64,
    rsv_referenced: u64,
    rsv_exclusive: u64,
}

#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    limit: QgroupLimit,
}

const IOC_SUBVOL_CREATE: u64 = ioc(IOC_WRITE, 14, size_of::<VolArgs>());
const IOC_QUOTA_CTL: u64 = ioc(IOC_READ | IOC_WRITE, 40, size_of::<QuotaCtlArgs>());
// The kernel declares it `_IOR` although it only reads the argument.
const IOC_QGROUP_LIMIT: u64 = ioc(IOC_READ, 43, size_of::<QgroupLimitArgs>());
/// `BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA` (Linux 6.7): usage is charged to the subvolume that
/// wrote the extent, with no backref walks at each commit.
const QUOTA_CTL_ENABLE_SIMPLE: u64 = 4;
const QGROUP_LIMIT_MAX_REFERENCED: u64 = 1;

/// Whether `path` is on a btrfs filesystem.
pub(crate) fn is_btrfs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a valid C string and `st` a writable statfs buffer.
    if unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs succeeded and filled the buffer.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast, reason = "f_type is i64 on x86_64 and u32/i32 elsewhere")]
    Ok(st.f_type as i64 == BTRFS_SUPER_MAGIC)
}

/// Whether `path` is the root directory of a btrfs subvolume.
pub(crate) fn is_subvolume_root(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == FIRST_FREE_OBJECTID)
        && is_btrfs(path).unwrap_or(false)
}

fn ioctl<T>(fd: &File, request: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: every request used here takes a pointer to the `repr(C)` structure `T` the
    // kernel expects for it; the structure outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as *mut T) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Creates the subvolume `parent/name` (a plain name, not a path).
pub(crate) fn create_subvolume(parent: &Path, name: &str) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= VOL_NAME_LEN || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("`{name}` is not a subvolume name")));
    }
    let dir = File::open(parent)?;
    let mut args = VolArgs { fd: 0, name: [0; VOL_NAME_LEN] };
    args.name[..bytes.len()].copy_from_slice(bytes);
    ioctl(&dir, IOC_SUBVOL_CREATE, &mut args)
}

/// Caps the bytes the subvolume at `subvolume` references: writes past it fail with
/// `EDQUOT`. Fails with `ENOTCONN` or `EINVAL` when quotas are off on the filesystem.
pub(crate) fn limit_referenced(subvolume: &Path, bytes: u64) -> io::Result<()> {
    let dir = File::open(subvolume)?;
    // qgroupid 0: the qgroup of the subvolume the fd is in.
    let mut args = QgroupLimitArgs {
        qgroupid: 0,
        limit: QgroupLimit {
            flags: QGROUP_LIMIT_MAX_REFERENCED,
            max_referenced: bytes,
            max_exclusive: 0,
            rsv_referenced: 0,
            rsv_exclusive: 0,
        },
    };
    ioctl(&dir, IOC_QGROUP_LIMIT, &mut args)
}

/// Turns on simple quotas on the filesystem holding `path` (needs Linux 6.7).
pub(crate) fn enable_simple_quotas(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    let mut args = QuotaCtlArgs { cmd: QUOTA_CTL_ENABLE_SIMPLE, status: 0 };
    ioctl(&dir, IOC_QUOTA_CTL, &mut args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_headers() {
        // From linux/btrfs.h as compiled on x86_64 (`printf("%lx", BTRFS_IOC_…)`).
        assert_eq!(IOC_SUBVOL_CREATE, 0x5000_940e);
        assert_eq!(IOC_QUOTA_CTL, 0xc010_9428);
        assert_eq!(IOC_QGROUP_LIMIT, 0x8030_942b);
    }

    #[test]
    fn names_that_are_paths_are_refused_before_any_ioctl() {
        for bad in ["", "a/b", "a\0b"] {
            let err = create_subvolume(Path::new("/"), bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn the_data_dirs_of_this_test_host_are_not_mistaken_for_btrfs() {
        // /proc is never btrfs; a wrong magic constant would make every host "btrfs".
        assert!(!is_btrfs(Path::new("/proc")).unwrap());
        assert!(!is_subvolume_root(Path::new("/proc")));
    }
}
