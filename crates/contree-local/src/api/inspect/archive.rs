//! Streaming a file or a directory of an image as a POSIX PAX tar archive.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use axum::body::Bytes;
use tar::{EntryType, Header};
use tokio::sync::mpsc;

use super::rootfs::{Node, RootFs};

/// Size of the chunks handed to the response body.
const CHUNK: usize = 64 * 1024;

/// A `Write` that hands full chunks to the async side; a gone client shows up as
/// `BrokenPipe`, which stops the walk.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Reports a failure to the client by ending the body with an error.
    pub fn fail(&mut self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Writes `root` (a resolved file or directory) as a PAX archive. A directory's entries are
/// named below its own name (`/etc` gives `etc/hosts`; `/` gives top-level names); a file
/// gives one entry named after it.
pub(crate) fn write_archive<W: Write>(fs: &RootFs, root: &Node, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    let base = root.name().as_bytes().to_vec();
    if root.is_dir() {
        if !base.is_empty() {
            append(&mut b, fs, root, &base)?;
        }
        walk(&mut b, fs, root, &base)?;
    } else {
        append(&mut b, fs, root, &base)?;
    }
    b.into_inner()
}

fn walk<W: Write>(b: &mut tar::Builder<W>, fs: &RootFs, dir: &Node, prefix: &[u8]) -> io::Result<()> {
    let entries = fs.list(dir).map_err(to_io)?;
    for child in entries {
        let mut name = prefix.to_vec();
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(child.name().as_bytes());
        append(b, fs, &child, &name)?;
        if child.is_dir() {
            walk(b, fs, &child, &name)?;
        }
    }
    Ok(())
}

fn to_io(e: super::rootfs::ResolveError) -> io::Error {
    match e {
        super::rootfs::ResolveError::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// Appends one entry, preceded by a PAX extended header when its path or link target does
/// not fit the ustar fields.
fn append<W: Write>(b: &mut tar::Builder<W>, fs: &RootFs, node: &Node, name: &[u8]) -> io::Result<()> {
    let meta = &node.meta;
    let ft = meta.file_type();
    let mut h = Header::new_ustar();
    h.set_mode(meta.mode() & 0o7777);
    let (uid, gid) = fs.owner(meta);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    let mut link: Option<Vec<u8>> = None;
    let kind = if ft.is_dir() {
        EntryType::Directory
    } else if ft.is_file() {
        h.set_size(meta.len());
        EntryType::Regular
    } else if ft.is_symlink() {
        link = Some(fs.read_link(node)?.as_os_str().as_bytes().to_vec());
        EntryType::Symlink
    } else if ft.is_char_device() || ft.is_block_device() {
        let rdev = meta.rdev();
        h.set_device_major(libc::major(rdev))?;
        h.set_device_minor(libc::minor(rdev))?;
        if ft.is_char_device() { EntryType::Char } else { EntryType::Block }
    } else if ft.is_fifo() {
        EntryType::Fifo
    } else {
        // Sockets can't be archived.
        return Ok(());
    };
    h.set_entry_type(kind);

    let mut pax: Vec<(&str, &[u8])> = Vec::new();
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
    if h.set_path(path).is_err() {
        pax.push(("path", name));
        set_raw(&mut h.as_old_mut().name, name);
    }
    if let Some(l) = &link
        && h.set_link_name(std::path::Path::new(std::ffi::OsStr::from_bytes(l))).is_err()
    {
        pax.push(("linkpath", l));
        set_raw(&mut h.as_old_mut().linkname, l);
    }
    if !pax.is_empty() {
        let data = pax_records(&pax);
        let mut ph = Header::new_ustar();
        ph.set_entry_type(EntryType::XHeader);
        ph.set_path("PaxHeader")?;
        ph.set_mode(0o644);
        ph.set_size(data.len() as u64);
        ph.set_cksum();
        b.append(&ph, data.as_slice())?;
    }
    h.set_cksum();
    if kind == EntryType::Regular {
        let file = fs.open_file(node)?;
        // Never send more than the header announced, even if the file grew.
        b.append(&h, file.take(meta.len()))
    } else {
        b.append(&h, io::empty())
    }
}

fn set_raw(field: &mut [u8], value: &[u8]) {
    let n = field.len().min(value.len());
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
}

/// PAX records: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_records(items: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in items {
        let body = k.len() + v.len() + 3; // space, '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::rootfs::Layer;
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let r = pax_records(&[("path", b"abc")]);
        assert_eq!(r, b"12 path=abc\n");
        let long = vec![b'x'; 95];
        let r = pax_records(&[("path", &long)]);
        let len: usize =
            std::str::from_utf8(&r[..r.iter().position(|b| *b == b' ').unwrap()]).unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn archives_a_directory_with_long_names_and_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("layer");
        let long_name = "n".repeat(150);
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(root.join("etc/sub").join(&long_name), "long").unwrap();
        std::os::unix::fs::symlink("/etc/hosts", root.join("etc/link")).unwrap();
        let fs = RootFs::new(vec![Layer::at_root(root)]);
        let node = fs.resolve("/etc", true).unwrap();
        let bytes = write_archive(&fs, &node, Vec::new()).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut content = String::new();
            if e.header().entry_type() == EntryType::Regular {
                e.read_to_string(&mut content).unwrap();
            }
            if e.header().entry_type() == EntryType::Symlink {
                content = e.link_name().unwrap().unwrap().to_string_lossy().into_owned();
            }
            seen.push((path, content));
        }
        let expected = vec![
            ("etc".to_owned(), String::new()),
            ("etc/hosts".to_owned(), "127.0.0.1 localhost\n".to_owned()),
            ("etc/link".to_owned(), "/etc/hosts".to_owned()),
            ("etc/sub".to_owned(), String::new()),
            (format!("etc/sub/{long_name}"), "long".to_owned()),
        ];
        assert_eq!(seen, expected);
    }
}
