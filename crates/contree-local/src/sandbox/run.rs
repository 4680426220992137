//! The server side of a run: validating a [`SandboxSpec`] into a [`Plan`], starting
//! `contree-init` with it (and mapping its user namespace), and the per-run I/O thread
//! behind [`RunningSandbox`].

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use libc::c_int;

use super::cgroup::RunCgroup;
use super::network::{self, Network};
use super::plan::{self, ErrRecord, FilePlan, OverlayPlan, Plan, Report, Stage};
use super::{DEFAULT_PATH, ExitInfo, Rusage, SandboxError, SandboxEvent, SandboxSpec, init, seccomp, sys, userns};
use crate::images::{self, MAX_LAYERS};

/// How long after the timeout the server kills init itself, should init fail to enforce
/// the timeout (it never should; this only bounds the damage of a bug).
const TIMEOUT_BACKSTOP: Duration = Duration::from_secs(5);

/// Largest `mount(2)` option string: the kernel copies at most one page.
const LEGACY_MOUNT_DATA_MAX: usize = 4095;

/// Longest string `fsconfig(2)` accepts (`lowerdir+`, `upperdir`, `workdir`).
const FSCONFIG_STRING_MAX: usize = 255;

/// How long init may take to reach the user-namespace handshake (it is microseconds; this
/// only bounds a wedged host).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running sandbox.
///
/// `Send + Sync`: share it (e.g. in an `Arc`) between the task consuming its events and
/// the ones that cancel it or feed its stdin. Dropping it kills the sandbox if it is still
/// running; the run's events still arrive, ending with [`SandboxEvent::Exited`].
#[derive(Debug)]
pub struct RunningSandbox {
    pid: i32,
    pidfd: OwnedFd,
    pub(super) ctl: OwnedFd,
    /// The sandbox's ids run from 0 to this (exclusive).
    pub(super) id_count: u32,
    shared: Arc<Shared>,
    events: Mutex<Option<Receiver<SandboxEvent>>>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) stdin: Mutex<StdinState>,
    /// Wakes the I/O thread when there is stdin to write or close.
    pub(super) wake: OwnedFd,
    pub(super) exit: Mutex<Option<ExitInfo>>,
    pub(super) exited: Condvar,
}

impl Shared {
    /// Queues `data` for the process's stdin and, with `close`, closes it once everything
    /// queued is written; wakes the I/O thread. `BrokenPipe` (saying `closed_msg`) once
    /// stdin is closed or its close is pending.
    pub(super) fn queue_stdin(&self, data: &[u8], close: bool, closed_msg: &'static str) -> io::Result<()> {
        {
            let mut st = lock(&self.stdin);
            if st.closed || st.close_requested {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, closed_msg));
            }
            st.pending.extend_from_slice(data);
            st.close_requested = close;
        }
        wake(&self.wake);
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(super) struct StdinState {
    pub(super) pending: Vec<u8>,
    pub(super) written: usize,
    pub(super) close_requested: bool,
    pub(super) closed: bool,
}

pub(super) type Sink = Box<dyn FnMut(SandboxEvent) + Send + 'static>;

/// Starts `spec` in a new sandbox; events are collected in a channel available from
/// [`RunningSandbox::take_events`].
///
/// Blocks until the command has been `execve`d (or the sandbox failed to start, which is
/// an error: nothing is run unsandboxed). A command that cannot be found or executed is
/// not an error: it exits with 127 or 126 and a message on stderr, like a shell.
pub fn spawn(spec: SandboxSpec) -> Result<RunningSandbox, SandboxError> {
    let (tx, rx) = mpsc::channel();
    let sandbox = spawn_inner(
        spec,
        Box::new(move |ev| {
            // The receiver may be gone; the run goes on regardless.
            let _ = tx.send(ev);
        }),
    )?;
    *lock(&sandbox.events) = Some(rx);
    Ok(sandbox)
}

/// Like [`spawn`], but events are handed to `sink` on the run's I/O thread as they happen
/// (e.g. to forward them into an async channel without a thread per run).
/// [`RunningSandbox::take_events`] returns `None`.
///
/// `sink` must not block for long: it delays reading the command's output.
pub fn spawn_with_sink(
    spec: SandboxSpec,
    sink: impl FnMut(SandboxEvent) + Send + 'static,
) -> Result<RunningSandbox, SandboxError> {
    spawn_inner(spec, Box::new(sink))
}

impl RunningSandbox {
    /// The host pid of the sandbox's init process (PID 1 inside; the command is PID 2).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The event channel of a sandbox started with [`spawn`]; `None` after the first call
    /// or with [`spawn_with_sink`].
    pub fn take_events(&self) -> Option<Receiver<SandboxEvent>> {
        lock(&self.events).take()
    }

    /// Queues `data` for the command's stdin and, with `close`, closes it once everything
    /// queued is written. Never blocks on the command.
    ///
    /// Fails with `BrokenPipe` once stdin is closed (by an earlier `close`, because the spec
    /// did not keep it open, or because the command closed its end or exited).
    pub fn write_stdin(&self, data: &[u8], close: bool) -> io::Result<()> {
        self.shared.queue_stdin(data, close, "the sandbox's stdin is closed")
    }

    /// Sends `signal` to every process of the sandbox (the command and everything it
    /// started). `SIGKILL` ends the run at once; other signals end it if the command dies
    /// of them. A no-op once the sandbox has exited.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        if !(1..=64).contains(&signal) {
            return Err(SandboxError::invalid("signal", format!("{signal} is not a signal number (1..=64)")));
        }
        if self.try_wait().is_some() {
            return Ok(());
        }
        let bytes = signal.to_ne_bytes();
        // SAFETY: send on our socket with a stack buffer.
        let r = unsafe {
            libc::send(
                self.ctl.as_raw_fd(),
                bytes.as_ptr() as *const libc::c_void,
                bytes.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // init is gone: so is everything else.
            Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ECONNREFUSED) => Ok(()),
            _ if signal == libc::SIGKILL => {
                // init is not reading its requests; killing init kills the namespace.
                match sys::pidfd_send_signal(self.pidfd.as_raw_fd(), libc::SIGKILL) {
                    Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(SandboxError::io("killing the sandbox", e)),
                    _ => Ok(()),
                }
            }
            _ => Err(SandboxError::io("signalling the sandbox", err)),
        }
    }

    /// Blocks until the sandbox has exited and all its output events were delivered.
    pub fn wait(&self) -> ExitInfo {
        let mut exit = lock(&self.shared.exit);
        loop {
            if let Some(info) = exit.as_ref() {
                return info.clone();
            }
            exit = self.shared.exited.wait(exit).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How the sandbox exited, or `None` while it runs.
    pub fn try_wait(&self) -> Option<ExitInfo> {
        lock(&self.shared.exit).clone()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn wake(efd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: 8-byte write to our eventfd; EAGAIN (counter saturated) still leaves it readable.
    unsafe { libc::write(efd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
}

// ---------------------------------------------------------------------------------------
// Validation: SandboxSpec -> Plan
// ---------------------------------------------------------------------------------------

pub(super) fn cstring(arg: &'static str, s: &str) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::invalid(arg, "contains a NUL byte"))
}

fn path_cstring(arg: &'static str, p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| SandboxError::invalid(arg, "contains a NUL byte"))
}

/// A host path that goes into overlay mount options.
fn overlay_path(arg: &'static str, p: &Path) -> Result<CString, SandboxError> {
    let bytes = p.as_os_str().as_bytes();
    if !p.is_absolute() {
        return Err(SandboxError::invalid(arg, format!("{} is not an absolute path", p.display())));
    }
    if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
        return Err(SandboxError::invalid(
            arg,
            format!("{} contains ',', ':' or '\\', which overlayfs options cannot carry", p.display()),
        ));
    }
    path_cstring(arg, p)
}

/// Lexically normalises an absolute in-sandbox path (the sandbox's own root bounds `..`),
/// returning its components.
pub(super) fn sandbox_path(arg: &'static str, s: &str) -> Result<Vec<String>, SandboxError> {
    if !s.starts_with('/') {
        return Err(SandboxError::invalid(arg, format!("{s:?} is not an absolute path")));
    }
    if s.contains('\0') {
        return Err(SandboxError::invalid(arg, "contains a NUL byte"));
    }
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    Ok(parts)
}

pub(super) fn join_sandbox(parts: &[String]) -> String {
    let mut s = String::new();
    for p in parts {
        s.push('/');
        s.push_str(p);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn overlay_plan(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<OverlayPlan, SandboxError> {
    let lowers_c = lowers.iter().map(|l| overlay_path("lower_layers", l)).collect::<Result<Vec<_>, _>>()?;
    let upper_c = overlay_path("run_dir", upper)?;
    let work_c = overlay_path("run_dir", work)?;
    let mut data = String::from("lowerdir=");
    for (i, l) in lowers.iter().enumerate() {
        if i > 0 {
            data.push(':');
        }
        data.push_str(&l.to_string_lossy());
    }
    data.push_str(",upperdir=");
    data.push_str(&upper.to_string_lossy());
    data.push_str(",workdir=");
    data.push_str(&work.to_string_lossy());
    data.push_str(plan::LEGACY_OPTION_TAIL);
    let legacy_data = if data.len() <= LEGACY_MOUNT_DATA_MAX {
        Some(cstring("lower_layers", &data)?)
    } else {
        if let Some(long) =
            lowers_c.iter().chain([&upper_c, &work_c]).find(|c| c.as_bytes().len() > FSCONFIG_STRING_MAX)
        {
            return Err(SandboxError::invalid(
                "lower_layers",
                format!(
                    "with this many layers every layer path must be at most {FSCONFIG_STRING_MAX} bytes; {} is longer",
                    long.to_string_lossy()
                ),
            ));
        }
        None
    };
    Ok(OverlayPlan {
        target: path_cstring("run_dir", target)?,
        lowers: lowers_c,
        upper: upper_c,
        work: work_c,
        legacy_data,
    })
}

/// argv, envp, the paths to try, and the not-found and denied messages.
pub(super) struct ExecPlan {
    pub(super) argv: Vec<CString>,
    pub(super) envp: Vec<CString>,
    pub(super) candidates: Vec<CString>,
    pub(super) not_found_msg: Vec<u8>,
    pub(super) denied_msg: Vec<u8>,
}

fn exec_plan(spec: &SandboxSpec) -> Result<ExecPlan, SandboxError> {
    command_plan(&spec.command, &spec.args, spec.shell, &spec.env)
}

pub(super) fn command_plan(
    command: &str,
    args: &[String],
    shell: bool,
    env: &[(String, String)],
) -> Result<ExecPlan, SandboxError> {
    if command.is_empty() {
        return Err(SandboxError::invalid("command", "must not be empty"));
    }
    let argv: Vec<CString> = if shell {
        vec![c"/bin/sh".to_owned(), c"-c".to_owned(), cstring("command", command)?]
    } else {
        let mut v = vec![cstring("command", command)?];
        for a in args {
            v.push(cstring("args", a)?);
        }
        v
    };
    let mut envp = Vec::with_capacity(env.len() + 1);
    let mut path = None;
    for (k, v) in env {
        if k.is_empty() || k.contains('=') {
            return Err(SandboxError::invalid("env", format!("{k:?} is not a valid variable name")));
        }
        if k == "PATH" {
            path = Some(v.as_str());
        }
        envp.push(cstring("env", &format!("{k}={v}"))?);
    }
    if path.is_none() {
        envp.push(cstring("env", &format!("PATH={DEFAULT_PATH}"))?);
    }
    let program = if shell { "/bin/sh" } else { command };
    let candidates = if program.contains('/') {
        vec![cstring("command", program)?]
    } else {
        path.unwrap_or(DEFAULT_PATH)
            .split(':')
            .map(|dir| {
                let dir = if dir.is_empty() { "." } else { dir };
                cstring("env", &format!("{}/{program}", dir.trim_end_matches('/')))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(ExecPlan {
        argv,
        envp,
        candidates,
        not_found_msg: format!("contree-local: {program}: command not found\n").into_bytes(),
        denied_msg: format!("contree-local: {program}: cannot execute (permission denied or not an executable)\n")
            .into_bytes(),
    })
}

/// Creates `p` (which must not exist) with exactly `mode`, whatever the umask.
fn mkdir_exact(p: &Path, mode: u32) -> Result<(), SandboxError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(p)
        .and_then(|()| fs::set_permissions(p, fs::Permissions::from_mode(mode)))
        .map_err(|e| SandboxError::io(format!("creating {}", p.display()), e))
}

/// The run directory layout, created by [`prepare_run_dir`].
struct RunDirs {
    /// `(upper, work, mount target)` per overlay, root first.
    overlays: Vec<(PathBuf, PathBuf, PathBuf)>,
    merged: PathBuf,
}

fn prepare_run_dir(spec: &SandboxSpec) -> Result<RunDirs, SandboxError> {
    let run = &spec.run_dir;
    if !run.is_absolute() {
        return Err(SandboxError::invalid("run_dir", format!("{} is not an absolute path", run.display())));
    }
    fs::create_dir_all(run).map_err(|e| SandboxError::io(format!("creating {}", run.display()), e))?;
    let upper = run.join("upper");
    if fs::symlink_metadata(&upper).is_ok() {
        return Err(SandboxError::invalid("run_dir", format!("{} was already used by a run", run.display())));
    }
    let merged = shared_mount_point(run);
    if !merged.is_dir() {
        match fs::DirBuilder::new().mode(0o755).create(&merged) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(SandboxError::io(format!("creating {}", merged.display()), e));
            }
            _ => {}
        }
    }
    // The sandbox's `/` takes its owner and mode from the upper dir's root: the skeleton's,
    // or an imported image's own top layer's.
    let root_of = match spec.lower_layers.first() {
        Some(top) if spec.own_root => top,
        _ => &spec.base.skeleton,
    };
    let root_mode = fs::metadata(root_of)
        .map_err(|e| SandboxError::io(format!("reading the image's root {}", root_of.display()), e))?
        .mode()
        & 0o7777;
    mkdir_exact(&upper, root_mode)?;
    // Root of the sandbox's user namespace owns its `/` (the skeleton's owner, host root,
    // shows as root inside through the idmapped base).
    chown_to_range(&upper, 0, 0, spec)?;
    let scratch = run.join("scratch");
    mkdir_exact(&scratch, 0o700)?;
    mkdir_exact(&scratch.join("work"), 0o700)?;
    let mut overlays = vec![(upper, scratch.join("work"), merged.clone())];
    for (name, host_path) in spec.base.host_mounts().filter(|_| !spec.own_root) {
        let meta =
            fs::metadata(host_path).map_err(|e| SandboxError::io(format!("reading {}", host_path.display()), e))?;
        // The overlay's root takes the attributes of its upper dir: make it look like the
        // host directory.
        let hu = scratch.join(format!("{name}.upper"));
        mkdir_exact(&hu, meta.mode() & 0o7777)?;
        chown_to_range(&hu, meta.uid(), meta.gid(), spec)?;
        let hw = scratch.join(format!("{name}.work"));
        mkdir_exact(&hw, 0o700)?;
        overlays.push((hu, hw, merged.join(name)));
    }
    Ok(RunDirs { overlays, merged })
}

/// Gives `p` the host ids of sandbox ids `uid:gid` (ids outside the range become root's).
fn chown_to_range(p: &Path, uid: u32, gid: u32, spec: &SandboxSpec) -> Result<(), SandboxError> {
    let host = |id: u32| spec.ids.to_host(id).unwrap_or(spec.ids.base());
    std::os::unix::fs::chown(p, Some(host(uid)), Some(host(gid)))
        .map_err(|e| SandboxError::io(format!("chown {}", p.display()), e))
}

/// The directory every sandbox mounts its root on: one empty directory next to the run
/// dirs, shared by all runs. Each mount exists only in its sandbox's private mount
/// namespace, so concurrent runs never see each other's, and no per-run mount point has to
/// be created and removed (directory removal costs up to half a millisecond on some disks).
fn shared_mount_point(run: &Path) -> PathBuf {
    run.parent().unwrap_or(Path::new("/")).join(".mnt")
}

/// Removes what [`prepare_run_dir`] created, after a failed start.
fn cleanup_run_dir(run: &Path) {
    for sub in ["upper", "scratch"] {
        let _ = fs::remove_dir_all(run.join(sub));
    }
    let _ = fs::remove_dir(run);
}

/// init's ends of a run's pipes and sockets.
struct ChildEnds {
    err_w: OwnedFd,
    status_w: OwnedFd,
    ctl: OwnedFd,
    sync: OwnedFd,
    stdin_r: OwnedFd,
    stdout_w: OwnedFd,
    stderr_w: OwnedFd,
}

/// The fds of one run: the server's ends and init's.
struct Pipes {
    stdin_w: OwnedFd,
    stdout_r: OwnedFd,
    stderr_r: OwnedFd,
    status_r: OwnedFd,
    err_r: OwnedFd,
    ctl: OwnedFd,
    sync: OwnedFd,
    child: ChildEnds,
}

fn make_pipes() -> Result<Pipes, SandboxError> {
    let e = |e| SandboxError::io("creating pipes for the sandbox", e);
    let (stdin_r, stdin_w) = sys::pipe().map_err(e)?;
    let (stdout_r, stdout_w) = sys::pipe().map_err(e)?;
    let (stderr_r, stderr_w) = sys::pipe().map_err(e)?;
    let (status_r, status_w) = sys::pipe().map_err(e)?;
    let (err_r, err_w) = sys::pipe().map_err(e)?;
    let (ctl, ctl_child) = sys::seqpacket_pair().map_err(e)?;
    let (sync, sync_child) = sys::seqpacket_pair().map_err(e)?;
    Ok(Pipes {
        stdin_w,
        stdout_r,
        stderr_r,
        status_r,
        err_r,
        ctl,
        sync,
        child: ChildEnds { err_w, status_w, ctl: ctl_child, sync: sync_child, stdin_r, stdout_w, stderr_w },
    })
}

/// Everything validated and opened for one run.
struct Prepared {
    plan: Plan,
    /// In-sandbox destinations, for error messages.
    file_dests: Vec<String>,
    mount_names: Vec<String>,
    cwd: String,
}

/// Also returns the opened blob fds the plan refers to.
fn prepare(spec: &SandboxSpec, dirs: &RunDirs) -> Result<(Prepared, Vec<OwnedFd>), SandboxError> {
    let in_range = |arg: &'static str, what: &str, id: u32| {
        if id < spec.ids.count() {
            Ok(())
        } else {
            Err(SandboxError::invalid(
                arg,
                format!("{what} {id} is outside the sandbox's id range 0..{}", spec.ids.count()),
            ))
        }
    };
    in_range("uid", "uid", spec.uid)?;
    in_range("gid", "gid", spec.gid)?;
    let image_layers = images::image_layers(&spec.lower_layers, &spec.base);
    if image_layers.len() > MAX_LAYERS {
        return Err(SandboxError::invalid(
            "lower_layers",
            format!("{} layers; overlayfs allows at most {MAX_LAYERS} above the base image", image_layers.len()),
        ));
    }
    let stacks = images::overlay_stacks(&spec.lower_layers, &spec.base, spec.own_root);
    let mut mounts = Vec::with_capacity(stacks.len());
    let mut mount_names = Vec::with_capacity(stacks.len());
    for (stack, (upper, work, target)) in stacks.iter().zip(&dirs.overlays) {
        mounts.push(overlay_plan(&stack.lowers, upper, work, target)?);
        mount_names.push(stack.mount_point.clone());
    }

    if spec.hostname.len() > 64 {
        return Err(SandboxError::invalid("hostname", "longer than 64 bytes"));
    }
    let hostname = cstring("hostname", &spec.hostname)?.into_bytes();

    let cwd_parts = sandbox_path("cwd", &spec.cwd)?;
    let cwd = join_sandbox(&cwd_parts);

    let timeout_ms = match spec.timeout {
        Some(t) if t.is_zero() => return Err(SandboxError::invalid("timeout", "must be positive")),
        Some(t) => Some(u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)),
        None => None,
    };

    let mut files = Vec::with_capacity(spec.files.len());
    let mut file_fds = Vec::with_capacity(spec.files.len());
    let mut file_dests = Vec::with_capacity(spec.files.len());
    for f in &spec.files {
        let parts = sandbox_path("files", &f.dest)?;
        if parts.is_empty() {
            return Err(SandboxError::invalid("files", "a file cannot be placed at /"));
        }
        if f.mode > 0o7777 {
            return Err(SandboxError::invalid(
                "files",
                format!("mode {:o} of {} has bits beyond 0o7777", f.mode, f.dest),
            ));
        }
        in_range("files", &format!("the owner of {}: uid", f.dest), f.uid)?;
        in_range("files", &format!("the owner of {}: gid", f.dest), f.gid)?;
        let src = fs::File::open(&f.source)
            .map_err(|e| SandboxError::io(format!("opening {} (content of {})", f.source.display(), f.dest), e))?;
        let src = OwnedFd::from(src);
        let dest = join_sandbox(&parts);
        files.push(FilePlan { dest: cstring("files", &dest)?, mode: f.mode, uid: f.uid, gid: f.gid });
        file_fds.push(src);
        file_dests.push(dest);
    }

    let exec = exec_plan(spec)?;
    // The base image's host-owned directories, shown through the id range's mapping.
    let mut idmaps = vec![path_cstring("base", &spec.base.skeleton)?];
    if spec.base.mask.is_dir() {
        idmaps.push(path_cstring("base", &spec.base.mask)?);
    }
    for (_, host) in spec.base.host_mounts() {
        idmaps.push(path_cstring("base", host)?);
    }
    let prepared = Prepared {
        plan: Plan {
            idmaps,
            mounts,
            new_root: path_cstring("run_dir", &dirs.merged)?,
            hostname,
            files,
            cwd: cstring("cwd", &cwd)?,
            uid: spec.uid,
            gid: spec.gid,
            argv: exec.argv,
            envp: exec.envp,
            candidates: exec.candidates,
            not_found_msg: exec.not_found_msg,
            denied_msg: exec.denied_msg,
            timeout_ms,
            seccomp: seccomp::filters()?,
        },
        file_dests,
        mount_names,
        cwd,
    };
    Ok((prepared, file_fds))
}

fn describe_stage(rec: &ErrRecord, prep: &Prepared, spec: &SandboxSpec) -> String {
    let i = rec.index as usize;
    match Stage::from_u32(rec.stage) {
        Some(Stage::MakePrivate) => "making mounts private".into(),
        Some(Stage::MountOverlay) => {
            let what = match prep.mount_names.get(i).map(String::as_str) {
                Some("/") | None => "mounting the image's layers (overlayfs)".to_owned(),
                Some(p) => format!("mounting the overlay for {p}"),
            };
            if prep.plan.mounts.get(i).is_some_and(|m| m.legacy_data.is_none()) {
                format!(
                    "{what}; its layer paths exceed one page, which needs overlayfs `lowerdir+` (Linux 6.8 or later)"
                )
            } else {
                what
            }
        }
        Some(Stage::PivotRoot) => format!("switching to the image's root (pivot_root, step {i})"),
        Some(Stage::MountProc) => "mounting /proc".into(),
        Some(Stage::MountDev) => "setting up /dev".into(),
        Some(Stage::ProtectProc) => "making /proc/sys and friends read-only".into(),
        Some(Stage::Hostname) => format!("setting the hostname to {:?}", spec.hostname),
        Some(Stage::Loopback) => "bringing up the loopback interface".into(),
        Some(Stage::PlaceFile) => format!("placing file {}", prep.file_dests.get(i).map(String::as_str).unwrap_or("?")),
        Some(Stage::CreateCwd) => format!("creating the working directory {}", prep.cwd),
        Some(Stage::Signalfd) => "creating a signalfd".into(),
        Some(Stage::ForkCommand) => "starting the command process".into(),
        Some(Stage::Stdio) => "redirecting stdio".into(),
        Some(Stage::Capabilities) => "dropping capabilities".into(),
        Some(Stage::Credentials) => match i {
            0 => format!("setting supplementary groups to [{}]", spec.gid),
            1 => format!("setting gid {}", spec.gid),
            _ => format!("setting uid {}", spec.uid),
        },
        Some(Stage::Chdir) => format!("entering the working directory {} as uid {}", prep.cwd, spec.uid),
        Some(Stage::Plan) => format!("reading the sandbox plan (record {i})"),
        Some(Stage::Idmap) => "mapping the base image's host directories into the id range (idmapped mounts)".into(),
        Some(Stage::UserNamespace) => "creating the sandbox's user and other namespaces".into(),
        Some(Stage::Sync) => "waiting for the server to map the user namespace".into(),
        Some(Stage::Seccomp) => "installing the seccomp filter".into(),
        Some(Stage::Keyring) => "creating the run's session keyring".into(),
        Some(Stage::ForkInit) => "starting the sandbox's PID 1".into(),
        None => format!("setting up (stage {})", rec.stage),
    }
}

/// Reads the child's error pipe to EOF: `None` when the command was executed.
pub(super) fn read_err_record(fd: &OwnedFd) -> Option<ErrRecord> {
    let mut rec = ErrRecord::default();
    let size = std::mem::size_of::<ErrRecord>();
    let mut got = 0usize;
    loop {
        // SAFETY: reading into the remaining bytes of a plain-old-data struct.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut rec as *mut ErrRecord as *mut u8).add(got) as *mut libc::c_void,
                size - got,
            )
        };
        if n < 0 {
            if sys::errno() == libc::EINTR {
                continue;
            }
            return Some(ErrRecord { stage: 0, index: 0, errno: sys::errno() });
        }
        if n == 0 {
            return if got == 0 { None } else { Some(ErrRecord { stage: 0, index: 0, errno: libc::EIO }) };
        }
        got += n as usize;
        if got == size {
            return Some(rec);
        }
    }
}

/// Kills and reaps a sandbox whose start failed.
fn kill_and_reap(pidfd: &OwnedFd, pid: libc::pid_t) {
    let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && sys::errno() == libc::EINTR {}
}

fn spawn_inner(spec: SandboxSpec, sink: Sink) -> Result<RunningSandbox, SandboxError> {
    let dirs = prepare_run_dir(&spec)?;
    let result = start(&spec, &dirs, sink);
    if result.is_err() {
        cleanup_run_dir(&spec.run_dir);
    }
    result
}

fn start(spec: &SandboxSpec, dirs: &RunDirs, sink: Sink) -> Result<RunningSandbox, SandboxError> {
    let Pipes { stdin_w, stdout_r, stderr_r, status_r, err_r, ctl, sync, child: child_ends } = make_pipes()?;
    let (prep, file_fds) = prepare(spec, dirs)?;
    let wake_fd = sys::eventfd().map_err(|e| SandboxError::io("creating an eventfd", e))?;
    let userns = userns::mapping_namespace(&spec.ids)?;
    // Made before init exists, so a host that can't make it fails the run with nothing to
    // kill; removed when the guard drops (here on error, or by the I/O thread).
    let cgroup = match &spec.cgroups {
        Some(c) => Some(c.new_run().map_err(|e| SandboxError::io("creating the run's cgroup", e))?),
        None => None,
    };
    let plan_fd = prep.plan.to_memfd().map_err(|e| SandboxError::io("writing the sandbox plan", e))?;

    // init's fds, by number (init::spawn numbers them from 3).
    let at = |n: i32| (n - 3) as usize;
    let mut fds: Vec<RawFd> = vec![-1; at(plan::fd::FIRST_FILE) + file_fds.len()];
    fds[at(plan::fd::PLAN)] = plan_fd.as_raw_fd();
    fds[at(plan::fd::ERR)] = child_ends.err_w.as_raw_fd();
    fds[at(plan::fd::STATUS)] = child_ends.status_w.as_raw_fd();
    fds[at(plan::fd::CTL)] = child_ends.ctl.as_raw_fd();
    fds[at(plan::fd::SYNC)] = child_ends.sync.as_raw_fd();
    fds[at(plan::fd::STDIN)] = child_ends.stdin_r.as_raw_fd();
    fds[at(plan::fd::STDOUT)] = child_ends.stdout_w.as_raw_fd();
    fds[at(plan::fd::STDERR)] = child_ends.stderr_w.as_raw_fd();
    fds[at(plan::fd::USERNS)] = userns;
    for (i, f) in file_fds.iter().enumerate() {
        fds[at(plan::fd::FIRST_FILE) + i] = f.as_raw_fd();
    }
    let started = Instant::now();
    let pid = init::spawn(&[], &fds).map_err(|e| SandboxError::io("starting the sandbox's init", e))?;
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // SAFETY: plain kill + reap of our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let mut status = 0;
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && sys::errno() == libc::EINTR {}
            return Err(SandboxError::io("opening a pidfd for the sandbox", e));
        }
    };
    // Only the sandbox may hold its ends, or EOFs would never come.
    drop(child_ends);
    drop(file_fds);
    drop(plan_fd);

    let network = match handshake(&sync, pid, spec, cgroup.as_ref()) {
        Ok(network) => network,
        Err(e) => {
            kill_and_reap(&pidfd, pid);
            // A failure inside init explains itself better than the broken handshake.
            if let Some(rec) = read_err_record(&err_r) {
                return Err(SandboxError::Setup {
                    stage: describe_stage(&rec, &prep, spec),
                    source: io::Error::from_raw_os_error(rec.errno),
                });
            }
            return Err(e);
        }
    };
    drop(sync);

    if let Some(rec) = read_err_record(&err_r) {
        kill_and_reap(&pidfd, pid);
        return Err(SandboxError::Setup {
            stage: describe_stage(&rec, &prep, spec),
            source: io::Error::from_raw_os_error(rec.errno),
        });
    }
    drop(err_r);

    let shared = Arc::new(Shared {
        stdin: Mutex::new(StdinState {
            pending: spec.stdin.clone(),
            written: 0,
            close_requested: !spec.keep_stdin_open,
            closed: false,
        }),
        wake: wake_fd,
        exit: Mutex::new(None),
        exited: Condvar::new(),
    });
    sys::set_nonblocking(stdin_w.as_raw_fd()).map_err(|e| SandboxError::io("configuring the stdin pipe", e))?;
    let io = IoThread {
        pid,
        stdin_w: Some(stdin_w),
        stdout_r: Some(stdout_r),
        stderr_r: Some(stderr_r),
        status_r: Some(status_r),
        shared: Arc::clone(&shared),
        sink,
        started,
        backstop: spec.timeout.map(|t| started + t + TIMEOUT_BACKSTOP),
        pidfd: pidfd.try_clone().map_err(|e| SandboxError::io("duplicating the pidfd", e))?,
        _network: network,
        cgroup,
    };
    if let Err(e) = std::thread::Builder::new().name(format!("contree-sandbox-{pid}")).spawn(move || io.run()) {
        kill_and_reap(&pidfd, pid);
        return Err(SandboxError::io("starting the sandbox's I/O thread", e));
    }
    Ok(RunningSandbox { pid, pidfd, ctl, id_count: spec.ids.count(), shared, events: Mutex::new(None) })
}

/// Waits for init's new user namespace, maps it to the id range, gives it networking
/// when asked, and lets init go on.
fn handshake(
    sync: &OwnedFd,
    pid: libc::pid_t,
    spec: &SandboxSpec,
    cgroup: Option<&RunCgroup>,
) -> Result<Option<Network>, SandboxError> {
    let broken =
        |what: &str| SandboxError::io(format!("sandbox handshake: {what}"), io::Error::from(io::ErrorKind::BrokenPipe));
    let mut p = pollfd(sync.as_raw_fd(), libc::POLLIN);
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_millis().min(c_int::MAX as u128) as c_int;
        // SAFETY: poll on one stack pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left) };
        if n > 0 {
            break;
        }
        if n == 0 || left == 0 {
            return Err(SandboxError::io(
                "sandbox handshake",
                io::Error::new(io::ErrorKind::TimedOut, "init did not create its namespaces in time"),
            ));
        }
    }
    let mut b = [0u8; 1];
    // SAFETY: one-byte recv into a stack buffer.
    let n = unsafe { libc::recv(sync.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 1, libc::MSG_DONTWAIT) };
    if n != 1 || b[0] != b'U' {
        return Err(broken("init ended before creating its namespaces"));
    }
    userns::write_maps(pid, &spec.ids).map_err(|e| SandboxError::io("mapping the sandbox's user namespace", e))?;
    // init is the only process of the sandbox and waits for 'G': everything it starts
    // afterwards is born inside the limits.
    if let Some(cg) = cgroup {
        cg.add(pid).map_err(|e| SandboxError::io("moving the sandbox into its cgroup", e))?;
    }
    let network = if spec.network { Some(network::attach(pid)?) } else { None };
    let go = [b'G'];
    // SAFETY: one-byte send from a stack buffer.
    let n = unsafe { libc::send(sync.as_raw_fd(), go.as_ptr() as *const libc::c_void, 1, libc::MSG_NOSIGNAL) };
    if n != 1 {
        return Err(broken("init ended during the handshake"));
    }
    Ok(network)
}

// ---------------------------------------------------------------------------------------
// The I/O thread
// ---------------------------------------------------------------------------------------

struct IoThread {
    pid: libc::pid_t,
    /// The run's network helper, stopped when the run has ended.
    _network: Option<Network>,
    /// The run's cgroup: read for OOM kills and removed once init is reaped.
    cgroup: Option<RunCgroup>,
    pidfd: OwnedFd,
    stdin_w: Option<OwnedFd>,
    stdout_r: Option<OwnedFd>,
    stderr_r: Option<OwnedFd>,
    status_r: Option<OwnedFd>,
    shared: Arc<Shared>,
    sink: Sink,
    started: Instant,
    backstop: Option<Instant>,
}

pub(super) const CHUNK: usize = 64 * 1024;

impl IoThread {
    fn run(mut self) {
        block_sigpipe();
        let mut buf = vec![0u8; CHUNK];
        let mut report_buf = [0u8; std::mem::size_of::<Report>()];
        let mut report_len = 0usize;
        let mut backstop_fired = false;
        while self.stdout_r.is_some() || self.stderr_r.is_some() || self.status_r.is_some() {
            let want_stdin = self.stdin_housekeeping();
            let raw = |f: &Option<OwnedFd>| f.as_ref().map_or(-1, |f| f.as_raw_fd());
            let mut fds = [
                pollfd(raw(&self.stdout_r), libc::POLLIN),
                pollfd(raw(&self.stderr_r), libc::POLLIN),
                pollfd(raw(&self.status_r), libc::POLLIN),
                pollfd(self.shared.wake.as_raw_fd(), libc::POLLIN),
                pollfd(if want_stdin { raw(&self.stdin_w) } else { -1 }, libc::POLLOUT),
            ];
            let timeout = match self.backstop {
                Some(b) if !backstop_fired => {
                    let left = b.saturating_duration_since(Instant::now());
                    left.as_millis().min(c_int::MAX as u128) as c_int
                }
                _ => -1,
            };
            // SAFETY: poll over a stack array of pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                continue;
            }
            if let Some(b) = self.backstop
                && !backstop_fired
                && Instant::now() >= b
            {
                backstop_fired = true;
                tracing::warn!(pid = self.pid, "sandbox outlived its timeout; killing its init");
                let _ = sys::pidfd_send_signal(self.pidfd.as_raw_fd(), libc::SIGKILL);
            }
            if fds[0].revents != 0 {
                self.read_output(true, &mut buf);
            }
            if fds[1].revents != 0 {
                self.read_output(false, &mut buf);
            }
            if fds[2].revents != 0
                && let Some(fd) = &self.status_r
            {
                // SAFETY: reading into the unfilled tail of a stack buffer.
                let r = unsafe {
                    libc::read(
                        fd.as_raw_fd(),
                        report_buf[report_len..].as_mut_ptr() as *mut libc::c_void,
                        report_buf.len() - report_len,
                    )
                };
                if r > 0 {
                    report_len += r as usize;
                } else if r == 0 || (sys::errno() != libc::EINTR && sys::errno() != libc::EAGAIN) {
                    self.status_r = None;
                }
            }
            if fds[3].revents != 0 {
                let mut v = 0u64;
                // SAFETY: 8-byte read from our eventfd.
                unsafe { libc::read(self.shared.wake.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
            }
            if fds[4].revents != 0 {
                self.write_stdin();
            }
        }
        self.stdin_w = None;
        lock(&self.shared.stdin).closed = true;

        let mut init_status = 0;
        // SAFETY: reaping our own child; everything in its PID namespace is gone once it is.
        while unsafe { libc::waitpid(self.pid, &mut init_status, 0) } < 0 && sys::errno() == libc::EINTR {}

        let report = (report_len == report_buf.len()).then(|| {
            // SAFETY: the buffer holds exactly one Report written by init.
            unsafe { std::ptr::read_unaligned(report_buf.as_ptr() as *const Report) }
        });
        let mut info = exit_info(report, backstop_fired, self.started.elapsed());
        if let Some(cg) = self.cgroup.take() {
            // Every process of the sandbox is gone with init: the counter is final.
            info.oom_killed = cg.oom_kills() > 0;
            drop(cg);
        }
        (self.sink)(SandboxEvent::Exited(info.clone()));
        *lock(&self.shared.exit) = Some(info);
        self.shared.exited.notify_all();
    }

    fn read_output(&mut self, stdout: bool, buf: &mut [u8]) {
        let slot = if stdout { &mut self.stdout_r } else { &mut self.stderr_r };
        let Some(fd) = slot else { return };
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n > 0 {
            let chunk = buf[..n as usize].to_vec();
            (self.sink)(if stdout { SandboxEvent::Stdout(chunk) } else { SandboxEvent::Stderr(chunk) });
        } else if n == 0 || (sys::errno() != libc::EINTR && sys::errno() != libc::EAGAIN) {
            *slot = None;
        }
    }

    /// Closes stdin when asked and everything queued is written; tells whether there is
    /// something to write.
    fn stdin_housekeeping(&mut self) -> bool {
        stdin_housekeeping(&mut self.stdin_w, &self.shared)
    }

    fn write_stdin(&mut self) {
        write_stdin(&mut self.stdin_w, &self.shared)
    }
}

/// Closes `stdin_w` when asked and everything queued is written; tells whether there is
/// something to write.
pub(super) fn stdin_housekeeping(stdin_w: &mut Option<OwnedFd>, shared: &Shared) -> bool {
    let mut st = lock(&shared.stdin);
    if stdin_w.is_none() {
        return false;
    }
    if st.closed || (st.close_requested && st.written == st.pending.len()) {
        *stdin_w = None;
        st.closed = true;
        st.pending = Vec::new();
        return false;
    }
    st.written < st.pending.len()
}

pub(super) fn write_stdin(stdin_w: &mut Option<OwnedFd>, shared: &Shared) {
    let Some(fd) = stdin_w else { return };
    let mut st = lock(&shared.stdin);
    let StdinState { pending, written, .. } = &mut *st;
    // SAFETY: writing from our buffer; SIGPIPE is blocked on this thread.
    let n = unsafe {
        libc::write(fd.as_raw_fd(), pending[*written..].as_ptr() as *const libc::c_void, pending.len() - *written)
    };
    if n >= 0 {
        *written += n as usize;
        if *written == pending.len() {
            pending.clear();
            *written = 0;
        }
    } else if sys::errno() != libc::EAGAIN && sys::errno() != libc::EINTR {
        // The command closed its stdin or exited: drop what is left.
        st.closed = true;
        st.pending = Vec::new();
        st.written = 0;
        drop(st);
        *stdin_w = None;
    }
}

pub(super) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// A write to a pipe whose reader is gone raises SIGPIPE on the writing thread; block it
/// here so that the write just fails with EPIPE, whatever the embedding program does with
/// SIGPIPE.
pub(super) fn block_sigpipe() {
    // SAFETY: building a sigset and changing this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

pub(super) fn exit_info(report: Option<Report>, backstop_fired: bool, elapsed: Duration) -> ExitInfo {
    let Some(r) = report else {
        // init died without reporting (killed by the backstop or from outside).
        return ExitInfo {
            exit_code: -1,
            signal: libc::SIGKILL,
            core_dump: false,
            timed_out: backstop_fired,
            oom_killed: false,
            duration: elapsed,
            rusage: Rusage::default(),
        };
    };
    let st = r.status;
    let (exit_code, signal, core_dump) = if libc::WIFEXITED(st) {
        (libc::WEXITSTATUS(st), -1, false)
    } else if libc::WIFSIGNALED(st) {
        (-1, libc::WTERMSIG(st), libc::WCOREDUMP(st))
    } else {
        (-1, -1, false)
    };
    ExitInfo {
        exit_code,
        signal,
        core_dump,
        timed_out: r.timed_out != 0,
        oom_killed: false,
        duration: Duration::from_nanos(r.elapsed_ns),
        rusage: Rusage::from_libc(&r.rusage),
    }
}
