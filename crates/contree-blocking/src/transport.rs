//! The blocking transport shim: the only place that knows this flavor is blocking.
//!
//! Mirrors `contree-async/src/transport.rs` item for item.
//!
//! Sharp edge: `reqwest::blocking` panics when called inside a tokio runtime. Call the
//! blocking client from plain threads (or `tokio::task::spawn_blocking`).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use contree_core::{Error, Progress, Result};
use sha2::{Digest, Sha256};

pub(crate) use reqwest::blocking::{
    Body, Client as HttpClient, ClientBuilder as HttpClientBuilder, RequestBuilder, Response,
};

/// How long a request may take. Blocking reqwest's timeout already applies per read, so a
/// streamed body simply gets its idle limit here.
pub(crate) fn apply_timeout(req: RequestBuilder, timeout: crate::driver::http::Timeout) -> RequestBuilder {
    match timeout {
        crate::driver::http::Timeout::Unary(d) => req.timeout(d),
        crate::driver::http::Timeout::Streaming { idle } => req.timeout(idle),
    }
}

/// `$call` run inside `$span`, entered around it: in this flavor a call is done when it
/// returns (the async flavor's twin instruments the future instead).
macro_rules! instrumented {
    ($span:expr, $call:expr) => {{
        let span = $span;
        let _entered = span.enter();
        $call
    }};
}
pub(crate) use instrumented;

/// Any byte source a user can hand us: `std::io::Read`.
pub type DynReadSync = Box<dyn Read + Send + 'static>;
/// Any byte sink a user can hand us: `std::io::Write`.
pub type DynWriteSync = Box<dyn Write + Send + 'static>;
// The driver's neutral names for this flavor's public ones (see `crate::flavor`).
pub(crate) type DynRead = DynReadSync;
pub(crate) type DynWrite = DynWriteSync;
pub(crate) type PipeReader = PipeReaderSync;

pub(crate) fn sleep(d: Duration) {
    std::thread::sleep(d)
}

/// Runs `work`, and gives its value only if it came within `limit`; `None` otherwise, as the
/// async flavor does when it drops a late future.
///
/// A blocking call cannot be pre-empted, so `limit` has to be enforced by the work itself:
/// every call made under it carries the same deadline (`Call::deadline`), which shortens each
/// attempt's socket timeout and forbids pauses that end past it. This check only makes a
/// value that still arrived late count as the timeout it is, the same in both flavors.
pub(crate) fn within<T>(limit: Duration, work: impl FnOnce() -> T) -> Option<T> {
    let started = std::time::Instant::now();
    let value = work();
    (started.elapsed() <= limit).then_some(value)
}

/// Next body chunk, or `None` at the end. A broken body is a transport error (the request
/// was sent), or a timeout. `idle` is the limit the request was sent with (blocking reqwest
/// applies it to every read); it only names the limit in the error.
pub(crate) fn next_chunk(resp: &mut Response, idle: Duration) -> Result<Option<Bytes>> {
    let mut buf = vec![0u8; 64 * 1024];
    Ok(read_some(resp, &mut buf, idle)?.map(|n| {
        if n >= buf.len() / 2 {
            buf.truncate(n);
            Bytes::from(buf)
        } else {
            // A short read would otherwise keep the whole 64 KiB allocation alive.
            Bytes::copy_from_slice(&buf[..n])
        }
    }))
}

/// Reads what is there into `buf`: `Some(n)` bytes, or `None` at the end of the body.
fn read_some(resp: &mut Response, buf: &mut [u8], idle: Duration) -> Result<Option<usize>> {
    let silent = || {
        if idle.is_zero() {
            "the server sent no data in time".to_string()
        } else {
            format!("the server sent no data for {:.1}s", idle.as_secs_f64())
        }
    };
    loop {
        match resp.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(Error::timeout(silent())),
            Err(e) => {
                // reqwest::blocking wraps its own errors in io::Error; look inside so a read
                // timeout is classified the same way in both flavors.
                let timed_out = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                    .is_some_and(reqwest::Error::is_timeout);
                return Err(if timed_out { Error::timeout(silent()) } else { Error::transport(true, e) });
            }
        }
    }
}

/// An event stream's reads: frames are small, and a client following a thousand runs has a
/// thousand reader threads blocked in a read, each holding its buffer.
const EVENT_READ_BUFFER: usize = 8 * 1024;

/// The event reader thread only waits on reqwest's channel and copies bytes: a small stack
/// is plenty (the default is 2 MiB of address space per thread).
const EVENT_READER_STACK: usize = 256 * 1024;

/// An event stream's body, read with a bound that may shrink from one read to the next
/// (the caller's deadline comes closer).
///
/// `reqwest::blocking` fixes one timeout per response, for every read. A reader thread feeds
/// the chunks through a channel so each read can wait for its own bound instead; the thread
/// ends when the body ends, when its own timeout fires, or at its next chunk once this
/// handle is dropped.
pub(crate) struct EventBody {
    rx: std::sync::mpsc::Receiver<Result<Option<Bytes>>>,
}

/// Starts the reader thread of an event stream's response.
pub(crate) fn event_body(mut resp: Response) -> EventBody {
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    let spawned =
        std::thread::Builder::new().name("contree-events".into()).stack_size(EVENT_READER_STACK).spawn(move || {
            let mut buf = vec![0u8; EVENT_READ_BUFFER];
            loop {
                let chunk = read_some(&mut resp, &mut buf, Duration::ZERO)
                    .map(|n| n.map(|n| Bytes::copy_from_slice(&buf[..n])));
                let more = matches!(chunk, Ok(Some(_)));
                if tx.send(chunk).is_err() || !more {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        // Without the thread the channel is closed: the first read reports it and the
        // follower reconnects.
        tracing::warn!(error = %e, "could not start the event stream reader thread");
    }
    EventBody { rx }
}

/// An event stream that delivered its last event. Its reader thread reads on to the body's
/// end before it notices the handle is gone, so an HTTP/1.1 connection goes back to the pool.
pub(crate) fn finish_event_body(body: EventBody) {
    drop(body);
}

/// The next chunk of an event stream, or `None` at its end; a Timeout error after `idle`.
pub(crate) fn next_event_chunk(body: &mut EventBody, idle: Duration) -> Result<Option<Bytes>> {
    use std::sync::mpsc::RecvTimeoutError;
    match body.rx.recv_timeout(idle) {
        Ok(chunk) => chunk,
        Err(RecvTimeoutError::Timeout) => {
            Err(Error::timeout(format!("the event stream sent nothing for {:.1}s", idle.as_secs_f64())))
        }
        Err(RecvTimeoutError::Disconnected) => Err(Error::transport(true, "the event stream reader stopped")),
    }
}

/// A streamed request body over an open file: memory stays flat whatever the size. With a
/// `progress`, each read is counted as it is handed to the connection.
pub(crate) fn file_body(path: &Path, progress: Option<&Progress>) -> Result<Body> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    Ok(match progress {
        None => Body::new(file),
        Some(p) => Body::new(counted(file, p.clone())),
    })
}

/// Bytes in memory as a body whose reads are counted by `progress` as they are sent.
pub(crate) fn bytes_body(bytes: Bytes, progress: &Progress) -> Body {
    let len = bytes.len() as u64;
    Body::sized(counted(std::io::Cursor::new(bytes), progress.clone()), len)
}

/// Counts what is read from a body reader: one `advance_to` per read (this attempt's position,
/// so a resent body is counted only past the furthest point an earlier attempt reached). Wrap
/// any upload body reader in it; build a fresh one per attempt.
pub(crate) fn counted<R: Read>(inner: R, progress: Progress) -> Counted<R> {
    Counted { inner, progress, sent: 0 }
}

/// A body reader counted by [`counted`].
pub(crate) struct Counted<R> {
    inner: R,
    progress: Progress,
    sent: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        self.progress.advance_to(self.sent);
        Ok(n)
    }
}

/// The request body of a pipelined upload: chunks from the reader thread that
/// [`FileStream::start`](crate::driver::upload::FileStream::start) starts for this attempt.
///
/// `reqwest::blocking` reads a body on the calling thread, which is then inside `send`: it
/// cannot drop the request to abandon it. So a read fails once the abort flag is set, and
/// reqwest abandons the request; a thread that stops without its end marker fails the body
/// too, so the server never takes a cut file for a whole one.
pub(crate) fn stream_body(stream: &crate::driver::upload::FileStream, progress: Option<&Progress>) -> Result<Body> {
    let rx = stream.start()?;
    let body = StreamBody { rx, current: Bytes::new(), ended: false, abort: stream.abort.clone() };
    Ok(match progress {
        None => Body::new(body),
        Some(p) => Body::new(counted(body, p.clone())),
    })
}

struct StreamBody {
    rx: tokio::sync::mpsc::Receiver<crate::driver::upload::BodyChunk>,
    current: Bytes,
    ended: bool,
    abort: crate::driver::upload::Abort,
}

impl Read for StreamBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let abandoned = || std::io::Error::other("the upload was abandoned");
        if self.abort.is_set() {
            return Err(abandoned());
        }
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(piece)) if piece.is_empty() => self.ended = true,
                Some(Ok(piece)) => self.current = piece,
                Some(Err(e)) => return Err(e),
                None => return Err(abandoned()),
            }
        }
        let n = self.current.len().min(buf.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Hashes and posts a large file at the same time (see `crate::driver::upload`). The POST
/// runs on this thread; a scoped thread hashes and then asks `GET /files/{sha}`, and a hit
/// sets the abort flag, which fails the POST body's next read and so abandons the POST.
pub(crate) fn upload_pipelined(
    files: &crate::driver::files::Files,
    path: &Path,
    chunk: usize,
    tracker: &crate::driver::progress::Tracker,
) -> Result<crate::driver::files::UploadedFile> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::driver::files::check_stored;
    use crate::driver::upload::{Abort, AbortOnDrop, FileStream, hash_file};

    let abort = Abort::default();
    let _stop = AbortOnDrop(abort.clone());
    let posted = AtomicBool::new(false);
    let found = Mutex::new(None);
    std::thread::scope(|scope| {
        let checker = std::thread::Builder::new()
            .name("contree-upload-hash".into())
            .spawn_scoped(scope, || {
                let (sha, size) = hash_file(path, chunk, &abort)?;
                if !posted.load(Ordering::Acquire) {
                    match files.lookup(&sha) {
                        Ok(Some(existing)) => {
                            tracing::debug!(sha256 = %sha, "file already on the server; upload abandoned");
                            *found.lock().unwrap_or_else(|p| p.into_inner()) = Some(existing);
                            abort.set();
                        }
                        Ok(None) => {}
                        // The POST decides: it stores the content or says why not.
                        Err(e) => tracing::debug!(sha256 = %sha, error = %e, "lookup during an upload failed"),
                    }
                }
                Ok((sha, size))
            })
            .map_err(|e| Error::io("cannot start the upload hasher thread", e))?;
        let stored = files.post_stream(FileStream { path: path.to_path_buf(), chunk, abort: abort.clone() }, tracker);
        posted.store(true, Ordering::Release);
        if stored.is_err() {
            // Stops the hash if it is still running; a lookup in flight ends on its own.
            abort.set();
        }
        let hashed = checker
            .join()
            .unwrap_or_else(|_| Err(Error::io("the upload hasher stopped", std::io::Error::other("panic"))));
        if let Some(existing) = found.lock().unwrap_or_else(|p| p.into_inner()).take() {
            tracker.phase("already on the server");
            if let Ok((_, size)) = &hashed {
                tracker.advance_to(*size);
            }
            return Ok(existing);
        }
        let stored = stored?;
        let (sha, size) = hashed?;
        check_stored(stored, &sha, size)
    })
}

/// SHA-256 and size of a file, read in `chunk`-sized pieces.
pub(crate) fn hash_file(path: &Path, chunk: usize) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    hash_reader(&mut file, chunk, None).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

/// Hashes a reader, copying it into `copy` when given.
pub(crate) fn hash_reader<R: Read + ?Sized>(
    reader: &mut R,
    chunk: usize,
    mut copy: Option<&mut std::fs::File>,
) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; chunk.max(4096)];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        if let Some(out) = copy.as_deref_mut() {
            out.write_all(&buf[..n])?;
        }
    }
    if let Some(out) = copy {
        out.flush()?;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Spools a one-shot reader into a temp file, hashing on the way.
pub(crate) fn spool_reader(mut reader: DynRead, chunk: usize) -> Result<(tempfile::TempPath, String, u64)> {
    let tmp = tempfile::NamedTempFile::new().map_err(|e| Error::io("cannot create a temp file", e))?;
    let (mut file, path) = tmp.into_parts();
    let (sha, size) =
        hash_reader(&mut reader, chunk, Some(&mut file)).map_err(|e| Error::io("cannot read the upload source", e))?;
    Ok((path, sha, size))
}

/// Reads a whole local file.
pub(crate) fn read_file(path: &Path) -> Result<Bytes> {
    std::fs::read(path).map(Bytes::from).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

/// Reads a reader to its end.
pub(crate) fn read_all(mut reader: DynRead) -> std::io::Result<Bytes> {
    let mut buf = Vec::new();
    reader.read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// Writes (creates or truncates) a local file.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Writes everything to a user's writer and flushes it.
pub(crate) fn write_all(w: &mut DynWrite, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes)?;
    w.flush()
}

/// Uploads a run's files concurrently, one scoped thread each; results keep their indexes.
pub(crate) fn upload_all(
    files: &crate::driver::files::Files,
    sources: Vec<(usize, crate::driver::files::UploadSource)>,
) -> Result<Vec<(usize, crate::driver::files::UploadedFile)>> {
    if sources.len() <= 1 {
        return sources.into_iter().map(|(i, src)| files.upload(src).map(|f| (i, f))).collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            sources.into_iter().map(|(i, src)| scope.spawn(carry(move || files.upload(src).map(|f| (i, f))))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(Error::io("upload thread panicked", std::io::Error::other("panic"))))
            })
            .collect()
    })
}

/// `f` wrapped to run on another thread in the caller's span and with the caller's (maybe
/// thread-local) subscriber, so work moved to a thread stays in the operation's span tree.
fn carry<T>(f: impl FnOnce() -> T) -> impl FnOnce() -> T {
    let span = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(f))
}

/// Cancels an operation on a short-lived thread, so `Drop` never blocks.
pub(crate) fn cancel_in_background(client: crate::driver::client::Client, op_id: String) {
    let spawned = std::thread::Builder::new().name("contree-cancel".into()).spawn(carry(move || {
        if let Err(e) = crate::driver::operation::cancel(&client, &op_id) {
            tracing::debug!(operation = %op_id, error = %crate::driver::trace::redacted(&e), "background cancel failed");
        }
    }));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start a thread to cancel a dropped operation");
    }
}

/// Runs a process's event follower on a background thread.
pub(crate) fn spawn_driver(driver: crate::driver::process::ProcessDriver) {
    let spawned = std::thread::Builder::new().name("contree-popen".into()).spawn(carry(move || driver.run()));
    if let Err(e) = spawned {
        // Without the thread the process's outcome channel closes, and wait() reports it.
        tracing::warn!(error = %e, "could not start the popen follower thread");
    }
}

/// Follows an extra process (`exec`) on a thread of its own.
pub(crate) fn spawn_subprocess_driver(driver: crate::driver::subprocess::SubprocessDriver) {
    let spawned = std::thread::Builder::new().name("contree-exec".into()).spawn(move || driver.run());
    if let Err(e) = spawned {
        // Without the thread the outcome channel closes, and wait() reports it.
        tracing::warn!(error = %e, "could not start the exec follower thread");
    }
}

/// Waits for a process's outcome.
pub(crate) fn recv_done<T>(rx: tokio::sync::oneshot::Receiver<T>) -> Option<T> {
    rx.blocking_recv().ok()
}

/// A live output stream of a process (`std::io::Read`), fed by its event stream.
pub struct PipeReaderSync {
    rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    leftover: Bytes,
}

impl std::fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeReaderSync").field("buffered", &self.leftover.len()).finish()
    }
}

impl PipeReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>) -> Self {
        PipeReader { rx, leftover: Bytes::new() }
    }

    /// The next chunk as the server sent it, or `None` at the end of the stream.
    pub fn chunk(&mut self) -> Option<Bytes> {
        if !self.leftover.is_empty() {
            return Some(std::mem::take(&mut self.leftover));
        }
        self.rx.blocking_recv()
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.leftover.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.leftover = chunk,
                None => return Ok(0),
            }
        }
        let n = self.leftover.len().min(buf.len());
        buf[..n].copy_from_slice(&self.leftover.split_to(n));
        Ok(n)
    }
}

/// A file written under a temporary name and renamed into place on commit.
pub(crate) struct AtomicFile {
    file: std::fs::File,
    tmp: tempfile::TempPath,
    target: std::path::PathBuf,
}

impl AtomicFile {
    pub(crate) fn create(target: &Path) -> Result<AtomicFile> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".contree-download-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(format!("cannot create a temp file in {}", dir.display()), e))?;
        let (file, tmp) = tmp.into_parts();
        Ok(AtomicFile { file, tmp, target: target.to_path_buf() })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).map_err(|e| Error::io(format!("cannot write {}", self.target.display()), e))
    }

    pub(crate) fn commit(mut self) -> Result<()> {
        let target = self.target.clone();
        let io = |e| Error::io(format!("cannot write {}", target.display()), e);
        self.file.flush().map_err(io)?;
        self.file.sync_all().map_err(io)?;
        self.tmp.persist(&self.target).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// Counts connections of an HTTP/1.1 client (see `ContreeConfig::max_connections`).
#[derive(Debug, Clone)]
pub(crate) struct Semaphore(std::sync::Arc<SemaphoreState>);

#[derive(Debug)]
pub(crate) struct SemaphoreState {
    free: std::sync::Mutex<usize>,
    released: std::sync::Condvar,
}

/// One counted connection; released when dropped.
#[derive(Debug)]
pub(crate) struct Permit(std::sync::Arc<SemaphoreState>);

impl Drop for Permit {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.released.notify_one();
    }
}

impl Semaphore {
    pub(crate) fn new(permits: usize) -> Self {
        Semaphore(std::sync::Arc::new(SemaphoreState {
            free: std::sync::Mutex::new(permits),
            released: std::sync::Condvar::new(),
        }))
    }

    /// Waits for a permit (always `Some`; the async flavor's may not be).
    pub(crate) fn acquire(&self) -> Option<Permit> {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.0.released.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Some(Permit(self.0.clone()))
    }

    /// A permit if one is free now.
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(Permit(self.0.clone()))
    }
}
