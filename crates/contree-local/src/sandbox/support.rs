//! Startup check: can this host sandbox commands at all?

use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::child::{self, OverlayPlan, Stage};
use super::{SandboxUnavailable, sys};

const CAP_SYS_ADMIN: u32 = 21;

/// Checks that this host can run sandboxes with `data_dir` holding their layers.
///
/// Verifies root or `CAP_SYS_ADMIN`, overlayfs in `/proc/filesystems`, and then does it for
/// real: clones a process into new mount, PID, UTS, IPC and network namespaces which mounts
/// an overlay whose upper dir is on `data_dir`'s filesystem (catching filesystems that
/// cannot be an overlay upper, such as overlayfs itself or NFS), mounts a procfs and brings
/// up `lo`. Cost: about a millisecond. The server must refuse to start when this fails.
///
/// It also creates `<data_dir>/runs/` (where run dirs are expected to live) and empties
/// `<data_dir>/runs/.trash/`, the scratch a previous process had not deleted yet.
///
/// ```text
/// if let Err(e) = crate::sandbox::check_support(std::path::Path::new("/var/lib/contree-local")) {
///     eprintln!("{e}");
///     std::process::exit(1);
/// }
/// ```
pub fn check_support(data_dir: &Path) -> Result<(), SandboxUnavailable> {
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
    probe(data_dir)
}

fn has_cap_sys_admin() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

fn probe(data_dir: &Path) -> Result<(), SandboxUnavailable> {
    let runs = data_dir.join("runs");
    fs::create_dir_all(&runs).map_err(|e| SandboxUnavailable::new(format!("cannot create {}: {e}", runs.display())))?;
    // Scratch dirs `finish` had not deleted yet when a previous process stopped.
    super::finish::purge_trash(&runs.join(".trash"));
    let dir = tempfile::Builder::new()
        .prefix(".probe-")
        .tempdir_in(&runs)
        .map_err(|e| SandboxUnavailable::new(format!("cannot create a probe dir in {}: {e}", runs.display())))?;
    let d = dir.path();
    for sub in ["lower/proc", "upper", "work", "merged"] {
        fs::create_dir_all(d.join(sub))
            .map_err(|e| SandboxUnavailable::new(format!("cannot create {}: {e}", d.join(sub).display())))?;
    }
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| SandboxUnavailable::new("the data dir path contains a NUL byte"))
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        d.join("lower").display(),
        d.join("upper").display(),
        d.join("work").display(),
        child::LEGACY_OPTION_TAIL
    );
    let overlay = OverlayPlan {
        target: c(&d.join("merged"))?,
        lowers: vec![c(&d.join("lower"))?],
        upper: c(&d.join("upper"))?,
        work: c(&d.join("work"))?,
        legacy_data: Some(
            CString::new(data).map_err(|_| SandboxUnavailable::new("the data dir path contains a NUL byte"))?,
        ),
    };
    let proc_target = c(&d.join("merged/proc"))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| SandboxUnavailable::new(format!("cannot create a pipe: {e}")))?;
    let keep = [err_w.as_raw_fd()];
    let flags =
        (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET) as u64;
    // SAFETY: the child only runs `probe_main`, which is async-signal-safe and never returns.
    let pid = match unsafe { sys::clone3(flags, None) } {
        Ok(0) => unsafe { child::probe_main(&keep, keep[0], &overlay, &proc_target) },
        Ok(pid) => pid,
        Err(e) => {
            return Err(SandboxUnavailable::new(format!(
                "cannot create mount/PID/UTS/IPC/network namespaces with clone3 ({e}); a container needs --privileged (or seccomp/AppArmor allowing unshare and mount)"
            )));
        }
    };
    drop(err_w);
    let mut rec = child::ErrRecord::default();
    // SAFETY: reading one plain-old-data record from our pipe.
    let n = unsafe {
        libc::read(
            err_r.as_raw_fd(),
            &mut rec as *mut child::ErrRecord as *mut libc::c_void,
            std::mem::size_of::<child::ErrRecord>(),
        )
    };
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && sys::errno() == libc::EINTR {}
    if n > 0 {
        let err = std::io::Error::from_raw_os_error(rec.errno);
        let what = match Stage::from_u32(rec.stage) {
            Some(Stage::MakePrivate) => "making mounts private in a new mount namespace".to_owned(),
            Some(Stage::MountOverlay) => format!(
                "mounting an overlay with its upper dir in {} (the data dir must be on a filesystem that supports overlayfs upper dirs and trusted xattrs, e.g. ext4 or xfs — not overlayfs, NFS or tmpfs without xattrs)",
                data_dir.display()
            ),
            Some(Stage::MountProc) => "mounting /proc for a new PID namespace".to_owned(),
            Some(Stage::Loopback) => "bringing up loopback in a new network namespace".to_owned(),
            _ => format!("probe stage {}", rec.stage),
        };
        return Err(SandboxUnavailable::new(format!("{what} failed: {err}")));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(SandboxUnavailable::new(format!("the sandbox probe process failed (wait status {status:#x})")));
    }
    Ok(())
}
