//! Content-addressed file uploads.
//!
//! A small source (bytes in memory, a file under [`PIPELINE_MIN_BYTES`]) is hashed with
//! SHA-256 first, looked up with `GET /files/{sha256}`, and `POST`ed only on 404. A large
//! file is hashed and posted at the same time (`transport::upload_pipelined`, pieces in
//! `driver::upload`): when the hash ends first and the lookup finds the content, the POST is
//! abandoned; when the POST ends first, the server's SHA-256 is checked against ours. Bodies
//! are streamed from disk, so memory stays flat whatever the file size; a one-shot reader is
//! spooled to a temp file while it is hashed.

use std::path::{Path, PathBuf};

use bytes::Bytes;
pub(crate) use contree_core::UploadedFile;
use contree_core::models::{FileInfo, FileResponse, FilesListResponse};
use contree_core::progress::{Progress, ProgressKind};
use contree_core::{Error, Result, validate};
use reqwest::Method;
use sha2::{Digest, Sha256};

use super::client::Client;
use super::http::Payload;
use super::progress::Tracker;
use super::upload::{FileStream, PIPELINE_MIN_BYTES};
use crate::transport::{self, DynRead};

crate::flavor::declare! {
    /// Where upload bytes come from: a local path, bytes in memory, or any reader.
    pub enum UploadSource {
        /// A local file, streamed from disk.
        Path(PathBuf),
        /// Bytes in memory.
        Bytes(Bytes),
        /// A one-shot reader (spooled to a temp file so it can be hashed before the upload).
        Reader(DynRead),
    }
}

impl std::fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            UploadSource::Bytes(b) => f.debug_tuple("Bytes").field(&format_args!("{} bytes", b.len())).finish(),
            UploadSource::Reader(_) => f.write_str("Reader(..)"),
        }
    }
}

impl UploadSource {
    /// A reader as the source.
    pub fn reader(reader: impl Into<DynRead>) -> Self {
        UploadSource::Reader(reader.into())
    }
}

impl From<&Path> for UploadSource {
    fn from(p: &Path) -> Self {
        UploadSource::Path(p.to_path_buf())
    }
}
impl From<PathBuf> for UploadSource {
    fn from(p: PathBuf) -> Self {
        UploadSource::Path(p)
    }
}
impl From<&PathBuf> for UploadSource {
    fn from(p: &PathBuf) -> Self {
        UploadSource::Path(p.clone())
    }
}
impl From<Vec<u8>> for UploadSource {
    fn from(b: Vec<u8>) -> Self {
        UploadSource::Bytes(Bytes::from(b))
    }
}
impl From<Bytes> for UploadSource {
    fn from(b: Bytes) -> Self {
        UploadSource::Bytes(b)
    }
}
impl From<&'static [u8]> for UploadSource {
    fn from(b: &'static [u8]) -> Self {
        UploadSource::Bytes(Bytes::from_static(b))
    }
}

crate::flavor::declare! {
    /// The files area of the API. Get it with `client.files()`.
    #[doc = crate::doc_examples::example!(files)]
    #[derive(Debug, Clone)]
    pub struct Files {
        client: Client,
    }
}

impl Files {
    pub(crate) fn new(client: Client) -> Self {
        Files { client }
    }

    /// Uploads unless the server already has the same content; returns the stored file.
    #[doc = crate::doc_examples::example!(files)]
    #[crate::maybe]
    pub async fn upload(&self, source: impl Into<UploadSource>) -> Result<UploadedFile> {
        self.upload_observed(source.into(), None).await
    }

    /// [`upload`](Self::upload), reporting to `progress`: the bytes sent out of the source's
    /// size, and the phase (`hashing`, `uploading`, or `already on the server` when the upload
    /// is skipped, which counts the whole size as done).
    #[doc = crate::doc_examples::example!(files_progress)]
    #[crate::maybe]
    pub async fn upload_with_progress(
        &self,
        source: impl Into<UploadSource>,
        progress: &Progress,
    ) -> Result<UploadedFile> {
        self.upload_observed(source.into(), Some(progress)).await
    }

    #[crate::maybe]
    async fn upload_observed(&self, source: UploadSource, progress: Option<&Progress>) -> Result<UploadedFile> {
        let chunk = self.client.config().file_upload_chunk_size.max(4096);
        let mut tracker = Tracker::start(progress, ProgressKind::Upload, None);
        let stored = match source {
            UploadSource::Path(path) => {
                let size = check_local_file(&path)?;
                tracker.set_total(Some(size));
                if size >= PIPELINE_MIN_BYTES {
                    transport::upload_pipelined(self, &path, chunk, &tracker).await
                } else {
                    tracker.phase("hashing");
                    let (sha, size) = transport::hash_file(&path, chunk).await?;
                    self.upload_hashed(sha, size, Payload::File(path), &tracker).await
                }
            }
            UploadSource::Bytes(bytes) => {
                let sha = hex::encode(Sha256::digest(&bytes));
                let size = bytes.len() as u64;
                tracker.set_total(Some(size));
                self.upload_hashed(sha, size, Payload::Bytes(bytes), &tracker).await
            }
            UploadSource::Reader(reader) => {
                tracker.phase("hashing");
                let (tmp, sha, size) = transport::spool_reader(reader, chunk).await?;
                tracker.set_total(Some(size));
                let out = self.upload_hashed(sha, size, Payload::File(tmp.to_path_buf()), &tracker).await;
                drop(tmp);
                out
            }
        }?;
        tracker.succeed();
        Ok(stored)
    }

    #[crate::maybe]
    async fn upload_hashed(&self, sha: String, size: u64, payload: Payload, tracker: &Tracker) -> Result<UploadedFile> {
        match self.get(&sha).await {
            Ok(info) => {
                tracing::debug!(sha256 = %sha, "file already on the server; upload skipped");
                tracker.phase("already on the server");
                tracker.advance_to(size);
                return Ok(FileResponse { uuid: info.uuid, sha256: info.sha256, size: info.size });
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let stored = self.post(payload, tracker).await?;
        check_stored(stored, &sha, size)
    }

    /// `POST /files` with this body; the server's record, unchecked.
    #[crate::maybe]
    pub(crate) async fn post(&self, payload: Payload, tracker: &Tracker) -> Result<FileResponse> {
        let http = self.client.http();
        tracker.phase("uploading");
        let mut call = http.call(Method::POST, &["files"]).payload(payload).progress(tracker.progress());
        call.timeout = http.streaming();
        http.json(&call).await
    }

    /// `POST /files` of a file read by a thread of its own, abandoned once `stream.abort` is
    /// set (a pipelined upload whose hash found the content on the server).
    #[crate::maybe]
    pub(crate) async fn post_stream(&self, stream: FileStream, tracker: &Tracker) -> Result<FileResponse> {
        self.post(Payload::Stream(stream), tracker).await
    }

    /// The stored file with this content, `None` on 404.
    #[crate::maybe]
    pub(crate) async fn lookup(&self, sha256: &str) -> Result<Option<UploadedFile>> {
        match self.get(sha256).await {
            Ok(info) => Ok(Some(FileResponse { uuid: info.uuid, sha256: info.sha256, size: info.size })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stored file with this content hash (`GET /files/{sha256}`).
    #[crate::maybe]
    pub async fn get(&self, sha256: &str) -> Result<FileInfo> {
        validate::sha256("sha256", sha256)?;
        let http = self.client.http();
        http.json(&http.call(Method::GET, &["files", &sha256.to_ascii_lowercase()])).await
    }

    /// Whether the server has this content (`HEAD /files/{sha256}`).
    #[crate::maybe]
    pub async fn exists(&self, sha256: &str) -> Result<bool> {
        validate::sha256("sha256", sha256)?;
        let http = self.client.http();
        match http.unit(&http.call(Method::HEAD, &["files", &sha256.to_ascii_lowercase()])).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One page of stored files (`GET /files`), `limit` in 1..=1000.
    #[crate::maybe]
    pub async fn list(&self, limit: u32, offset: u64) -> Result<Vec<FileInfo>> {
        validate::page_limit("limit", limit)?;
        let http = self.client.http();
        let call = http.call_with_query(
            Method::GET,
            &["files"],
            [("limit", limit.to_string()), ("offset", offset.to_string())],
        );
        let page: FilesListResponse = http.json(&call).await?;
        Ok(page.files)
    }
}

/// The server's record of a POST, refused when it stored other content than we hashed.
pub(crate) fn check_stored(stored: FileResponse, sha: &str, size: u64) -> Result<UploadedFile> {
    if !stored.sha256.eq_ignore_ascii_case(sha) {
        return Err(Error::decode(
            format!(
                "the server stored sha256 {} for content hashed as {sha} ({size} bytes): the file changed during the upload",
                stored.sha256
            ),
            std::fmt::Error,
        ));
    }
    Ok(stored)
}

/// A missing or unreadable local file is the caller's mistake: say so before any request.
/// Returns its size.
pub(crate) fn check_local_file(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(m.len()),
        Ok(_) => Err(Error::invalid_argument("source", format!("{} is not a regular file", path.display()))),
        Err(e) => Err(Error::invalid_argument("source", format!("{}: {e}", path.display()))),
    }
}
