//! `contree-init`, the program every sandbox starts from, and how the server starts it.
//!
//! The program (`init/init.c`, built by `build.rs`) is embedded in the server and copied
//! once per process into a memfd sealed against any change (`F_SEAL_WRITE`, `GROW`,
//! `SHRINK`, `SEAL`). Each run executes it with `posix_spawn`, which glibc implements
//! with `clone(CLONE_VM | CLONE_VFORK)` and an immediate `execve`: the sandbox never
//! holds a copy of the server's memory, argv or environment, and the cost of a spawn does
//! not depend on how large the server has grown. Because the file is a sealed memfd, code
//! inside a sandbox can neither overwrite nor reopen it for writing (runc's
//! CVE-2019-5736), and init is not dumpable, so `/proc/1/exe` is out of reach anyway.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// The init program, compiled by `build.rs`.
static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/contree-init"));

/// The sealed memfd holding [`PROGRAM`], created on first use.
fn program_fd() -> io::Result<RawFd> {
    static FD: OnceLock<Result<OwnedFd, String>> = OnceLock::new();
    match FD.get_or_init(|| seal_program().map_err(|e| e.to_string())) {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(e) => Err(io::Error::other(format!("preparing the sandbox init program: {e}"))),
    }
}

fn seal_program() -> io::Result<OwnedFd> {
    if PROGRAM.is_empty() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "contree-init was not built for this target"));
    }
    // SAFETY: memfd_create with a static name; the fd is ours.
    let raw = unsafe { libc::memfd_create(c"contree-init".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    file.write_all(PROGRAM)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our fd.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Keep only a read-only descriptor: a file with a writer open cannot be executed
    // (ETXTBSY), and nothing should be able to write it anyway.
    let ro = std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    Ok(OwnedFd::from(ro))
}

/// Starts `contree-init` with `args` (after its name), an empty environment, stdio on
/// `/dev/null`, and exactly the fds in `fds` as `3, 4, …` in order. Returns its pid.
pub(crate) fn spawn(args: &[&str], fds: &[RawFd]) -> io::Result<libc::pid_t> {
    let program = program_fd()?;
    let mut argv = vec![c"contree-init".to_owned()];
    for a in args {
        argv.push(CString::new(*a).map_err(|_| io::Error::other("init argument with NUL"))?);
    }
    let null = super::spawn::Stdio::Null;
    super::spawn::spawn(super::spawn::Program::Fd(program), &argv, &[], [null, null, null], fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_sealed_against_writes() {
        let fd = program_fd().expect("init memfd");
        // SAFETY: F_GET_SEALS on our fd.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        assert_eq!(seals & libc::F_SEAL_WRITE, libc::F_SEAL_WRITE);
        let path = format!("/proc/self/fd/{fd}");
        // Reopening for writing may succeed, but no byte can be written.
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) {
            let err = f.write_all(b"x").expect_err("writing the sealed init must fail");
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        }
    }
}
