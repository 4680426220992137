//! Per-run cgroups: memory, process-count and CPU limits enforced by the kernel.
//!
//! The server never touches a cgroup it did not create. It finds its own cgroup of each
//! controller (`/proc/self/cgroup` against `/proc/self/mountinfo`) and makes one subtree
//! there, `contree-local-<pid>-<n>` (`<n>` tells apart servers embedded in one process),
//! so whatever limits the host put on the server also bound its runs. Each run gets a
//! child `run-<k>` holding the run's limits; the sandbox's init is moved into it while it
//! waits in the handshake, before anything of the run executes, and every process of the
//! sandbox inherits it.
//!
//! Both layouts are handled, per controller: a controller mounted as a cgroup v1
//! hierarchy is used there (the hybrid layout, where the unified hierarchy holds no
//! controllers); otherwise cgroup v2 is used when the server's own v2 cgroup delegates the
//! controller to its children (it is listed in its `cgroup.subtree_control`). The server
//! does not enable controllers in its own cgroup itself: that cgroup is not ours, and with
//! processes in it the kernel refuses anyway.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a CFS period is (the kernel's default); the quota is a share of it.
const CPU_PERIOD_US: u64 = 100_000;

/// The weight every run gets (the kernel's default weight), written explicitly so that
/// runs share the CPU equally whatever the number of processes each starts.
const V1_CPU_SHARES: u64 = 1024;
/// The v2 counterpart of [`V1_CPU_SHARES`].
const V2_CPU_WEIGHT: u64 = 100;

/// How often removing a run's cgroup is retried while its last tasks finish exiting.
const RMDIR_ATTEMPTS: u32 = 20;

/// A kernel resource controller the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// `memory`: the run's memory (and swap) limit.
    Memory,
    /// `pids`: how many processes and threads the run may have at once.
    Pids,
    /// `cpu`: the run's CPU weight and quota.
    Cpu,
}

impl Controller {
    /// Every controller, in log order.
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// The limits every run gets. `None` leaves that resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupLimits {
    /// Memory of the whole run, bytes (swap included: a run cannot escape into swap).
    pub memory_bytes: Option<u64>,
    /// Processes and threads of the run at once.
    pub pids: Option<u64>,
    /// CPU time per wall-clock second, in CPUs (`1.5` = one and a half cores).
    pub cpus: Option<f64>,
}

/// Which cgroup layout serves a controller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// A cgroup v1 hierarchy; the path is the server's own cgroup in it.
    V1(PathBuf),
    /// The unified hierarchy; the path is the server's own cgroup in it.
    V2(PathBuf),
    /// Not usable, and why.
    Missing(String),
}

/// The cgroup layout of this host as the server sees it: where each controller is, or why
/// it can't be used.
#[derive(Debug, Clone)]
pub struct CgroupHost {
    places: BTreeMap<Controller, Place>,
}

impl CgroupHost {
    /// Reads the layout from `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn detect() -> io::Result<CgroupHost> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let cgroup = fs::read_to_string("/proc/self/cgroup")?;
        Ok(CgroupHost::from_proc(&mountinfo, &cgroup))
    }

    /// The layout described by the contents of `/proc/self/mountinfo` and
    /// `/proc/self/cgroup` (tests pass a fake root this way).
    pub fn from_proc(mountinfo: &str, proc_cgroup: &str) -> CgroupHost {
        let mounts = parse_mountinfo(mountinfo);
        let mut own_v1: BTreeMap<String, String> = BTreeMap::new();
        let mut own_v2: Option<String> = None;
        for line in proc_cgroup.lines() {
            let mut it = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else { continue };
            if ctrls.is_empty() {
                own_v2 = Some(path.to_owned());
            } else {
                for c in ctrls.split(',') {
                    own_v1.insert(c.to_owned(), path.to_owned());
                }
            }
        }
        let v2_dir =
            own_v2.as_deref().and_then(|p| mounts.iter().filter(|m| m.fstype == "cgroup2").find_map(|m| own_dir(m, p)));
        let mut places = BTreeMap::new();
        for c in Controller::ALL {
            let v1 = mounts.iter().find(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == c.name()));
            let place = if let Some(m) = v1 {
                match own_v1.get(c.name()).and_then(|p| own_dir(m, p)) {
                    Some(dir) => Place::V1(dir),
                    None => Place::Missing(format!(
                        "the server's own {} cgroup is not visible under {}",
                        c.name(),
                        m.mount_point.display()
                    )),
                }
            } else if let Some(dir) = &v2_dir {
                let delegated = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                if delegated.split_whitespace().any(|w| w == c.name()) {
                    Place::V2(dir.clone())
                } else {
                    Place::Missing(format!(
                        "cgroup v2: the {} controller is not enabled for the children of the server's cgroup \
                         {} (its cgroup.subtree_control); run the server in a cgroup that delegates it",
                        c.name(),
                        dir.display()
                    ))
                }
            } else {
                Place::Missing(format!("no cgroup hierarchy has the {} controller", c.name()))
            };
            places.insert(c, place);
        }
        CgroupHost { places }
    }

    /// Why `controller` can't be used here, or `None` when it can.
    pub fn unavailable(&self, controller: Controller) -> Option<&str> {
        match self.places.get(&controller) {
            Some(Place::Missing(why)) => Some(why),
            Some(_) => None,
            None => Some("unknown controller"),
        }
    }

    /// `"v1"` or `"v2"` for a usable controller.
    pub fn layout(&self, controller: Controller) -> Option<&'static str> {
        match self.places.get(&controller) {
            Some(Place::V1(_)) => Some("v1"),
            Some(Place::V2(_)) => Some("v2"),
            _ => None,
        }
    }

    /// Removes the subtrees that servers which are no longer running left behind (a crash
    /// skips the cleanup at exit). Only `contree-local-<pid>-<n>` directories whose pid is
    /// not alive are touched, and only with `rmdir` (a cgroup with processes stays).
    pub fn remove_stale(&self) {
        let mut seen = Vec::new();
        for place in self.places.values() {
            let (Place::V1(dir) | Place::V2(dir)) = place else { continue };
            if seen.contains(dir) {
                continue;
            }
            seen.push(dir.clone());
            let Ok(entries) = fs::read_dir(dir) else { continue };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(subtree_pid) else { continue };
                if pid_alive(pid) {
                    continue;
                }
                let path = e.path();
                match remove_tree(&path) {
                    Ok(()) => {
                        tracing::info!(cgroup = %path.display(), "removed the cgroup subtree of a stopped server")
                    }
                    Err(err) => {
                        tracing::warn!(cgroup = %path.display(), error = %err, "could not remove a stale cgroup subtree")
                    }
                }
            }
        }
    }
}

/// The pid in a `contree-local-<pid>-<n>` name.
fn subtree_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("contree-local-")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse::<i32>().ok().filter(|p| *p > 0)
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() != libc::ESRCH }
}

/// Removes a cgroup directory and its child cgroups, deepest first (`rmdir` only: cgroup
/// directories hold nothing but kernel files).
fn remove_tree(dir: &Path) -> io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = remove_tree(&e.path());
            }
        }
    }
    fs::remove_dir(dir)
}

struct Mount {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_opts: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((head, tail)) = line.split_once(" - ") else { continue };
        let head: Vec<&str> = head.split(' ').collect();
        let tail: Vec<&str> = tail.split(' ').collect();
        if head.len() < 5 || tail.len() < 3 {
            continue;
        }
        out.push(Mount {
            root: unescape(head[3]),
            mount_point: PathBuf::from(unescape(head[4])),
            fstype: tail[0].to_owned(),
            super_opts: tail[2].split(',').map(str::to_owned).collect(),
        });
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of cgroup `path` (as in `/proc/self/cgroup`) under mount `m`, when the
/// mount shows it.
fn own_dir(m: &Mount, path: &str) -> Option<PathBuf> {
    let root = m.root.trim_end_matches('/');
    let rel = if root.is_empty() { path } else { path.strip_prefix(root)? };
    if !(rel.is_empty() || rel.starts_with('/')) || rel.split('/').any(|c| c == "..") {
        return None;
    }
    let dir = m.mount_point.join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// One hierarchy of the server's subtree.
#[derive(Debug)]
struct Part {
    /// `<own cgroup>/contree-local-<pid>-<n>`, created by us.
    dir: PathBuf,
    v2: bool,
    controllers: Vec<Controller>,
}

/// The server's cgroup subtree, in which every run gets a cgroup with [`CgroupLimits`].
/// Dropping it removes the subtree (best effort: a cgroup that still has processes stays).
#[derive(Debug)]
pub struct Cgroups {
    limits: CgroupLimits,
    parts: Vec<Part>,
    next_run: AtomicU64,
}

impl Cgroups {
    /// Creates the server's subtree for `limits` on `host`. CPU weight is set whenever the
    /// cpu controller is usable. Fails when a limit's controller is not usable (callers
    /// decide beforehand which limits to drop, see [`CgroupHost::unavailable`]) or a
    /// directory or control file can't be written.
    pub fn create(host: &CgroupHost, limits: CgroupLimits) -> io::Result<Arc<Cgroups>> {
        static SERVERS: AtomicU64 = AtomicU64::new(0);
        let name = format!("contree-local-{}-{}", std::process::id(), SERVERS.fetch_add(1, Ordering::Relaxed));
        let mut wanted = Vec::new();
        if limits.memory_bytes.is_some() {
            wanted.push(Controller::Memory);
        }
        if limits.pids.is_some() {
            wanted.push(Controller::Pids);
        }
        if limits.cpus.is_some() || host.unavailable(Controller::Cpu).is_none() {
            wanted.push(Controller::Cpu);
        }
        let mut parts: Vec<Part> = Vec::new();
        for c in wanted {
            let (base, v2) = match host.places.get(&c) {
                Some(Place::V1(d)) => (d, false),
                Some(Place::V2(d)) => (d, true),
                Some(Place::Missing(why)) => return Err(io::Error::other(format!("{} limit: {why}", c.name()))),
                None => return Err(io::Error::other(format!("{}: unknown controller", c.name()))),
            };
            let dir = base.join(&name);
            match parts.iter_mut().find(|p| p.dir == dir) {
                Some(p) => p.controllers.push(c),
                None => parts.push(Part { dir, v2, controllers: vec![c] }),
            }
        }
        // Built before the directories exist so that a failure half-way removes what was made.
        let cgroups = Cgroups { limits, parts, next_run: AtomicU64::new(0) };
        for p in &cgroups.parts {
            fs::create_dir(&p.dir).map_err(|e| with_path(e, "creating", &p.dir))?;
            if p.v2 {
                let enable: Vec<String> = p.controllers.iter().map(|c| format!("+{}", c.name())).collect();
                write(&p.dir.join("cgroup.subtree_control"), &enable.join(" "))?;
            }
        }
        Ok(Arc::new(cgroups))
    }

    /// The limits runs get.
    pub fn limits(&self) -> CgroupLimits {
        self.limits
    }

    /// Creates the cgroup of a new run, with its limits set (no process in it yet).
    pub fn new_run(self: &Arc<Self>) -> io::Result<RunCgroup> {
        let k = self.next_run.fetch_add(1, Ordering::Relaxed);
        let mut run = RunCgroup { dirs: Vec::new(), memory: None, _parent: Arc::clone(self) };
        for p in &self.parts {
            let dir = p.dir.join(format!("run-{k}"));
            fs::create_dir(&dir).map_err(|e| with_path(e, "creating", &dir))?;
            run.dirs.push((dir.clone(), p.v2));
            for c in &p.controllers {
                self.apply(*c, &dir, p.v2)?;
                if *c == Controller::Memory {
                    run.memory = Some((dir.clone(), p.v2));
                }
            }
        }
        Ok(run)
    }

    fn apply(&self, c: Controller, dir: &Path, v2: bool) -> io::Result<()> {
        let l = &self.limits;
        match (c, v2) {
            (Controller::Memory, false) => {
                if let Some(m) = l.memory_bytes {
                    write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                    // Present only with swap accounting; without it there is no swap to
                    // escape into through this cgroup.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &m.to_string())?;
                    }
                }
            }
            (Controller::Memory, true) => {
                if let Some(m) = l.memory_bytes {
                    write(&dir.join("memory.max"), &m.to_string())?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
            }
            (Controller::Pids, _) => {
                if let Some(n) = l.pids {
                    write(&dir.join("pids.max"), &n.to_string())?;
                }
            }
            (Controller::Cpu, false) => {
                write(&dir.join("cpu.shares"), &V1_CPU_SHARES.to_string())?;
                if let Some(cpus) = l.cpus {
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &cpu_quota_us(cpus).to_string())?;
                }
            }
            (Controller::Cpu, true) => {
                write(&dir.join("cpu.weight"), &V2_CPU_WEIGHT.to_string())?;
                if let Some(cpus) = l.cpus {
                    write(&dir.join("cpu.max"), &format!("{} {CPU_PERIOD_US}", cpu_quota_us(cpus)))?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for p in &self.parts {
            if let Err(e) = remove_tree(&p.dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(cgroup = %p.dir.display(), error = %e, "could not remove the server's cgroup subtree");
            }
        }
    }
}

/// The quota, µs per [`CPU_PERIOD_US`], for `cpus` CPUs (at least the kernel's 1 ms).
pub(crate) fn cpu_quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// The cgroup of one run. Dropping it removes the cgroup, retrying while the kernel still
/// counts exiting tasks in it.
#[derive(Debug)]
pub struct RunCgroup {
    dirs: Vec<(PathBuf, bool)>,
    memory: Option<(PathBuf, bool)>,
    /// Keeps the parent subtree until the run's cgroup is gone.
    _parent: Arc<Cgroups>,
}

impl RunCgroup {
    /// Moves process `pid` (and, on v1, only that process; its later children follow it)
    /// into the run's cgroup in every hierarchy.
    pub fn add(&self, pid: libc::pid_t) -> io::Result<()> {
        for (dir, _) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer killed a process of the run.
    pub fn oom_kills(&self) -> u64 {
        let Some((dir, v2)) = &self.memory else { return 0 };
        let (file, key) = if *v2 { ("memory.events", "oom_kill") } else { ("memory.oom_control", "oom_kill") };
        fs::read_to_string(dir.join(file)).ok().and_then(|t| counter(&t, key)).unwrap_or(0)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        for (dir, _) in &self.dirs {
            let mut wait = Duration::from_millis(1);
            for attempt in 1..=RMDIR_ATTEMPTS {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_ATTEMPTS => {
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_millis(100));
                    }
                    Err(e) => {
                        // Left for the subtree's removal at shutdown or the next start.
                        tracing::warn!(cgroup = %dir.display(), error = %e, "could not remove a run's cgroup");
                        break;
                    }
                }
            }
        }
    }
}

/// The value of `key` in a `key value` per line file.
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| with_path(e, "writing", path))
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake unified hierarchy at `root` delegating `delegated`, with the server in `/srv`.
    fn fake_v2(root: &Path, delegated: &str) -> CgroupHost {
        let own = root.join("srv");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        fs::write(own.join("cgroup.subtree_control"), delegated).unwrap();
        let mountinfo = format!(
            "25 1 0:22 / /proc rw - proc proc rw\n\
             30 1 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            root.display()
        );
        CgroupHost::from_proc(&mountinfo, "0::/srv\n")
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn v2_writes_the_limits_and_the_pid() {
        let t = tempfile::tempdir().unwrap();
        let host = fake_v2(t.path(), "cpu memory pids");
        for c in Controller::ALL {
            assert_eq!(host.layout(c), Some("v2"), "{c:?}");
        }
        let limits = CgroupLimits { memory_bytes: Some(256 << 20), pids: Some(256), cpus: Some(1.5) };
        let cg = Cgroups::create(&host, limits).unwrap();
        let sub = t.path().join("srv").join(format!("contree-local-{}-", std::process::id()));
        let parts = &cg.parts;
        assert_eq!(parts.len(), 1, "one unified hierarchy");
        assert!(parts[0].dir.to_string_lossy().starts_with(&*sub.to_string_lossy()));
        assert_eq!(read(&parts[0].dir.join("cgroup.subtree_control")), "+memory +pids +cpu");

        let run = cg.new_run().unwrap();
        let run_dir = run.dirs[0].0.clone();
        assert!(run_dir.ends_with("run-0"));
        // Without swap accounting the kernel has no memory.swap.max: nothing to write.
        assert!(!run_dir.join("memory.swap.max").exists());
        assert_eq!(read(&run_dir.join("memory.max")), (256u64 << 20).to_string());
        assert_eq!(read(&run_dir.join("pids.max")), "256");
        assert_eq!(read(&run_dir.join("cpu.weight")), "100");
        assert_eq!(read(&run_dir.join("cpu.max")), "150000 100000");
        run.add(4242).unwrap();
        assert_eq!(read(&run_dir.join("cgroup.procs")), "4242");
        assert_eq!(run.oom_kills(), 0);
        fs::write(run_dir.join("memory.events"), "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n")
            .unwrap();
        assert_eq!(run.oom_kills(), 1);

        // With swap accounting the kernel creates memory.swap.max: swap is closed to the run.
        let swap_dir = parts[0].dir.join("with-swap");
        fs::create_dir(&swap_dir).unwrap();
        fs::write(swap_dir.join("memory.swap.max"), "max").unwrap();
        cg.apply(Controller::Memory, &swap_dir, true).unwrap();
        assert_eq!(read(&swap_dir.join("memory.swap.max")), "0");
        let run2 = RunCgroup { dirs: vec![(swap_dir.clone(), true)], memory: None, _parent: cg.clone() };
        let d2 = &swap_dir;

        // Removal is rmdir only: the kernel's files vanish with the directory, the fake's
        // don't, so empty them first the way the kernel would.
        for d in [&run_dir, d2] {
            for e in fs::read_dir(d).unwrap() {
                fs::remove_file(e.unwrap().path()).unwrap();
            }
        }
        drop(run);
        drop(run2);
        assert!(!run_dir.exists() && !d2.exists());
        let top = parts[0].dir.clone();
        fs::remove_file(top.join("cgroup.subtree_control")).unwrap();
        drop(cg);
        assert!(!top.exists(), "the server's subtree is removed with it");
    }

    #[test]
    fn v2_without_delegation_is_missing_and_refused() {
        let t = tempfile::tempdir().unwrap();
        let host = fake_v2(t.path(), "cpu");
        assert!(host.unavailable(Controller::Cpu).is_none());
        let why = host.unavailable(Controller::Memory).unwrap();
        assert!(why.contains("memory") && why.contains("subtree_control"), "{why}");
        let e = Cgroups::create(&host, CgroupLimits { memory_bytes: Some(1 << 30), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("memory"), "{e}");
        // Nothing was created for a refused subtree.
        let left: Vec<_> =
            fs::read_dir(t.path().join("srv")).unwrap().flatten().filter(|e| e.path().is_dir()).collect();
        assert!(left.is_empty());
    }

    #[test]
    fn v1_hybrid_layout_is_found_per_controller() {
        let t = tempfile::tempdir().unwrap();
        for c in ["memory/b", "pids", "cpu,cpuacct"] {
            fs::create_dir_all(t.path().join(c)).unwrap();
        }
        let r = t.path().display();
        let mountinfo = format!(
            "32 31 0:29 / {r}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:32 /a {r}/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / {r}/pids rw - cgroup cgroup rw,pids\n\
             41 31 0:38 / {r}/unified rw - cgroup2 cgroup2 rw\n"
        );
        let host = CgroupHost::from_proc(&mountinfo, "4:memory:/a/b\n2:cpu,cpuacct:/\n8:pids:/\n0::/\n");
        assert_eq!(host.places[&Controller::Memory], Place::V1(t.path().join("memory/b")));
        assert_eq!(host.places[&Controller::Pids], Place::V1(t.path().join("pids")));
        assert_eq!(host.places[&Controller::Cpu], Place::V1(t.path().join("cpu,cpuacct")));
        // The cgroup is outside the mount's root: not usable.
        let host = CgroupHost::from_proc(&mountinfo, "4:memory:/elsewhere\n");
        assert!(host.unavailable(Controller::Memory).unwrap().contains("not visible"));
    }

    #[test]
    fn stale_subtrees_of_dead_servers_are_removed_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let pids = t.path().join("pids");
        fs::create_dir_all(&pids).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = pids.join(format!("contree-local-{dead}-0"));
        let live = pids.join(format!("contree-local-{}-99", std::process::id()));
        let foreign = pids.join("someone-else");
        for d in [stale.join("run-3"), live.clone(), foreign.clone()] {
            fs::create_dir_all(d).unwrap();
        }
        let mountinfo = format!("39 31 0:36 / {} rw - cgroup cgroup rw,pids\n", pids.display());
        CgroupHost::from_proc(&mountinfo, "8:pids:/\n").remove_stale();
        assert!(!stale.exists(), "the subtree of a dead server goes, run cgroups first");
        assert!(live.exists() && foreign.exists(), "a live server's and others' cgroups stay");
    }

    #[test]
    fn stale_subtree_names() {
        assert_eq!(subtree_pid("contree-local-123-0"), Some(123));
        assert_eq!(subtree_pid("contree-local-123"), None);
        assert_eq!(subtree_pid("contree-local-x-1"), None);
        assert_eq!(subtree_pid("other-1-2"), None);
        assert_eq!(counter("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), Some(3));
        assert_eq!(cpu_quota_us(1.5), 150_000);
        assert_eq!(cpu_quota_us(0.0001), 1000);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
