//! The content-addressed blob store: `<data>/blobs/<sha256>`.
//!
//! Content is streamed into a temp file next to the blobs (same filesystem) while its SHA-256
//! is computed, fsynced, then renamed to its hash: a blob path either holds the complete,
//! verified content or does not exist. Failed or abandoned uploads delete their temp file;
//! temp files left by a crash are removed by [`Store::open`]. The same content stored twice
//! is one blob.

use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use contree_core::{Error, Result, validate};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::{Store, fsync_dir};

/// Temp file names start with this; blob names are hex digits, so the two never clash.
const UPLOAD_PREFIX: &str = ".upload-";

/// Copy buffer size: large enough that syscalls don't dominate, small enough for a stack.
const CHUNK: usize = 64 * 1024;

/// Normalizes a SHA-256 hex digest to lowercase, refusing anything else.
pub(super) fn normalize_sha(sha256: &str) -> Result<String> {
    validate::sha256("sha256", sha256)?;
    Ok(sha256.to_ascii_lowercase())
}

pub(super) fn remove_stale_uploads(blobs_dir: &Path) -> Result<()> {
    let read_err = |e| Error::io(format!("cannot list {}", blobs_dir.display()), e);
    for entry in fs::read_dir(blobs_dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(UPLOAD_PREFIX)) {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("cannot remove stale upload {}", entry.path().display()), e));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// An upload in progress: write the content (it implements [`io::Write`], or use
/// [`BlobWriter::write_chunk`]), then [`BlobWriter::finish`]. Dropping it unfinished deletes
/// the partial content.
///
/// It holds no lock on the store, so an async handler can feed it body chunks as they arrive
/// (each write is one small blocking file write).
pub struct BlobWriter {
    file: BufWriter<NamedTempFile>,
    hasher: Sha256,
    size: u64,
    blobs_dir: PathBuf,
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter").field("size", &self.size).finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// Appends `data` to the upload.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<()> {
        self.write_all(data).map_err(|e| Error::io("cannot write upload to the blob store", e))
    }

    /// How many bytes were written so far.
    #[cfg(test)]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Completes the upload and returns the content's SHA-256 (lowercase hex) and size. With
    /// `expected_sha256`, content that hashes differently is refused (`InvalidArgument` naming
    /// `sha256`) and not kept. When a blob with this content exists, it is kept as is.
    pub fn finish(self, expected_sha256: Option<&str>) -> Result<(String, u64)> {
        let expected = expected_sha256.map(normalize_sha).transpose()?;
        let sha = hex::encode(self.hasher.finalize());
        if let Some(expected) = expected
            && expected != sha
        {
            // Dropping the temp file deletes it: a mismatch leaves nothing behind.
            return Err(Error::invalid_argument(
                "sha256",
                format!("the content's SHA-256 is {sha}, not the expected {expected}"),
            ));
        }
        let file =
            self.file.into_inner().map_err(|e| Error::io("cannot write upload to the blob store", e.into_error()))?;
        let dest = self.blobs_dir.join(&sha);
        if dest.exists() {
            return Ok((sha, self.size));
        }
        // Data first, then the name: after a crash the blob is either complete or absent.
        file.as_file().sync_data().map_err(|e| Error::io("cannot sync upload to disk", e))?;
        // A concurrent upload of the same content may have won the race; renaming over it is
        // harmless since the content is identical.
        file.persist(&dest).map_err(|e| Error::io(format!("cannot store blob {}", dest.display()), e.error))?;
        fsync_dir(&self.blobs_dir)?;
        Ok((sha, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Store {
    /// Starts an upload into the blob store. See [`BlobWriter`].
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let file = tempfile::Builder::new()
            .prefix(UPLOAD_PREFIX)
            .tempfile_in(self.blobs_dir())
            .map_err(|e| Error::io("cannot create an upload file in the blob store", e))?;
        Ok(BlobWriter {
            file: BufWriter::with_capacity(CHUNK, file),
            hasher: Sha256::new(),
            size: 0,
            blobs_dir: self.blobs_dir().to_path_buf(),
        })
    }

    /// Streams `reader` into the blob store and returns the content's SHA-256 (lowercase hex)
    /// and size. Blocking I/O proportional to the content: call it from a blocking thread.
    pub fn put_blob(&self, reader: impl Read) -> Result<(String, u64)> {
        self.put_blob_inner(reader, None)
    }

    /// Like [`put_blob`](Self::put_blob), but refuses content whose SHA-256 is not
    /// `expected_sha256` (`InvalidArgument` naming `sha256`), keeping nothing of it.
    #[cfg(test)]
    pub fn put_blob_expect(&self, reader: impl Read, expected_sha256: &str) -> Result<(String, u64)> {
        // Refuse a malformed digest before reading anything.
        normalize_sha(expected_sha256)?;
        self.put_blob_inner(reader, Some(expected_sha256))
    }

    fn put_blob_inner(&self, mut reader: impl Read, expected: Option<&str>) -> Result<(String, u64)> {
        let mut writer = self.blob_writer()?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("cannot read the content to store", e)),
            };
            writer.write_chunk(&buf[..n])?;
        }
        writer.finish(expected)
    }

    /// `<data>/blobs/<sha256>` (lowercased). `InvalidArgument` unless `sha256` is 64 hex
    /// digits, so the path never leaves the blobs directory. The blob may not exist.
    pub fn blob_path(&self, sha256: &str) -> Result<PathBuf> {
        Ok(self.blobs_dir().join(normalize_sha(sha256)?))
    }

    /// Whether the blob with this SHA-256 is stored.
    #[cfg(test)]
    pub fn has_blob(&self, sha256: &str) -> Result<bool> {
        Ok(self.blob_path(sha256)?.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn chunked_upload_hashes_the_whole_content() {
        let (_dir, store) = store();
        let mut upload = store.blob_writer().unwrap();
        upload.write_chunk(b"hello ").unwrap();
        upload.write_chunk(b"world").unwrap();
        let (sha, size) = upload.finish(None).unwrap();
        assert_eq!(size, 11);
        assert_eq!(sha, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(fs::read(store.blob_path(&sha).unwrap()).unwrap(), b"hello world");
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn blob_dir_entries(store: &Store) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(store.blobs_dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    /// Yields its data in small pieces, then fails if asked to.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        fail_at_end: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return if self.fail_at_end { Err(io::Error::other("connection reset")) } else { Ok(0) };
            }
            let n = buf.len().min(7).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn streams_content_under_its_hash() {
        let (_d, store) = store();
        let (sha, size) = store.put_blob(&b"hello"[..]).unwrap();
        assert_eq!(sha, HELLO_SHA);
        assert_eq!(size, 5);
        assert_eq!(fs::read(store.blob_path(&sha).unwrap()).unwrap(), b"hello");
        assert!(store.has_blob(&sha).unwrap());
        assert_eq!(blob_dir_entries(&store), vec![HELLO_SHA.to_owned()]);

        // Larger than one buffer, delivered in odd-sized pieces.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expected = hex::encode(Sha256::digest(&data));
        let (sha, size) = store.put_blob(Trickle { data: data.clone(), pos: 0, fail_at_end: false }).unwrap();
        assert_eq!(sha, expected);
        assert_eq!(size, data.len() as u64);
        assert_eq!(fs::read(store.blob_path(&sha).unwrap()).unwrap(), data);

        let (sha, size) = store.put_blob(io::empty()).unwrap();
        assert_eq!(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(size, 0);
    }

    #[test]
    fn same_content_is_one_blob() {
        let (_d, store) = store();
        let first = store.put_blob(&b"hello"[..]).unwrap();
        let second = store.put_blob_expect(&b"hello"[..], &HELLO_SHA.to_uppercase()).unwrap();
        assert_eq!(first, second);
        assert_eq!(blob_dir_entries(&store), vec![HELLO_SHA.to_owned()]);
    }

    #[test]
    fn mismatch_is_refused_and_leaves_nothing() {
        let (_d, store) = store();
        let wrong = "0".repeat(64);
        let err = store.put_blob_expect(&b"hello"[..], &wrong).unwrap_err();
        assert_eq!(err.argument(), Some("sha256"));
        assert!(err.to_string().contains(HELLO_SHA), "{err}");
        assert!(blob_dir_entries(&store).is_empty());
        assert!(!store.has_blob(&wrong).unwrap());

        // A malformed digest is refused before anything is read.
        let err = store.put_blob_expect(&b"hello"[..], "abc").unwrap_err();
        assert_eq!(err.argument(), Some("sha256"));
        assert!(blob_dir_entries(&store).is_empty());

        let ok = store.put_blob_expect(&b"hello"[..], HELLO_SHA).unwrap();
        assert_eq!(ok, (HELLO_SHA.to_owned(), 5));
    }

    #[test]
    fn failed_or_abandoned_uploads_leave_nothing() {
        let (_d, store) = store();
        let err = store.put_blob(Trickle { data: vec![1; 100], pos: 0, fail_at_end: true }).unwrap_err();
        assert!(err.is_io());
        assert!(blob_dir_entries(&store).is_empty());

        let mut w = store.blob_writer().unwrap();
        w.write_chunk(b"partial").unwrap();
        assert_eq!(w.size(), 7);
        assert_eq!(blob_dir_entries(&store).len(), 1); // the temp file
        drop(w);
        assert!(blob_dir_entries(&store).is_empty());
    }

    #[test]
    fn stale_uploads_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_blob(&b"hello"[..]).unwrap();
        let w = store.blob_writer().unwrap();
        // Simulate a crash: the temp file outlives its writer.
        std::mem::forget(w);
        assert_eq!(blob_dir_entries(&store).len(), 2);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(blob_dir_entries(&store), vec![HELLO_SHA.to_owned()]);
    }

    #[test]
    fn blob_paths_are_confined() {
        let (_d, store) = store();
        assert_eq!(store.blob_path(&HELLO_SHA.to_uppercase()).unwrap(), store.blobs_dir().join(HELLO_SHA));
        for bad in ["", "../../etc/passwd", &"g".repeat(64), &"a".repeat(63)] {
            assert_eq!(store.blob_path(bad).unwrap_err().argument(), Some("sha256"));
        }
    }
}
