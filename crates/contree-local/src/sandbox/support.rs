//! Startup check: can this host sandbox commands with the whole boundary?

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::{IdRange, SandboxError, SandboxEvent, SandboxSpec, SandboxUnavailable, seccomp};
use crate::images::base::{BASE_IMAGE_UUID, BaseImage};

const CAP_SYS_ADMIN: u32 = 21;

/// The probe run's exit code: `127` means init set everything up and the command (which
/// does not exist) was looked up with every restriction in place.
const PROBE_EXIT: i32 = 127;

/// Checks that this host can run sandboxes with `data_dir` holding their layers and
/// `ids` as the sandboxes' id range.
///
/// Verifies root or `CAP_SYS_ADMIN`, overlayfs, user namespaces, seccomp, that no host
/// account uses `ids`, and then does it for real: runs a probe sandbox over a tiny image
/// in `data_dir` (idmapped mounts, an overlay whose upper dir is on `data_dir`'s
/// filesystem, the user-namespace mapping, `/proc` and `/dev`, the seccomp filter). Cost:
/// a few milliseconds. The server must refuse to start when this fails: the error names
/// the missing feature. Networking is checked per run (a run that asks for it fails
/// clearly when `slirp4netns` is missing).
///
/// It also creates `<data_dir>/runs/` (where run dirs are expected to live) and empties
/// `<data_dir>/runs/.trash/`, the scratch a previous process had not deleted yet.
///
/// ```text
/// let ids = crate::sandbox::IdRange::default();
/// if let Err(e) = crate::sandbox::check_support(std::path::Path::new("/var/lib/contree-local"), &ids) {
///     eprintln!("{e}");
///     std::process::exit(1);
/// }
/// ```
pub fn check_support(data_dir: &Path, ids: &IdRange) -> Result<(), SandboxUnavailable> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 && !has_cap_sys_admin() {
        return Err(SandboxUnavailable::new(
            "contree-local needs root (or CAP_SYS_ADMIN) to create namespaces and mount overlayfs; run it as root or in a privileged container",
        ));
    }
    let filesystems = fs::read_to_string("/proc/filesystems")
        .map_err(|e| SandboxUnavailable::new(format!("cannot read /proc/filesystems ({e}); is /proc mounted?")))?;
    if !filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        return Err(SandboxUnavailable::new("the kernel has no overlayfs; load it with `modprobe overlay`"));
    }
    let max_userns = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max_userns.trim() == "0" {
        return Err(SandboxUnavailable::new(
            "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0); sandboxes need them: set it to e.g. 65536",
        ));
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Seccomp:")) {
        return Err(SandboxUnavailable::new("the kernel has no seccomp (CONFIG_SECCOMP_FILTER); sandboxes need it"));
    }
    seccomp::filters().map_err(|e| SandboxUnavailable::new(format!("the seccomp filter: {e}")))?;
    ids.check_unused()?;
    probe(data_dir, ids)
}

fn has_cap_sys_admin() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

fn probe(data_dir: &Path, ids: &IdRange) -> Result<(), SandboxUnavailable> {
    let runs = data_dir.join("runs");
    fs::create_dir_all(&runs).map_err(|e| SandboxUnavailable::new(format!("cannot create {}: {e}", runs.display())))?;
    // Scratch dirs `finish` had not deleted yet when a previous process stopped.
    super::finish::purge_trash(&runs.join(".trash"));
    let dir = tempfile::Builder::new()
        .prefix(".probe-")
        .tempdir_in(&runs)
        .map_err(|e| SandboxUnavailable::new(format!("cannot create a probe dir in {}: {e}", runs.display())))?;
    let d = dir.path();
    for sub in ["root/proc", "root/dev", "root/usr", "usr"] {
        fs::create_dir_all(d.join(sub))
            .map_err(|e| SandboxUnavailable::new(format!("cannot create {}: {e}", d.join(sub).display())))?;
    }
    let base = BaseImage {
        uuid: BASE_IMAGE_UUID,
        skeleton: d.join("root"),
        host_usr: d.join("usr"),
        host_dirs: Vec::new(),
        mask: d.join("mask"),
    };
    let mut spec = SandboxSpec::new(base, d.join("runs/probe"), "/contree-probe");
    spec.ids = *ids;
    spec.timeout = Some(Duration::from_secs(30));
    let explain = |e: SandboxError| {
        let hint = match &e {
            SandboxError::Setup { stage, .. } if stage.contains("overlay") => format!(
                " (the data dir {} must be on a filesystem that supports overlayfs upper dirs and trusted xattrs, e.g. ext4 or xfs — not overlayfs, NFS or tmpfs without xattrs)",
                data_dir.display()
            ),
            SandboxError::Setup { stage, .. } if stage.contains("idmapped") => {
                " (the data dir's filesystem and the host's /usr must support idmapped mounts: Linux 5.12+ on ext4, xfs, btrfs; overlayfs over idmapped layers needs 5.19+)".to_owned()
            }
            _ => String::new(),
        };
        SandboxUnavailable::new(format!("a probe sandbox failed: {e}{hint}"))
    };
    let sandbox = super::spawn(spec).map_err(explain)?;
    let events = sandbox.take_events();
    let info = sandbox.wait();
    let stderr: Vec<u8> = events
        .into_iter()
        .flat_map(|rx| rx.try_iter().collect::<Vec<_>>())
        .filter_map(|ev| if let SandboxEvent::Stderr(b) = ev { Some(b) } else { None })
        .flatten()
        .collect();
    if info.exit_code != PROBE_EXIT {
        return Err(SandboxUnavailable::new(format!(
            "a probe sandbox ended with {info:?} instead of exit {PROBE_EXIT}: {}",
            String::from_utf8_lossy(&stderr)
        )));
    }
    Ok(())
}
