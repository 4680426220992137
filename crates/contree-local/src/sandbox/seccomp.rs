//! The seccomp filters a sandboxed command runs under, as strict as Docker's default profile.
//!
//! This module only *builds* the BPF programs; the sandbox's init installs them (with
//! `PR_SET_NO_NEW_PRIVS` first) just before it `execve`s the command, so nothing the
//! command runs can remove them, and everything init itself does before is unfiltered.
//!
//! # What is allowed
//!
//! Filter 1 is an allowlist: a syscall not on it fails with `EPERM` (Docker's default
//! action; `EPERM`, never a kill, so programs see an ordinary error and can fall back).
//! The list is Docker's default profile (`profiles/seccomp/default.json` of moby, the
//! unconditional `SCMP_ACT_ALLOW` group) restricted to the syscalls that exist on the
//! architecture, plus the entries Docker adds for its default capability set and kernel:
//!
//! * `ptrace`, `process_vm_readv`, `process_vm_writev`: Docker allows them on kernels ≥ 4.8,
//!   where seccomp can no longer be bypassed through ptrace. Debuggers and `strace` inside the
//!   sandbox keep working; init is non-dumpable and the command has no `CAP_SYS_PTRACE`, so
//!   only the command's own processes can be traced.
//! * `chroot`: Docker allows it with `CAP_SYS_CHROOT`, which is in the command's capability
//!   set; after `pivot_root` and the detach of the old root there is no outside to reach.
//! * `arch_prctl`, `modify_ldt` on x86_64, as Docker does for amd64.
//!
//! and conditionally, exactly as Docker does:
//!
//! * `clone` only when its flags ask for no new namespace (`CLONE_NEWNS`, `CLONE_NEWUTS`,
//!   `CLONE_NEWIPC`, `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET`, `CLONE_NEWCGROUP`):
//!   `fork`, `vfork` and threads work, namespaces (above all user namespaces, the usual
//!   first step of a kernel exploit) don't.
//! * `unshare` likewise, with `CLONE_NEWTIME` added to the forbidden flags (it is a
//!   namespace flag for `unshare`, but part of the exit signal byte for `clone`). Docker
//!   allows `unshare` only with `CAP_SYS_ADMIN`; allowing the namespace-free forms
//!   (`CLONE_FILES`, `CLONE_FS`, `CLONE_SYSVSEM`) costs nothing and some programs use them.
//! * `personality` only with the values Docker allows: `0` (Linux), `8` (`PER_LINUX32`),
//!   `0x20000` (`UNAME26`), `0x20008` and `0xffffffff` (the query). Notably not
//!   `ADDR_NO_RANDOMIZE` (`setarch -R`), which would turn ASLR off for what the command runs.
//! * `socket` for every address family except `AF_ALG` (38, the kernel crypto API, a
//!   recurring source of kernel bugs) and `AF_VSOCK` (40, talks to the hypervisor).
//!
//! # What is denied
//!
//! Everything else, notably: new namespaces and `setns`; the keyring (`keyctl`, `add_key`,
//! `request_key`: keyrings are not namespaced); `bpf`, `perf_event_open`, `userfaultfd`,
//! `io_uring_*` (large kernel attack surface; Docker denies them too); kernel modules and
//! `kexec_*`; every mount syscall (`mount`, `umount2`, `pivot_root`, `fsopen`, `fsconfig`,
//! `fsmount`, `fspick`, `move_mount`, `open_tree`, `mount_setattr`); `open_by_handle_at`
//! (the classic container escape: it opens host files by handle); `swapon`, `swapoff`,
//! `reboot`, `syslog`, `acct`, `quotactl`, `lookup_dcookie`, `iopl`, `ioperm`;
//! `settimeofday`, `clock_settime`; `sethostname`; `kcmp`, `pidfd_getfd`,
//! `process_madvise`; `get_mempolicy`, `mbind`, `set_mempolicy`; `vhangup`.
//!
//! One deliberate deviation makes this stricter than Docker: `adjtimex` and `clock_adjtime`
//! are denied although Docker allows them (for reading the clock's state; changing it needs
//! `CAP_SYS_TIME`). Nothing ordinary needs them, and the clock is shared with the host.
//! `name_to_handle_at` is allowed as in Docker: it only produces a handle, and the call that
//! would use one, `open_by_handle_at`, is denied.
//!
//! # The two-filter trick for `clone3`
//!
//! `clone3` takes its flags in a struct in memory, which seccomp cannot read, so the filter
//! cannot tell a thread from a new user namespace. Docker answers `clone3` with `ENOSYS`:
//! glibc (≥ 2.34 uses `clone3` for `fork` and threads) and other runtimes then fall back to
//! `clone`, whose flags filter 1 inspects. `seccompiler` gives all rules of one filter the same
//! action, so the `ENOSYS` comes from a second filter: `clone3` → `Errno(ENOSYS)`, everything
//! else allowed.
//!
//! `clone3` is on neither allowlist. The kernel runs every installed filter and keeps the
//! most severe action; between two `ERRNO` results the most recently installed filter's
//! wins. So, installed in the order [`filters`] returns them, `clone3` gets filter 2's
//! `ENOSYS` over filter 1's `EPERM`. Leaving `clone3` off filter 1 makes every mistake fail
//! safe: without filter 2, or with the two swapped, `clone3` fails with `EPERM` (threads fail
//! to start, loudly) instead of being allowed with whatever flags it carries.
//!
//! # Architectures
//!
//! x86_64 and aarch64, each with its own syscall table below (numbers from libseccomp's
//! `syscalls.csv`). The filters check the audit architecture first and kill a process that
//! makes a syscall through another ABI (i386 `int 0x80` on x86_64); this is
//! `seccompiler`'s fixed behaviour, and stricter than Docker, which filters the 32-bit ABIs
//! with the same list. x32 calls carry the x86_64 audit architecture but their numbers have
//! bit 30 set, match nothing on the list and fail with `EPERM`. On any other architecture
//! [`filters`] returns [`SandboxError::Unavailable`] naming it: the server must refuse to
//! start rather than run commands unfiltered.
//!
//! # Cost
//!
//! Filter 1 compares the syscall number linearly against the list, lowest number first
//! (the frequent `read`/`write`/`mmap` come early on x86_64), about 1,300 instructions in
//! the worst case. Each syscall of the command pays that, a fraction of a microsecond.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::{SandboxError, SandboxUnavailable};

/// How many programs [`filters`] returns: the allowlist, then the `clone3` → `ENOSYS` filter.
pub(crate) const FILTER_COUNT: usize = 2;

/// Size of one `struct sock_filter` (`u16 code; u8 jt; u8 jf; u32 k`).
pub(crate) const INSTRUCTION_BYTES: usize = 8;

/// The `clone` flags that create namespaces (Docker's mask `0x7E020000`).
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `unshare` can also create a time namespace; for `clone` the same bit is part of the exit
/// signal, so it only joins the mask here.
const UNSHARE_NAMESPACE_FLAGS: u64 = CLONE_NAMESPACE_FLAGS | libc::CLONE_NEWTIME as u64;

/// The `personality` values Docker allows: Linux, `PER_LINUX32`, `UNAME26`,
/// `UNAME26 | PER_LINUX32`, and `0xffffffff`, which only queries.
const PERSONALITY_ALLOWED: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `AF_ALG`, denied like Docker (the kernel crypto API's socket interface).
const AF_ALG: u64 = 38;
/// `AF_VSOCK`, denied like Docker (sockets to the hypervisor).
const AF_VSOCK: u64 = 40;

/// The syscall numbers of one architecture that the filters need.
struct ArchTable {
    target: TargetArch,
    /// Allowed unconditionally.
    allowed: &'static [(&'static str, i64)],
    clone: i64,
    clone3: i64,
    unshare: i64,
    personality: i64,
    socket: i64,
}

/// The table for `arch` (as in `std::env::consts::ARCH`), if the filters support it.
fn arch_table(arch: &str) -> Option<ArchTable> {
    match arch {
        "x86_64" => Some(ArchTable {
            target: TargetArch::x86_64,
            allowed: X86_64_ALLOWED,
            clone: 56,
            clone3: 435,
            unshare: 272,
            personality: 135,
            socket: 41,
        }),
        "aarch64" => Some(ArchTable {
            target: TargetArch::aarch64,
            allowed: AARCH64_ALLOWED,
            clone: 220,
            clone3: 435,
            unshare: 97,
            personality: 92,
            socket: 198,
        }),
        _ => None,
    }
}

/// The BPF programs for this machine, in installation order ([`FILTER_COUNT`] of them).
///
/// Each is the raw bytes of a `struct sock_filter[]` in native layout
/// ([`INSTRUCTION_BYTES`] per instruction), ready for a `struct sock_fprog` handed to
/// `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)` or `seccomp(2)`. Built once, on first
/// use.
///
/// # Errors
///
/// [`SandboxError::Unavailable`] on an architecture without a syscall table (its message
/// names the architecture), so the server refuses to start.
pub(crate) fn filters() -> Result<&'static [Vec<u8>], SandboxError> {
    static FILTERS: OnceLock<Result<Vec<Vec<u8>>, String>> = OnceLock::new();
    match FILTERS.get_or_init(|| build(std::env::consts::ARCH)) {
        Ok(programs) => Ok(programs),
        Err(reason) => Err(SandboxUnavailable::new(reason.clone()).into()),
    }
}

/// Builds the programs for `arch`; the error says why, in one sentence.
fn build(arch: &str) -> Result<Vec<Vec<u8>>, String> {
    let table = arch_table(arch).ok_or_else(|| {
        format!("there is no seccomp filter for the {arch} architecture (only x86_64 and aarch64 are supported)")
    })?;
    let programs = [allowlist(&table), clone3_enosys(&table)];
    programs
        .into_iter()
        .map(|filter| {
            let filter = filter.map_err(|e| format!("cannot build the seccomp filter for {arch}: {e}"))?;
            let program = BpfProgram::try_from(filter)
                .map_err(|e| format!("cannot compile the seccomp filter for {arch}: {e}"))?;
            Ok(to_bytes(&program))
        })
        .collect()
}

/// Filter 1: the allowlist, `EPERM` for everything else.
fn allowlist(t: &ArchTable) -> Result<SeccompFilter, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = t.allowed.iter().map(|&(_, nr)| (nr, Vec::new())).collect();
    let dword = |arg: u8, op: SeccompCmpOp, value: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value);
    // The kernel reads only the low 32 bits of `clone`'s flags and `unshare`'s int.
    rules.insert(t.clone, vec![SeccompRule::new(vec![dword(0, SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS), 0)?])?]);
    rules.insert(
        t.unshare,
        vec![SeccompRule::new(vec![dword(0, SeccompCmpOp::MaskedEq(UNSHARE_NAMESPACE_FLAGS), 0)?])?],
    );
    let personality = PERSONALITY_ALLOWED
        .iter()
        .map(|&p| SeccompRule::new(vec![dword(0, SeccompCmpOp::Eq, p)?]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(t.personality, personality);
    rules.insert(
        t.socket,
        vec![
            SeccompRule::new(vec![dword(0, SeccompCmpOp::Lt, AF_ALG)?])?,
            SeccompRule::new(vec![dword(0, SeccompCmpOp::Eq, AF_ALG + 1)?])?,
            SeccompRule::new(vec![dword(0, SeccompCmpOp::Gt, AF_VSOCK)?])?,
        ],
    );
    SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, t.target)
}

/// Filter 2: `clone3` fails with `ENOSYS` (so callers fall back to `clone`), the rest passes.
fn clone3_enosys(t: &ArchTable) -> Result<SeccompFilter, seccompiler::BackendError> {
    SeccompFilter::new(
        BTreeMap::from([(t.clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        t.target,
    )
}

/// The program as the kernel reads it: each instruction's fields in native byte order.
fn to_bytes(program: &BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * INSTRUCTION_BYTES);
    for ins in program {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

/// Unconditionally allowed syscalls on x86_64: Docker's list (see the module doc).
#[rustfmt::skip]
const X86_64_ALLOWED: &[(&str, i64)] = &[
    ("accept", 43), ("accept4", 288), ("access", 21), ("alarm", 37), ("arch_prctl", 158),
    ("bind", 49), ("brk", 12), ("cachestat", 451), ("capget", 125), ("capset", 126), ("chdir", 80),
    ("chmod", 90), ("chown", 92), ("chroot", 161), ("clock_getres", 229), ("clock_gettime", 228),
    ("clock_nanosleep", 230), ("close", 3), ("close_range", 436), ("connect", 42),
    ("copy_file_range", 326), ("creat", 85), ("dup", 32), ("dup2", 33), ("dup3", 292),
    ("epoll_create", 213), ("epoll_create1", 291), ("epoll_ctl", 233), ("epoll_ctl_old", 214),
    ("epoll_pwait", 281), ("epoll_pwait2", 441), ("epoll_wait", 232), ("epoll_wait_old", 215),
    ("eventfd", 284), ("eventfd2", 290), ("execve", 59), ("execveat", 322), ("exit", 60),
    ("exit_group", 231), ("faccessat", 269), ("faccessat2", 439), ("fadvise64", 221),
    ("fallocate", 285), ("fanotify_mark", 301), ("fchdir", 81), ("fchmod", 91), ("fchmodat", 268),
    ("fchmodat2", 452), ("fchown", 93), ("fchownat", 260), ("fcntl", 72), ("fdatasync", 75),
    ("fgetxattr", 193), ("flistxattr", 196), ("flock", 73), ("fork", 57), ("fremovexattr", 199),
    ("fsetxattr", 190), ("fstat", 5), ("fstatfs", 138), ("fsync", 74), ("ftruncate", 77),
    ("futex", 202), ("futex_requeue", 456), ("futex_wait", 455), ("futex_waitv", 449),
    ("futex_wake", 454), ("futimesat", 261), ("get_robust_list", 274), ("get_thread_area", 211),
    ("getcpu", 309), ("getcwd", 79), ("getdents", 78), ("getdents64", 217), ("getegid", 108),
    ("geteuid", 107), ("getgid", 104), ("getgroups", 115), ("getitimer", 36), ("getpeername", 52),
    ("getpgid", 121), ("getpgrp", 111), ("getpid", 39), ("getppid", 110), ("getpriority", 140),
    ("getrandom", 318), ("getresgid", 120), ("getresuid", 118), ("getrlimit", 97),
    ("getrusage", 98), ("getsid", 124), ("getsockname", 51), ("getsockopt", 55), ("gettid", 186),
    ("gettimeofday", 96), ("getuid", 102), ("getxattr", 191), ("getxattrat", 464),
    ("inotify_add_watch", 254), ("inotify_init", 253), ("inotify_init1", 294),
    ("inotify_rm_watch", 255), ("io_cancel", 210), ("io_destroy", 207), ("io_getevents", 208),
    ("io_pgetevents", 333), ("io_setup", 206), ("io_submit", 209), ("ioctl", 16),
    ("ioprio_get", 252), ("ioprio_set", 251), ("kill", 62), ("landlock_add_rule", 445),
    ("landlock_create_ruleset", 444), ("landlock_restrict_self", 446), ("lchown", 94),
    ("lgetxattr", 192), ("link", 86), ("linkat", 265), ("listen", 50), ("listmount", 458),
    ("listxattr", 194), ("listxattrat", 465), ("llistxattr", 195), ("lremovexattr", 198),
    ("lseek", 8), ("lsetxattr", 189), ("lstat", 6), ("madvise", 28), ("map_shadow_stack", 453),
    ("membarrier", 324), ("memfd_create", 319), ("memfd_secret", 447), ("mincore", 27),
    ("mkdir", 83), ("mkdirat", 258), ("mknod", 133), ("mknodat", 259), ("mlock", 149),
    ("mlock2", 325), ("mlockall", 151), ("mmap", 9), ("modify_ldt", 154), ("mprotect", 10),
    ("mq_getsetattr", 245), ("mq_notify", 244), ("mq_open", 240), ("mq_timedreceive", 243),
    ("mq_timedsend", 242), ("mq_unlink", 241), ("mremap", 25), ("mseal", 462), ("msgctl", 71),
    ("msgget", 68), ("msgrcv", 70), ("msgsnd", 69), ("msync", 26), ("munlock", 150),
    ("munlockall", 152), ("munmap", 11), ("name_to_handle_at", 303), ("nanosleep", 35),
    ("newfstatat", 262), ("open", 2), ("openat", 257), ("openat2", 437), ("pause", 34),
    ("pidfd_open", 434), ("pidfd_send_signal", 424), ("pipe", 22), ("pipe2", 293),
    ("pkey_alloc", 330), ("pkey_free", 331), ("pkey_mprotect", 329), ("poll", 7), ("ppoll", 271),
    ("prctl", 157), ("pread64", 17), ("preadv", 295), ("preadv2", 327), ("prlimit64", 302),
    ("process_mrelease", 448), ("process_vm_readv", 310), ("process_vm_writev", 311),
    ("pselect6", 270), ("ptrace", 101), ("pwrite64", 18), ("pwritev", 296), ("pwritev2", 328),
    ("read", 0), ("readahead", 187), ("readlink", 89), ("readlinkat", 267), ("readv", 19),
    ("recvfrom", 45), ("recvmmsg", 299), ("recvmsg", 47), ("remap_file_pages", 216),
    ("removexattr", 197), ("removexattrat", 466), ("rename", 82), ("renameat", 264),
    ("renameat2", 316), ("restart_syscall", 219), ("rmdir", 84), ("rseq", 334),
    ("rt_sigaction", 13), ("rt_sigpending", 127), ("rt_sigprocmask", 14), ("rt_sigqueueinfo", 129),
    ("rt_sigreturn", 15), ("rt_sigsuspend", 130), ("rt_sigtimedwait", 128),
    ("rt_tgsigqueueinfo", 297), ("sched_get_priority_max", 146), ("sched_get_priority_min", 147),
    ("sched_getaffinity", 204), ("sched_getattr", 315), ("sched_getparam", 143),
    ("sched_getscheduler", 145), ("sched_rr_get_interval", 148), ("sched_setaffinity", 203),
    ("sched_setattr", 314), ("sched_setparam", 142), ("sched_setscheduler", 144),
    ("sched_yield", 24), ("seccomp", 317), ("select", 23), ("semctl", 66), ("semget", 64),
    ("semop", 65), ("semtimedop", 220), ("sendfile", 40), ("sendmmsg", 307), ("sendmsg", 46),
    ("sendto", 44), ("set_robust_list", 273), ("set_thread_area", 205), ("set_tid_address", 218),
    ("setfsgid", 123), ("setfsuid", 122), ("setgid", 106), ("setgroups", 116), ("setitimer", 38),
    ("setpgid", 109), ("setpriority", 141), ("setregid", 114), ("setresgid", 119),
    ("setresuid", 117), ("setreuid", 113), ("setrlimit", 160), ("setsid", 112), ("setsockopt", 54),
    ("setuid", 105), ("setxattr", 188), ("setxattrat", 463), ("shmat", 30), ("shmctl", 31),
    ("shmdt", 67), ("shmget", 29), ("shutdown", 48), ("sigaltstack", 131), ("signalfd", 282),
    ("signalfd4", 289), ("socketpair", 53), ("splice", 275), ("stat", 4), ("statfs", 137),
    ("statmount", 457), ("statx", 332), ("symlink", 88), ("symlinkat", 266), ("sync", 162),
    ("sync_file_range", 277), ("syncfs", 306), ("sysinfo", 99), ("tee", 276), ("tgkill", 234),
    ("time", 201), ("timer_create", 222), ("timer_delete", 226), ("timer_getoverrun", 225),
    ("timer_gettime", 224), ("timer_settime", 223), ("timerfd_create", 283),
    ("timerfd_gettime", 287), ("timerfd_settime", 286), ("times", 100), ("tkill", 200),
    ("truncate", 76), ("umask", 95), ("uname", 63), ("unlink", 87), ("unlinkat", 263),
    ("uretprobe", 335), ("utime", 132), ("utimensat", 280), ("utimes", 235), ("vfork", 58),
    ("vmsplice", 278), ("wait4", 61), ("waitid", 247), ("write", 1), ("writev", 20),
];
/// Unconditionally allowed syscalls on aarch64: Docker's list (see the module doc).
#[rustfmt::skip]
const AARCH64_ALLOWED: &[(&str, i64)] = &[
    ("accept", 202), ("accept4", 242), ("bind", 200), ("brk", 214), ("cachestat", 451),
    ("capget", 90), ("capset", 91), ("chdir", 49), ("chroot", 51), ("clock_getres", 114),
    ("clock_gettime", 113), ("clock_nanosleep", 115), ("close", 57), ("close_range", 436),
    ("connect", 203), ("copy_file_range", 285), ("dup", 23), ("dup3", 24), ("epoll_create1", 20),
    ("epoll_ctl", 21), ("epoll_pwait", 22), ("epoll_pwait2", 441), ("eventfd2", 19),
    ("execve", 221), ("execveat", 281), ("exit", 93), ("exit_group", 94), ("faccessat", 48),
    ("faccessat2", 439), ("fadvise64", 223), ("fallocate", 47), ("fanotify_mark", 263),
    ("fchdir", 50), ("fchmod", 52), ("fchmodat", 53), ("fchmodat2", 452), ("fchown", 55),
    ("fchownat", 54), ("fcntl", 25), ("fdatasync", 83), ("fgetxattr", 10), ("flistxattr", 13),
    ("flock", 32), ("fremovexattr", 16), ("fsetxattr", 7), ("fstat", 80), ("fstatfs", 44),
    ("fsync", 82), ("ftruncate", 46), ("futex", 98), ("futex_requeue", 456), ("futex_wait", 455),
    ("futex_waitv", 449), ("futex_wake", 454), ("get_robust_list", 100), ("getcpu", 168),
    ("getcwd", 17), ("getdents64", 61), ("getegid", 177), ("geteuid", 175), ("getgid", 176),
    ("getgroups", 158), ("getitimer", 102), ("getpeername", 205), ("getpgid", 155), ("getpid", 172),
    ("getppid", 173), ("getpriority", 141), ("getrandom", 278), ("getresgid", 150),
    ("getresuid", 148), ("getrlimit", 163), ("getrusage", 165), ("getsid", 156),
    ("getsockname", 204), ("getsockopt", 209), ("gettid", 178), ("gettimeofday", 169),
    ("getuid", 174), ("getxattr", 8), ("getxattrat", 464), ("inotify_add_watch", 27),
    ("inotify_init1", 26), ("inotify_rm_watch", 28), ("io_cancel", 3), ("io_destroy", 1),
    ("io_getevents", 4), ("io_pgetevents", 292), ("io_setup", 0), ("io_submit", 2), ("ioctl", 29),
    ("ioprio_get", 31), ("ioprio_set", 30), ("kill", 129), ("landlock_add_rule", 445),
    ("landlock_create_ruleset", 444), ("landlock_restrict_self", 446), ("lgetxattr", 9),
    ("linkat", 37), ("listen", 201), ("listmount", 458), ("listxattr", 11), ("listxattrat", 465),
    ("llistxattr", 12), ("lremovexattr", 15), ("lseek", 62), ("lsetxattr", 6), ("madvise", 233),
    ("map_shadow_stack", 453), ("membarrier", 283), ("memfd_create", 279), ("memfd_secret", 447),
    ("mincore", 232), ("mkdirat", 34), ("mknodat", 33), ("mlock", 228), ("mlock2", 284),
    ("mlockall", 230), ("mmap", 222), ("mprotect", 226), ("mq_getsetattr", 185), ("mq_notify", 184),
    ("mq_open", 180), ("mq_timedreceive", 183), ("mq_timedsend", 182), ("mq_unlink", 181),
    ("mremap", 216), ("mseal", 462), ("msgctl", 187), ("msgget", 186), ("msgrcv", 188),
    ("msgsnd", 189), ("msync", 227), ("munlock", 229), ("munlockall", 231), ("munmap", 215),
    ("name_to_handle_at", 264), ("nanosleep", 101), ("newfstatat", 79), ("openat", 56),
    ("openat2", 437), ("pidfd_open", 434), ("pidfd_send_signal", 424), ("pipe2", 59),
    ("pkey_alloc", 289), ("pkey_free", 290), ("pkey_mprotect", 288), ("ppoll", 73), ("prctl", 167),
    ("pread64", 67), ("preadv", 69), ("preadv2", 286), ("prlimit64", 261),
    ("process_mrelease", 448), ("process_vm_readv", 270), ("process_vm_writev", 271),
    ("pselect6", 72), ("ptrace", 117), ("pwrite64", 68), ("pwritev", 70), ("pwritev2", 287),
    ("read", 63), ("readahead", 213), ("readlinkat", 78), ("readv", 65), ("recvfrom", 207),
    ("recvmmsg", 243), ("recvmsg", 212), ("remap_file_pages", 234), ("removexattr", 14),
    ("removexattrat", 466), ("renameat", 38), ("renameat2", 276), ("restart_syscall", 128),
    ("rseq", 293), ("rt_sigaction", 134), ("rt_sigpending", 136), ("rt_sigprocmask", 135),
    ("rt_sigqueueinfo", 138), ("rt_sigreturn", 139), ("rt_sigsuspend", 133),
    ("rt_sigtimedwait", 137), ("rt_tgsigqueueinfo", 240), ("sched_get_priority_max", 125),
    ("sched_get_priority_min", 126), ("sched_getaffinity", 123), ("sched_getattr", 275),
    ("sched_getparam", 121), ("sched_getscheduler", 120), ("sched_rr_get_interval", 127),
    ("sched_setaffinity", 122), ("sched_setattr", 274), ("sched_setparam", 118),
    ("sched_setscheduler", 119), ("sched_yield", 124), ("seccomp", 277), ("semctl", 191),
    ("semget", 190), ("semop", 193), ("semtimedop", 192), ("sendfile", 71), ("sendmmsg", 269),
    ("sendmsg", 211), ("sendto", 206), ("set_robust_list", 99), ("set_tid_address", 96),
    ("setfsgid", 152), ("setfsuid", 151), ("setgid", 144), ("setgroups", 159), ("setitimer", 103),
    ("setpgid", 154), ("setpriority", 140), ("setregid", 143), ("setresgid", 149),
    ("setresuid", 147), ("setreuid", 145), ("setrlimit", 164), ("setsid", 157), ("setsockopt", 208),
    ("setuid", 146), ("setxattr", 5), ("setxattrat", 463), ("shmat", 196), ("shmctl", 195),
    ("shmdt", 197), ("shmget", 194), ("shutdown", 210), ("sigaltstack", 132), ("signalfd4", 74),
    ("socketpair", 199), ("splice", 76), ("statfs", 43), ("statmount", 457), ("statx", 291),
    ("symlinkat", 36), ("sync", 81), ("sync_file_range", 84), ("syncfs", 267), ("sysinfo", 179),
    ("tee", 77), ("tgkill", 131), ("timer_create", 107), ("timer_delete", 111),
    ("timer_getoverrun", 109), ("timer_gettime", 108), ("timer_settime", 110),
    ("timerfd_create", 85), ("timerfd_gettime", 87), ("timerfd_settime", 86), ("times", 153),
    ("tkill", 130), ("truncate", 45), ("umask", 166), ("uname", 160), ("unlinkat", 35),
    ("utimensat", 88), ("vmsplice", 75), ("wait4", 260), ("waitid", 95), ("write", 64),
    ("writev", 66),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Output, Stdio};
    use std::time::Duration;

    use super::*;

    /// Syscalls the command's start (after the filters are in place) and ordinary programs need.
    const NEEDED: &[&str] = &[
        "execve",
        "execveat",
        "setgroups",
        "setresgid",
        "setresuid",
        "capset",
        "capget",
        "prctl",
        "chdir",
        "umask",
        "close",
        "close_range",
        "dup3",
        "read",
        "write",
        "openat",
        "mmap",
        "munmap",
        "mprotect",
        "brk",
        "exit",
        "exit_group",
        "wait4",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "futex",
        "getpid",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "newfstatat",
        "statx",
        "getdents64",
        "pipe2",
        "fcntl",
        "ioctl",
        "seccomp",
        "kill",
        "tgkill",
        "ptrace",
        "chroot",
        "name_to_handle_at",
    ];

    /// Syscalls that must never be on an allowlist (some are conditional: `clone`, `unshare`,
    /// `personality` and `socket` have their own rules; `clone3` is filter 2's).
    const DENIED: &[&str] = &[
        "clone",
        "clone3",
        "unshare",
        "personality",
        "socket",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "mount",
        "umount2",
        "pivot_root",
        "open_by_handle_at",
        "setns",
        "userfaultfd",
        "fsopen",
        "fsmount",
        "move_mount",
        "open_tree",
        "mount_setattr",
        "fsconfig",
        "fspick",
        "swapon",
        "swapoff",
        "reboot",
        "syslog",
        "acct",
        "settimeofday",
        "clock_settime",
        "adjtimex",
        "clock_adjtime",
        "lookup_dcookie",
        "quotactl",
        "quotactl_fd",
        "iopl",
        "ioperm",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "sethostname",
        "setdomainname",
        "kcmp",
        "pidfd_getfd",
        "process_madvise",
        "vhangup",
        "mbind",
        "set_mempolicy",
        "get_mempolicy",
        "fanotify_init",
        "uselib",
        "nfsservctl",
        "vm86",
    ];

    #[test]
    fn both_architectures_compile_and_others_are_refused() {
        for arch in ["x86_64", "aarch64"] {
            let programs = build(arch).unwrap();
            assert_eq!(programs.len(), FILTER_COUNT);
            for p in &programs {
                assert!(!p.is_empty() && p.len() % INSTRUCTION_BYTES == 0, "{arch}: {} bytes", p.len());
                // BPF_MAXINSNS: the kernel refuses longer programs.
                assert!(p.len() / INSTRUCTION_BYTES <= 4096, "{arch}: {} instructions", p.len() / 8);
            }
        }
        let err = build("riscv64").unwrap_err();
        assert!(err.contains("riscv64"), "{err}");
        let live = filters().unwrap();
        assert_eq!(live, build(std::env::consts::ARCH).unwrap().as_slice());
    }

    #[test]
    fn tables_hold_what_is_needed_and_nothing_denied() {
        for arch in ["x86_64", "aarch64"] {
            let t = arch_table(arch).unwrap();
            let names: BTreeSet<&str> = t.allowed.iter().map(|&(n, _)| n).collect();
            let numbers: BTreeSet<i64> = t.allowed.iter().map(|&(_, nr)| nr).collect();
            assert_eq!(names.len(), t.allowed.len(), "{arch}: duplicate names");
            assert_eq!(numbers.len(), t.allowed.len(), "{arch}: duplicate numbers");
            for n in NEEDED {
                assert!(names.contains(n), "{arch}: {n} is needed but not allowed");
            }
            for n in DENIED {
                assert!(!names.contains(n), "{arch}: {n} must not be on the allowlist");
            }
            for nr in [t.clone, t.clone3, t.unshare, t.personality, t.socket] {
                assert!(!numbers.contains(&nr), "{arch}: conditional syscall {nr} is on the plain list");
            }
        }
        let x86: BTreeSet<&str> = X86_64_ALLOWED.iter().map(|&(n, _)| n).collect();
        assert!(x86.contains("dup2") && x86.contains("fork") && x86.contains("arch_prctl"));
    }

    /// The hand-kept numbers agree with the libc crate's, for the host's architecture.
    #[test]
    // `c_long` is `i64` on both supported architectures, but not everywhere.
    #[allow(clippy::useless_conversion)]
    fn numbers_match_libc() {
        let t = arch_table(std::env::consts::ARCH).unwrap();
        let nr = |name: &str| t.allowed.iter().find(|&&(n, _)| n == name).map(|&(_, nr)| nr);
        let checks: &[(&str, libc::c_long)] = &[
            ("read", libc::SYS_read),
            ("write", libc::SYS_write),
            ("openat", libc::SYS_openat),
            ("execve", libc::SYS_execve),
            ("execveat", libc::SYS_execveat),
            ("exit_group", libc::SYS_exit_group),
            ("setresuid", libc::SYS_setresuid),
            ("setgroups", libc::SYS_setgroups),
            ("capset", libc::SYS_capset),
            ("prctl", libc::SYS_prctl),
            ("close_range", libc::SYS_close_range),
            ("ptrace", libc::SYS_ptrace),
            ("futex", libc::SYS_futex),
            ("rseq", libc::SYS_rseq),
            ("statx", libc::SYS_statx),
            ("pidfd_open", libc::SYS_pidfd_open),
            ("faccessat2", libc::SYS_faccessat2),
            ("memfd_create", libc::SYS_memfd_create),
            ("landlock_restrict_self", libc::SYS_landlock_restrict_self),
            ("wait4", libc::SYS_wait4),
        ];
        for &(name, want) in checks {
            assert_eq!(nr(name), Some(i64::from(want)), "{name}");
        }
        assert_eq!(t.clone, i64::from(libc::SYS_clone));
        assert_eq!(t.clone3, i64::from(libc::SYS_clone3));
        assert_eq!(t.unshare, i64::from(libc::SYS_unshare));
        assert_eq!(t.personality, i64::from(libc::SYS_personality));
        assert_eq!(t.socket, i64::from(libc::SYS_socket));
    }

    /// Runs `cmd` with the filters installed in the child before `execve`; bounded to 20 s.
    fn run_filtered(cmd: &mut Command, filtered: bool) -> Output {
        let programs = filters().unwrap();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if filtered {
            // SAFETY: between fork and exec only prctl runs (async-signal-safe, no allocation:
            // the programs are 'static and `sock_fprog` lives on the stack).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    for p in programs {
                        let prog = libc::sock_fprog {
                            len: (p.len() / INSTRUCTION_BYTES) as libc::c_ushort,
                            filter: p.as_ptr() as *mut libc::sock_filter,
                        };
                        let prog_ptr: *const libc::sock_fprog = &prog;
                        if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, prog_ptr, 0, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        super::super::test_process::output_within(cmd, Duration::from_secs(20))
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// `true` runs, and a fork (the first `/bin/echo` is not the last command, so `sh` forks).
    #[test]
    fn ordinary_commands_run() {
        let out = run_filtered(&mut Command::new("/bin/true"), true);
        assert!(out.status.success(), "{out:?}");
        let out = run_filtered(Command::new("sh").args(["-c", "/bin/echo x; /bin/echo y; echo z"]), true);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(text(&out.stdout), "x\ny\nz\n");
    }

    /// Threads start: glibc's `clone3` gets ENOSYS and it falls back to `clone`.
    #[test]
    fn threads_start_through_the_clone_fallback() {
        let script = "use threads; my $t = threads->create(sub { 6 * 7 }); print 'thread says ', $t->join, qq(\\n);";
        let out = run_filtered(Command::new("perl").args(["-e", script]), true);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(text(&out.stdout), "thread says 42\n");
    }

    /// `unshare` of a user or network namespace works here unfiltered, and fails filtered.
    #[test]
    fn namespaces_cannot_be_created() {
        for args in [["-U", "true"], ["-n", "true"]] {
            let plain = run_filtered(Command::new("unshare").args(args), false);
            assert!(plain.status.success(), "unfiltered unshare {args:?} must work on the test host: {plain:?}");
            let out = run_filtered(Command::new("unshare").args(args), true);
            assert!(!out.status.success(), "unshare {args:?} worked under the filter: {out:?}");
            assert!(text(&out.stderr).contains("Operation not permitted"), "{out:?}");
        }
    }

    /// Raw syscalls from perl: each prints `name errno` (or `name ok`).
    const PROBE: &str = r#"
        use POSIX ();
        while (@ARGV) {
            my ($name, $nr, @args) = splice(@ARGV, 0, 5);
            my $r = syscall($nr + 0, map { $_ + 0 } @args);
            POSIX::_exit(0) if $r == 0 && $name =~ /^clone/;   # a child that should not exist
            print "$name ", ($r == -1 ? $! + 0 : "ok"), "\n";
        }
    "#;

    #[test]
    fn denied_syscalls_get_eperm_and_clone3_enosys() {
        let newuser = (libc::CLONE_NEWUSER | libc::SIGCHLD) as i64;
        let newnet = (libc::CLONE_NEWNET | libc::SIGCHLD) as i64;
        let calls: &[(&str, libc::c_long, [i64; 3], i32)] = &[
            ("keyctl", libc::SYS_keyctl, [0, 0, 0], libc::EPERM),
            ("add_key", libc::SYS_add_key, [0, 0, 0], libc::EPERM),
            ("request_key", libc::SYS_request_key, [0, 0, 0], libc::EPERM),
            ("bpf", libc::SYS_bpf, [0, 0, 0], libc::EPERM),
            ("perf_event_open", libc::SYS_perf_event_open, [0, 0, 0], libc::EPERM),
            ("mount", libc::SYS_mount, [0, 0, 0], libc::EPERM),
            ("setns", libc::SYS_setns, [0, 0, 0], libc::EPERM),
            ("userfaultfd", libc::SYS_userfaultfd, [0, 0, 0], libc::EPERM),
            ("open_by_handle_at", libc::SYS_open_by_handle_at, [0, 0, 0], libc::EPERM),
            ("io_uring_setup", libc::SYS_io_uring_setup, [0, 0, 0], libc::EPERM),
            ("unshare_user", libc::SYS_unshare, [libc::CLONE_NEWUSER as i64, 0, 0], libc::EPERM),
            ("clone_user", libc::SYS_clone, [newuser, 0, 0], libc::EPERM),
            ("clone_net", libc::SYS_clone, [newnet, 0, 0], libc::EPERM),
            ("personality_norandom", libc::SYS_personality, [libc::ADDR_NO_RANDOMIZE as i64, 0, 0], libc::EPERM),
            ("socket_alg", libc::SYS_socket, [38, libc::SOCK_SEQPACKET as i64, 0], libc::EPERM),
            ("socket_vsock", libc::SYS_socket, [40, libc::SOCK_STREAM as i64, 0], libc::EPERM),
            ("clone3", libc::SYS_clone3, [0, 0, 0], libc::ENOSYS),
        ];
        let mut cmd = Command::new("perl");
        cmd.args(["-e", PROBE]);
        for (name, nr, args, _) in calls {
            cmd.arg(name).arg(nr.to_string()).args(args.iter().map(|a| a.to_string()));
        }
        let out = run_filtered(&mut cmd, true);
        assert!(out.status.success(), "{out:?}");
        let stdout = text(&out.stdout);
        for (name, _, _, errno) in calls {
            assert!(
                stdout.lines().any(|l| l == format!("{name} {errno}")),
                "{name}: want errno {errno}, got:\n{stdout}"
            );
        }
    }

    /// The conditional rules let the harmless forms through.
    #[test]
    fn harmless_forms_of_conditional_syscalls_pass() {
        let calls: &[(&str, libc::c_long, [i64; 3])] = &[
            ("personality_query", libc::SYS_personality, [0xffff_ffff, 0, 0]),
            ("unshare_files", libc::SYS_unshare, [libc::CLONE_FILES as i64, 0, 0]),
            ("socket_unix", libc::SYS_socket, [libc::AF_UNIX as i64, libc::SOCK_STREAM as i64, 0]),
            ("socket_inet", libc::SYS_socket, [libc::AF_INET as i64, libc::SOCK_DGRAM as i64, 0]),
            ("socket_netlink", libc::SYS_socket, [libc::AF_NETLINK as i64, libc::SOCK_RAW as i64, 0]),
        ];
        let mut cmd = Command::new("perl");
        cmd.args(["-e", PROBE]);
        for (name, nr, args) in calls {
            cmd.arg(name).arg(nr.to_string()).args(args.iter().map(|a| a.to_string()));
        }
        let out = run_filtered(&mut cmd, true);
        assert!(out.status.success(), "{out:?}");
        let stdout = text(&out.stdout);
        for (name, _, _) in calls {
            assert!(stdout.lines().any(|l| l == format!("{name} ok")), "{name} was refused:\n{stdout}");
        }
    }
}
