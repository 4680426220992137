//! Thin wrappers over the Linux syscalls the server side of the sandbox needs and `libc`
//! does not wrap portably (pidfd, pipes and sockets numbered above stdio).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libc::{c_int, c_uint};

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

/// A pidfd for our child `pid` (not yet reaped, so the pid cannot have been reused).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is a fresh fd we own.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as c_uint) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}
