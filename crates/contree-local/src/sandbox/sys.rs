//! Thin wrappers over the Linux syscalls the sandbox needs and `libc` does not wrap
//! portably (clone3, the new mount API, pidfd, close_range).
//!
//! Everything here that the child side calls is a plain syscall: no allocation, no locks,
//! so it is async-signal-safe after a `clone3` from a multi-threaded process.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libc::{c_char, c_int, c_uint};

/// `struct clone_args` as of Linux 5.3 (CLONE_ARGS_SIZE_VER0, 64 bytes): the oldest layout,
/// accepted by every kernel that has clone3.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Fork-like `clone3`: returns 0 in the child, the child's pid in the parent.
///
/// With `pidfd`, `CLONE_PIDFD` is added and the new pidfd is stored there.
///
/// # Safety
/// In the child only async-signal-safe work may be done (the parent may be
/// multi-threaded: malloc or any lock may be held by a thread that does not exist in the
/// child), and the child must end with `_exit` or `execve`. glibc's cached thread id is
/// not updated, so the child must not use pthread APIs.
pub(crate) unsafe fn clone3(flags: u64, pidfd: Option<&mut c_int>) -> io::Result<libc::pid_t> {
    let mut args = CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, ..CloneArgs::default() };
    if let Some(p) = pidfd {
        args.flags |= libc::CLONE_PIDFD as u64;
        args.pidfd = p as *mut c_int as u64;
    }
    // SAFETY: args is a valid clone_args of the size we pass; no stack is given, so the
    // child continues on a copy of the caller's stack like fork(2).
    let r = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as libc::pid_t) }
}

#[inline]
pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Moves `fd` to a number >= 3 (closing the original) so that it can never be clobbered
/// by the `dup2` onto fds 0/1/2 in the command process, even when the server runs with
/// stdio closed.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    // SAFETY: plain fcntl on an fd we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// A close-on-exec pipe `(read, write)`, both ends numbered >= 3.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds has room for two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh fds.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// A close-on-exec `SOCK_SEQPACKET` socket pair, both ends numbered >= 3.
///
/// Used for the control channel: `send(MSG_NOSIGNAL)` never raises SIGPIPE in the server
/// when the sandbox is already gone, and message boundaries keep each request whole.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds has room for two ints.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two fresh fds.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// A close-on-exec, non-blocking eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let r = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a valid fd.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: RawFd, sig: c_int) -> io::Result<()> {
    // SAFETY: plain syscall with a null siginfo.
    let r = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, std::ptr::null::<libc::siginfo_t>(), 0 as c_uint)
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `close_range(first, last, 0)`; async-signal-safe.
#[inline]
pub(crate) fn close_range(first: c_uint, last: c_uint) -> c_int {
    // SAFETY: plain syscall.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as c_uint) as c_int }
}

pub(crate) const FSOPEN_CLOEXEC: c_uint = 1;
pub(crate) const FSCONFIG_SET_FLAG: c_uint = 0;
pub(crate) const FSCONFIG_SET_STRING: c_uint = 1;
pub(crate) const FSCONFIG_CMD_CREATE: c_uint = 6;
pub(crate) const FSMOUNT_CLOEXEC: c_uint = 1;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 4;

#[inline]
pub(crate) fn fsopen(fs: *const c_char) -> c_int {
    // SAFETY: fs is a NUL-terminated string.
    unsafe { libc::syscall(libc::SYS_fsopen, fs, FSOPEN_CLOEXEC) as c_int }
}

#[inline]
pub(crate) fn fsconfig(fd: c_int, cmd: c_uint, key: *const c_char, value: *const c_char) -> c_int {
    // SAFETY: key/value are NUL-terminated strings or null as the command requires.
    unsafe { libc::syscall(libc::SYS_fsconfig, fd, cmd, key, value, 0 as c_int) as c_int }
}

#[inline]
pub(crate) fn fsmount(fd: c_int) -> c_int {
    // SAFETY: plain syscall.
    unsafe { libc::syscall(libc::SYS_fsmount, fd, FSMOUNT_CLOEXEC, 0 as c_uint) as c_int }
}

#[inline]
pub(crate) fn move_mount_fd(fd: c_int, target: *const c_char) -> c_int {
    // SAFETY: target is NUL-terminated; the empty from-path is a static C string.
    unsafe {
        libc::syscall(libc::SYS_move_mount, fd, c"".as_ptr(), libc::AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) as c_int
    }
}

#[inline]
pub(crate) fn pivot_root(new_root: *const c_char, put_old: *const c_char) -> c_int {
    // SAFETY: both are NUL-terminated strings.
    unsafe { libc::syscall(libc::SYS_pivot_root, new_root, put_old) as c_int }
}

/// `CLOCK_MONOTONIC` in nanoseconds (vDSO; async-signal-safe).
#[inline]
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
