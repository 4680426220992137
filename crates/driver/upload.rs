//! The pieces of a pipelined file upload that are the same in both flavors: a hasher thread,
//! a body reader thread, and the flag that stops them.
//!
//! A large file is hashed and posted at the same time (see `Files::upload`): the upload
//! takes about max(hash, send) instead of their sum, and when the hash finds the content
//! already on the server the POST is abandoned, so a re-upload costs about one hash pass.
//!
//! Why two readers and not one read feeding both: the hash has to run ahead of the body to
//! stop a re-upload early. On loopback the send is slower than SHA-256 (the server hashes and
//! writes too), so a hasher fed by the body's bounded pipe would move at the send's pace and
//! a re-upload would cost a whole POST. Reading a file twice costs one more copy out of the
//! page cache (about a tenth of the hash's time), and keeps memory flat without buffering
//! the gap between the two.
//!
//! Everything here is plain threads and bounded channels: memory stays at a few chunks
//! whatever the file size, and nothing depends on which flavor runs it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use contree_core::{Error, Result};
use sha2::{Digest, Sha256};

/// Files at least this large are hashed and posted at the same time; smaller ones are hashed
/// first and posted only when the server lacks them.
///
/// Below a few MiB the hash takes a few milliseconds, about one round trip, so pipelining
/// would win at most that much while posting content the server may already have (and
/// starting two threads). At 4 MiB the hash costs ~4 ms at SHA-NI speed, the same order as
/// the lookup's round trip to a cloud server, so from there on the overlap is worth the
/// occasional wasted partial POST.
pub(crate) const PIPELINE_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// The largest read of a pipelined upload, whatever `file_upload_chunk_size` says, so a huge
/// setting cannot multiply the memory in flight.
const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// How many bytes the body reader may read ahead of the network.
const BODY_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Stops a pipelined upload's threads (and, in the blocking flavor, its POST body). Cloning
/// shares the flag.
#[derive(Debug, Clone, Default)]
pub(crate) struct Abort(Arc<AtomicBool>);

impl Abort {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Sets the flag when dropped, so a cancelled upload (its future dropped, or an early
/// return) stops its threads.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) Abort);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// A file POST body that is rebuilt for every attempt: each attempt starts its own reader
/// thread from the first byte, so a retried POST (connect failure, 429) resends the whole
/// file.
#[derive(Debug, Clone)]
pub(crate) struct FileStream {
    pub(crate) path: PathBuf,
    pub(crate) chunk: usize,
    pub(crate) abort: Abort,
}

/// What the body reader thread sends: chunks, then an empty chunk at the clean end. A
/// channel that closes without that empty chunk means the read failed or was abandoned, and
/// the body must fail rather than end: a chunked body that just stopped would look complete
/// to the server.
pub(crate) type BodyChunk = std::io::Result<Bytes>;

impl FileStream {
    /// Opens the file (an error here is the caller's: the attempt is not retried) and starts
    /// the thread that reads it in chunks into a bounded channel.
    pub(crate) fn start(&self) -> Result<tokio::sync::mpsc::Receiver<BodyChunk>> {
        let mut file = std::fs::File::open(&self.path)
            .map_err(|e| Error::io(format!("cannot open {}", self.path.display()), e))?;
        let chunk = self.chunk.clamp(4096, MAX_CHUNK);
        let (tx, rx) = tokio::sync::mpsc::channel::<BodyChunk>((BODY_BUFFER_BYTES / chunk).clamp(2, 64));
        let abort = self.abort.clone();
        std::thread::Builder::new()
            .name("contree-upload-read".into())
            .spawn(move || {
                loop {
                    if abort.is_set() {
                        return;
                    }
                    let piece = match read_chunk(&mut file, chunk) {
                        Ok(piece) => piece,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    };
                    let done = piece.is_empty();
                    // Progress: one `advance(piece.len())` per chunk goes here, the single
                    // place every pipelined body chunk passes in both flavors (before the
                    // send, so a retried attempt starts its count again from zero).
                    // A closed channel: the request was dropped (done, aborted or failed).
                    if tx.blocking_send(Ok(piece)).is_err() || done {
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("cannot start the upload reader thread", e))?;
        Ok(rx)
    }
}

/// Up to `chunk` bytes read into a buffer of their own (handed on without a copy); empty at
/// the end of the file.
fn read_chunk(file: &mut std::fs::File, chunk: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(chunk);
    let mut filled = 0;
    while filled < chunk {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

/// SHA-256 (lowercase hex) and size of a file, read in `chunk`-sized pieces on the calling
/// thread; stops with an error once `abort` is set.
pub(crate) fn hash_file(path: &Path, chunk: usize, abort: &Abort) -> Result<(String, u64)> {
    let io = |e| Error::io(format!("cannot read {}", path.display()), e);
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; chunk.clamp(4096, MAX_CHUNK)];
    let mut size = 0u64;
    loop {
        if abort.is_set() {
            return Err(Error::io("the upload was abandoned", std::io::Error::other("aborted")));
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn the_body_reader_sends_the_whole_file_then_an_empty_end_marker() {
        let content: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_dir, path) = file_with(&content);
        let stream = FileStream { path, chunk: 4096, abort: Abort::default() };
        let mut rx = stream.start().unwrap();
        let mut got = Vec::new();
        let mut ended = false;
        while let Some(piece) = rx.blocking_recv() {
            let piece = piece.unwrap();
            assert!(!ended, "nothing may follow the end marker");
            if piece.is_empty() {
                ended = true;
            } else {
                assert!(piece.len() <= 4096);
                got.extend_from_slice(&piece);
            }
        }
        assert!(ended, "a clean end is marked");
        assert_eq!(got, content);
    }

    #[test]
    fn an_aborted_body_reader_closes_its_channel_without_the_end_marker() {
        let (_dir, path) = file_with(&vec![1u8; 2_000_000]);
        let abort = Abort::default();
        let stream = FileStream { path, chunk: 4096, abort: abort.clone() };
        let mut rx = stream.start().unwrap();
        // The channel holds at most 64 chunks: the thread is now blocked on a full channel.
        let first = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(first.len(), 4096);
        abort.set();
        let mut seen_end = false;
        while let Some(piece) = rx.blocking_recv() {
            seen_end |= piece.unwrap().is_empty();
        }
        assert!(!seen_end, "an abandoned body must not look complete");
    }

    #[test]
    fn the_hasher_matches_sha256_and_stops_when_aborted() {
        let content = b"hello contree\n".repeat(1000);
        let (_dir, path) = file_with(&content);
        let (sha, size) = hash_file(&path, 4096, &Abort::default()).unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(&content)));
        assert_eq!(size, content.len() as u64);
        let abort = Abort::default();
        abort.set();
        assert!(hash_file(&path, 4096, &abort).is_err());
    }
}
