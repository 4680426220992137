//! `/inspect`: read an image without running it — tag lookup, metadata, file download, tar
//! archive, directory listing and grep. Every path is resolved inside the image (see [`rootfs`]).

pub(crate) mod archive;
pub(crate) mod grep;
pub(crate) mod rootfs;

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contree_core::models::{DirectoryList, FileItem, GrepResult, Image, NameOrId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use self::rootfs::{Layer, Node, ResolveError, RootFs};
use super::error::ApiError;
use super::images::to_wire;
use super::params::{Query, parse_uuid};
use super::{AppState, blocking};
use crate::ops::store_error;

/// The merged, read-only view of an image's filesystem; 404 for an unknown image.
pub(crate) fn image_fs(state: &AppState, uuid: Uuid) -> Result<RootFs, ApiError> {
    let store = &state.ops.store;
    if store.get_image(uuid).map_err(store_error)?.is_none() {
        return Err(ApiError::not_found(format!("image {uuid} not found")));
    }
    let stack = store.layer_stack(uuid).map_err(store_error)?;
    // The same overlays the sandbox mounts, read top-down instead of mounted.
    let layers = crate::images::overlay_stacks(&stack.layers, &state.ops.base, stack.own_root)
        .into_iter()
        .flat_map(|m| {
            let point = m.mount_point;
            m.lowers.into_iter().map(move |l| Layer::at(l, &point))
        })
        .collect();
    Ok(RootFs::new(layers).with_ids(state.ops.ids))
}

/// The `path` query parameter (required).
fn path_param(q: &Query) -> Result<String, ApiError> {
    match q.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_owned()),
        _ => Err(ApiError::bad_request("the `path` query parameter is required")),
    }
}

fn resolve_error(path: &str, e: ResolveError) -> ApiError {
    match e {
        ResolveError::NotFound | ResolveError::NotADirectory => {
            ApiError::not_found(format!("`{path}` does not exist in the image"))
        }
        ResolveError::Loop => ApiError::unprocessable(format!("`{path}`: too many levels of symbolic links")),
        ResolveError::Invalid(why) => ApiError::bad_request(format!("`{path}` is not a valid path: {why}")),
        ResolveError::Io(e) => ApiError::from(e),
    }
}

/// `GET /inspect` → 307 to `/v1/inspect/`.
pub(crate) async fn redirect_root() -> Response {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/v1/inspect/")]).into_response()
}

/// `GET /inspect/{uuid}` → 307 to `/v1/inspect/{uuid}/`.
pub(crate) async fn redirect_image(Path(image): Path<String>) -> Result<Response, ApiError> {
    let uuid = parse_uuid(&image, "image")?;
    Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, format!("/v1/inspect/{uuid}/"))]).into_response())
}

/// `GET /inspect/?tag=T` → 302 with the relative `Location: <uuid>/`.
pub(crate) async fn find_by_tag(State(state): State<AppState>, q: Query) -> Result<Response, ApiError> {
    let Some(tag) = q.get("tag").filter(|t| !t.is_empty()) else {
        return Err(ApiError::bad_request("the `tag` query parameter is required"));
    };
    let tag = tag.strip_prefix("tag:").unwrap_or(tag).to_owned();
    let image = blocking(move || {
        state
            .ops
            .store
            .find_by_tag(&tag)
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("no image is tagged `{tag}`")))
    })
    .await?;
    Ok((StatusCode::FOUND, [(header::LOCATION, format!("{}/", image.uuid))]).into_response())
}

/// `GET /inspect/{uuid}/` → the image.
pub(crate) async fn image(State(state): State<AppState>, Path(image): Path<String>) -> Result<Json<Image>, ApiError> {
    let uuid = parse_uuid(&image, "image")?;
    let record = blocking(move || {
        state
            .ops
            .store
            .get_image(uuid)
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("image {uuid} not found")))
    })
    .await?;
    Ok(Json(to_wire(&record)))
}

/// Resolves `path` to a regular file of the image (404 missing, 422 not a regular file).
fn regular_file(fs: &RootFs, path: &str) -> Result<Node, ApiError> {
    let node = fs.resolve(path, true).map_err(|e| resolve_error(path, e))?;
    if !node.is_file() {
        return Err(ApiError::unprocessable(format!("`{path}` is not a regular file")));
    }
    Ok(node)
}

/// `GET /inspect/{uuid}/download?path=…` → the file's bytes.
pub(crate) async fn download(
    State(state): State<AppState>,
    Path(image): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let uuid = parse_uuid(&image, "image")?;
    let path = path_param(&q)?;
    let text = q.flag("text");
    let (file, len) = blocking(move || {
        let fs = image_fs(&state, uuid)?;
        let node = regular_file(&fs, &path)?;
        let file = fs.open_file(&node).map_err(ApiError::from)?;
        Ok((file, node.meta.len()))
    })
    .await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    let ctype = if text { "text/plain; charset=utf-8" } else { "application/octet-stream" };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

/// `HEAD /inspect/{uuid}/download?path=…` → 200 / 404 / 422, no body.
pub(crate) async fn download_head(State(state): State<AppState>, Path(image): Path<String>, q: Query) -> Response {
    match check_path(state, &image, &q, |fs, path| regular_file(fs, path).map(|n| n.meta.len())).await {
        Ok(len) => (StatusCode::OK, [(header::CONTENT_LENGTH, len.to_string())]).into_response(),
        Err(e) => e.status().into_response(),
    }
}

/// Resolves the `path` query of a HEAD request inside the image and applies `check` to it,
/// off the async threads (the HEAD forms of download and archive differ only in `check`).
async fn check_path<T: Send + 'static>(
    state: AppState,
    image: &str,
    q: &Query,
    check: impl FnOnce(&RootFs, &str) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let uuid = parse_uuid(image, "image")?;
    let path = path_param(q)?;
    blocking(move || check(&image_fs(&state, uuid)?, &path)).await
}

/// Resolves `path` to a file or directory to archive (404 missing, 422 anything else).
fn archivable(fs: &RootFs, path: &str) -> Result<Node, ApiError> {
    let node = fs.resolve(path, true).map_err(|e| resolve_error(path, e))?;
    if !node.is_file() && !node.is_dir() {
        return Err(ApiError::unprocessable(format!("`{path}` is neither a regular file nor a directory")));
    }
    Ok(node)
}

/// The attachment name: the path with `/` replaced by `_`, plus `.tar` (`/bin/true` →
/// `bin_true.tar`; `/` → `root.tar`).
fn archive_name(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let stem: String = trimmed
        .chars()
        .map(|c| {
            if c == '/' {
                '_'
            } else if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.tar", if stem.is_empty() { "root" } else { &stem })
}

/// `GET /inspect/{uuid}/archive?path=…` → a streamed PAX tar.
pub(crate) async fn archive(
    State(state): State<AppState>,
    Path(image): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let uuid = parse_uuid(&image, "image")?;
    let path = path_param(&q)?;
    let name = archive_name(&path);
    let (fs, node) = blocking(move || {
        let fs = image_fs(&state, uuid)?;
        let node = archivable(&fs, &path)?;
        Ok((fs, node))
    })
    .await?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut w = archive::ChannelWriter::new(tx);
        match archive::write_archive(&fs, &node, &mut w) {
            Ok(_) => {
                let _ = io::Write::flush(&mut w);
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                tracing::warn!(error = %e, "archive failed midway");
                w.fail(e);
            }
        }
    });
    let mut resp = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// `HEAD /inspect/{uuid}/archive?path=…` → 200 / 404 / 422, no body.
pub(crate) async fn archive_head(State(state): State<AppState>, Path(image): Path<String>, q: Query) -> Response {
    match check_path(state, &image, &q, |fs, path| archivable(fs, path).map(|_| ())).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.status().into_response(),
    }
}

fn file_item(fs: &RootFs, node: &Node) -> FileItem {
    let m = &node.meta;
    let ft = m.file_type();
    let (uid, gid) = fs.owner(m);
    FileItem {
        size: m.len() as i64,
        path: node.name().to_string_lossy().into_owned(),
        owner: NameOrId::Id(i64::from(uid)),
        group: NameOrId::Id(i64::from(gid)),
        uid,
        gid,
        mode: m.mode(),
        mtime: m.mtime(),
        nlink: m.nlink(),
        is_dir: ft.is_dir(),
        is_regular: ft.is_file(),
        is_symlink: ft.is_symlink(),
        is_socket: ft.is_socket(),
        is_fifo: ft.is_fifo(),
        symlink_to: if ft.is_symlink() {
            fs.read_link(node).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            String::new()
        },
    }
}

/// `ls -l`-like rendering of a listing (the `text` variant).
fn render_text(items: &[FileItem]) -> String {
    let total: i64 = items.iter().map(|i| i.size).sum();
    let mut out = format!("total {:.2} KB\n", total as f64 / 1024.0);
    for i in items {
        let kind = if i.is_dir {
            'd'
        } else if i.is_symlink {
            'l'
        } else if i.is_socket {
            's'
        } else if i.is_fifo {
            'p'
        } else if i.is_regular {
            '-'
        } else {
            'c'
        };
        let mode = std::fs::Permissions::from_mode(i.mode).mode();
        let mut perms = String::with_capacity(9);
        for shift in [6u32, 3, 0] {
            let bits = (mode >> shift) & 7;
            perms.push(if bits & 4 != 0 { 'r' } else { '-' });
            perms.push(if bits & 2 != 0 { 'w' } else { '-' });
            perms.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        let when = time::OffsetDateTime::from_unix_timestamp(i.mtime)
            .ok()
            .and_then(|t| t.format(time::macros::format_description!("[month repr:short] [day] [hour]:[minute]")).ok())
            .unwrap_or_default();
        out.push_str(&format!("{kind}{perms} {} {} {} {:>10} {when} {}", i.nlink, i.uid, i.gid, i.size, i.path));
        if i.is_symlink {
            out.push_str(&format!(" -> {}", i.symlink_to));
        }
        out.push('\n');
    }
    out
}

/// `GET /inspect/{uuid}/list?path=…[&text]` → the directory's entries.
pub(crate) async fn list(
    State(state): State<AppState>,
    Path(image): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let uuid = parse_uuid(&image, "image")?;
    let path = path_param(&q)?;
    let text = q.flag("text");
    let listing = blocking(move || {
        let fs = image_fs(&state, uuid)?;
        let node = fs.resolve(&path, true).map_err(|e| resolve_error(&path, e))?;
        if !node.is_dir() {
            return Err(ApiError::unprocessable(format!("`{path}` is not a directory")));
        }
        let entries = fs.list(&node).map_err(|e| resolve_error(&path, e))?;
        Ok(DirectoryList { path: node.image_path(), files: entries.iter().map(|n| file_item(&fs, n)).collect() })
    })
    .await?;
    if text {
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], render_text(&listing.files)).into_response());
    }
    Ok(Json(listing).into_response())
}

/// A grep root that cannot be resolved: 404 when missing, 400 otherwise (the spec gives
/// grep no 422).
fn grep_root_error(path: &str, e: ResolveError) -> ApiError {
    match e {
        ResolveError::Loop => ApiError::bad_request(format!("`{path}`: too many levels of symbolic links")),
        other => resolve_error(path, other),
    }
}

/// Extra time the handler gives a search past its own deadline before answering without it
/// (one regex call over one long line cannot be interrupted).
const GREP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Tells the search to stop when the request goes away (client gone, or answered early).
struct CancelOnDrop(Arc<grep::Progress>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel.store(true, Ordering::Relaxed);
    }
}

/// `GET /inspect/{uuid}/grep?pattern=…[&path=…][&glob=…]…` → a [`GrepResult`]: a content
/// search of the image's files (see [`grep`] for the semantics and the limits).
pub(crate) async fn grep(
    State(state): State<AppState>,
    Path(image): Path<String>,
    q: Query,
) -> Result<Json<GrepResult>, ApiError> {
    let uuid = parse_uuid(&image, "image")?;
    let req = grep::GrepRequest::from_query(&q)?;
    let patterns = req.patterns.clone();
    let limits = grep::Limits::default();
    let hard_limit = limits.deadline + GREP_GRACE;
    let progress = Arc::new(grep::Progress::default());
    let _cancel = CancelOnDrop(progress.clone());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<String, ApiError>>();
    let worker = tokio::task::spawn_blocking({
        let progress = progress.clone();
        move || {
            // Everything that can be a 4xx happens before the search starts.
            let setup = image_fs(&state, uuid).and_then(|fs| {
                let roots = req
                    .paths
                    .iter()
                    .map(|p| fs.resolve(p, true).map_err(|e| grep_root_error(p, e)))
                    .collect::<Result<Vec<Node>, ApiError>>()?;
                Ok((fs, roots))
            });
            let (fs, roots) = match setup {
                Ok(v) => v,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut search = match grep::Search::new(&fs, &req, &limits, &progress) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let first = roots.first().map(Node::image_path).unwrap_or_else(|| "/".to_owned());
            if ready_tx.send(Ok(first)).is_ok() {
                search.run(&roots);
            }
        }
    });
    let first = ready_rx.await.map_err(|_| ApiError::internal("the grep task ended before it started"))??;
    if tokio::time::timeout(hard_limit, worker).await.is_err() {
        tracing::warn!(image = %uuid, "a grep overran its deadline; answering with what it found");
        progress.cancel.store(true, Ordering::Relaxed);
        progress.truncated.store(true, Ordering::Relaxed);
    }
    let matches = std::mem::take(&mut *progress.rows.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Json(GrepResult { path: first, patterns, matches, truncated: progress.truncated.load(Ordering::Relaxed) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names() {
        assert_eq!(archive_name("/bin/true"), "bin_true.tar");
        assert_eq!(archive_name("/etc/"), "etc.tar");
        assert_eq!(archive_name("/"), "root.tar");
        assert_eq!(archive_name("/a\"b"), "a_b.tar");
    }
}
