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
                Err(e) => return Err(format!("the entry `{}`: {}", show(raw), e)),
            }
        }
        Ok(dir)
    }

    fn place<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, budget: &mut Budget, out: &mut Unpacked) -> Result<(), String> {
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
                    return Err(format!("the symbolic link `{}` has a target longer than {MAX_PATH} bytes", show(&raw)));
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
