//! The code that runs between `clone3` and `execve`: the sandbox's init process (PID 1 of
//! the new PID namespace) and the command process it forks.
//!
//! The server is multi-threaded, so after `clone3` the child may only do
//! async-signal-safe work: every string, pointer array and path below is prepared by the
//! parent in a [`ChildPlan`] before the clone, and the child code only issues syscalls. No
//! allocation, no locks, no `std` I/O, no panics (no unchecked indexing, no formatting).
//!
//! Process tree:
//! ```text
//! server ──clone3(NEWNS|NEWPID|NEWUTS|NEWIPC[|NEWNET])──▶ init (pid 1)
//!                                                          ├─ mounts, pivot_root, /proc, /dev,
//!                                                          │  hostname, lo, files, cwd
//!                                                          └─clone3──▶ command (pid 2): caps,
//!                                                                      uid/gid, cwd, execve
//! ```
//! init stays as a tiny reaper: it forwards signals requested over the control socket to
//! every process of the namespace (`kill(-1, sig)`), enforces the timeout, reaps orphans,
//! and when the command exits reports its wait status and `rusage` over the status pipe and
//! exits, which makes the kernel kill whatever is left in the namespace.

use std::ffi::CString;
use std::os::fd::RawFd;

use libc::{c_char, c_int, c_void};

use super::sys;

/// A setup step that failed in the child, reported to the parent over the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    MakePrivate = 1,
    MountOverlay = 2,
    PivotRoot = 3,
    MountProc = 4,
    MountDev = 5,
    Hostname = 6,
    Loopback = 7,
    PlaceFile = 8,
    CreateCwd = 9,
    Signalfd = 10,
    ForkCommand = 11,
    Stdio = 12,
    Capabilities = 13,
    Credentials = 14,
    Chdir = 15,
    ProtectProc = 16,
    Probe = 17,
}

impl Stage {
    pub(crate) fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        Some(match v {
            1 => MakePrivate,
            2 => MountOverlay,
            3 => PivotRoot,
            4 => MountProc,
            5 => MountDev,
            6 => Hostname,
            7 => Loopback,
            8 => PlaceFile,
            9 => CreateCwd,
            10 => Signalfd,
            11 => ForkCommand,
            12 => Stdio,
            13 => Capabilities,
            14 => Credentials,
            15 => Chdir,
            16 => ProtectProc,
            17 => Probe,
            _ => return None,
        })
    }
}

/// The record a failing child writes to the error pipe.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ErrRecord {
    pub stage: u32,
    pub index: u32,
    pub errno: i32,
}

/// The record init writes to the status pipe once the command has been reaped.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Report {
    pub status: c_int,
    pub timed_out: c_int,
    pub elapsed_ns: u64,
    pub rusage: libc::rusage,
}

/// One overlay mount. Either `legacy_data` (a `mount(2)` option string that fits in a
/// page) or the new mount API with one `lowerdir+` per layer is used.
pub(crate) struct OverlayPlan {
    pub target: CString,
    pub lowers: Vec<CString>,
    pub upper: CString,
    pub work: CString,
    pub legacy_data: Option<CString>,
}

pub(crate) struct FilePlan {
    pub src_fd: RawFd,
    pub dest: CString,
    /// Ancestors of `dest` to create if missing, shallowest first (never `/`).
    pub parents: Vec<CString>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub(crate) struct ExecPlan {
    /// Keeps the strings behind `argv_ptrs` alive.
    pub _argv: Vec<CString>,
    pub argv_ptrs: Vec<*const c_char>,
    pub _envp: Vec<CString>,
    pub envp_ptrs: Vec<*const c_char>,
    /// Paths to try, in `PATH` order (one entry when the command contains a `/`).
    pub candidates: Vec<CString>,
    pub not_found_msg: Vec<u8>,
    pub denied_msg: Vec<u8>,
}

pub(crate) struct ChildFds {
    pub stdin_r: RawFd,
    pub stdout_w: RawFd,
    pub stderr_w: RawFd,
    pub status_w: RawFd,
    pub ctl: RawFd,
    pub err_w: RawFd,
}

pub(crate) struct ChildPlan {
    pub mounts: Vec<OverlayPlan>,
    pub new_root: CString,
    pub hostname: CString,
    pub isolate_network: bool,
    pub files: Vec<FilePlan>,
    /// `cwd` and its ancestors to create if missing, shallowest first.
    pub cwd_dirs: Vec<CString>,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub exec: ExecPlan,
    /// Milliseconds, or `None` for no timeout.
    pub timeout_ms: Option<u64>,
    pub fds: ChildFds,
    /// Every fd the child needs, sorted ascending; everything else is closed first thing.
    pub keep_fds: Vec<RawFd>,
}

/// Capabilities the command keeps (Docker's default set minus `MKNOD` and `NET_RAW`):
/// everything that reaches beyond the sandbox (`SYS_ADMIN` → mount/umount,
/// `DAC_READ_SEARCH` → open_by_handle_at, `SYS_PTRACE`, `SYS_MODULE`, `SYS_RAWIO`,
/// `MKNOD` → raw host disks, …) is dropped from the bounding set.
const KEPT_CAPS: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    18, // SYS_CHROOT
    29, // AUDIT_WRITE
    31, // SETFCAP
];

const PROC_READ_ONLY: &[&std::ffi::CStr] =
    &[c"/proc/sys", c"/proc/sysrq-trigger", c"/proc/irq", c"/proc/bus", c"/proc/fs"];

const PROC_MASKED: &[&std::ffi::CStr] = &[c"/proc/kcore", c"/proc/keys", c"/proc/timer_list", c"/proc/sched_debug"];

/// Reports a failed step to the parent and exits. Never returns.
fn fail(err_w: RawFd, stage: Stage, index: usize, errno: c_int) -> ! {
    let rec = ErrRecord { stage: stage as u32, index: index as u32, errno };
    // SAFETY: writing a plain-old-data struct to a pipe, then _exit.
    unsafe {
        libc::write(err_w, &rec as *const ErrRecord as *const c_void, std::mem::size_of::<ErrRecord>());
        libc::_exit(111)
    }
}

#[inline]
fn check(r: c_int, err_w: RawFd, stage: Stage, index: usize) {
    if r < 0 {
        fail(err_w, stage, index, sys::errno());
    }
}

/// Closes every fd except `keep` (sorted ascending), so that init does not pin pipes,
/// sockets or files that other threads of the server opened (another sandbox's stdout, the
/// listening socket, the database).
fn close_other_fds(keep: &[RawFd]) {
    let mut next: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > next {
            sys::close_range(next.max(3), fd - 1);
        }
        next = fd + 1;
    }
    sys::close_range(next.max(3), u32::MAX);
}

fn mount(
    src: *const c_char,
    target: *const c_char,
    fstype: *const c_char,
    flags: libc::c_ulong,
    data: *const c_char,
) -> c_int {
    // SAFETY: all pointers are NUL-terminated strings or null.
    unsafe { libc::mount(src, target, fstype, flags, data as *const c_void) }
}

fn mount_overlay(m: &OverlayPlan) -> Result<(), c_int> {
    if let Some(data) = &m.legacy_data {
        let r = mount(c"overlay".as_ptr(), m.target.as_ptr(), c"overlay".as_ptr(), 0, data.as_ptr());
        return if r < 0 { Err(sys::errno()) } else { Ok(()) };
    }
    // The option string would not fit in a page: add the layers one by one (Linux >= 6.8).
    let fs = sys::fsopen(c"overlay".as_ptr());
    if fs < 0 {
        return Err(sys::errno());
    }
    let set = |k: &std::ffi::CStr, v: *const c_char| -> Result<(), c_int> {
        if sys::fsconfig(fs, sys::FSCONFIG_SET_STRING, k.as_ptr(), v) < 0 { Err(sys::errno()) } else { Ok(()) }
    };
    let result = (|| {
        for l in &m.lowers {
            set(c"lowerdir+", l.as_ptr())?;
        }
        set(c"upperdir", m.upper.as_ptr())?;
        set(c"workdir", m.work.as_ptr())?;
        for (k, v) in OVERLAY_OPTIONS {
            match v {
                Some(v) => set(k, v.as_ptr())?,
                None => {
                    if sys::fsconfig(fs, sys::FSCONFIG_SET_FLAG, k.as_ptr(), std::ptr::null()) < 0 {
                        return Err(sys::errno());
                    }
                }
            }
        }
        if sys::fsconfig(fs, sys::FSCONFIG_CMD_CREATE, std::ptr::null(), std::ptr::null()) < 0 {
            return Err(sys::errno());
        }
        let mnt = sys::fsmount(fs);
        if mnt < 0 {
            return Err(sys::errno());
        }
        let r = sys::move_mount_fd(mnt, m.target.as_ptr());
        let e = sys::errno();
        // SAFETY: closing our own fd.
        unsafe { libc::close(mnt) };
        if r < 0 { Err(e) } else { Ok(()) }
    })();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fs) };
    result
}

/// Overlay options besides the directories.
///
/// * `redirect_dir=off`, `metacopy=off`: every upper dir is self-contained (a renamed
///   directory is copied, a chmod copies the data), so a finished upper can be adopted as a
///   layer and read layer by layer without following overlay xattrs into other layers.
/// * `index=off`: layers move between stacks (an upper becomes a lower); the inode index
///   would tie an upper to the exact lowers it was created over.
/// * `volatile`: skip the full `syncfs` of the upper filesystem at unmount, which costs
///   milliseconds per run; durability of adopted layers is the store's job.
///
/// `None` marks a flag (`volatile`).
pub(crate) const OVERLAY_OPTIONS: &[(&std::ffi::CStr, Option<&std::ffi::CStr>)] =
    &[(c"redirect_dir", Some(c"off")), (c"metacopy", Some(c"off")), (c"index", Some(c"off")), (c"volatile", None)];

/// The same options as a `mount(2)` option-string tail.
pub(crate) const LEGACY_OPTION_TAIL: &str = ",redirect_dir=off,metacopy=off,index=off,volatile";

fn make_dev_node(path: &std::ffi::CStr, major: u32, minor: u32) -> c_int {
    // SAFETY: path is NUL-terminated.
    unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) }
}

fn symlink(target: &std::ffi::CStr, path: &std::ffi::CStr) -> c_int {
    // SAFETY: both NUL-terminated.
    unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) }
}

fn setup_dev(err_w: RawFd) {
    let nosuid_noexec = libc::MS_NOSUID | libc::MS_NOEXEC;
    check(
        mount(c"tmpfs".as_ptr(), c"/dev".as_ptr(), c"tmpfs".as_ptr(), nosuid_noexec, c"mode=755,size=1024k".as_ptr()),
        err_w,
        Stage::MountDev,
        0,
    );
    let nodes: [(&std::ffi::CStr, u32, u32); 6] = [
        (c"/dev/null", 1, 3),
        (c"/dev/zero", 1, 5),
        (c"/dev/full", 1, 7),
        (c"/dev/random", 1, 8),
        (c"/dev/urandom", 1, 9),
        (c"/dev/tty", 5, 0),
    ];
    for (i, (p, ma, mi)) in nodes.iter().enumerate() {
        check(make_dev_node(p, *ma, *mi), err_w, Stage::MountDev, 1 + i);
    }
    let links: [(&std::ffi::CStr, &std::ffi::CStr); 5] = [
        (c"/proc/self/fd", c"/dev/fd"),
        (c"/proc/self/fd/0", c"/dev/stdin"),
        (c"/proc/self/fd/1", c"/dev/stdout"),
        (c"/proc/self/fd/2", c"/dev/stderr"),
        (c"pts/ptmx", c"/dev/ptmx"),
    ];
    for (i, (t, p)) in links.iter().enumerate() {
        check(symlink(t, p), err_w, Stage::MountDev, 10 + i);
    }
    // SAFETY: NUL-terminated paths.
    unsafe {
        check(libc::mkdir(c"/dev/pts".as_ptr(), 0o755), err_w, Stage::MountDev, 20);
        check(libc::mkdir(c"/dev/shm".as_ptr(), 0o1777), err_w, Stage::MountDev, 21);
    }
    check(
        mount(
            c"devpts".as_ptr(),
            c"/dev/pts".as_ptr(),
            c"devpts".as_ptr(),
            nosuid_noexec,
            c"newinstance,ptmxmode=0666,mode=0620".as_ptr(),
        ),
        err_w,
        Stage::MountDev,
        22,
    );
    check(
        mount(
            c"shm".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            nosuid_noexec | libc::MS_NODEV,
            c"mode=1777,size=65536k".as_ptr(),
        ),
        err_w,
        Stage::MountDev,
        23,
    );
}

/// Makes the kernel-wide knobs under /proc read-only and hides the ones that leak host
/// state, as container runtimes do: root in the sandbox is host root with a reduced
/// capability set, and `/proc/sys` writes are only guarded by file permissions.
fn protect_proc(err_w: RawFd) {
    let bind = libc::MS_BIND | libc::MS_REC;
    for (i, p) in PROC_READ_ONLY.iter().enumerate() {
        if mount(p.as_ptr(), p.as_ptr(), std::ptr::null(), bind, std::ptr::null()) < 0 {
            if sys::errno() == libc::ENOENT {
                continue;
            }
            fail(err_w, Stage::ProtectProc, i, sys::errno());
        }
        let ro =
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        check(
            mount(std::ptr::null(), p.as_ptr(), std::ptr::null(), ro, std::ptr::null()),
            err_w,
            Stage::ProtectProc,
            i,
        );
    }
    for (i, p) in PROC_MASKED.iter().enumerate() {
        if mount(c"/dev/null".as_ptr(), p.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) < 0
            && sys::errno() != libc::ENOENT
        {
            fail(err_w, Stage::ProtectProc, 100 + i, sys::errno());
        }
    }
}

/// `struct ifreq` with the flags member (40 bytes on every Linux ABI we target).
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn loopback_up() -> Result<(), c_int> {
    // SAFETY: plain socket/ioctl syscalls on a struct of the kernel's layout.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(sys::errno());
        }
        let mut ifr = IfReqFlags { name: [0; 16], flags: 0, _pad: [0; 22] };
        ifr.name[0] = b'l';
        ifr.name[1] = b'o';
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr as *mut IfReqFlags);
        if r == 0 {
            ifr.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr as *const IfReqFlags);
        }
        let e = sys::errno();
        libc::close(s);
        if r < 0 { Err(e) } else { Ok(()) }
    }
}

/// `mkdir` that tolerates an existing entry; returns whether it created the directory.
fn mkdir_if_missing(p: &CString) -> Result<bool, c_int> {
    // SAFETY: NUL-terminated path.
    if unsafe { libc::mkdir(p.as_ptr(), 0o755) } == 0 {
        Ok(true)
    } else if sys::errno() == libc::EEXIST {
        Ok(false)
    } else {
        Err(sys::errno())
    }
}

fn place_file(f: &FilePlan) -> Result<(), c_int> {
    for d in &f.parents {
        mkdir_if_missing(d)?;
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NOFOLLOW;
    // SAFETY: plain syscalls on NUL-terminated paths and fds we own.
    unsafe {
        let mut dst = libc::open(f.dest.as_ptr(), flags, 0o600 as libc::c_uint);
        if dst < 0 && sys::errno() == libc::ELOOP {
            // The destination is a symlink: replace it rather than write through it.
            libc::unlink(f.dest.as_ptr());
            dst = libc::open(f.dest.as_ptr(), flags, 0o600 as libc::c_uint);
        }
        if dst < 0 {
            return Err(sys::errno());
        }
        let result = copy_fd(f.src_fd, dst).and_then(|()| {
            // chown before chmod: chown clears set-id bits.
            if libc::fchown(dst, f.uid, f.gid) < 0 || libc::fchmod(dst, f.mode & 0o7777) < 0 {
                Err(sys::errno())
            } else {
                Ok(())
            }
        });
        libc::close(dst);
        libc::close(f.src_fd);
        result
    }
}

fn copy_fd(src: RawFd, dst: RawFd) -> Result<(), c_int> {
    // SAFETY: plain syscalls on fds we own; the buffer lives on this stack frame.
    unsafe {
        loop {
            let n = libc::sendfile(dst, src, std::ptr::null_mut(), 1 << 30);
            if n > 0 {
                continue;
            }
            if n == 0 {
                return Ok(());
            }
            let e = sys::errno();
            if e == libc::EINTR {
                continue;
            }
            if e != libc::EINVAL && e != libc::ENOSYS {
                return Err(e);
            }
            break;
        }
        // sendfile refused this pair of files: plain read/write.
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = libc::read(src, buf.as_mut_ptr() as *mut c_void, buf.len());
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                if sys::errno() == libc::EINTR {
                    continue;
                }
                return Err(sys::errno());
            }
            let mut off = 0usize;
            while off < n as usize {
                let w = libc::write(dst, buf.as_ptr().add(off) as *const c_void, n as usize - off);
                if w < 0 {
                    if sys::errno() == libc::EINTR {
                        continue;
                    }
                    return Err(sys::errno());
                }
                off += w as usize;
            }
        }
    }
}

fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        s
    }
}

fn set_sigmask(how: c_int, set: &libc::sigset_t) {
    // SAFETY: raw rt_sigprocmask so that glibc's internal signals are not filtered out.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            set as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            std::mem::size_of::<u64>(),
        );
    }
}

fn block_all_signals() {
    // SAFETY: sigfillset initialises the set.
    let all = unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut s);
        s
    };
    set_sigmask(libc::SIG_SETMASK, &all);
}

fn reset_signal(sig: c_int) {
    // SAFETY: a zeroed sigaction with SIG_DFL is valid; errors (SIGKILL, invalid numbers)
    // are irrelevant.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// The sandbox's init process. Runs in the new namespaces right after `clone3`.
///
/// # Safety
/// Must only be called in the child of [`sys::clone3`]; see the module docs.
pub(crate) unsafe fn init_main(p: &ChildPlan) -> ! {
    block_all_signals();
    close_other_fds(&p.keep_fds);
    let err_w = p.fds.err_w;
    // SAFETY (whole block): plain syscalls on NUL-terminated strings prepared by the
    // parent and on fds listed in the plan.
    unsafe {
        // init is a copy of the server's memory (tokens included): make /proc/1/{mem,environ,fd}
        // unreadable to the command, which lacks CAP_SYS_PTRACE.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Device nodes and auto-created dirs get exactly the modes we ask for.
        libc::umask(0);
        reset_signal(libc::SIGCHLD);
        // A private session keyring instead of the server's.
        libc::syscall(libc::SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0usize);

        check(
            mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()),
            err_w,
            Stage::MakePrivate,
            0,
        );
        for (i, m) in p.mounts.iter().enumerate() {
            if let Err(e) = mount_overlay(m) {
                fail(err_w, Stage::MountOverlay, i, e);
            }
        }
        check(libc::chdir(p.new_root.as_ptr()), err_w, Stage::PivotRoot, 0);
        check(sys::pivot_root(c".".as_ptr(), c".".as_ptr()), err_w, Stage::PivotRoot, 1);
        // The old root is stacked on top of the new one: detach it so that no path leads
        // back to the host filesystem.
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH), err_w, Stage::PivotRoot, 2);
        check(libc::chdir(c"/".as_ptr()), err_w, Stage::PivotRoot, 3);

        check(
            mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ),
            err_w,
            Stage::MountProc,
            0,
        );
        setup_dev(err_w);
        protect_proc(err_w);

        check(libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()), err_w, Stage::Hostname, 0);
        if p.isolate_network
            && let Err(e) = loopback_up()
        {
            fail(err_w, Stage::Loopback, 0, e);
        }
        for (i, f) in p.files.iter().enumerate() {
            if let Err(e) = place_file(f) {
                fail(err_w, Stage::PlaceFile, i, e);
            }
        }
        for (i, d) in p.cwd_dirs.iter().enumerate() {
            match mkdir_if_missing(d) {
                // A directory we create for the run belongs to the run's user.
                Ok(true) => check(libc::chown(d.as_ptr(), p.uid, p.gid), err_w, Stage::CreateCwd, i),
                Ok(false) => {}
                Err(e) => fail(err_w, Stage::CreateCwd, i, e),
            }
        }

        let mut chld = empty_sigset();
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        let sfd = libc::signalfd(-1, &chld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        check(sfd, err_w, Stage::Signalfd, 0);

        let start = sys::monotonic_ns();
        let cmd = match sys::clone3(0, None) {
            Ok(0) => exec_main(p),
            Ok(pid) => pid,
            Err(e) => fail(err_w, Stage::ForkCommand, 0, e.raw_os_error().unwrap_or(libc::EIO)),
        };
        // From here on only the command holds the stdio pipes and (until execve) the error
        // pipe, so the parent sees EOF exactly when they are done.
        libc::close(p.fds.stdin_r);
        libc::close(p.fds.stdout_w);
        libc::close(p.fds.stderr_w);
        libc::close(err_w);
        reap_loop(p, sfd, cmd, start)
    }
}

/// Waits for the command, forwarding signals and enforcing the timeout; never returns.
unsafe fn reap_loop(p: &ChildPlan, sfd: c_int, cmd: libc::pid_t, start: u64) -> ! {
    let deadline = p.timeout_ms.map(|ms| start.saturating_add(ms.saturating_mul(1_000_000)));
    let mut timed_out = false;
    let mut ctl_open = true;
    let mut result: Option<(c_int, libc::rusage)> = None;
    // SAFETY (whole block): plain syscalls on fds from the plan and stack buffers.
    unsafe {
        while result.is_none() {
            let mut fds = [
                libc::pollfd { fd: sfd, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: if ctl_open { p.fds.ctl } else { -1 }, events: libc::POLLIN, revents: 0 },
            ];
            let timeout: c_int = match deadline {
                Some(d) if !timed_out => {
                    let now = sys::monotonic_ns();
                    if now >= d {
                        0
                    } else {
                        // Round up so we never wake just before the deadline.
                        ((d - now).div_ceil(1_000_000)).min(c_int::MAX as u64) as c_int
                    }
                }
                _ => -1,
            };
            let n = libc::poll(fds.as_mut_ptr(), 2, timeout);
            if n < 0 {
                continue;
            }
            if let Some(d) = deadline
                && !timed_out
                && sys::monotonic_ns() >= d
            {
                timed_out = true;
                libc::kill(-1, libc::SIGKILL);
            }
            if fds[1].revents != 0 {
                let mut sig: c_int = 0;
                let r = libc::recv(
                    p.fds.ctl,
                    &mut sig as *mut c_int as *mut c_void,
                    std::mem::size_of::<c_int>(),
                    libc::MSG_DONTWAIT,
                );
                if r == std::mem::size_of::<c_int>() as isize {
                    // Every process of the namespace but init itself: the whole tree,
                    // including daemons the command left behind.
                    libc::kill(-1, sig);
                } else if r == 0 || (r < 0 && sys::errno() != libc::EAGAIN && sys::errno() != libc::EINTR) {
                    // The server dropped the sandbox (or died): nobody will collect the
                    // result, so do not leave anything running.
                    ctl_open = false;
                    libc::kill(-1, libc::SIGKILL);
                }
            }
            if fds[0].revents != 0 {
                let mut info = [0u8; 128];
                while libc::read(sfd, info.as_mut_ptr() as *mut c_void, info.len()) > 0 {}
            }
            loop {
                let mut status: c_int = 0;
                let mut ru: libc::rusage = std::mem::zeroed();
                let pid = libc::wait4(-1, &mut status, libc::WNOHANG, &mut ru);
                if pid <= 0 {
                    break;
                }
                if pid == cmd {
                    result = Some((status, ru));
                }
            }
        }
        let elapsed = sys::monotonic_ns().saturating_sub(start);
        if let Some((status, rusage)) = result {
            let report = Report { status, timed_out: timed_out as c_int, elapsed_ns: elapsed, rusage };
            libc::write(p.fds.status_w, &report as *const Report as *const c_void, std::mem::size_of::<Report>());
        }
        // Exiting as PID 1 makes the kernel SIGKILL everything left in the namespace.
        libc::_exit(0)
    }
}

/// The command process: drops privileges and executes the command. Never returns.
unsafe fn exec_main(p: &ChildPlan) -> ! {
    let err_w = p.fds.err_w;
    // SAFETY (whole block): plain syscalls on data prepared by the parent.
    unsafe {
        check(libc::dup2(p.fds.stdin_r, 0), err_w, Stage::Stdio, 0);
        check(libc::dup2(p.fds.stdout_w, 1), err_w, Stage::Stdio, 1);
        check(libc::dup2(p.fds.stderr_w, 2), err_w, Stage::Stdio, 2);
        // Its own session and process group, no controlling terminal.
        libc::setsid();
        // Handlers are reset by execve, but ignored signals are inherited (the Rust runtime
        // ignores SIGPIPE): give the command pristine dispositions.
        for sig in 1..=64 {
            reset_signal(sig);
        }
        drop_capabilities(err_w);
        // Raw syscalls, not the libc wrappers: glibc's setuid & co. broadcast the change to
        // every thread it knows of, and after a raw clone3 from a multi-threaded server its
        // thread list names threads of the server, so the wrapper would wait forever.
        let groups = [p.gid];
        check(libc::syscall(libc::SYS_setgroups, 1usize, groups.as_ptr()) as c_int, err_w, Stage::Credentials, 0);
        check(libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid) as c_int, err_w, Stage::Credentials, 1);
        check(libc::syscall(libc::SYS_setresuid, p.uid, p.uid, p.uid) as c_int, err_w, Stage::Credentials, 2);
        // After switching user, so that permissions are checked as the command's user.
        check(libc::chdir(p.cwd.as_ptr()), err_w, Stage::Chdir, 0);
        libc::umask(0o022);
        set_sigmask(libc::SIG_SETMASK, &empty_sigset());

        let mut denied = false;
        for c in &p.exec.candidates {
            libc::execve(c.as_ptr(), p.exec.argv_ptrs.as_ptr(), p.exec.envp_ptrs.as_ptr());
            match sys::errno() {
                libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {}
                _ => denied = true,
            }
        }
        // Like a shell: 127 when nothing was found, 126 when something was found but could
        // not be executed.
        let (msg, code) = if denied { (&p.exec.denied_msg, 126) } else { (&p.exec.not_found_msg, 127) };
        libc::write(2, msg.as_ptr() as *const c_void, msg.len());
        libc::_exit(code)
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

unsafe fn drop_capabilities(err_w: RawFd) {
    // SAFETY (whole block): prctl/capget/capset on stack structs of the kernel's layout.
    unsafe {
        for cap in 0..64u32 {
            if KEPT_CAPS.contains(&cap) {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) < 0 && sys::errno() != libc::EINVAL {
                fail(err_w, Stage::Capabilities, cap as usize, sys::errno());
            }
        }
        // Root regains (inheritable ∩ file-inheritable) at execve regardless of the bounding
        // set, so the inheritable set must not hold anything we dropped.
        let mut hdr = CapHeader { version: CAP_VERSION_3, pid: 0 };
        let mut data = [CapData::default(); 2];
        check(
            libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) as c_int,
            err_w,
            Stage::Capabilities,
            100,
        );
        let mut kept = [0u32; 2];
        for &c in KEPT_CAPS {
            kept[(c / 32) as usize] |= 1 << (c % 32);
        }
        data[0].inheritable &= kept[0];
        data[1].inheritable &= kept[1];
        hdr.version = CAP_VERSION_3;
        hdr.pid = 0;
        check(
            libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) as c_int,
            err_w,
            Stage::Capabilities,
            101,
        );
    }
}

/// The child of [`check_support`](super::check_support)'s probe: makes mounts private and
/// mounts one overlay plus a procfs of the new PID namespace, then exits 0.
///
/// # Safety
/// Only in the child of [`sys::clone3`].
pub(crate) unsafe fn probe_main(keep: &[RawFd], err_w: RawFd, overlay: &OverlayPlan, proc_target: &CString) -> ! {
    block_all_signals();
    close_other_fds(keep);
    // SAFETY: plain syscalls on prepared strings.
    unsafe {
        check(
            mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()),
            err_w,
            Stage::MakePrivate,
            0,
        );
        if let Err(e) = mount_overlay(overlay) {
            fail(err_w, Stage::MountOverlay, 0, e);
        }
        check(
            mount(
                c"proc".as_ptr(),
                proc_target.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ),
            err_w,
            Stage::MountProc,
            0,
        );
        if let Err(e) = loopback_up() {
            fail(err_w, Stage::Loopback, 0, e);
        }
        libc::_exit(0)
    }
}
