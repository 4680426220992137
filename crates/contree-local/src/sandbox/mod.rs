//! Runs one command in a sandbox built from an image's overlayfs layers and Linux
//! namespaces.
//!
//! # What a run looks like
//!
//! [`spawn`] creates `run_dir/upper` (the run's changes) and `run_dir/scratch/` (overlay
//! work dirs) and starts `contree-init` ([`init`]: a small static C program, executed
//! vfork-style from a sealed memfd, so no copy of the server's memory ever enters a
//! sandbox and spawning costs the same however large the server is). init reads its plan
//! ([`plan`]) and, in order:
//!
//! 1. as host root, in a private mount namespace: covers the base image's host-owned
//!    directories (skeleton, masks, host `/usr`) with idmapped views of themselves, and
//!    mounts the image on `<run_dir>/../.mnt` (one directory shared by all runs; each
//!    mount exists only in its run's namespace): an overlay of the image's layers under
//!    the run's fresh `upper`, plus the `/usr` overlay whose lowest layer is the host's
//!    directory (see [`crate::images::base`]);
//! 2. unshares a user namespace together with new mount, PID, UTS, IPC, network and
//!    cgroup namespaces; the server maps the user namespace to its unprivileged
//!    [`IdRange`] ([`userns`]), attaches `slirp4netns` when the run has networking
//!    ([`network`]), and lets init go on as root *of that namespace*;
//! 3. as PID 1: writes the [`PlacedFile`]s and creates the working directory inside the
//!    image root with the sandbox's credentials (no symlink leads out), builds `/dev`
//!    (tmpfs with bind mounts of `null zero full random urandom tty`, `devpts`, `shm`) and
//!    `/proc` (Docker's masks and read-only paths, plus `/proc/mtrr`), `pivot_root`s and
//!    detaches the host's root, sets the hostname and brings up `lo`;
//! 4. forks the command: stdio pipes, its own session, default signals, a reduced
//!    capability bounding set, the [`seccomp`] filters, the requested gid (also as the
//!    only supplementary group) and uid, the cwd, umask 022, exactly the requested
//!    environment (plus a default `PATH`), then `execve` (`/bin/sh -c command` when
//!    [`SandboxSpec::shell`]).
//!
//! PID 1 stays behind: it relays [`RunningSandbox::kill`] to every process of the sandbox,
//! enforces [`SandboxSpec::timeout`], reaps orphans and reports the command's wait status
//! and `rusage`. On request ([`RunningSandbox::exec`]) it also forks extra processes
//! through the same step 4 (see [`exec`](self::exec)'s module doc): nothing of the host
//! ever joins a sandbox. When the command exits, PID 1 exits and the kernel kills everything left.
//! Output is delivered as it arrives by a per-run I/O thread; after the
//! [`SandboxEvent::Exited`] event, [`finish`] tells whether the run changed the filesystem.
//!
//! # The boundary, and its sharp edges
//!
//! * Nothing ever runs with less isolation than planned: any failure to build the
//!   sandbox (user namespace, idmapped mount, seccomp, network helper) is an error from
//!   [`spawn`], and [`check_support`] refuses to start a server on a host that lacks one.
//! * Root in the sandbox is root of its own user namespace only, mapped to
//!   [`IdRange`] (default host ids 2,000,000,000–2,000,065,535). Its capabilities (Docker's
//!   default set minus `MKNOD` and `NET_RAW`) hold only inside. Files a run creates are
//!   owned by ids of the range on the host, so setuid bits and file capabilities made in a
//!   run give host users nothing; device nodes cannot be made at all.
//! * The seccomp filter is an allowlist as strict as Docker's default profile: no new
//!   user namespaces, no `keyctl`/`add_key`/`request_key`, `bpf`, `perf_event_open`,
//!   module loading, `mount`/`pivot_root`/`open_by_handle_at` after setup, `userfaultfd`,
//!   …; a denied call fails with `EPERM`. Each run has its own empty session keyring.
//! * A run without networking has only `lo`. With networking it has its own network
//!   namespace behind `slirp4netns` with the host's loopback off: it cannot reach the
//!   server's API or anything listening only on the host's `127.0.0.1`. It can reach what
//!   the host itself can reach on other addresses (that is what outbound access means).
//! * The sandbox sees only the image: the host's `/usr` (read-only; writes are copied up
//!   into the run), the filtered `/etc` copy of the base image, and its layers. Mount
//!   options in `/proc/self/mountinfo` reveal the host paths of layer directories (names,
//!   not contents).
//! * Not a VM: the kernel is shared, and a kernel exploit reachable through the allowed
//!   system calls is an escape.
//! * Memory, process-count and CPU limits hold when [`SandboxSpec::cgroups`] is given
//!   ([`cgroup`]): init joins the run's cgroup during the handshake, before anything of
//!   the run executes. Without it a run is bounded only by the server's own cgroups.
//! * Overlayfs stacks at most 500 lower layers ([`crate::images::MAX_LAYERS`] for images).
//!   Up to a page (4 KiB) of layer paths are passed with `mount(2)`; longer stacks need the
//!   new mount API's `lowerdir+` (Linux 6.8+) and each layer path must stay under 256
//!   bytes. Layer paths must not contain `,`, `:` or `\`.
//! * `/dev`, `/proc` and `/dev/shm` are per-run and never captured into the upper dir.
//! * Mounts use overlayfs `volatile`: the upper is not synced at unmount. Callers that
//!   need adopted layers durable across a host crash must `syncfs` before committing.
//! * Dropping a [`RunningSandbox`] kills the sandbox (like `kill_on_drop`).
//!
//! # Example
//!
//! ```text
//! use crate::{images, sandbox};
//! # fn main() -> Result<(), sandbox::SandboxError> {
//! let data = std::path::Path::new("/var/lib/contree-local");
//! sandbox::check_support(data, &sandbox::IdRange::default())?;
//! let base = images::base::ensure_base(data)?;
//! let run_dir = data.join("runs/example");
//! let mut spec = sandbox::SandboxSpec::new(base, run_dir.clone(), "echo hi > /greeting");
//! spec.shell = true;
//! let mut sb = sandbox::spawn(spec)?;
//! let events = sb.take_events().expect("events not taken yet");
//! for ev in events {
//!     if let sandbox::SandboxEvent::Exited(info) = ev {
//!         assert_eq!(info.exit_code, 0);
//!     }
//! }
//! match sandbox::finish(&run_dir)? {
//!     sandbox::UpperState::Changed(upper) => println!("new layer at {}", upper.display()),
//!     sandbox::UpperState::Unchanged => println!("no change"),
//! }
//! # Ok(()) }
//! ```

pub(crate) mod cgroup;
mod error;
mod exec;
mod finish;
mod init;
mod network;
mod plan;
mod run;
mod seccomp;
mod spawn;
mod support;
pub(crate) mod sys;
mod userns;

#[cfg(test)]
mod test_process;
#[cfg(all(test, target_os = "linux"))]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use error::{SandboxError, SandboxUnavailable};
pub use exec::{RunningSubprocess, SubprocessSpec};
pub use finish::{UpperState, discard, finish};
pub use run::{RunningSandbox, spawn, spawn_with_sink};
pub use support::check_support;
pub use userns::IdRange;

/// Where `slirp4netns` is, or why runs can't have a network here.
pub(crate) fn networking_helper() -> Result<PathBuf, SandboxError> {
    network::helper()
}

use crate::images::base::BaseImage;

/// The `PATH` given to the command when [`SandboxSpec::env`] has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to run one command in a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The image's layer directories, topmost first. The base skeleton may be given as the
    /// last entry or left out; it is always the bottom layer exactly once.
    pub lower_layers: Vec<PathBuf>,
    /// The image is `lower_layers` alone (imported from a registry): no base skeleton and no
    /// host directories below it.
    pub own_root: bool,
    /// The built-in base image from [`ensure_base`](crate::images::base::ensure_base).
    pub base: BaseImage,
    /// Absolute scratch directory of this run, conventionally `<data>/runs/<id>`;
    /// `upper/` and `scratch/` are created inside and must not exist yet. Its parent also
    /// holds `.mnt` (the shared mount point) and `.trash` (see [`finish`]).
    pub run_dir: PathBuf,
    /// The program (looked up in the command's `PATH` unless it contains `/`), or with
    /// `shell`, a shell command line.
    pub command: String,
    /// Arguments after the program name (ignored with `shell`).
    pub args: Vec<String>,
    /// Run `/bin/sh -c command`.
    pub shell: bool,
    /// The command's whole environment, in order (later duplicates win in most libcs).
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the sandbox, created (owned by `uid:gid`) if missing.
    pub cwd: String,
    /// User id of the command.
    pub uid: u32,
    /// Group id (and only supplementary group) of the command.
    pub gid: u32,
    /// Hostname inside the sandbox (at most 64 bytes).
    pub hostname: String,
    /// Outbound networking through `slirp4netns` (the host's loopback stays unreachable);
    /// without it the sandbox has only `lo`.
    pub network: bool,
    /// The host ids the sandbox's user namespace is mapped to; `uid`, `gid` and the files'
    /// owners must be below its `count`.
    pub ids: IdRange,
    /// Files written into the sandbox before the command starts.
    pub files: Vec<PlacedFile>,
    /// Bytes fed to the command's stdin.
    pub stdin: Vec<u8>,
    /// Keep stdin open after `stdin` was written (more can come from
    /// [`RunningSandbox::write_stdin`]); otherwise the command sees EOF after it.
    pub keep_stdin_open: bool,
    /// Kill the whole sandbox after this long (measured from the command's start) and
    /// report `timed_out`.
    pub timeout: Option<Duration>,
    /// The server's cgroup subtree: the run gets a cgroup of its own in it with the
    /// subtree's limits, and is OOM-killed past its memory limit ([`ExitInfo::oom_killed`]).
    /// `None` runs without per-run limits.
    pub cgroups: Option<std::sync::Arc<cgroup::Cgroups>>,
}

impl SandboxSpec {
    /// A spec with defaults: base image only, root (uid/gid 0), cwd `/`, hostname
    /// `contree`, isolated network, empty environment (so `PATH` is [`DEFAULT_PATH`]),
    /// no files, empty stdin, no timeout.
    pub fn new(base: BaseImage, run_dir: PathBuf, command: impl Into<String>) -> Self {
        SandboxSpec {
            lower_layers: Vec::new(),
            own_root: false,
            base,
            run_dir,
            command: command.into(),
            args: Vec::new(),
            shell: false,
            env: Vec::new(),
            cwd: "/".to_owned(),
            uid: 0,
            gid: 0,
            hostname: "contree".to_owned(),
            network: false,
            ids: IdRange::default(),
            files: Vec::new(),
            stdin: Vec::new(),
            keep_stdin_open: false,
            timeout: None,
            cgroups: None,
        }
    }
}

/// A file to place into the sandbox before the command starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedFile {
    /// Absolute path inside the sandbox. Missing parent directories are created (root,
    /// 0755); an existing symlink at `dest` is replaced, not followed.
    pub dest: String,
    /// The content, on the host (typically a blob of the store).
    pub source: PathBuf,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Something that happened in a running sandbox, in order: output chunks as they arrive,
/// then exactly one `Exited`, always last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxEvent {
    /// A chunk of the command's stdout (uncapped; at most 64 KiB per chunk).
    Stdout(Vec<u8>),
    /// A chunk of the command's stderr.
    Stderr(Vec<u8>),
    /// The command exited and the sandbox is gone (no process left, mounts released).
    Exited(ExitInfo),
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExitInfo {
    /// Exit status, or `-1` when killed by a signal.
    pub exit_code: i32,
    /// The terminating signal, or `-1` when it exited normally.
    pub signal: i32,
    /// The kernel reported a core dump.
    pub core_dump: bool,
    /// The sandbox was killed because [`SandboxSpec::timeout`] elapsed.
    pub timed_out: bool,
    /// The kernel's OOM killer killed a process of the run because the run reached its
    /// memory limit (the command itself, or only one of its children).
    pub oom_killed: bool,
    /// Wall time from the command's start to its exit.
    pub duration: Duration,
    /// Resources used by the command and the descendants it waited for.
    pub rusage: Rusage,
}

/// Resource usage of the command (from `wait4`), named like the API's `EventResources`.
///
/// Linux does not maintain `shared_memory`, `unshared_memory`, `swaps` and the IPC
/// message counters: they are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rusage {
    /// User CPU time, µs.
    pub user_time_us: i64,
    /// System CPU time, µs.
    pub sys_time_us: i64,
    /// Peak resident set size, KiB.
    pub max_rss_kb: i64,
    /// Integral shared memory size (0 on Linux).
    pub shared_memory: i64,
    /// Integral unshared data size (0 on Linux).
    pub unshared_memory: i64,
    /// Swaps (0 on Linux).
    pub swaps: i64,
    /// Page faults served without I/O.
    pub minor_faults: i64,
    /// Page faults that needed I/O.
    pub major_faults: i64,
    /// Voluntary context switches.
    pub voluntary_ctx_switches: i64,
    /// Involuntary context switches.
    pub involuntary_ctx_switches: i64,
    /// Block input operations.
    pub block_input_ops: i64,
    /// Block output operations.
    pub block_output_ops: i64,
    /// IPC messages sent (0 on Linux).
    pub ipc_msgs_sent: i64,
    /// IPC messages received (0 on Linux).
    pub ipc_msgs_received: i64,
    /// Signals received.
    pub signals_received: i64,
}

impl Rusage {
    // The fields are `c_long`/`time_t`: i64 here, i32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn from_libc(ru: &libc::rusage) -> Self {
        let tv = |t: libc::timeval| i64::from(t.tv_sec) * 1_000_000 + i64::from(t.tv_usec);
        Rusage {
            user_time_us: tv(ru.ru_utime),
            sys_time_us: tv(ru.ru_stime),
            max_rss_kb: i64::from(ru.ru_maxrss),
            shared_memory: i64::from(ru.ru_ixrss),
            unshared_memory: i64::from(ru.ru_idrss) + i64::from(ru.ru_isrss),
            swaps: i64::from(ru.ru_nswap),
            minor_faults: i64::from(ru.ru_minflt),
            major_faults: i64::from(ru.ru_majflt),
            voluntary_ctx_switches: i64::from(ru.ru_nvcsw),
            involuntary_ctx_switches: i64::from(ru.ru_nivcsw),
            block_input_ops: i64::from(ru.ru_inblock),
            block_output_ops: i64::from(ru.ru_oublock),
            ipc_msgs_sent: i64::from(ru.ru_msgsnd),
            ipc_msgs_received: i64::from(ru.ru_msgrcv),
            signals_received: i64::from(ru.ru_nsignals),
        }
    }
}
