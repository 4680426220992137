//! Starting helper programs (the sandbox's init, `slirp4netns`) without copying the server.
//!
//! `fork` (which `std::process::Command` uses as soon as a `pre_exec` hook is set) copies
//! the server's page tables: its cost grows with the server's memory, and a server that has
//! served a burst of runs spawns several times slower. glibc's `posix_spawn` uses
//! `clone(CLONE_VM | CLONE_VFORK)` and executes the program at once, so a spawn costs the
//! same whatever the server's size. Extra fds are passed at fixed numbers from 3 on, set up
//! by the spawn's file actions in the child only, so concurrent spawns on other threads never
//! inherit them.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The program to execute.
#[derive(Clone, Copy)]
pub(crate) enum Program<'a> {
    /// A path.
    Path(&'a CStr),
    /// An open file (a sealed memfd): it is passed as the fd right after `fds` and executed
    /// as `/proc/self/fd/N`, so the program must close it (init does, first thing).
    Fd(RawFd),
}

/// What a spawned program gets on fd 0, 1 or 2.
#[derive(Clone, Copy)]
pub(crate) enum Stdio {
    /// `/dev/null`.
    Null,
    /// This fd (duplicated; the caller keeps its own).
    Fd(RawFd),
}

/// Starts `program` with `argv` (including its name), `envp` (`KEY=value`), `stdio` as fds
/// 0–2 and `fds` as fds `3, 4, …` in order; every other fd of the process is closed in the
/// child. Signals start unblocked with default dispositions. Returns the pid.
pub(crate) fn spawn(
    program: Program<'_>,
    argv: &[CString],
    envp: &[CString],
    stdio: [Stdio; 3],
    fds: &[RawFd],
) -> io::Result<libc::pid_t> {
    // Every source is first duplicated above the highest target, so that no dup2 of the file
    // actions can overwrite a source that a later one still needs.
    let min = 3 + fds.len() as libc::c_int;
    let mut dups: Vec<OwnedFd> = Vec::with_capacity(fds.len() + 3);
    let mut dup_high = |fd: RawFd| -> io::Result<RawFd> {
        // SAFETY: F_DUPFD_CLOEXEC on an fd we were given; the result is ours.
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
        if d < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        dups.push(unsafe { OwnedFd::from_raw_fd(d) });
        Ok(d)
    };
    let sources: Vec<RawFd> = fds.iter().map(|&fd| dup_high(fd)).collect::<io::Result<_>>()?;
    let program_source = match program {
        Program::Fd(fd) => Some(dup_high(fd)?),
        Program::Path(_) => None,
    };
    let stdio_sources: Vec<Option<RawFd>> = stdio
        .iter()
        .map(|s| match s {
            Stdio::Null => Ok(None),
            Stdio::Fd(fd) => dup_high(*fd).map(Some),
        })
        .collect::<io::Result<_>>()?;
    let program_fd = 3 + sources.len() as libc::c_int;
    let fd_path = CString::new(format!("/proc/self/fd/{program_fd}")).map_err(|_| io::Error::other("NUL"))?;
    let path: &CStr = match program {
        Program::Path(p) => p,
        Program::Fd(_) => &fd_path,
    };
    let argv_p: Vec<*mut libc::c_char> =
        argv.iter().map(|c| c.as_ptr() as *mut libc::c_char).chain([std::ptr::null_mut()]).collect();
    let envp_p: Vec<*mut libc::c_char> =
        envp.iter().map(|c| c.as_ptr() as *mut libc::c_char).chain([std::ptr::null_mut()]).collect();

    // SAFETY: posix_spawn with initialised attributes and file actions that are destroyed
    // before returning; every pointer outlives the call.
    let result = unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        let result = (|| {
            let ok = |r: libc::c_int| if r == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(r)) };
            for (target, source) in stdio_sources.iter().enumerate() {
                match source {
                    Some(fd) => ok(libc::posix_spawn_file_actions_adddup2(&mut actions, *fd, target as libc::c_int))?,
                    None => {
                        let flags = if target == 0 { libc::O_RDONLY } else { libc::O_WRONLY };
                        ok(libc::posix_spawn_file_actions_addopen(
                            &mut actions,
                            target as libc::c_int,
                            c"/dev/null".as_ptr(),
                            flags,
                            0,
                        ))?
                    }
                }
            }
            for (i, fd) in sources.iter().enumerate() {
                ok(libc::posix_spawn_file_actions_adddup2(&mut actions, *fd, 3 + i as libc::c_int))?;
            }
            let mut first_closed = program_fd;
            if let Some(fd) = program_source {
                ok(libc::posix_spawn_file_actions_adddup2(&mut actions, fd, program_fd))?;
                first_closed += 1;
            }
            // Whatever the embedding process holds without close-on-exec (a parent's jobserver
            // pipe, say) stops here too (glibc 2.34+).
            ok(libc::posix_spawn_file_actions_addclosefrom_np(&mut actions, first_closed))?;
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::posix_spawnattr_setsigmask(&mut attr, &none);
            libc::posix_spawnattr_setsigdefault(&mut attr, &all);
            ok(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
            let mut pid: libc::pid_t = 0;
            ok(libc::posix_spawn(&mut pid, path.as_ptr(), &actions, &attr, argv_p.as_ptr(), envp_p.as_ptr()))?;
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        result
    };
    drop(dups);
    result
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn fds_arrive_at_their_numbers_and_nothing_else_leaks() {
        let (r, w) = crate::sandbox::sys::pipe().unwrap();
        let (keep_r, keep_w) = crate::sandbox::sys::pipe().unwrap();
        // The child reports its open fds (ls of /proc/self/fd, minus the one ls opens itself).
        let script = c"ls /proc/self/fd | sort -n | tr '\\n' ' ' >&3";
        let argv = [c"sh".to_owned(), c"-c".to_owned(), script.to_owned()];
        let pid =
            spawn(Program::Path(c"/bin/sh"), &argv, &[], [Stdio::Null, Stdio::Null, Stdio::Null], &[w.as_raw_fd()])
                .unwrap();
        drop(w);
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut out).unwrap();
        drop((keep_r, keep_w));
        // 0-2, 3 (our pipe) and ls's own directory fd: nothing of the test process.
        let fds: Vec<u32> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert_eq!(&fds[..4], &[0, 1, 2, 3], "{out}");
        assert!(fds.len() <= 5, "extra fds leaked into the child: {out}");
    }
}
