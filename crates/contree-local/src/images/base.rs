//! The built-in base image, `contree-local/base:latest`, derived from the host's userland.
//!
//! [`ensure_base`] builds it once under `<data>/base/` (idempotent, safe against
//! concurrent servers on the same data dir) and returns the same [`BaseImage`] afterwards.
//! Nothing of the host is copied per run, and only `/etc` is copied at all.
//!
//! # What a sandbox sees of the host
//!
//! | Path in the sandbox | Content |
//! |---|---|
//! | `/usr` | the host's `/usr`, live, as the lowest layer of an overlay: writes are copied up into the run and never reach the host. `/usr/local/etc` is hidden (it may hold site credentials such as registry tokens). |
//! | `/bin /sbin /lib /lib32 /lib64 /libx32` | as on the host: symlinks into `usr/` on merged-`/usr` systems; on others, host directories served like `/usr`. |
//! | `/etc` | a filtered copy of the host's `/etc`, taken when the base image is first built (see below). |
//! | `/root` (0700), `/home`, `/tmp` (1777), `/run` (+`lock` 1777), `/var` (`tmp` 1777, `log`, `cache`, `lib`, `spool`, `mail`, `opt`, `local`, `backups`, `run`→`/run`, `lock`→`/run/lock`), `/mnt`, `/opt`, `/srv`, `/media` | empty directories |
//! | `/proc`, `/dev` | per run: a procfs of the sandbox's PID namespace and a small tmpfs with `null zero full random urandom tty`, `pts`, `shm` |
//! | `/sys` | an empty directory (sysfs is not mounted) |
//!
//! Nothing else of the host is visible: not `/home`, `/root`, `/work`, the host's `/var`,
//! `/opt`, `/srv`, `/mnt`, `/tmp`, `/run`, `/boot`, nor the server's data dir (which must
//! not live under `/usr`).
//!
//! The `/etc` copy leaves out, at any depth:
//! * everything that is not world-readable (files without `o+r`, directories without `o+rx`),
//!   and sockets, FIFOs and device nodes;
//! * `shadow`, `gshadow`, and every name ending in `-` (`passwd-`, `shadow-`, … backups);
//! * `sudoers`, `sudoers.d`, `opasswd` (`security/opasswd`), `.pwd.lock`;
//! * directories named `private` (`ssl/private`, `pki/tls/private`);
//! * in a directory named `ssh`, every name containing `key` (host keys);
//! * names containing `secret` (`ipsec.secrets`, `ppp/chap-secrets`), `*.key`, `*.keytab`;
//! * `npmrc`, `pip.conf`, `netrc`, `.netrc` (package-registry credentials);
//! * `machine-id` and `hostname` (host identity; the hostname is set per run).
//!
//! and writes `hosts` (localhost only), `resolv.conf` (the host's content, symlinks
//! resolved) and `mtab` (→ `../proc/self/mounts`). Symlinks are copied as symlinks, hard
//! links become separate files, owners and modes are preserved.
//!
//! # Sharp edges
//!
//! * `/usr` is the host's, live: upgrading host packages changes what every image sees.
//! * `/etc` is frozen at the first build. Deleting `<data>/base/` rebuilds it at the next
//!   start, which changes `/etc` under every existing image.
//! * There is no `/var/lib/dpkg` (or other package database): package managers do not work
//!   on the base image.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sandbox::SandboxError;

/// The tag of the built-in base image.
pub const BASE_IMAGE_TAG: &str = "contree-local/base:latest";

/// The UUID of the built-in base image: the same on every host and data dir.
pub const BASE_IMAGE_UUID: Uuid = Uuid::from_u128(0x6e1f0c2a_5b7d_4c1e_9a3f_0c0ffee0ba5e);

/// Bumped whenever the skeleton's layout changes, to rebuild old ones.
const FORMAT_VERSION: u32 = 1;

/// Top-level host entries mirrored into the skeleton: a symlink stays a symlink, a real
/// directory becomes a host-backed overlay like `/usr`.
const HOST_TOP_LEVEL: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The built-in base image: where its skeleton lives and which host directories it
/// exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    /// Always [`BASE_IMAGE_UUID`].
    pub uuid: Uuid,
    /// The skeleton root directory (`<data>/base/rootfs`), the bottom layer of every image.
    pub skeleton: PathBuf,
    /// The host's `/usr`, the lowest layer of the `/usr` overlay.
    pub host_usr: PathBuf,
    /// Other top-level host directories served like `/usr` (only on hosts without merged
    /// `/usr`; empty on Debian 12, Ubuntu 22.04+, Fedora, Arch, …).
    pub host_dirs: Vec<HostDir>,
    /// Per host directory, entries hidden from the host (`<data>/base/mask`, e.g.
    /// `usr/local/etc` as an opaque directory), stacked right above the host directory.
    pub mask: PathBuf,
}

/// A top-level host directory exposed through its own overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDir {
    /// Its name under `/`, e.g. `bin`.
    pub name: String,
    /// Where it is on the host, e.g. `/bin`.
    pub host_path: PathBuf,
}

impl BaseImage {
    /// Every host-backed directory: `("usr", host_usr)` first, then [`Self::host_dirs`].
    pub fn host_mounts(&self) -> impl Iterator<Item = (&str, &Path)> {
        std::iter::once(("usr", self.host_usr.as_path()))
            .chain(self.host_dirs.iter().map(|d| (d.name.as_str(), d.host_path.as_path())))
    }
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    host_usr: PathBuf,
    host_dirs: Vec<HostDir>,
}

/// Builds the base image under `<data_dir>/base/` unless it is already there, and
/// returns it.
///
/// Takes an exclusive lock on `<data_dir>/base/.lock` while checking and building, so
/// concurrent callers (threads or servers) build it once. Fails if `data_dir` lies inside
/// a directory the sandbox exposes from the host (such as `/usr`).
pub fn ensure_base(data_dir: &Path) -> Result<BaseImage, SandboxError> {
    ensure_base_from(data_dir, Path::new("/"))
}

/// [`ensure_base`] with another host root (tests build from a fake host tree).
pub(crate) fn ensure_base_from(data_dir: &Path, host_root: &Path) -> Result<BaseImage, SandboxError> {
    let base_dir = data_dir.join("base");
    fs::create_dir_all(&base_dir).map_err(|e| SandboxError::io(format!("creating {}", base_dir.display()), e))?;
    let lock_path = base_dir.join(".lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| SandboxError::io(format!("opening {}", lock_path.display()), e))?;
    // SAFETY: flock on an fd we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } < 0 {
        return Err(SandboxError::io(format!("locking {}", lock_path.display()), io::Error::last_os_error()));
    }

    let skeleton = base_dir.join("rootfs");
    let mask = base_dir.join("mask");
    let manifest_path = base_dir.join("manifest.json");
    let existing = fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .filter(|m| m.version == FORMAT_VERSION && skeleton.is_dir() && mask.is_dir());
    let manifest = match existing {
        Some(m) => m,
        None => {
            let m = build(&base_dir, host_root)?;
            let tmp = base_dir.join("manifest.json.tmp");
            let bytes =
                serde_json::to_vec_pretty(&m).map_err(|e| SandboxError::io("encoding the base manifest", e.into()))?;
            fs::write(&tmp, bytes)
                .and_then(|()| fs::rename(&tmp, &manifest_path))
                .map_err(|e| SandboxError::io(format!("writing {}", manifest_path.display()), e))?;
            m
        }
    };
    drop(lock);

    let base =
        BaseImage { uuid: BASE_IMAGE_UUID, skeleton, host_usr: manifest.host_usr, host_dirs: manifest.host_dirs, mask };
    check_data_dir_hidden(data_dir, &base)?;
    Ok(base)
}

/// The data dir must not be reachable through a host-backed directory.
fn check_data_dir_hidden(data_dir: &Path, base: &BaseImage) -> Result<(), SandboxError> {
    let data =
        fs::canonicalize(data_dir).map_err(|e| SandboxError::io(format!("resolving {}", data_dir.display()), e))?;
    for (name, host) in base.host_mounts() {
        let host = fs::canonicalize(host).unwrap_or_else(|_| host.to_path_buf());
        if data.starts_with(&host) {
            return Err(SandboxError::invalid(
                "data_dir",
                format!(
                    "{} is inside {} which every sandbox sees as /{name}; choose a data dir elsewhere",
                    data.display(),
                    host.display()
                ),
            ));
        }
    }
    Ok(())
}

fn io_err(what: &str, p: &Path) -> impl FnOnce(io::Error) -> SandboxError {
    let what = format!("{what} {}", p.display());
    move |e| SandboxError::io(what, e)
}

/// Builds `rootfs` and `mask` next to each other under `base_dir` (via temp names, then
/// renames), returning the manifest to record.
fn build(base_dir: &Path, host_root: &Path) -> Result<Manifest, SandboxError> {
    let tmp_root = base_dir.join("rootfs.tmp");
    let tmp_mask = base_dir.join("mask.tmp");
    for p in [&tmp_root, &tmp_mask] {
        remove_if_exists(p)?;
    }
    let host_dirs = build_skeleton(&tmp_root, host_root)?;
    build_mask(&tmp_mask, host_root)?;
    for (tmp, fin) in [(&tmp_root, base_dir.join("rootfs")), (&tmp_mask, base_dir.join("mask"))] {
        remove_if_exists(&fin)?;
        fs::rename(tmp, &fin).map_err(io_err("renaming into", &fin))?;
    }
    tracing::info!(base = %base_dir.display(), "built the base image skeleton");
    Ok(Manifest { version: FORMAT_VERSION, host_usr: host_root.join("usr"), host_dirs })
}

fn remove_if_exists(p: &Path) -> Result<(), SandboxError> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", p)(e)),
        _ => Ok(()),
    }
}

/// Creates `p` with exactly `mode` (the process umask does not apply) and owner root.
fn mkdir_mode(p: &Path, mode: u32) -> Result<(), SandboxError> {
    fs::DirBuilder::new().mode(mode).create(p).map_err(io_err("creating", p))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io_err("setting mode of", p))
}

fn mkdir_like(p: &Path, host: &Path) -> Result<(), SandboxError> {
    let meta = fs::metadata(host).map_err(io_err("reading", host))?;
    mkdir_mode(p, meta.mode() & 0o7777)?;
    std::os::unix::fs::chown(p, Some(meta.uid()), Some(meta.gid())).map_err(io_err("chown", p))?;
    // chown may clear set-id bits.
    fs::set_permissions(p, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(io_err("setting mode of", p))
}

fn build_skeleton(root: &Path, host_root: &Path) -> Result<Vec<HostDir>, SandboxError> {
    mkdir_mode(root, 0o755)?;
    let mut host_dirs = Vec::new();
    for name in HOST_TOP_LEVEL {
        let host = host_root.join(name);
        let Ok(meta) = fs::symlink_metadata(&host) else { continue };
        let dest = root.join(name);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&host).map_err(io_err("reading link", &host))?;
            symlink(&target, &dest).map_err(io_err("creating", &dest))?;
        } else if meta.is_dir() {
            mkdir_like(&dest, &host)?;
            host_dirs.push(HostDir { name: (*name).to_owned(), host_path: host });
        }
    }
    mkdir_like(&root.join("usr"), &host_root.join("usr"))?;

    let etc = root.join("etc");
    mkdir_mode(&etc, 0o755)?;
    let host_etc = host_root.join("etc");
    if host_etc.is_dir() {
        copy_etc(&host_etc, &etc, true)?;
    }
    let hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";
    write_file(&etc.join("hosts"), hosts.as_bytes(), 0o644)?;
    if let Ok(resolv) = fs::read(host_etc.join("resolv.conf")) {
        write_file(&etc.join("resolv.conf"), &resolv, 0o644)?;
    }
    let mtab = etc.join("mtab");
    symlink("../proc/self/mounts", &mtab).map_err(io_err("creating", &mtab))?;

    for (dir, mode) in [
        ("root", 0o700),
        ("home", 0o755),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("run/lock", 0o1777),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("var/log", 0o755),
        ("var/cache", 0o755),
        ("var/lib", 0o755),
        ("var/spool", 0o755),
        ("var/mail", 0o2775),
        ("var/opt", 0o755),
        ("var/local", 0o2775),
        ("var/backups", 0o755),
        ("proc", 0o555),
        ("dev", 0o755),
        ("sys", 0o555),
        ("mnt", 0o755),
        ("opt", 0o755),
        ("srv", 0o755),
        ("media", 0o755),
    ] {
        mkdir_mode(&root.join(dir), mode)?;
    }
    for (link, target) in [("var/run", "../run"), ("var/lock", "../run/lock")] {
        let p = root.join(link);
        symlink(target, &p).map_err(io_err("creating", &p))?;
    }
    Ok(host_dirs)
}

fn build_mask(mask: &Path, host_root: &Path) -> Result<(), SandboxError> {
    mkdir_mode(mask, 0o755)?;
    let host_usr = host_root.join("usr");
    let hidden = host_usr.join("local/etc");
    if !fs::symlink_metadata(&hidden).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    mkdir_like(&mask.join("usr"), &host_usr)?;
    mkdir_like(&mask.join("usr/local"), &host_usr.join("local"))?;
    let opaque = mask.join("usr/local/etc");
    mkdir_like(&opaque, &hidden)?;
    set_opaque(&opaque)
}

/// Marks `dir` as an overlayfs opaque directory: lower layers' entries below it are hidden.
fn set_opaque(dir: &Path) -> Result<(), SandboxError> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| SandboxError::invalid("data_dir", "contains a NUL byte"))?;
    // SAFETY: NUL-terminated path, name and a 1-byte value.
    let r = unsafe {
        libc::lsetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr() as *const libc::c_void, 1, 0)
    };
    if r < 0 {
        return Err(SandboxError::io(
            format!("marking {} opaque (needs trusted xattrs)", dir.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn write_file(p: &Path, content: &[u8], mode: u32) -> Result<(), SandboxError> {
    fs::write(p, content).map_err(io_err("writing", p))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io_err("setting mode of", p))
}

/// Names the `/etc` copy leaves out at the top level because the base image writes its
/// own (or, for `hostname` and `machine-id`, none).
const ETC_GENERATED: &[&str] = &["hosts", "resolv.conf", "mtab", "hostname", "machine-id"];

/// Names left out at any depth: password hashes, sudo rules, credentials.
const ETC_DENIED: &[&str] = &[
    "shadow",
    "gshadow",
    "sudoers",
    "sudoers.d",
    "opasswd",
    ".pwd.lock",
    "private",
    "npmrc",
    "pip.conf",
    "netrc",
    ".netrc",
    "machine-id",
];

/// Whether an entry of the host's `/etc` stays out of the base image (see the module docs).
pub(crate) fn etc_excluded(parent_name: Option<&str>, name: &str, meta: &fs::Metadata) -> bool {
    let ft = meta.file_type();
    if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
        return true;
    }
    let mode = meta.mode();
    if ft.is_file() && mode & 0o004 == 0 {
        return true;
    }
    if ft.is_dir() && mode & 0o005 != 0o005 {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    name.ends_with('-')
        || ETC_DENIED.contains(&name)
        || lower.contains("secret")
        || lower.ends_with(".key")
        || lower.ends_with(".keytab")
        || (parent_name == Some("ssh") && lower.contains("key"))
}

fn copy_etc(src: &Path, dst: &Path, top: bool) -> Result<(), SandboxError> {
    let parent_name = src.file_name().and_then(|n| n.to_str());
    let entries = fs::read_dir(src).map_err(io_err("reading", src))?;
    for entry in entries {
        let entry = entry.map_err(io_err("reading", src))?;
        let name_os = entry.file_name();
        let Some(name) = name_os.to_str() else {
            continue;
        };
        if top && ETC_GENERATED.contains(&name) {
            continue;
        }
        let from = entry.path();
        let meta = fs::symlink_metadata(&from).map_err(io_err("reading", &from))?;
        if etc_excluded(parent_name, name, &meta) {
            continue;
        }
        let to = dst.join(name);
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(io_err("reading link", &from))?;
            symlink(&target, &to).map_err(io_err("creating", &to))?;
        } else if ft.is_dir() {
            mkdir_mode(&to, 0o700)?;
            copy_etc(&from, &to, false)?;
        } else {
            match fs::copy(&from, &to) {
                Ok(_) => {}
                // A file that disappeared or is unreadable despite its mode: leave it out.
                Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied) => continue,
                Err(e) => return Err(io_err("copying", &from)(e)),
            }
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid())).map_err(io_err("chown", &to))?;
        if !ft.is_symlink() {
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(io_err("setting mode of", &to))?;
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn touch(p: &Path, mode: u32) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A fake host with merged /usr and an /etc full of things that must not leak.
    fn fake_host(root: &Path) {
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("usr/local/etc")).unwrap();
        touch(&root.join("usr/local/etc/npmrc"), 0o644);
        symlink("usr/bin", root.join("bin")).unwrap();
        fs::create_dir_all(root.join("lib64")).unwrap(); // not merged: served from the host
        let etc = root.join("etc");
        for (f, mode) in [
            ("passwd", 0o644),
            ("group", 0o644),
            ("passwd-", 0o644),
            ("shadow", 0o640),
            ("gshadow", 0o640),
            ("sudoers", 0o440),
            ("sudoers.d/admins", 0o440),
            ("security/opasswd", 0o600),
            ("security/limits.conf", 0o644),
            ("ssl/private/host.pem", 0o600),
            ("ssl/certs/ca.pem", 0o644),
            ("ssh/ssh_host_ed25519_key", 0o600),
            ("ssh/ssh_host_ed25519_key.pub", 0o644),
            ("ssh/ssh_config", 0o644),
            ("ppp/chap-secrets", 0o644),
            ("npmrc", 0o644),
            ("pip.conf", 0o644),
            ("machine-id", 0o444),
            ("hostname", 0o644),
            ("hosts", 0o644),
            ("resolv.conf", 0o644),
            ("app/secret.key", 0o644),
            ("app/readable.conf", 0o644),
            ("app/unreadable.conf", 0o640),
        ] {
            touch(&etc.join(f), mode);
        }
        fs::set_permissions(etc.join("ssl/private"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("/usr/share/zoneinfo/UTC", etc.join("localtime")).unwrap();
    }

    #[test]
    fn base_skeleton_filters_etc_and_mirrors_host_layout() {
        let host = tempfile::tempdir().unwrap();
        fake_host(host.path());
        let data = tempfile::tempdir().unwrap();
        let base = ensure_base_from(data.path(), host.path()).unwrap();
        assert_eq!(base.uuid, BASE_IMAGE_UUID);
        let sk = &base.skeleton;
        let etc = sk.join("etc");
        for kept in [
            "passwd",
            "group",
            "security/limits.conf",
            "ssl/certs/ca.pem",
            "ssh/ssh_config",
            "app/readable.conf",
            "hosts",
            "resolv.conf",
        ] {
            assert!(etc.join(kept).exists(), "{kept} should be kept");
        }
        for gone in [
            "passwd-",
            "shadow",
            "gshadow",
            "sudoers",
            "sudoers.d",
            "security/opasswd",
            "ssl/private",
            "ssh/ssh_host_ed25519_key",
            "ssh/ssh_host_ed25519_key.pub",
            "ppp/chap-secrets",
            "npmrc",
            "pip.conf",
            "machine-id",
            "hostname",
            "app/secret.key",
            "app/unreadable.conf",
        ] {
            assert!(fs::symlink_metadata(etc.join(gone)).is_err(), "{gone} must not be copied");
        }
        assert_eq!(fs::read_link(etc.join("localtime")).unwrap(), Path::new("/usr/share/zoneinfo/UTC"));
        assert_eq!(fs::read_link(etc.join("mtab")).unwrap(), Path::new("../proc/self/mounts"));
        assert!(fs::read_to_string(etc.join("hosts")).unwrap().contains("localhost"));
        // Host layout: bin is a symlink, lib64 a host-backed dir, usr a mount point.
        assert_eq!(fs::read_link(sk.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(base.host_dirs, vec![HostDir { name: "lib64".into(), host_path: host.path().join("lib64") }]);
        assert_eq!(fs::read_dir(sk.join("usr")).unwrap().count(), 0);
        for (d, mode) in [("tmp", 0o1777), ("root", 0o700), ("var/tmp", 0o1777), ("proc", 0o555)] {
            assert_eq!(fs::metadata(sk.join(d)).unwrap().mode() & 0o7777, mode, "{d}");
        }
        // /usr/local/etc is masked by an opaque dir.
        let opaque = base.mask.join("usr/local/etc");
        assert_eq!(fs::read_dir(&opaque).unwrap().count(), 0);
        let c = CString::new(opaque.as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 4];
        let n = unsafe {
            libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr() as *mut libc::c_void, 4)
        };
        assert_eq!(&buf[..n as usize], b"y");
    }

    #[test]
    fn ensure_base_is_idempotent() {
        let host = tempfile::tempdir().unwrap();
        fake_host(host.path());
        let data = tempfile::tempdir().unwrap();
        let a = ensure_base_from(data.path(), host.path()).unwrap();
        let marker = a.skeleton.join("etc/marker");
        fs::write(&marker, b"kept").unwrap();
        let b = ensure_base_from(data.path(), host.path()).unwrap();
        assert_eq!(a, b);
        assert!(marker.exists(), "a second call must reuse the skeleton, not rebuild it");
    }

    #[test]
    fn data_dir_under_usr_is_rejected() {
        let host = tempfile::tempdir().unwrap();
        fake_host(host.path());
        let data = host.path().join("usr/lib/contree-data");
        fs::create_dir_all(&data).unwrap();
        let err = ensure_base_from(&data, host.path()).unwrap_err();
        assert!(matches!(err, SandboxError::InvalidArgument { argument: "data_dir", .. }), "{err}");
    }

    #[test]
    fn the_real_base_image_builds() {
        let data = tempfile::tempdir().unwrap();
        let base = ensure_base(data.path()).unwrap();
        assert!(base.skeleton.join("etc/passwd").exists());
        assert!(!base.skeleton.join("etc/shadow").exists());
        assert_eq!(base.host_usr, Path::new("/usr"));
    }
}
