//! `/files`: content-addressed uploads (hashed while streaming), lookup by SHA-256, listing.

use std::io::{self, Read};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use contree_core::models::{FileInfo, FileResponse, FilesListResponse};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::params::Query;
use super::{AppState, blocking};
use crate::ops::store_error;
use crate::store::{FileFilter, FileRecord, Store, format_timestamp};

fn to_info(r: &FileRecord) -> FileInfo {
    FileInfo {
        uuid: r.uuid,
        sha256: r.sha256.clone(),
        size: r.size as i64,
        created_at: format_timestamp(r.created_at),
        updated_at: format_timestamp(r.updated_at),
    }
}

/// What the handler sends the store: body chunks, then `None` once the body ended cleanly.
type Piece = io::Result<Option<Bytes>>;

/// A blocking `Read` over body chunks sent from the async side, so the store can hash and
/// write the upload while it streams in, without buffering it whole.
///
/// The end of the content is the explicit `None`, never the channel closing: when a client
/// abandons its upload, hyper may drop the handler mid-body (closing the channel), and that
/// must fail the store (which then deletes its temp file) instead of storing the part that
/// arrived as a file.
struct ChannelReader {
    rx: mpsc::Receiver<Piece>,
    cur: Bytes,
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(Some(b))) => self.cur = b,
                Some(Ok(None)) => self.ended = true,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the upload ended before its body did"));
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// `POST /files` (raw body) → 201 `{uuid, sha256, size}`. The same content uploaded again
/// gives the same record.
pub(crate) async fn upload(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<FileResponse>), ApiError> {
    let (tx, rx) = mpsc::channel::<Piece>(16);
    let store: Store = state.ops.store.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let (sha, size) = store.put_blob(ChannelReader { rx, cur: Bytes::new(), ended: false })?;
        store.insert_or_touch_file(&sha, size)
    });
    let mut stream = body.into_data_stream();
    loop {
        let item = match stream.next().await {
            Some(chunk) => chunk.map(Some).map_err(|e| io::Error::other(format!("reading the upload failed: {e}"))),
            None => Ok(None),
        };
        let last = !matches!(item, Ok(Some(_)));
        if tx.send(item).await.is_err() || last {
            break;
        }
    }
    drop(tx);
    let record =
        writer.await.map_err(|e| ApiError::internal(format!("upload task failed: {e}")))?.map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(FileResponse { uuid: record.uuid, sha256: record.sha256, size: record.size as i64 })))
}

/// `GET /files?limit&offset&since&until`.
pub(crate) async fn list(State(state): State<AppState>, q: Query) -> Result<Json<FilesListResponse>, ApiError> {
    let files = state
        .ops
        .store
        .list_files(&FileFilter {
            since: q.time("since")?,
            until: q.time("until")?,
            limit: q.limit()? as u32,
            offset: q.offset()? as u64,
        })
        .map_err(store_error)?;
    Ok(Json(FilesListResponse { files: files.iter().map(to_info).collect() }))
}

fn parse_sha(raw: &str) -> Result<String, ApiError> {
    if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_request(format!("`{raw}` is not a SHA-256 (64 hex characters)")))
    }
}

/// `GET /files/{sha256}` → the file's record, or 404.
pub(crate) async fn get(State(state): State<AppState>, Path(sha): Path<String>) -> Result<Json<FileInfo>, ApiError> {
    let sha = parse_sha(&sha)?;
    let found = {
        let sha = sha.clone();
        blocking(move || state.ops.store.get_file_by_sha(&sha).map_err(store_error)).await?
    };
    match found {
        Some(r) => Ok(Json(to_info(&r))),
        None => Err(ApiError::not_found(format!("file {sha} not found"))),
    }
}

/// `HEAD /files/{sha256}` → 200 or 404, no body.
pub(crate) async fn head(State(state): State<AppState>, Path(sha): Path<String>) -> StatusCode {
    let Ok(sha) = parse_sha(&sha) else { return StatusCode::BAD_REQUEST };
    match blocking(move || state.ops.store.get_file_by_sha(&sha).map_err(store_error)).await {
        Ok(Some(_)) => StatusCode::OK,
        Ok(None) => StatusCode::NOT_FOUND,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
