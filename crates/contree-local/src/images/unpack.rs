//! One OCI layer (a tar stream, gzip, zstd or uncompressed) unpacked into a layer directory
//! in the store's overlayfs format.
//!
//! The archive is hostile: it comes from whatever registry a client named. So every entry is
//! placed by walking its path one component at a time from the layer directory, creating
//! missing directories and refusing `..`, symbolic links on the way (a link to `/etc` followed
//! by a write through it) and anything but a directory in the middle of a path; an absolute
//! path is read relative to the layer's root, as Docker does. Hard links must point at an
//! entry of the same layer, reached the same way. Nothing is ever opened by a path that could
//! leave the directory, so the only files written are below it.
//!
//! What each entry becomes:
//! - OCI whiteouts `.wh.NAME` become overlayfs whiteouts (a 0/0 character device `NAME`);
//!   opaque markers `.wh..wh..opq` set `trusted.overlay.opaque=y` on their directory. Like
//!   the OCI spec says, a whiteout never hides an entry of its own layer.
//! - Owners are shifted into the server's id range (the sandbox's uid 0 is the range's first
//!   id); ids beyond the range become the range's root, as for files placed by runs.
//! - Device nodes are skipped (a sandbox can't use them: it has its own `/dev`); extended
//!   attributes in the archive are not applied (a file capability written by the server
//!   would be a host-root capability).
//! - Sizes are bounded: the uncompressed bytes and the number of entries of the whole import
//!   ([`Budget`]); past either, the import fails.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::IdRange;

/// How a layer blob is compressed (from its media type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a layer media type says, or `None` when it is not a layer type this
    /// server can unpack (foreign/non-distributable layers, encrypted layers, …).
    pub(crate) fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar" | "application/vnd.docker.image.rootfs.diff.tar" => {
                Some(Compression::None)
            }
            "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" | "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

/// What one import may still unpack: uncompressed bytes and entries, shared by its layers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub bytes: u64,
    pub entries: u64,
    /// The limits as configured, for error messages.
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl Budget {
    pub(crate) fn new(max_bytes: u64, max_entries: u64) -> Budget {
        Budget { bytes: max_bytes, entries: max_entries, max_bytes, max_entries }
    }
}

/// What [`unpack_layer`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unpacked {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
}

/// Longest path accepted inside a layer (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;

/// Unpacks the layer `blob` (compressed as `compression`) into `dest`, an existing empty
/// directory. Errors are messages for the operation's `error`.
pub(crate) fn unpack_layer(
    blob: impl Read,
    compression: Compression,
    dest: &Path,
    ids: IdRange,
    budget: &mut Budget,
) -> Result<Unpacked, String> {
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(blob))),
        Compression::Zstd => Box::new(ZstdFrames::new(BufReader::new(blob))),
    };
    let mut archive = tar::Archive::new(reader);
    let mut out = Unpacked::default();
    let mut layer = Layer { root: dest.to_path_buf(), ids };
    let entries = archive.entries().map_err(|e| format!("cannot read the layer archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("cannot read the layer archive: {e}"))?;
        if budget.entries == 0 {
            return Err(format!("the image has more than {} files (the import limit)", budget.max_entries));
        }
        budget.entries -= 1;
        out.entries += 1;
        layer.place(&mut entry, budget, &mut out)?;
    }
    Ok(out)
}

struct Layer {
    root: PathBuf,
    ids: IdRange,
}

/// The normalized components of an entry path: no `.`, no empty parts, never `..`.
fn components(raw: &[u8]) -> Result<Vec<&OsStr>, String> {
    if raw.len() > MAX_PATH {
        return Err(format!("an entry's path is longer than {MAX_PATH} bytes"));
    }
    let mut parts = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(format!("the entry `{}` leaves the layer (`..`)", String::from_utf8_lossy(raw))),
            p => parts.push(OsStr::from_bytes(p)),
        }
    }
    Ok(parts)
}

fn show(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

impl Layer {
    /// The host ids of sandbox ids (ids beyond the range become the range's root).
    fn host_ids(&self, uid: u64, gid: u64) -> (u32, u32) {
        let map = |id: u64| u32::try_from(id).ok().and_then(|id| self.ids.to_host(id)).unwrap_or(self.ids.base());
        (map(uid), map(gid))
    }

    /// Walks `parts` (all but the last) from the root, creating missing directories; every
    /// step must be a real directory. Returns the parent's path.
    fn parent_of(&self, parts: &[&OsStr], raw: &[u8], create: bool) -> Result<PathBuf, String> {
        let mut dir = self.root.clone();
        for part in parts {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "the entry `{}` goes through the symbolic link `{}` of the same layer",
                        show(raw),
                        dir.strip_prefix(&self.root).unwrap_or(&dir).display()
                    ));
                }
                Ok(_) => {
                    return Err(format!(
                        "the entry `{}` is below `{}`, which is not a directory",
                        show(raw),
                        dir.strip_prefix(&self.root).unwrap_or(&dir).display()
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::DirBuilder::new().mode(0o755).create(&dir).map_err(|e| io_msg("creating", &dir, e))?;
                    let (u, g) = self.host_ids(0, 0);
                    std::os::unix::fs::lchown(&dir, Some(u), Some(g)).map_err(|e| io_msg("chown", &dir, e))?;
                }
                // Only hard link targets are walked without creating.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(format!("the hard link target `{}` is not a file of the same layer", show(raw)));
                }
                Err(e) => return Err(format!("the entry `{}`: {}", show(raw), e)),
            }
        }
        Ok(dir)
    }

    fn place<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        budget: &mut Budget,
        out: &mut Unpacked,
    ) -> Result<(), String> {
        let raw = entry.path_bytes().into_owned();
        let parts = components(&raw)?;
        let kind = entry.header().entry_type();
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = self.host_ids(header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let mtime = header.mtime().ok();

        let Some((name, dirs)) = parts.split_last() else {
            // `./`: the layer's root itself.
            if kind.is_dir() {
                let root = self.root.clone();
                set_owner_mode(&root, uid, gid, mode)?;
            }
            return Ok(());
        };
        let name_bytes = name.as_bytes();
        if let Some(hidden) = name_bytes.strip_prefix(b".wh.") {
            let parent = self.parent_of(dirs, &raw, true)?;
            out.whiteouts += 1;
            if hidden == b".wh..opq" {
                return set_opaque(&parent);
            }
            if hidden.starts_with(b".wh.") || hidden.is_empty() {
                // Other AUFS metadata (`.wh..wh.plnk`, …): nothing to do in overlayfs.
                return Ok(());
            }
            let target = parent.join(OsStr::from_bytes(hidden));
            if fs::symlink_metadata(&target).is_ok() {
                // A whiteout hides lower layers only, never an entry of its own layer.
                return Ok(());
            }
            return make_whiteout(&target);
        }
        let parent = self.parent_of(dirs, &raw, true)?;
        let path = parent.join(name);
        let existing = fs::symlink_metadata(&path).ok();
        if kind.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    remove(&path)?;
                    fs::DirBuilder::new().mode(0o755).create(&path).map_err(|e| io_msg("creating", &path, e))?;
                }
                None => fs::DirBuilder::new().mode(0o755).create(&path).map_err(|e| io_msg("creating", &path, e))?,
            }
            return set_owner_mode(&path, uid, gid, mode);
        }
        if existing.is_some() {
            // A later entry replaces an earlier one, as when tar extracts.
            remove(&path)?;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                if size > budget.bytes {
                    return Err(format!(
                        "the image unpacks to more than {} bytes (the import limit)",
                        budget.max_bytes
                    ));
                }
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| io_msg("creating", &path, e))?;
                let copied = io::copy(&mut entry.take(size), &mut file)
                    .map_err(|e| format!("cannot read `{}` from the layer: {e}", show(&raw)))?;
                budget.bytes -= copied;
                out.bytes += copied;
                if let Some(t) = mtime {
                    let _ = file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
                }
                drop(file);
                set_owner_mode(&path, uid, gid, mode)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| format!("the symbolic link `{}` has no target", show(&raw)))?
                    .into_owned();
                if target.len() > MAX_PATH {
                    return Err(format!(
                        "the symbolic link `{}` has a target longer than {MAX_PATH} bytes",
                        show(&raw)
                    ));
                }
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| io_msg("creating the symbolic link", &path, e))?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(|e| io_msg("chown", &path, e))
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| format!("the hard link `{}` has no target", show(&raw)))?
                    .into_owned();
                let target_parts = components(&target)?;
                let Some((tname, tdirs)) = target_parts.split_last() else {
                    return Err(format!("the hard link `{}` points at the layer's root", show(&raw)));
                };
                let tpath = self.parent_of(tdirs, &target, false)?.join(tname);
                match fs::symlink_metadata(&tpath) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(format!(
                            "the hard link `{}` points at `{}`, which is not a file of the same layer",
                            show(&raw),
                            show(&target)
                        ));
                    }
                }
                // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                fs::hard_link(&tpath, &path).map_err(|e| io_msg("creating the hard link", &path, e))
            }
            tar::EntryType::Fifo => {
                let c = cpath(&path)?;
                // SAFETY: `c` is a valid NUL-terminated path.
                if unsafe { libc::mknod(c.as_ptr(), libc::S_IFIFO | 0o600, 0) } != 0 {
                    return Err(io_msg("creating the FIFO", &path, io::Error::last_os_error()));
                }
                set_owner_mode(&path, uid, gid, mode)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                out.skipped_devices += 1;
                Ok(())
            }
            // PAX/GNU metadata records are consumed by the reader; anything else carries no file.
            _ => Ok(()),
        }
    }
}

fn io_msg(what: &str, path: &Path, e: io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

fn cpath(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| format!("{} contains a NUL byte", path.display()))
}

fn remove(path: &Path) -> Result<(), String> {
    let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    // remove_dir_all never follows symbolic links, so it stays inside the layer.
    let r = if is_dir { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    r.map_err(|e| io_msg("replacing", path, e))
}

fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| io_msg("chown", path, e))?;
    // After chown, which clears set-id bits.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_msg("chmod", path, e))
}

/// An overlayfs whiteout: a 0/0 character device.
fn make_whiteout(path: &Path) -> Result<(), String> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) } != 0 {
        return Err(io_msg("creating the whiteout", path, io::Error::last_os_error()));
    }
    Ok(())
}

/// Marks a directory opaque: overlayfs shows none of the lower layers' entries in it.
fn set_opaque(dir: &Path) -> Result<(), String> {
    let c = cpath(dir)?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: valid NUL-terminated strings and a one-byte value.
    if unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) } != 0 {
        return Err(io_msg("marking opaque", dir, io::Error::last_os_error()));
    }
    Ok(())
}

/// A zstd stream of one or more frames (encoders may write several).
struct ZstdFrames<R: BufRead> {
    src: R,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(src: R) -> Self {
        ZstdFrames { src, dec: ruzstd::decoding::FrameDecoder::new(), in_frame: false }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                self.dec.reset(&mut self.src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                self.in_frame = true;
            }
            while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                let want = buf.len() - self.dec.can_collect();
                self.dec
                    .decode_blocks(&mut self.src, ruzstd::decoding::BlockDecodingStrategy::UptoBytes(want))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if !self.dec.is_finished() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "the zstd decoder made no progress"));
            }
            self.in_frame = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    const IDS_BASE: u32 = 2_000_000_000;

    fn ids() -> IdRange {
        IdRange::new(IDS_BASE, 65536).unwrap()
    }

    /// A tar entry with a raw name (hostile names included: `tar::Builder` would refuse them).
    struct E<'a> {
        name: &'a [u8],
        kind: tar::EntryType,
        data: &'a [u8],
        link: &'a [u8],
        mode: u32,
        uid: u64,
    }

    fn e<'a>(name: &'a str, kind: tar::EntryType) -> E<'a> {
        E { name: name.as_bytes(), kind, data: b"", link: b"", mode: 0o644, uid: 0 }
    }

    fn file<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
        E { data, ..e(name, tar::EntryType::Regular) }
    }

    fn link<'a>(name: &'a str, kind: tar::EntryType, target: &'a str) -> E<'a> {
        E { link: target.as_bytes(), ..e(name, kind) }
    }

    fn tar(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for en in entries {
            let mut h = tar::Header::new_gnu();
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..en.name.len()].copy_from_slice(en.name);
            gnu.linkname[..en.link.len()].copy_from_slice(en.link);
            h.set_entry_type(en.kind);
            h.set_size(en.data.len() as u64);
            h.set_mode(en.mode);
            h.set_uid(en.uid);
            h.set_gid(en.uid);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append(&h, en.data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack(bytes: &[u8], compression: Compression) -> (tempfile::TempDir, Result<Unpacked, String>) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let mut budget = Budget::new(1 << 20, 1000);
        let r = unpack_layer(bytes, compression, &dest, ids(), &mut budget);
        (dir, r)
    }

    #[test]
    fn files_links_owners_and_whiteouts_become_an_overlay_layer() {
        use tar::EntryType as T;
        let bytes = tar(&[
            E { mode: 0o700, uid: 1000, ..e("home/user/", T::Directory) },
            E { uid: 1000, mode: 0o600, ..file("home/user/notes", b"hello") },
            file("/etc/os-release", b"ID=test\n"),
            link("bin/sh", T::Symlink, "busybox"),
            link("bin/hard", T::Link, "etc/os-release"),
            e("run/fifo", T::Fifo),
            e("dev/sda", T::Block),
            e("etc/.wh.passwd", T::Regular),
            e("var/cache/.wh..wh..opq", T::Regular),
            // A whiteout never hides an entry of its own layer.
            file("etc/keep", b"k"),
            e("etc/.wh.keep", T::Regular),
            // A huge uid is beyond the range: it becomes the range's root.
            E { uid: 4_000_000_000, ..file("odd", b"") },
        ]);
        let (dir, r) = unpack(&bytes, Compression::None);
        let out = r.unwrap();
        let l = dir.path().join("layer");
        assert_eq!(out.skipped_devices, 1);
        assert_eq!(out.whiteouts, 3);
        assert_eq!(fs::read(l.join("home/user/notes")).unwrap(), b"hello");
        let m = fs::metadata(l.join("home/user/notes")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (IDS_BASE + 1000, IDS_BASE + 1000, 0o600));
        assert_eq!(fs::metadata(l.join("home/user")).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(fs::metadata(l.join("home")).unwrap().uid(), IDS_BASE, "made parents belong to the range's root");
        assert_eq!(
            fs::read(l.join("etc/os-release")).unwrap(),
            b"ID=test\n",
            "absolute paths are read from the layer root"
        );
        assert_eq!(fs::read_link(l.join("bin/sh")).unwrap(), Path::new("busybox"));
        assert_eq!(
            fs::metadata(l.join("bin/hard")).unwrap().ino(),
            fs::metadata(l.join("etc/os-release")).unwrap().ino()
        );
        assert!(fs::symlink_metadata(l.join("run/fifo")).unwrap().file_type().is_fifo());
        assert!(fs::symlink_metadata(l.join("dev/sda")).is_err(), "device nodes are skipped");
        let wh = fs::symlink_metadata(l.join("etc/passwd")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "an overlay whiteout");
        assert_eq!(xattr(&l.join("var/cache")), Some(b"y".to_vec()), "an opaque directory");
        assert_eq!(fs::read(l.join("etc/keep")).unwrap(), b"k");
        assert!(fs::symlink_metadata(l.join("etc/.wh.passwd")).is_err());
        assert_eq!(fs::metadata(l.join("odd")).unwrap().uid(), IDS_BASE);
    }

    fn xattr(p: &Path) -> Option<Vec<u8>> {
        let c = cpath(p).unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: valid path and buffer.
        let n = unsafe {
            libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        (n >= 0).then(|| buf[..n as usize].to_vec())
    }

    #[test]
    fn hostile_paths_never_leave_the_layer() {
        use tar::EntryType as T;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("`..`", tar(&[file("../escaped", b"x")])),
            ("`..`", tar(&[file("a/../../escaped", b"x")])),
            ("symbolic link", tar(&[link("sneaky", T::Symlink, "/tmp"), file("sneaky/escaped", b"x")])),
            ("symbolic link", tar(&[link("up", T::Symlink, ".."), file("up/escaped", b"x")])),
            ("`..`", tar(&[link("h", T::Link, "../../../etc/passwd")])),
            ("symbolic link", tar(&[link("d", T::Symlink, "/etc"), link("h", T::Link, "d/passwd")])),
            ("not a file of the same layer", tar(&[link("h", T::Link, "etc/passwd")])),
            ("not a directory", tar(&[file("f", b"x"), file("f/g", b"y")])),
        ];
        for (why, bytes) in cases {
            let (dir, r) = unpack(&bytes, Compression::None);
            let err = r.unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
            assert!(!dir.path().join("escaped").exists());
        }
        assert!(!Path::new("/tmp/escaped").exists());
        // A symlink may point anywhere: it is only followed inside the sandbox.
        let (dir, r) = unpack(&tar(&[link("etc/passwd", T::Symlink, "/etc/shadow")]), Compression::None);
        r.unwrap();
        assert_eq!(fs::read_link(dir.path().join("layer/etc/passwd")).unwrap(), Path::new("/etc/shadow"));
    }

    #[test]
    fn sizes_and_entry_counts_are_bounded() {
        let big = vec![0u8; 4096];
        let bytes = tar(&[file("a", &big), file("b", &big)]);
        let dir = tempfile::tempdir().unwrap();
        let mut budget = Budget::new(6000, 1000);
        let err = unpack_layer(&bytes[..], Compression::None, dir.path(), ids(), &mut budget).unwrap_err();
        assert!(err.contains("more than 6000 bytes"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let mut budget = Budget::new(1 << 20, 1);
        let err = unpack_layer(&bytes[..], Compression::None, dir.path(), ids(), &mut budget).unwrap_err();
        assert!(err.contains("more than 1 files"), "{err}");
        // A compressed bomb is bounded the same way: 8 MiB of zeros, a few KiB gzipped.
        let zeros = vec![0u8; 8 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &tar(&[file("zeros", &zeros)])).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 64 << 10);
        let (_d, r) = unpack(&gz, Compression::Gzip);
        assert!(r.unwrap_err().contains("more than 1048576 bytes"));
    }

    #[test]
    fn gzip_and_multi_frame_zstd_layers_unpack() {
        let bytes = tar(&[file("a", b"alpha"), file("b", b"beta")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        let (dir, r) = unpack(&gz.finish().unwrap(), Compression::Gzip);
        assert_eq!(r.unwrap().entries, 2);
        assert_eq!(fs::read(dir.path().join("layer/b")).unwrap(), b"beta");

        // Two frames, split in the middle of the archive.
        let (x, y) = bytes.split_at(700);
        let mut zst = ruzstd::encoding::compress_to_vec(x, ruzstd::encoding::CompressionLevel::Fastest);
        zst.extend(ruzstd::encoding::compress_to_vec(y, ruzstd::encoding::CompressionLevel::Fastest));
        let (dir, r) = unpack(&zst, Compression::Zstd);
        assert_eq!(r.unwrap().entries, 2);
        assert_eq!(fs::read(dir.path().join("layer/a")).unwrap(), b"alpha");

        // Content that isn't what the media type says fails with a message.
        let (_d, r) = unpack(&bytes, Compression::Zstd);
        assert!(r.unwrap_err().contains("cannot read the layer archive"));
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_media_type("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"), None);
        assert_eq!(Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+bzip2"), None);
    }
}
