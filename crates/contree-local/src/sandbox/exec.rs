//! Extra processes in a running sandbox (the API's subprocesses, spid ≥ 2).
//!
//! The server never enters a sandbox itself: no host process calls `setns` into a run's
//! namespaces (the path of `docker exec`-style escapes: a privileged joiner traced or fed
//! fds by the container, CVE-2016-9962, CVE-2019-5736). Instead the sandbox's own PID 1,
//! already inside every namespace of the run (user, mount, PID, network, UTS, IPC,
//! cgroup), in its cgroup and under its rlimits, forks the process on a request sent over
//! its control socket, and runs it through exactly the main command's last step:
//! capability bounding set, the run's seccomp filters, the requested uid/gid (mapped in
//! the run's id range), the cwd, exactly the requested environment, `execve`. The request
//! carries a plan in a memfd (argv, env, cwd, ids: nothing else is accepted by init) and
//! the process's pipes; PID 1 reaps the process and reports its wait status and `rusage`
//! on a status pipe of its own.
//!
//! Sharp edges: the process dies with the run (PID 1's exit kills its PID namespace), and
//! a process left in the background by it may keep its output open; its output is then
//! read for a moment after it exited, not until that background process ends.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use libc::c_int;

use super::plan::{CtlMsg, ErrRecord, Report, Stage, SubPlan, ctl};
use super::run::{
    CHUNK, Shared, Sink, StdinState, block_sigpipe, command_plan, cstring, exit_info, join_sandbox, lock, pollfd,
    read_err_record, sandbox_path, stdin_housekeeping, write_stdin,
};
use super::{ExitInfo, RunningSandbox, SandboxError, SandboxEvent, sys};

/// How long PID 1 may take to start a process (it is microseconds; this only bounds a
/// wedged sandbox).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long output is still read after the process exited, for what a background process
/// of it still writes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(50);

/// An extra process to start in a running sandbox.
#[derive(Debug, Clone)]
pub struct SubprocessSpec {
    /// The program (looked up in `PATH` unless it contains `/`), or with `shell`, a shell
    /// command line.
    pub command: String,
    /// Arguments after the program name (ignored with `shell`).
    pub args: Vec<String>,
    /// Run `/bin/sh -c command`.
    pub shell: bool,
    /// The process's whole environment (plus a default `PATH` when it has none).
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the sandbox; it must exist.
    pub cwd: String,
    /// User id (inside the sandbox's id range).
    pub uid: u32,
    /// Group id (and only supplementary group).
    pub gid: u32,
    /// Bytes fed to stdin.
    pub stdin: Vec<u8>,
    /// Keep stdin open after `stdin` (more can come from [`RunningSubprocess::write_stdin`]).
    pub keep_stdin_open: bool,
}

impl SubprocessSpec {
    /// A spec with defaults: root, cwd `/`, empty environment (so `PATH` is the default),
    /// empty stdin, closed.
    pub fn new(command: impl Into<String>) -> Self {
        SubprocessSpec {
            command: command.into(),
            args: Vec::new(),
            shell: false,
            env: Vec::new(),
            cwd: "/".to_owned(),
            uid: 0,
            gid: 0,
            stdin: Vec::new(),
            keep_stdin_open: false,
        }
    }
}

/// An extra process of a running sandbox. Dropping it leaves the process running (it ends
/// with the sandbox at the latest); its events keep arriving in the sink.
#[derive(Debug)]
pub struct RunningSubprocess {
    pid: i32,
    spid: u32,
    ctl: OwnedFd,
    shared: Arc<Shared>,
}

impl RunningSandbox {
    /// Starts `spec` as process `spid` inside this sandbox; its output and its exit go to
    /// `sink` (on a thread of its own), ending with exactly one [`SandboxEvent::Exited`].
    ///
    /// Blocks until the process has been `execve`d. A command that cannot be found or
    /// executed is not an error (127 or 126 and a message on stderr, like the main
    /// command); a working directory that doesn't exist is. [`SandboxError::Ended`] when
    /// the sandbox has already ended.
    pub fn exec(
        &self,
        spid: u32,
        spec: SubprocessSpec,
        sink: impl FnMut(SandboxEvent) + Send + 'static,
    ) -> Result<RunningSubprocess, SandboxError> {
        if self.try_wait().is_some() {
            return Err(SandboxError::Ended);
        }
        let (plan, cwd) = sub_plan(&spec, self.id_count)?;
        let plan_fd = plan.to_memfd().map_err(|e| SandboxError::io("writing the process's plan", e))?;
        let e = |e| SandboxError::io("creating pipes for the process", e);
        let (stdin_r, stdin_w) = sys::pipe().map_err(e)?;
        let (stdout_r, stdout_w) = sys::pipe().map_err(e)?;
        let (stderr_r, stderr_w) = sys::pipe().map_err(e)?;
        let (err_r, err_w) = sys::pipe().map_err(e)?;
        let (status_r, status_w) = sys::pipe().map_err(e)?;
        let wake_fd = sys::eventfd().map_err(|e| SandboxError::io("creating an eventfd", e))?;
        let ctl_fd = self.ctl.try_clone().map_err(|e| SandboxError::io("duplicating the control socket", e))?;

        let fds = [
            plan_fd.as_raw_fd(),
            stdin_r.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
            err_w.as_raw_fd(),
            status_w.as_raw_fd(),
        ];
        let msg = CtlMsg { op: ctl::EXEC, spid, sig: 0 };
        send_ctl(&ctl_fd, &msg, &fds).map_err(|e| match e.raw_os_error() {
            Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ECONNREFUSED) => SandboxError::Ended,
            _ => SandboxError::io("sending the request to the sandbox's init", e),
        })?;
        let started = Instant::now();
        // Only init and the process may hold these now, or EOFs would never come.
        drop((plan_fd, stdin_r, stdout_w, stderr_w, err_w, status_w));

        let deadline = started + START_TIMEOUT;
        wait_readable(&err_r, deadline)?;
        if let Some(rec) = read_err_record(&err_r) {
            return Err(SandboxError::Setup {
                stage: describe(&rec, &spec, &cwd),
                source: io::Error::from_raw_os_error(rec.errno),
            });
        }
        drop(err_r);
        wait_readable(&status_r, deadline)?;
        let mut pid_bytes = [0u8; 4];
        // SAFETY: reading 4 bytes into a stack buffer; init writes them in one write.
        let n = unsafe { libc::read(status_r.as_raw_fd(), pid_bytes.as_mut_ptr() as *mut libc::c_void, 4) };
        if n != 4 {
            // init ended (with the sandbox) before starting it.
            return Err(SandboxError::Ended);
        }
        let pid = i32::from_ne_bytes(pid_bytes);

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
        let io = SubIo {
            stdin_w: Some(stdin_w),
            stdout_r: Some(stdout_r),
            stderr_r: Some(stderr_r),
            status_r: Some(status_r),
            shared: Arc::clone(&shared),
            sink: Box::new(sink),
            started,
        };
        let handle = RunningSubprocess { pid, spid, ctl: ctl_fd, shared };
        if let Err(e) = std::thread::Builder::new().name(format!("contree-subproc-{spid}")).spawn(move || io.run()) {
            let _ = handle.kill(libc::SIGKILL);
            return Err(SandboxError::io("starting the process's I/O thread", e));
        }
        Ok(handle)
    }
}

impl RunningSubprocess {
    /// The process's pid inside the sandbox's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its spid.
    pub fn spid(&self) -> u32 {
        self.spid
    }

    /// Queues `data` for its stdin and, with `close`, closes stdin once everything queued
    /// is written. Never blocks on the process. `BrokenPipe` once stdin is closed.
    pub fn write_stdin(&self, data: &[u8], close: bool) -> io::Result<()> {
        self.shared.queue_stdin(data, close, "the process's stdin is closed")
    }

    /// Sends `signal` to its process group (through the sandbox's init, which reaps it, so
    /// the pid can't have been reused). A no-op once it has exited or the sandbox ended.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        if !(1..=64).contains(&signal) {
            return Err(SandboxError::invalid("signal", format!("{signal} is not a signal number (1..=64)")));
        }
        if self.try_wait().is_some() {
            return Ok(());
        }
        match send_ctl(&self.ctl, &CtlMsg { op: ctl::KILL, spid: self.spid, sig: signal }, &[]) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN)) => Ok(()),
            Err(e) => Err(SandboxError::io("signalling the process", e)),
        }
    }

    /// Blocks until it has exited and all its output was delivered.
    pub fn wait(&self) -> ExitInfo {
        let mut exit = lock(&self.shared.exit);
        loop {
            if let Some(info) = exit.as_ref() {
                return info.clone();
            }
            exit = self.shared.exited.wait(exit).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How it exited, or `None` while it runs.
    pub fn try_wait(&self) -> Option<ExitInfo> {
        lock(&self.shared.exit).clone()
    }
}

/// Validates `spec` into init's plan; also returns the normalised cwd.
fn sub_plan(spec: &SubprocessSpec, id_count: u32) -> Result<(SubPlan, String), SandboxError> {
    for (arg, id) in [("uid", spec.uid), ("gid", spec.gid)] {
        if id >= id_count {
            return Err(SandboxError::invalid(
                arg,
                format!("{arg} {id} is outside the sandbox's id range 0..{id_count}"),
            ));
        }
    }
    let cwd = join_sandbox(&sandbox_path("cwd", &spec.cwd)?);
    let exec = command_plan(&spec.command, &spec.args, spec.shell, &spec.env)?;
    let plan = SubPlan {
        cwd: cstring("cwd", &cwd)?,
        uid: spec.uid,
        gid: spec.gid,
        argv: exec.argv,
        envp: exec.envp,
        candidates: exec.candidates,
        not_found_msg: exec.not_found_msg,
        denied_msg: exec.denied_msg,
    };
    Ok((plan, cwd))
}

fn describe(rec: &ErrRecord, spec: &SubprocessSpec, cwd: &str) -> String {
    match Stage::from_u32(rec.stage) {
        Some(Stage::ForkCommand) => "starting the process".into(),
        Some(Stage::Stdio) => "redirecting stdio".into(),
        Some(Stage::Capabilities) => "dropping capabilities".into(),
        Some(Stage::Seccomp) => "installing the seccomp filter".into(),
        Some(Stage::Credentials) => match rec.index {
            0 => format!("setting supplementary groups to [{}]", spec.gid),
            1 => format!("setting gid {}", spec.gid),
            _ => format!("setting uid {}", spec.uid),
        },
        Some(Stage::Chdir) => format!("entering the working directory {cwd} as uid {}", spec.uid),
        _ => format!("starting the process (stage {})", rec.stage),
    }
}

/// One control message, with `fds` attached.
fn send_ctl(ctl: &OwnedFd, msg: &CtlMsg, fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: msg as *const CtlMsg as *mut libc::c_void, iov_len: size_of::<CtlMsg>() };
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer in it refers to live locals.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if !fds.is_empty() {
        mh.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        mh.msg_controllen = space as _;
        // SAFETY: the control buffer holds one cmsghdr with room for `fds`.
        unsafe {
            let cm = libc::CMSG_FIRSTHDR(&mh);
            (*cm).cmsg_level = libc::SOL_SOCKET;
            (*cm).cmsg_type = libc::SCM_RIGHTS;
            (*cm).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cm), fd_bytes);
        }
    }
    loop {
        // SAFETY: sendmsg with the message built above; MSG_NOSIGNAL: no SIGPIPE.
        let r = unsafe { libc::sendmsg(ctl.as_raw_fd(), &mh, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if r >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

fn wait_readable(fd: &OwnedFd, deadline: Instant) -> Result<(), SandboxError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = pollfd(fd.as_raw_fd(), libc::POLLIN);
        // SAFETY: poll on one stack pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(c_int::MAX as u128) as c_int) };
        if n > 0 {
            return Ok(());
        }
        if n == 0 || left.is_zero() {
            return Err(SandboxError::io(
                "starting the process",
                io::Error::new(io::ErrorKind::TimedOut, "the sandbox's init did not start it in time"),
            ));
        }
    }
}

/// The I/O of one extra process: its output to the sink, its stdin from the queue, and
/// its exit report from init.
struct SubIo {
    stdin_w: Option<OwnedFd>,
    stdout_r: Option<OwnedFd>,
    stderr_r: Option<OwnedFd>,
    status_r: Option<OwnedFd>,
    shared: Arc<Shared>,
    sink: Sink,
    started: Instant,
}

impl SubIo {
    fn run(mut self) {
        block_sigpipe();
        let mut buf = vec![0u8; CHUNK];
        let mut report_buf = [0u8; size_of::<Report>()];
        let mut report_len = 0usize;
        while self.stdout_r.is_some() || self.stderr_r.is_some() || self.status_r.is_some() {
            let want_stdin = stdin_housekeeping(&mut self.stdin_w, &self.shared);
            let raw = |f: &Option<OwnedFd>| f.as_ref().map_or(-1, |f| f.as_raw_fd());
            let mut fds = [
                pollfd(raw(&self.stdout_r), libc::POLLIN),
                pollfd(raw(&self.stderr_r), libc::POLLIN),
                pollfd(raw(&self.status_r), libc::POLLIN),
                pollfd(self.shared.wake.as_raw_fd(), libc::POLLIN),
                pollfd(if want_stdin { raw(&self.stdin_w) } else { -1 }, libc::POLLOUT),
            ];
            // Once the exit is known, output is only read while it keeps coming.
            let exited = self.status_r.is_none();
            let timeout = if exited { DRAIN_AFTER_EXIT.as_millis() as c_int } else { -1 };
            // SAFETY: poll over a stack array of pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                continue;
            }
            if n == 0 && exited {
                break;
            }
            for (i, stdout) in [(0, true), (1, false)] {
                if fds[i].revents != 0 {
                    self.read_output(stdout, &mut buf);
                }
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
                }
                if report_len == report_buf.len()
                    || r == 0
                    || (r < 0 && sys::errno() != libc::EINTR && sys::errno() != libc::EAGAIN)
                {
                    self.status_r = None;
                }
            }
            if fds[3].revents != 0 {
                let mut v = 0u64;
                // SAFETY: 8-byte read from our eventfd.
                unsafe { libc::read(self.shared.wake.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
            }
            if fds[4].revents != 0 {
                write_stdin(&mut self.stdin_w, &self.shared);
            }
        }
        self.stdin_w = None;
        lock(&self.shared.stdin).closed = true;
        let report = (report_len == report_buf.len()).then(|| {
            // SAFETY: the buffer holds exactly one Report written by init.
            unsafe { std::ptr::read_unaligned(report_buf.as_ptr() as *const Report) }
        });
        // No report: init ended with the sandbox, which killed the process.
        let info = exit_info(report, false, self.started.elapsed());
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
}
