//! What the server tells `contree-init` (see `init/init.c`): the fixed fd numbers, the
//! plan (a list of tagged records in a memfd), and the records init sends back.
//!
//! The encoding is deliberately trivial (`u32 tag, u32 len, bytes`, native endian, strings
//! NUL-terminated) because init parses it in C before it does anything else; init
//! validates every record and refuses a plan it does not understand.

use std::ffi::CString;
use std::io::{self, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use libc::c_int;

/// Fd numbers in init, in the order of `init::spawn`'s `fds` (which start at 3).
pub(crate) mod fd {
    pub const PLAN: i32 = 3;
    pub const ERR: i32 = 4;
    pub const STATUS: i32 = 5;
    pub const CTL: i32 = 6;
    pub const SYNC: i32 = 7;
    pub const STDIN: i32 = 8;
    pub const STDOUT: i32 = 9;
    pub const STDERR: i32 = 10;
    pub const USERNS: i32 = 11;
    pub const FIRST_FILE: i32 = 12;
}

#[repr(u32)]
#[derive(Clone, Copy)]
enum Tag {
    Idmap = 1,
    Overlay = 2,
    NewRoot = 3,
    Hostname = 4,
    File = 5,
    Cwd = 6,
    Cred = 7,
    Arg = 8,
    Env = 9,
    Candidate = 10,
    NotFound = 11,
    Denied = 12,
    TimeoutMs = 13,
    Seccomp = 14,
    KeepCaps = 15,
}

/// A setup step that failed in init, reported over the error pipe.
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
    Plan = 18,
    Idmap = 19,
    UserNamespace = 20,
    Sync = 21,
    Seccomp = 22,
    Keyring = 23,
    ForkInit = 24,
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
            18 => Plan,
            19 => Idmap,
            20 => UserNamespace,
            21 => Sync,
            22 => Seccomp,
            23 => Keyring,
            24 => ForkInit,
            _ => return None,
        })
    }
}

/// The record a failing init writes to the error pipe (`struct err_record`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ErrRecord {
    pub stage: u32,
    pub index: u32,
    pub errno: i32,
}

/// The record init writes to the status pipe once the command has been reaped
/// (`struct report`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Report {
    pub status: c_int,
    pub timed_out: c_int,
    pub elapsed_ns: u64,
    pub rusage: libc::rusage,
}

/// Capabilities the command keeps in its bounding set (Docker's default set minus
/// `MKNOD` and `NET_RAW`), all of them only inside the sandbox's user namespace.
pub(crate) const KEPT_CAPS: &[u32] = &[
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

/// Overlay options besides the directories, as a `mount(2)` option-string tail (init
/// sets the same ones one by one with `fsconfig` when the string would not fit a page).
///
/// * `redirect_dir=off`, `metacopy=off`: every upper dir is self-contained, so a finished
///   upper can be adopted as a layer and read on its own.
/// * `index=off`: layers move between stacks (an upper becomes a lower).
/// * `volatile`: no `syncfs` of the upper filesystem at unmount (milliseconds per run);
///   durability of adopted layers is the store's job.
pub(crate) const LEGACY_OPTION_TAIL: &str = ",redirect_dir=off,metacopy=off,index=off,volatile";

/// One overlay mount.
pub(crate) struct OverlayPlan {
    pub target: CString,
    pub lowers: Vec<CString>,
    pub upper: CString,
    pub work: CString,
    /// The `mount(2)` option string when it fits in a page.
    pub legacy_data: Option<CString>,
}

/// A file to place; its content is the fd at `fd::FIRST_FILE + index`.
pub(crate) struct FilePlan {
    pub dest: CString,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Everything init needs, in the order init applies it.
pub(crate) struct Plan {
    pub idmaps: Vec<CString>,
    pub mounts: Vec<OverlayPlan>,
    pub new_root: CString,
    pub hostname: Vec<u8>,
    pub files: Vec<FilePlan>,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub candidates: Vec<CString>,
    pub not_found_msg: Vec<u8>,
    pub denied_msg: Vec<u8>,
    pub timeout_ms: Option<u64>,
    pub seccomp: &'static [Vec<u8>],
}

impl Plan {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let mut rec = |tag: Tag, parts: &[&[u8]]| {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            out.extend_from_slice(&(tag as u32).to_ne_bytes());
            out.extend_from_slice(&(len as u32).to_ne_bytes());
            for p in parts {
                out.extend_from_slice(p);
            }
        };
        for p in &self.idmaps {
            rec(Tag::Idmap, &[p.as_bytes_with_nul()]);
        }
        for m in &self.mounts {
            let legacy = m.legacy_data.as_ref().map_or(&b"\0"[..], |d| d.as_bytes_with_nul());
            let mut parts: Vec<&[u8]> =
                vec![m.target.as_bytes_with_nul(), m.upper.as_bytes_with_nul(), m.work.as_bytes_with_nul(), legacy];
            parts.extend(m.lowers.iter().map(|l| l.as_bytes_with_nul()));
            rec(Tag::Overlay, &parts);
        }
        rec(Tag::NewRoot, &[self.new_root.as_bytes_with_nul()]);
        rec(Tag::Hostname, &[&self.hostname]);
        for (i, f) in self.files.iter().enumerate() {
            let fdn = (fd::FIRST_FILE as u32 + i as u32).to_ne_bytes();
            rec(
                Tag::File,
                &[&fdn, &f.mode.to_ne_bytes(), &f.uid.to_ne_bytes(), &f.gid.to_ne_bytes(), f.dest.as_bytes_with_nul()],
            );
        }
        rec(Tag::Cwd, &[self.cwd.as_bytes_with_nul()]);
        rec(Tag::Cred, &[&self.uid.to_ne_bytes(), &self.gid.to_ne_bytes()]);
        for a in &self.argv {
            rec(Tag::Arg, &[a.as_bytes_with_nul()]);
        }
        for e in &self.envp {
            rec(Tag::Env, &[e.as_bytes_with_nul()]);
        }
        for c in &self.candidates {
            rec(Tag::Candidate, &[c.as_bytes_with_nul()]);
        }
        rec(Tag::NotFound, &[&self.not_found_msg]);
        rec(Tag::Denied, &[&self.denied_msg]);
        if let Some(ms) = self.timeout_ms {
            rec(Tag::TimeoutMs, &[&ms.to_ne_bytes()]);
        }
        for f in self.seccomp {
            rec(Tag::Seccomp, &[f]);
        }
        let caps: u64 = KEPT_CAPS.iter().fold(0, |m, c| m | (1u64 << c));
        rec(Tag::KeepCaps, &[&caps.to_ne_bytes()]);
        out
    }

    /// The plan in a memfd, ready to be init's fd 3.
    pub(crate) fn to_memfd(&self) -> io::Result<OwnedFd> {
        memfd_with(&self.encode())
    }
}

fn memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static name; the fd is ours.
    let raw = unsafe { libc::memfd_create(c"contree-plan".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// Control messages the server sends to PID 1 (`struct ctl_msg` in init.c); a bare `i32`
/// is a signal for the whole sandbox.
pub(crate) mod ctl {
    /// Start an extra process: with [`SubPlan`](super::SubPlan)'s memfd and its pipes.
    pub const EXEC: u32 = 1;
    /// Signal one extra process's group.
    pub const KILL: u32 = 2;
}

/// `struct ctl_msg`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct CtlMsg {
    pub op: u32,
    pub spid: u32,
    pub sig: i32,
}

/// The plan of an extra process: only the command's part of a [`Plan`] (init refuses any
/// other record in it; mounts, files and the seccomp filters are the run's own).
pub(crate) struct SubPlan {
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub candidates: Vec<CString>,
    pub not_found_msg: Vec<u8>,
    pub denied_msg: Vec<u8>,
}

impl SubPlan {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        let mut rec = |tag: Tag, parts: &[&[u8]]| {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            out.extend_from_slice(&(tag as u32).to_ne_bytes());
            out.extend_from_slice(&(len as u32).to_ne_bytes());
            for p in parts {
                out.extend_from_slice(p);
            }
        };
        rec(Tag::Cwd, &[self.cwd.as_bytes_with_nul()]);
        rec(Tag::Cred, &[&self.uid.to_ne_bytes(), &self.gid.to_ne_bytes()]);
        for a in &self.argv {
            rec(Tag::Arg, &[a.as_bytes_with_nul()]);
        }
        for e in &self.envp {
            rec(Tag::Env, &[e.as_bytes_with_nul()]);
        }
        for c in &self.candidates {
            rec(Tag::Candidate, &[c.as_bytes_with_nul()]);
        }
        rec(Tag::NotFound, &[&self.not_found_msg]);
        rec(Tag::Denied, &[&self.denied_msg]);
        out
    }

    /// The plan in a memfd, sent along with the request.
    pub(crate) fn to_memfd(&self) -> io::Result<OwnedFd> {
        memfd_with(&self.encode())
    }
}
