//! Networking for a run through `slirp4netns`, a user-mode network stack: never the host's
//! network namespace.
//!
//! A run that asks for networking gets its own network namespace (owned by its own user
//! namespace), and [`attach`] starts `slirp4netns` for it. `slirp4netns` creates `tap0` in
//! that namespace (`10.0.2.100/24`, gateway `10.0.2.2`, DNS `10.0.2.3`, MTU 65520) and turns
//! the run's packets into ordinary socket calls of its own on the host. So the run reaches
//! what an unprivileged host process could reach, and nothing more:
//!
//! * `--disable-host-loopback`: `10.0.2.2` does not lead to the host's `127.0.0.1`, so the
//!   server's API and other loopback-only services stay out of reach. (Abstract Unix
//!   sockets are per network namespace, so the host's are invisible anyway.)
//! * `--enable-sandbox`, `--enable-seccomp`: `slirp4netns` itself runs in an empty mount
//!   namespace with its capabilities dropped and a seccomp filter, since it parses packets
//!   the run controls.
//! * the namespace is opened once and checked not to be the server's own, and `slirp4netns`
//!   joins exactly that open namespace (`/proc/self/fd/N`), so a PID that died and was reused
//!   cannot redirect it.
//!
//! There is no fallback: without `slirp4netns` on the server's `PATH`, [`helper`] fails and a
//! run that asks for networking must fail, not get the host's network.
//!
//! Lifetime: [`Network`] is a guard. Dropping it closes `slirp4netns`'s exit fd (it exits on
//! its own) and reaps it, waiting at most [`EXIT_GRACE`] before killing it.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::spawn::{Program, Stdio, spawn};
use super::{SandboxError, SandboxUnavailable, sys};

/// The user-mode network helper's executable name.
pub(crate) const HELPER: &str = "slirp4netns";

/// The interface `slirp4netns` creates in the run's namespace.
pub(crate) const TAP: &str = "tap0";

/// How long `slirp4netns` may take to configure `tap0` (it takes a few ms; a loaded 2-core
/// machine can take much longer, a hung helper must not hang the run forever).
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a dropped [`Network`] waits for `slirp4netns` to exit before killing it.
pub(crate) const EXIT_GRACE: Duration = Duration::from_millis(500);

/// At most this much of `slirp4netns`'s stderr goes into an error message.
const STDERR_CAP: usize = 4096;

/// A running `slirp4netns` serving one run's network namespace; dropping it stops it.
#[derive(Debug)]
pub(crate) struct Network {
    /// `None` only while dropping.
    child: Option<Helper>,
    /// Our end of the exit pipe: closing it is `slirp4netns`'s signal to exit.
    exit_fd: Option<OwnedFd>,
}

/// Our child `slirp4netns`, not reaped yet (so its pid is still its own).
#[derive(Debug)]
struct Helper {
    pid: libc::pid_t,
    pidfd: OwnedFd,
}

impl Network {
    /// The process id of `slirp4netns` (for logs and tests).
    pub(crate) fn helper_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|h| h.pid as u32)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        drop(self.exit_fd.take());
        if let Some(child) = self.child.take() {
            reap(child, EXIT_GRACE);
        }
    }
}

/// The `slirp4netns` executable on the server's `PATH`, found once and then remembered.
///
/// # Errors
///
/// [`SandboxError::Unavailable`] saying that networking needs `slirp4netns` (and how to
/// install it) and that there is no fallback to the host's network. A miss is not
/// remembered, so installing it later is enough.
pub(crate) fn helper() -> Result<PathBuf, SandboxError> {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    if let Some(p) = FOUND.get() {
        return Ok(p.clone());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    match find_on_path(HELPER, &path) {
        Some(p) => Ok(FOUND.get_or_init(|| p).clone()),
        None => Err(missing_helper()),
    }
}

/// The error of a server without `slirp4netns`.
fn missing_helper() -> SandboxError {
    SandboxUnavailable::new(
        "networking needs slirp4netns on the server's PATH (Debian/Ubuntu: `apt-get install slirp4netns`); \
         there is never a fallback to the host's network",
    )
    .into()
}

/// The first executable regular file `name` in the absolute directories of `path`.
/// Relative entries are skipped: they would depend on the server's working directory.
fn find_on_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path).filter(|dir| dir.is_absolute()).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Starts `slirp4netns` for the network namespace of process `pid` and waits (at most
/// [`READY_TIMEOUT`]) until `tap0` is configured.
///
/// `pid` must already sit in a fresh network namespace; the server's own namespace is
/// refused. The returned guard keeps the network up until it is dropped.
///
/// # Errors
///
/// * [`SandboxError::Unavailable`] without `slirp4netns` (see [`helper`]);
/// * [`SandboxError::InvalidArgument`] naming `pid` when `pid` is not a positive process id
///   or shares the server's network namespace;
/// * [`SandboxError::Io`] when the namespace cannot be opened, `slirp4netns` cannot be
///   started, exits early (with its stderr in the message) or is not ready in time. Nothing
///   is left running then.
pub(crate) fn attach(pid: i32) -> Result<Network, SandboxError> {
    let helper = helper()?;
    if pid <= 0 {
        return Err(SandboxError::invalid("pid", format!("{pid} is not a process id")));
    }
    let netns = open_private_netns(pid)?;
    let (ready_r, ready_w) = sys::pipe().map_err(|e| SandboxError::io("cannot create slirp4netns's ready pipe", e))?;
    let (exit_r, exit_w) = sys::pipe().map_err(|e| SandboxError::io("cannot create slirp4netns's exit pipe", e))?;

    let (stderr_r, stderr_w) =
        sys::pipe().map_err(|e| SandboxError::io("cannot create slirp4netns's stderr pipe", e))?;
    // Started vfork-style (no copy of the server), with the namespace, ready and exit fds at
    // 3, 4 and 5 of the child only, so concurrent spawns never inherit them.
    let c = |s: &str| CString::new(s).map_err(|_| SandboxError::invalid("pid", "argument with a NUL byte"));
    let argv = [
        CString::new(helper.as_os_str().as_bytes()).map_err(|_| SandboxError::invalid("PATH", "a NUL byte"))?,
        c("--configure")?,
        c("--mtu=65520")?,
        c("--disable-host-loopback")?,
        c("--enable-sandbox")?,
        c("--enable-seccomp")?,
        c("--ready-fd=4")?,
        c("--exit-fd=5")?,
        c("--netns-type=path")?,
        c("/proc/self/fd/3")?,
        c(TAP)?,
    ];
    let pid = spawn(
        Program::Path(&argv[0]),
        &argv,
        &[],
        [Stdio::Null, Stdio::Null, Stdio::Fd(stderr_w.as_raw_fd())],
        &[netns.as_raw_fd(), ready_w.as_raw_fd(), exit_r.as_raw_fd()],
    )
    .map_err(|e| SandboxError::io(format!("cannot start {}", helper.display()), e))?;
    let child = match sys::pidfd_open(pid) {
        Ok(pidfd) => Helper { pid, pidfd },
        Err(e) => {
            // SAFETY: kill and reap our own child, which nothing else waits for.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(SandboxError::io("cannot open a pidfd for slirp4netns", e));
        }
    };
    // Only the child may hold these now: the ready pipe reports EOF as soon as it dies.
    drop((netns, ready_w, exit_r, stderr_w));
    let stderr = Some(File::from(stderr_r));

    let ready = wait_ready(&ready_r);
    match ready {
        Ok(()) => {}
        Err(why) => {
            reap(child, Duration::ZERO);
            let said = stderr.map(|s| read_bounded(s, STDERR_CAP)).unwrap_or_default();
            let said = said.trim();
            let detail = if said.is_empty() { why } else { format!("{why}: {said}") };
            return Err(SandboxError::io(
                format!("slirp4netns could not set up the network of process {pid}"),
                io::Error::other(detail),
            ));
        }
    }
    if let Some(stderr) = stderr {
        // slirp4netns may still write warnings; an unread, full pipe would stall it.
        let helper_pid = child.pid as u32;
        let spawned =
            std::thread::Builder::new().name("slirp4netns-stderr".to_owned()).spawn(move || drain(stderr, helper_pid));
        if let Err(e) = spawned {
            reap(child, Duration::ZERO);
            return Err(SandboxError::io("cannot start the thread that reads slirp4netns's stderr", e));
        }
    }
    Ok(Network { child: Some(child), exit_fd: Some(exit_w) })
}

/// Opens `pid`'s network namespace (close-on-exec, numbered >= 3 so the child's stdio setup
/// cannot clobber it), refusing the server's own.
fn open_private_netns(pid: i32) -> Result<OwnedFd, SandboxError> {
    let path = format!("/proc/{pid}/ns/net");
    let file = File::open(&path).map_err(|e| SandboxError::io(format!("cannot open {path}"), e))?;
    let theirs = file.metadata().map_err(|e| SandboxError::io(format!("cannot stat {path}"), e))?;
    let ours =
        std::fs::metadata("/proc/self/ns/net").map_err(|e| SandboxError::io("cannot stat /proc/self/ns/net", e))?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Err(SandboxError::invalid(
            "pid",
            format!(
                "process {pid} is in the server's own network namespace; networking is only attached to a run's private namespace"
            ),
        ));
    }
    // SAFETY: plain fcntl on an fd we own.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(SandboxError::io(format!("cannot duplicate the fd of {path}"), io::Error::last_os_error()));
    }
    // SAFETY: r is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Waits until `slirp4netns` writes to the ready fd; the error says why it didn't.
fn wait_ready(ready: &OwnedFd) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    match wait_readable(ready.as_fd(), deadline) {
        Ok(true) => {}
        Ok(false) => return Err(format!("not ready after {} s", READY_TIMEOUT.as_secs())),
        Err(e) => return Err(format!("waiting for it failed: {e}")),
    }
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reads at most one byte into `byte`.
        let n = unsafe { libc::read(ready.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        match n {
            1 => return Ok(()),
            0 => return Err("it exited before the network was configured".to_owned()),
            _ if sys::errno() == libc::EINTR => continue,
            _ => return Err(format!("reading its ready fd failed: {}", io::Error::last_os_error())),
        }
    }
}

/// Whether `fd` became readable (or hung up) before `deadline`; `Ok(false)` on timeout.
fn wait_readable(fd: BorrowedFd<'_>, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            return Ok(true);
        }
        if r < 0 && sys::errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
}

/// Ends `child`: waits up to `grace` for it to exit on its own, then kills it; always reaps.
fn reap(child: Helper, grace: Duration) {
    // A pidfd becomes readable when the process exits: a bounded wait without sleeps.
    let exited = !grace.is_zero() && matches!(wait_readable(child.pidfd.as_fd(), Instant::now() + grace), Ok(true));
    if !exited {
        let _ = sys::pidfd_send_signal(child.pidfd.as_raw_fd(), libc::SIGKILL);
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(child.pid, &mut status, 0) } < 0 && sys::errno() == libc::EINTR {}
}

/// Reads what `slirp4netns` (now dead) left on its stderr, up to `cap` bytes, waiting at most
/// a second for the rest (a stray descendant could hold the pipe open).
fn read_bounded(mut stderr: File, cap: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while out.len() < cap && matches!(wait_readable(stderr.as_fd(), deadline), Ok(true)) {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n.min(cap - out.len())]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `slirp4netns`'s stderr until it exits, logging the first few chunks.
fn drain(mut stderr: File, helper_pid: u32) {
    let mut buf = [0u8; 4096];
    let mut logged = 0;
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if logged < 16 {
                    logged += 1;
                    let text = String::from_utf8_lossy(&buf[..n]);
                    tracing::debug!(helper_pid, "slirp4netns: {}", text.trim_end());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::process::{Child, Command, Output, Stdio};

    use super::*;

    /// Kills and reaps a test's helper process however the test ends.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn netns_id(pid: u32) -> Option<(u64, u64)> {
        std::fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|m| (m.dev(), m.ino()))
    }

    /// A `sleep` in a fresh network namespace, once it is really there (bounded wait).
    fn process_in_new_netns() -> KillOnDrop {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare must be installed");
        let guard = KillOnDrop(child);
        let ours = netns_id(std::process::id());
        for _ in 0..500 {
            let theirs = netns_id(guard.0.id());
            if theirs.is_some() && theirs != ours {
                return guard;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("unshare --net did not enter a new network namespace within 5 s");
    }

    fn bounded_output(cmd: &mut Command) -> Output {
        super::super::test_process::output_within(cmd, Duration::from_secs(20))
    }

    fn nsenter(pid: u32, args: &[&str]) -> Output {
        bounded_output(Command::new("nsenter").arg("-t").arg(pid.to_string()).arg("-n").args(args))
    }

    fn process_gone(pid: u32) -> bool {
        // Reaped: no /proc entry, or the pid already belongs to some other program.
        match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Err(_) => true,
            Ok(comm) => comm.trim() != HELPER,
        }
    }

    #[test]
    fn attach_configures_tap0_without_host_loopback_and_drop_reaps() {
        let target = process_in_new_netns();
        let pid = target.0.id();
        let net = attach(pid as i32).expect("slirp4netns must be installed (apt-get install slirp4netns)");
        let helper_pid = net.helper_pid().unwrap();

        let out = nsenter(pid, &["ip", "-4", "addr", "show", "dev", TAP]);
        let addr = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && addr.contains("inet 10.0.2.100/24"), "{out:?}");
        let out = nsenter(pid, &["ip", "-4", "route", "show", "default"]);
        let route = String::from_utf8_lossy(&out.stdout);
        assert!(route.contains("via 10.0.2.2") && route.contains(TAP), "{out:?}");

        // A host-only listener: 10.0.2.2 would be the host's 127.0.0.1 without
        // --disable-host-loopback.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let probe = format!("exec 3<>/dev/tcp/10.0.2.2/{port} && echo CONNECTED");
        let out = nsenter(pid, &["timeout", "5", "bash", "-c", &probe]);
        assert!(!out.status.success(), "connected to the host's loopback: {out:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("CONNECTED"), "{out:?}");
        listener.set_nonblocking(true).unwrap();
        let queued = (0..100).take_while(|_| listener.accept().is_ok()).count();
        assert_eq!(queued, 0, "the host-only listener got {queued} connection(s) from the namespace");

        drop(net);
        assert!(process_gone(helper_pid), "slirp4netns {helper_pid} still exists after drop");
        // Gone with it: the interface disappears from the namespace.
        let out = nsenter(pid, &["ip", "link", "show", "dev", TAP]);
        assert!(!out.status.success(), "{TAP} outlived slirp4netns: {out:?}");
    }

    #[test]
    fn the_servers_own_namespace_and_bad_pids_are_refused() {
        let own = std::process::id() as i32;
        match attach(own) {
            Err(SandboxError::InvalidArgument { argument, reason }) => {
                assert_eq!(argument, "pid");
                assert!(reason.contains("server's own network namespace"), "{reason}");
            }
            other => panic!("attaching to the server's namespace: {other:?}"),
        }
        for pid in [0, -1] {
            assert!(matches!(attach(pid), Err(SandboxError::InvalidArgument { argument: "pid", .. })), "{pid}");
        }
    }

    #[test]
    fn a_missing_helper_names_the_package_and_no_fallback() {
        assert_eq!(find_on_path(HELPER, OsStr::new("/nonexistent:relative/dir:")), None);
        let msg = missing_helper().to_string();
        assert!(msg.contains("networking needs slirp4netns on the server's PATH"), "{msg}");
        assert!(msg.contains("apt-get install slirp4netns"), "{msg}");
        assert!(msg.contains("never a fallback to the host's network"), "{msg}");
        let found = helper().unwrap();
        assert!(found.is_absolute() && found.ends_with(HELPER), "{}", found.display());
        assert_eq!(find_on_path(HELPER, found.parent().unwrap().as_os_str()), Some(found));
    }
}
