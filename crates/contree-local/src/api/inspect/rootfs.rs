//! A read-only, userspace view of an image's root filesystem, for `/inspect`.
//!
//! An image is a stack of overlayfs layer directories (topmost first). Instead of mounting
//! them, this module resolves paths the way overlayfs would: the topmost layer holding a name
//! wins, a whiteout (a 0:0 character device) hides the name in every lower layer, a directory
//! marked opaque (`trusted.overlay.opaque=y`) hides the lower layers' content below it, and
//! directories present in several layers are merged. Like the sandbox, an image is several
//! overlays: the root one, and one per host-backed directory (`/usr`, …) with its own lower
//! dirs; a path is looked up in the overlay mounted deepest above it (see
//! [`crate::images::overlay_stacks`]).
//!
//! Confinement: every path is resolved inside the image root, component by component, with
//! `..` clamped at the root and symlinks resolved by this code against the *image* root (never
//! by the host kernel against the host root), with a bounded number of hops. Host paths are
//! only ever built from a layer directory plus plain names checked to be real directories, and
//! file contents are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to
//! the layer directory, so nothing outside the image's layers can be read even if a layer
//! changed underneath.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Symlink hops allowed while resolving one path (the kernel's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// One layer directory and where it is attached in the image (`[]` = the root).
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub root: PathBuf,
    pub mount: Vec<OsString>,
}

impl Layer {
    /// A layer attached at the image root.
    #[cfg(test)]
    pub fn at_root(root: PathBuf) -> Self {
        Layer { root, mount: Vec::new() }
    }

    /// A layer attached at `mount` (an absolute image path such as `/usr`).
    pub fn at(root: PathBuf, mount: &str) -> Self {
        Layer { root, mount: split_components(mount.as_bytes()).unwrap_or_default() }
    }
}

/// Why a path could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// Nothing at that path (or a parent is missing).
    NotFound,
    /// A parent component is not a directory.
    NotADirectory,
    /// Too many symlink hops.
    Loop,
    /// The path is not acceptable (NUL byte, …).
    Invalid(&'static str),
    /// A host I/O error while reading the layers.
    Io(io::Error),
}

impl From<io::Error> for ResolveError {
    fn from(e: io::Error) -> Self {
        ResolveError::Io(e)
    }
}

/// A resolved entry of the image.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Canonical path inside the image, as components.
    pub path: Vec<OsString>,
    /// Index of the topmost layer holding the entry.
    layer: usize,
    /// The entry's path inside that layer.
    rel: Vec<OsString>,
    /// `lstat` of the topmost occurrence.
    pub meta: Metadata,
    /// For directories: every layer directory merged into this one, topmost first.
    dirs: Vec<PathBuf>,
}

impl Node {
    /// The canonical image path, `/`-rooted.
    pub fn image_path(&self) -> String {
        join_components(&self.path)
    }

    /// The entry's name (empty for the root).
    pub fn name(&self) -> &OsStr {
        self.path.last().map_or(OsStr::new(""), |s| s.as_os_str())
    }

    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }

    pub fn is_file(&self) -> bool {
        self.meta.is_file()
    }

    pub fn is_symlink(&self) -> bool {
        self.meta.file_type().is_symlink()
    }
}

/// The merged view of one image's layers.
#[derive(Debug, Clone)]
pub(crate) struct RootFs {
    layers: Vec<Layer>,
    ids: crate::IdRange,
}

impl RootFs {
    /// `layers` are topmost first.
    pub fn new(layers: Vec<Layer>) -> Self {
        RootFs { layers, ids: crate::IdRange::default() }
    }

    /// Owners on disk are host ids: runs' files are shifted into `ids`.
    pub fn with_ids(mut self, ids: crate::IdRange) -> Self {
        self.ids = ids;
        self
    }

    /// The `(uid, gid)` a file has inside a sandbox: runs' files are stored with host ids
    /// of the sandbox id range, the base image's host files with their own ids (which the
    /// sandbox sees unchanged through an idmapped mount).
    pub fn owner(&self, meta: &std::fs::Metadata) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let inside = |h: u32| self.ids.from_host(h).unwrap_or(h);
        (inside(meta.uid()), inside(meta.gid()))
    }

    /// Resolves `path` (absolute or relative to `/`). With `follow_last`, a final symlink is
    /// followed too; intermediate symlinks always are.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<Node, ResolveError> {
        let comps = split_components(path.as_bytes()).ok_or(ResolveError::Invalid("NUL byte"))?;
        // Pending components, last one on top.
        let mut pending: Vec<OsString> = comps.into_iter().rev().collect();
        let mut current: Vec<OsString> = Vec::new();
        let mut hops = 0usize;
        while let Some(c) = pending.pop() {
            if c.as_bytes() == b".." {
                current.pop();
                continue;
            }
            let mut candidate = current.clone();
            candidate.push(c);
            let Some(node) = self.lookup(&candidate)? else {
                return Err(ResolveError::NotFound);
            };
            let last = pending.is_empty();
            if node.is_symlink() && (!last || follow_last) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(ResolveError::Loop);
                }
                let target = self.read_link(&node)?;
                let target = target.as_os_str().as_bytes();
                if target.first() == Some(&b'/') {
                    current.clear();
                }
                let tcomps = split_components(target).ok_or(ResolveError::Invalid("NUL byte"))?;
                pending.extend(tcomps.into_iter().rev());
                continue;
            }
            if !last && !node.is_dir() {
                return Err(ResolveError::NotADirectory);
            }
            current = candidate;
        }
        match self.lookup(&current)? {
            Some(node) => Ok(node),
            None => Err(ResolveError::NotFound),
        }
    }

    /// Looks up an already canonical path (every parent a directory of the union).
    fn lookup(&self, comps: &[OsString]) -> io::Result<Option<Node>> {
        // Only the overlay mounted deepest above `comps` is visible there.
        let Some(depth) = self.layers.iter().filter(|l| comps.starts_with(&l.mount)).map(|l| l.mount.len()).max()
        else {
            return Ok(None);
        };
        let mut found: Option<Node> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.mount.len() != depth || !comps.starts_with(&layer.mount) {
                continue;
            }
            let rel = &comps[layer.mount.len()..];
            let mut host = layer.root.clone();
            // Walk the parents inside this layer; they must be real directories here.
            let mut stop_below = false;
            let mut missing = false;
            if let Some((_, parents)) = rel.split_last() {
                for p in parents {
                    host.push(p);
                    match lstat(&host)? {
                        None => {
                            missing = true;
                            break;
                        }
                        // A whiteout or a non-directory hides this path in every lower layer.
                        Some(m) if is_whiteout(&m) || !m.is_dir() => return Ok(found),
                        Some(_) => {
                            if is_opaque(&host) {
                                stop_below = true;
                            }
                        }
                    }
                }
            }
            if missing {
                if stop_below {
                    break;
                }
                continue;
            }
            if let Some(last) = rel.last() {
                host.push(last);
            }
            let meta = match lstat(&host)? {
                None => {
                    if stop_below {
                        break;
                    }
                    continue;
                }
                Some(m) if is_whiteout(&m) => break,
                Some(m) => m,
            };
            match &mut found {
                None => {
                    let is_dir = meta.is_dir();
                    found = Some(Node {
                        path: comps.to_vec(),
                        layer: i,
                        rel: rel.to_vec(),
                        meta,
                        dirs: if is_dir { vec![host.clone()] } else { Vec::new() },
                    });
                    // A non-directory hides everything below it.
                    if !is_dir {
                        break;
                    }
                }
                Some(top) => {
                    // Only directories merge; a lower non-directory is hidden and ends the merge.
                    if !meta.is_dir() {
                        break;
                    }
                    top.dirs.push(host.clone());
                }
            }
            // The root of a layer is never opaque in a meaningful way; a subdirectory can be.
            if stop_below || (!rel.is_empty() && is_opaque(&host)) {
                break;
            }
        }
        Ok(found)
    }

    /// The merged entries of a directory node, sorted by name.
    pub fn list(&self, dir: &Node) -> Result<Vec<Node>, ResolveError> {
        self.list_bounded(dir, usize::MAX).map(|(nodes, _)| nodes)
    }

    /// Like [`list`](Self::list), but reads at most `max_names` names across the layers
    /// (a hostile image may hold a directory of millions of entries). The flag is false when
    /// the cap cut the listing short; the entries returned are then a sorted subset.
    pub fn list_bounded(&self, dir: &Node, max_names: usize) -> Result<(Vec<Node>, bool), ResolveError> {
        if !dir.is_dir() {
            return Err(ResolveError::NotADirectory);
        }
        // First occurrence of a name wins, whiteouts included (they hide lower entries).
        let mut seen: HashMap<OsString, bool> = HashMap::new();
        let mut read = 0usize;
        let mut complete = true;
        'layers: for host_dir in &dir.dirs {
            for entry in std::fs::read_dir(host_dir)? {
                if read >= max_names {
                    complete = false;
                    break 'layers;
                }
                read += 1;
                let entry = entry?;
                let name = entry.file_name();
                if seen.contains_key(&name) {
                    continue;
                }
                let visible = match entry.metadata() {
                    Ok(m) => !is_whiteout(&m),
                    Err(_) => false,
                };
                seen.insert(name, visible);
            }
        }
        let mut names: Vec<OsString> = seen.into_iter().filter_map(|(n, visible)| visible.then_some(n)).collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let mut path = dir.path.clone();
            path.push(name);
            if let Some(node) = self.lookup(&path)? {
                out.push(node);
            }
        }
        Ok((out, complete))
    }

    /// The target of a symlink node, as stored (not resolved).
    pub fn read_link(&self, node: &Node) -> io::Result<PathBuf> {
        std::fs::read_link(self.host_path(node))
    }

    /// Opens a regular file node for reading, confined to its layer directory.
    pub fn open_file(&self, node: &Node) -> io::Result<File> {
        let layer = &self.layers[node.layer];
        let root = File::open(&layer.root)?;
        let rel: PathBuf = node.rel.iter().collect();
        let rel = if node.rel.is_empty() { PathBuf::from(".") } else { rel };
        openat2_beneath(&root, &rel)
    }

    fn host_path(&self, node: &Node) -> PathBuf {
        let mut p = self.layers[node.layer].root.clone();
        p.extend(node.rel.iter());
        p
    }
}

/// Splits a path into its plain components, dropping empty ones and `.` (`..` is kept for
/// the resolver to clamp). `None` if the path holds a NUL byte.
fn split_components(path: &[u8]) -> Option<Vec<OsString>> {
    if path.contains(&0) {
        return None;
    }
    Some(
        path.split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(|c| OsStr::from_bytes(c).to_os_string())
            .collect(),
    )
}

/// `/a/b` from `[a, b]`; `/` for the root.
pub(crate) fn join_components(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn lstat(p: &Path) -> io::Result<Option<Metadata>> {
    match std::fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether overlayfs marked this directory opaque (its lower layers' content is hidden).
fn is_opaque(p: &Path) -> bool {
    for name in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        let Ok(cpath) = CString::new(p.as_os_str().as_bytes()) else {
            return false;
        };
        let mut buf = [0u8; 4];
        // SAFETY: both strings are NUL-terminated and `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::lgetxattr(cpath.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 1 && buf[0] == b'y' {
            return true;
        }
    }
    false
}

/// Opens `rel` below `root` for reading without following any symlink and without leaving
/// `root` (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`).
fn openat2_beneath(root: &File, rel: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let crel = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))?;
    // SAFETY: `open_how` is a plain C struct; all-zero is a valid starting value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // O_NONBLOCK: opening a FIFO must never hang a reader (regular files ignore the flag).
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid dirfd, NUL-terminated path, and a pointer/size pair for `how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            crel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, content: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn whiteout(p: &Path) {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path; a 0:0 char device is overlayfs' whiteout.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(r, 0, "mknod needs root: {}", io::Error::last_os_error());
    }

    fn read(fs: &RootFs, path: &str) -> String {
        let node = fs.resolve(path, true).unwrap();
        let mut s = String::new();
        fs.open_file(&node).unwrap().read_to_string(&mut s).unwrap();
        s
    }

    /// Two layers over a base, plus a `/usr` overlay made of the layers' `usr/` and a host dir.
    fn fixture() -> (tempfile::TempDir, RootFs) {
        let t = tempfile::tempdir().unwrap();
        let (top, mid, base, usr) =
            (t.path().join("top"), t.path().join("mid"), t.path().join("base"), t.path().join("usr"));
        write(&base.join("etc/hosts"), "base hosts");
        write(&base.join("etc/passwd"), "base passwd");
        write(&base.join("etc/gone"), "deleted above");
        write(&base.join("opaque/old"), "hidden by opaque");
        std::fs::create_dir_all(base.join("usr")).unwrap();
        std::fs::create_dir_all(base.join("tmp")).unwrap();
        write(&usr.join("bin/tool"), "usr tool");
        write(&mid.join("etc/hosts"), "mid hosts");
        std::fs::create_dir_all(mid.join("opaque")).unwrap();
        write(&mid.join("opaque/new"), "new");
        let c = CString::new(mid.join("opaque").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated strings and buffer.
        let r = unsafe { libc::lsetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(r, 0);
        std::fs::create_dir_all(top.join("etc")).unwrap();
        whiteout(&top.join("etc/gone"));
        symlink("/etc/hosts", top.join("link-abs")).unwrap();
        symlink("../../../../etc/passwd", top.join("link-up")).unwrap();
        symlink("/", top.join("rootlink")).unwrap();
        symlink("loop2", top.join("loop1")).unwrap();
        symlink("loop1", top.join("loop2")).unwrap();
        write(&top.join("usr/local/x"), "in usr upper");
        std::fs::write(base.join("usr/hidden"), "hidden by the /usr mount").unwrap();
        let fs = RootFs::new(vec![
            Layer::at_root(top.clone()),
            Layer::at_root(mid),
            Layer::at_root(base),
            Layer::at(top.join("usr"), "/usr"),
            Layer::at(usr, "/usr"),
        ]);
        (t, fs)
    }

    #[test]
    fn topmost_layer_wins_and_whiteouts_hide() {
        let (_t, fs) = fixture();
        assert_eq!(read(&fs, "/etc/hosts"), "mid hosts");
        assert_eq!(read(&fs, "/etc/passwd"), "base passwd");
        assert!(matches!(fs.resolve("/etc/gone", true), Err(ResolveError::NotFound)));
        let etc = fs.resolve("/etc", true).unwrap();
        let names: Vec<_> = fs.list(&etc).unwrap().iter().map(|n| n.name().to_owned()).collect();
        assert_eq!(names, vec![OsString::from("hosts"), OsString::from("passwd")]);
    }

    #[test]
    fn opaque_dirs_hide_lower_content() {
        let (_t, fs) = fixture();
        let d = fs.resolve("/opaque", true).unwrap();
        let names: Vec<_> = fs.list(&d).unwrap().iter().map(|n| n.name().to_owned()).collect();
        assert_eq!(names, vec![OsString::from("new")]);
        assert!(fs.resolve("/opaque/old", true).is_err());
    }

    #[test]
    fn attached_layers_merge_at_their_mount_point() {
        let (_t, fs) = fixture();
        assert_eq!(read(&fs, "/usr/bin/tool"), "usr tool");
        assert_eq!(read(&fs, "/usr/local/x"), "in usr upper");
        let usr = fs.resolve("/usr", true).unwrap();
        let names: Vec<_> = fs.list(&usr).unwrap().iter().map(|n| n.name().to_owned()).collect();
        assert_eq!(names, vec![OsString::from("bin"), OsString::from("local")]);
        assert!(fs.resolve("/usr/hidden", true).is_err());
    }

    #[test]
    fn dotdot_and_symlinks_stay_inside_the_image() {
        let (_t, fs) = fixture();
        assert_eq!(read(&fs, "/../../../etc/passwd"), "base passwd");
        assert_eq!(read(&fs, "etc/../../etc/hosts"), "mid hosts");
        assert_eq!(read(&fs, "/link-abs"), "mid hosts");
        assert_eq!(read(&fs, "/link-up"), "base passwd");
        // `/rootlink` is the image root, not the host's.
        let n = fs.resolve("/rootlink/etc/hosts", true).unwrap();
        assert_eq!(n.image_path(), "/etc/hosts");
        assert!(fs.resolve("/rootlink/proc/self/environ", true).is_err());
        assert!(matches!(fs.resolve("/loop1", true), Err(ResolveError::Loop)));
        // Without following the last component a symlink is itself.
        assert!(fs.resolve("/link-abs", false).unwrap().is_symlink());
        assert!(matches!(fs.resolve("/etc/hosts/x", true), Err(ResolveError::NotADirectory)));
        assert!(matches!(fs.resolve("/a\0b", true), Err(ResolveError::Invalid(_))));
    }

    #[test]
    fn open_refuses_symlinks_in_the_layer() {
        let (_t, fs) = fixture();
        let link = fs.resolve("/link-abs", false).unwrap();
        assert!(fs.open_file(&link).is_err());
    }
}
