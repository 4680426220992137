//! `resources_limits.max_layer_bytes`: a cap on the bytes a run writes into its layer,
//! enforced by the kernel.
//!
//! Where the data dir is on btrfs, every run's directory (`runs/<op>`, holding the overlay's
//! upper and work dirs) is a subvolume of its own with a qgroup limit on the bytes it
//! references. A write past the cap fails inside the run with `EDQUOT` ("Disk quota
//! exceeded"; btrfs's errno for a qgroup limit, where a full disk says `ENOSPC`) and nothing
//! past it is allocated on the host's disk. A run that changed the filesystem keeps its
//! subvolume as the layer (`layers/<id>-vol/upper`, see [`crate::store`]), because renaming a
//! directory out of a subvolume is `EXDEV`.
//!
//! Quotas must be on for the filesystem. When they are off, the server turns on *simple
//! quotas* (Linux 6.7+: usage charged to the writing subvolume, no rescan, no per-commit
//! backref walks) and says so in its log. Elsewhere (ext4, xfs, or a kernel without simple
//! quotas and quotas off) the cap can't be enforced: the start-up log says that the spec's
//! default is not enforced, and a spawn that sets the cap is refused with 400.
//!
//! At start the cap is probed for real: a probe subvolume limited to 1 MiB must refuse a
//! 2 MiB write, or the cap counts as unavailable.

pub(crate) mod btrfs;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The spec's default cap on a run's layer: 12 GiB.
pub(crate) const DEFAULT_MAX_LAYER_BYTES: u64 = 12 * 1024 * 1024 * 1024;

/// Run directories with a kernel-enforced cap on their size.
#[derive(Debug)]
pub(crate) struct LayerQuota {
    /// Where run directories are created (`<data>/runs`).
    runs_dir: PathBuf,
}

impl LayerQuota {
    /// Checks that `runs_dir` can hold capped run directories, turning simple quotas on when
    /// they are off. `Err` says why the cap can't be enforced there.
    pub(crate) fn probe(runs_dir: &Path) -> Result<Self, String> {
        match btrfs::is_btrfs(runs_dir) {
            Ok(true) => {}
            Ok(false) => return Err(format!("{} is not on btrfs (the cap needs btrfs qgroups)", runs_dir.display())),
            Err(e) => return Err(format!("cannot tell the filesystem of {}: {e}", runs_dir.display())),
        }
        let name = format!(".quota-probe-{}", std::process::id());
        let probe = runs_dir.join(&name);
        remove_volume(&probe);
        btrfs::create_subvolume(runs_dir, &name)
            .map_err(|e| format!("cannot create a btrfs subvolume in {}: {e}", runs_dir.display()))?;
        let result = Self::check_cap(runs_dir, &probe);
        remove_volume(&probe);
        result.map(|()| Self { runs_dir: runs_dir.to_owned() })
    }

    fn check_cap(runs_dir: &Path, probe: &Path) -> Result<(), String> {
        const CAP: u64 = 1 << 20;
        if let Err(e) = btrfs::limit_referenced(probe, CAP) {
            if !matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::EINVAL | libc::ENOENT)) {
                return Err(format!("cannot set a qgroup limit in {}: {e}", runs_dir.display()));
            }
            btrfs::enable_simple_quotas(runs_dir).map_err(|e| {
                format!(
                    "btrfs quotas are off on {} and simple quotas could not be turned on ({e}; they need Linux 6.7); \
                     `btrfs quota enable` on that filesystem turns on full qgroups",
                    runs_dir.display()
                )
            })?;
            tracing::warn!(dir = %runs_dir.display(), "turned on btrfs simple quotas, to cap run layers (max_layer_bytes)");
            btrfs::limit_referenced(probe, CAP)
                .map_err(|e| format!("cannot set a qgroup limit in {}: {e}", runs_dir.display()))?;
        }
        match write_zeros(&probe.join("fill"), 2 * CAP) {
            Err(e) if e.raw_os_error() == Some(libc::EDQUOT) => Ok(()),
            Err(e) => Err(format!("probing the qgroup limit in {} failed: {e}", runs_dir.display())),
            Ok(()) => Err(format!(
                "btrfs accepted a qgroup limit in {} but did not enforce it (2 MiB written under a 1 MiB cap)",
                runs_dir.display()
            )),
        }
    }

    /// Creates the run directory `run_dir` (in `runs/`) as a subvolume capped at `max_bytes`.
    pub(crate) fn create_run_dir(&self, run_dir: &Path, max_bytes: u64) -> io::Result<()> {
        let name = match (run_dir.parent(), run_dir.file_name().and_then(|n| n.to_str())) {
            (Some(parent), Some(name)) if parent == self.runs_dir => name,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a directory of {}", run_dir.display(), self.runs_dir.display()),
                ));
            }
        };
        btrfs::create_subvolume(&self.runs_dir, name)?;
        if let Err(e) = btrfs::limit_referenced(run_dir, max_bytes) {
            remove_volume(run_dir);
            return Err(e);
        }
        Ok(())
    }
}

/// Writes `len` zero bytes to a new file and syncs it (qgroup limits are checked when the
/// data is reserved, at `write`; the sync makes sure nothing was only buffered).
fn write_zeros(path: &Path, len: u64) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    let chunk = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

/// Deletes a subvolume (as root, `rmdir` of an emptied subvolume deletes it).
fn remove_volume(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a btrfs probe subvolume");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_off_btrfs_is_refused_with_the_reason() {
        // /proc is never btrfs, whatever the host.
        let why = LayerQuota::probe(Path::new("/proc")).unwrap_err();
        assert!(why.contains("is not on btrfs"), "{why}");
    }
}
