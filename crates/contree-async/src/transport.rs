//! The async transport shim: the only place that knows this flavor is async.
//!
//! The shared driver calls these items by the same names in both flavors; the blocking
//! crate's `transport.rs` mirrors this file item for item.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use contree_core::{Error, Progress, Result};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(crate) use reqwest::{Body, Client as HttpClient, ClientBuilder as HttpClientBuilder, RequestBuilder, Response};

/// How long a request may take. Async reqwest only has a *total* per-request timeout, so
/// streamed bodies get none and are guarded per read in [`next_chunk`] instead.
pub(crate) fn apply_timeout(req: RequestBuilder, timeout: crate::driver::http::Timeout) -> RequestBuilder {
    match timeout {
        crate::driver::http::Timeout::Unary(d) => req.timeout(d),
        crate::driver::http::Timeout::Streaming { .. } => req,
    }
}

/// `$fut` run inside `$span`: a future to `.await` (the blocking flavor's twin enters the
/// span around the call instead). Never an `Entered` guard across an `.await`: the span is
/// entered on each poll only.
macro_rules! instrumented {
    ($span:expr, $fut:expr) => {
        ::tracing::Instrument::instrument($fut, $span)
    };
}
pub(crate) use instrumented;

/// Any byte source a user can hand us: `tokio::io::AsyncRead`.
pub type DynRead = Box<dyn AsyncRead + Send + Unpin + 'static>;
/// Any byte sink a user can hand us: `tokio::io::AsyncWrite`.
pub type DynWrite = Box<dyn AsyncWrite + Send + Unpin + 'static>;

pub(crate) async fn sleep(d: Duration) {
    tokio::time::sleep(d).await
}

/// The output of the future `start` makes, or `None` if it takes longer than `limit` (the
/// future is then dropped, which abandons its request).
pub(crate) async fn within<T, F>(limit: Duration, start: impl FnOnce() -> F) -> Option<T>
where
    F: std::future::Future<Output = T>,
{
    tokio::time::timeout(limit, start()).await.ok()
}

/// Next body chunk, or `None` at the end. A broken body is a transport error (the request
/// was sent), or a timeout.
pub(crate) async fn next_chunk(resp: &mut Response, idle: Duration) -> Result<Option<Bytes>> {
    match tokio::time::timeout(idle, resp.chunk()).await {
        Ok(r) => r.map_err(|e| if e.is_timeout() { Error::timeout(e) } else { Error::transport(true, e) }),
        Err(_) => Err(Error::timeout(format!("the server sent no data for {:.1}s", idle.as_secs_f64()))),
    }
}

/// An event stream's body, read with a bound that may shrink from one read to the next
/// (the caller's deadline comes closer).
pub(crate) struct EventBody(Response);

/// Wraps an event stream's response for [`next_event_chunk`].
pub(crate) fn event_body(resp: Response) -> EventBody {
    EventBody(resp)
}

/// The next chunk of an event stream, or `None` at its end; a Timeout error after `idle`.
pub(crate) async fn next_event_chunk(body: &mut EventBody, idle: Duration) -> Result<Option<Bytes>> {
    next_chunk(&mut body.0, idle).await
}

/// A streamed request body over an open file: memory stays flat whatever the size. With a
/// `progress`, each chunk is counted as it is handed to the connection.
pub(crate) async fn file_body(path: &Path, progress: Option<&Progress>) -> Result<Body> {
    let file =
        tokio::fs::File::open(path).await.map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK);
    Ok(match progress {
        None => Body::wrap_stream(chunks),
        Some(p) => Body::wrap_stream(counted(chunks, p.clone())),
    })
}

/// Bytes in memory as a body whose chunks are counted by `progress` as they are sent.
pub(crate) fn bytes_body(bytes: Bytes, progress: &Progress) -> Body {
    let len = bytes.len();
    let chunks = (0..len)
        .step_by(UPLOAD_CHUNK)
        .map(move |at| Ok::<_, std::io::Error>(bytes.slice(at..(at + UPLOAD_CHUNK).min(len))));
    Body::wrap_stream(counted(futures_util::stream::iter(chunks), progress.clone()))
}

/// How much of an upload one body chunk carries.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// Counts a body's chunks: one `advance_to` per chunk (this attempt's position, so a resent
/// body is counted only past the furthest point an earlier attempt reached). Wrap any upload
/// body stream in it; build a fresh one per attempt.
pub(crate) fn counted<S>(chunks: S, progress: Progress) -> impl futures_util::Stream<Item = std::io::Result<Bytes>>
where
    S: futures_util::Stream<Item = std::io::Result<Bytes>>,
{
    use futures_util::TryStreamExt;
    let mut sent = 0u64;
    chunks.inspect_ok(move |chunk| {
        sent += chunk.len() as u64;
        progress.advance_to(sent);
    })
}

/// The request body of a pipelined upload: chunks from the reader thread that
/// [`FileStream::start`](crate::driver::upload::FileStream::start) starts for this attempt.
/// Dropping the body (the request is done or abandoned) stops the thread; a thread that stops
/// without its end marker fails the body, so the server never takes a cut file for a whole one.
pub(crate) fn stream_body(stream: &crate::driver::upload::FileStream, progress: Option<&Progress>) -> Result<Body> {
    let rx = stream.start()?;
    let chunks = futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Ok(piece)) if piece.is_empty() => None,
            Some(Ok(piece)) => Some((Ok(piece), Some(rx))),
            Some(Err(e)) => Some((Err(e), None)),
            None => Some((Err(std::io::Error::other("the upload was abandoned")), None)),
        }
    });
    Ok(match progress {
        None => Body::wrap_stream(chunks),
        Some(p) => Body::wrap_stream(counted(chunks, p.clone())),
    })
}

/// Starts [`hash_file`](crate::driver::upload::hash_file) on a thread of its own; its result arrives on the returned channel.
pub(crate) fn spawn_hasher(
    path: std::path::PathBuf,
    chunk: usize,
    abort: crate::driver::upload::Abort,
) -> Result<tokio::sync::oneshot::Receiver<Result<(String, u64)>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("contree-upload-hash".into())
        .spawn(move || {
            let _ = tx.send(crate::driver::upload::hash_file(&path, chunk, &abort));
        })
        .map_err(|e| Error::io("cannot start the upload hasher thread", e))?;
    Ok(rx)
}

/// Hashes and posts a large file at the same time (see `crate::driver::upload`): the POST
/// runs here while a thread hashes; once the hash is known, `GET /files/{sha}` races the
/// rest of the POST, and a hit abandons the POST (dropping it, and stopping its reader).
pub(crate) async fn upload_pipelined(
    files: &crate::driver::files::Files,
    path: &Path,
    chunk: usize,
    tracker: &crate::driver::progress::Tracker,
) -> Result<crate::driver::files::UploadedFile> {
    use crate::driver::files::check_stored;
    use crate::driver::upload::{Abort, AbortOnDrop, FileStream};
    use futures_util::future::{Either, select};

    let abort = Abort::default();
    // Dropped on every way out, this future's own drop included: the threads stop.
    let _stop = AbortOnDrop(abort.clone());
    let mut hashed = spawn_hasher(path.to_path_buf(), chunk, abort.clone())?;
    let mut post = std::pin::pin!(
        files.post_stream(FileStream { path: path.to_path_buf(), chunk, abort: abort.clone() }, tracker)
    );
    let hash_result = |r: std::result::Result<Result<(String, u64)>, _>| {
        r.unwrap_or_else(|_| Err(Error::io("the upload hasher stopped", std::io::Error::other("hasher thread ended"))))
    };
    let (sha, size) = match select(post.as_mut(), &mut hashed).await {
        Either::Left((stored, _)) => {
            let stored = stored?;
            let (sha, size) = hash_result(hashed.await)?;
            return check_stored(stored, &sha, size);
        }
        Either::Right((hashed, _)) => hash_result(hashed)?,
    };
    match select(post.as_mut(), std::pin::pin!(files.lookup(&sha))).await {
        Either::Left((stored, _)) => return check_stored(stored?, &sha, size),
        Either::Right((Ok(Some(existing)), _)) => {
            tracing::debug!(sha256 = %sha, "file already on the server; upload abandoned");
            tracker.phase("already on the server");
            tracker.advance_to(size);
            return Ok(existing);
        }
        Either::Right((Ok(None), _)) => {}
        // The POST decides: it stores the content or says why not.
        Either::Right((Err(e), _)) => tracing::debug!(sha256 = %sha, error = %e, "lookup during an upload failed"),
    }
    check_stored(post.await?, &sha, size)
}

/// SHA-256 and size of a file, read in `chunk`-sized pieces.
pub(crate) async fn hash_file(path: &Path, chunk: usize) -> Result<(String, u64)> {
    let mut file =
        tokio::fs::File::open(path).await.map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    hash_reader(&mut file, chunk, None).await.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

/// Hashes a reader, copying it into `copy` when given (used to spool a one-shot reader to disk
/// so it can be uploaded after the dedup lookup).
pub(crate) async fn hash_reader<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    chunk: usize,
    mut copy: Option<&mut tokio::fs::File>,
) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; chunk.max(4096)];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        if let Some(out) = copy.as_deref_mut() {
            out.write_all(&buf[..n]).await?;
        }
    }
    if let Some(out) = copy {
        out.flush().await?;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Spools a one-shot reader into an anonymous temp file, hashing on the way.
pub(crate) async fn spool_reader(mut reader: DynRead, chunk: usize) -> Result<(tempfile::TempPath, String, u64)> {
    let tmp = tempfile::NamedTempFile::new().map_err(|e| Error::io("cannot create a temp file", e))?;
    let (std_file, path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let (sha, size) = hash_reader(&mut reader, chunk, Some(&mut file))
        .await
        .map_err(|e| Error::io("cannot read the upload source", e))?;
    Ok((path, sha, size))
}

/// Reads a whole local file.
pub(crate) async fn read_file(path: &Path) -> Result<Bytes> {
    tokio::fs::read(path).await.map(Bytes::from).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

/// Reads a reader to its end.
pub(crate) async fn read_all(mut reader: DynRead) -> std::io::Result<Bytes> {
    let mut buf = Vec::new();
    reader.read_to_end(&mut buf).await?;
    Ok(Bytes::from(buf))
}

/// Writes (creates or truncates) a local file.
pub(crate) async fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    tokio::fs::write(path, bytes).await.map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Writes everything to a user's writer and flushes it.
pub(crate) async fn write_all(w: &mut DynWrite, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Uploads a run's files concurrently; results keep their indexes.
pub(crate) async fn upload_all(
    files: &crate::driver::files::Files,
    sources: Vec<(usize, crate::driver::files::UploadSource)>,
) -> Result<Vec<(usize, crate::driver::files::UploadedFile)>> {
    let uploads = sources.into_iter().map(|(i, src)| async move { files.upload(src).await.map(|f| (i, f)) });
    futures_util::future::try_join_all(uploads).await
}

/// Cancels an operation without blocking the caller (used from `Drop`). Needs a tokio
/// runtime; without one the operation is left to its server-side timeout.
pub(crate) fn cancel_in_background(client: crate::driver::client::Client, op_id: String) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(carry(async move {
                if let Err(e) = crate::driver::operation::cancel(&client, &op_id).await {
                    tracing::debug!(operation = %op_id, error = %crate::driver::trace::redacted(&e), "background cancel failed");
                }
            }));
        }
        Err(_) => tracing::warn!(operation = %op_id, "no tokio runtime to cancel the dropped operation"),
    }
}

/// Runs a process's event follower on a background task.
pub(crate) fn spawn_driver(driver: crate::driver::process::ProcessDriver) {
    tokio::spawn(carry(driver.run()));
}

/// `fut` with the caller's span and its (maybe thread-local) subscriber, so a task spawned
/// for an operation stays in the operation's span tree, whichever worker thread polls it.
fn carry<F: std::future::Future>(fut: F) -> impl std::future::Future<Output = F::Output> {
    use tracing::instrument::WithSubscriber;
    tracing::Instrument::in_current_span(fut).with_current_subscriber()
}

/// Follows an extra process (`exec`) on a task of its own.
pub(crate) fn spawn_subprocess_driver(driver: crate::driver::subprocess::SubprocessDriver) {
    tokio::spawn(driver.run());
}

/// Waits for a process's outcome.
pub(crate) async fn recv_done<T>(rx: tokio::sync::oneshot::Receiver<T>) -> Option<T> {
    rx.await.ok()
}

/// A live output stream of a process (`tokio::io::AsyncRead`), fed by its event stream.
pub struct PipeReader {
    rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    leftover: Bytes,
}

impl std::fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeReader").field("buffered", &self.leftover.len()).finish()
    }
}

impl PipeReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>) -> Self {
        PipeReader { rx, leftover: Bytes::new() }
    }

    /// The next chunk as the server sent it, or `None` at the end of the stream.
    pub async fn chunk(&mut self) -> Option<Bytes> {
        if !self.leftover.is_empty() {
            return Some(std::mem::take(&mut self.leftover));
        }
        self.rx.recv().await
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.leftover.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.leftover = chunk,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.leftover.len().min(buf.remaining());
        let chunk = self.leftover.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// A file written under a temporary name and renamed into place on commit.
pub(crate) struct AtomicFile {
    file: tokio::fs::File,
    tmp: tempfile::TempPath,
    target: std::path::PathBuf,
}

impl AtomicFile {
    pub(crate) async fn create(target: &Path) -> Result<AtomicFile> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".contree-download-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(format!("cannot create a temp file in {}", dir.display()), e))?;
        let (std_file, tmp) = tmp.into_parts();
        Ok(AtomicFile { file: tokio::fs::File::from_std(std_file), tmp, target: target.to_path_buf() })
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).await.map_err(|e| Error::io(format!("cannot write {}", self.target.display()), e))
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        let target = self.target.clone();
        let io = |e| Error::io(format!("cannot write {}", target.display()), e);
        self.file.flush().await.map_err(io)?;
        self.file.sync_all().await.map_err(io)?;
        self.tmp.persist(&self.target).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// Counts connections of an HTTP/1.1 client (see `ContreeConfig::max_connections`).
#[derive(Debug, Clone)]
pub(crate) struct Semaphore(std::sync::Arc<tokio::sync::Semaphore>);

/// One counted connection; released when dropped.
pub(crate) type Permit = tokio::sync::OwnedSemaphorePermit;

impl Semaphore {
    pub(crate) fn new(permits: usize) -> Self {
        Semaphore(std::sync::Arc::new(tokio::sync::Semaphore::new(permits)))
    }

    /// Waits for a permit (`None` only if the semaphore were closed, which ours never is).
    pub(crate) async fn acquire(&self) -> Option<Permit> {
        self.0.clone().acquire_owned().await.ok()
    }

    /// A permit if one is free now.
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// How long a finished event stream may take to end in the background.
const EVENT_BODY_DRAIN: Duration = Duration::from_secs(2);

/// An event stream that delivered its last event: read to its end on a background task, so
/// an HTTP/1.1 connection goes back to the pool instead of being closed. Without a runtime
/// (impossible here: the stream was read on one) it is simply dropped.
pub(crate) fn finish_event_body(body: EventBody) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let mut resp = body.0;
            let _ =
                tokio::time::timeout(EVENT_BODY_DRAIN, async { while let Ok(Some(_)) = resp.chunk().await {} }).await;
        });
    }
}
