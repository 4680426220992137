//! The HTTP API: the Contree v1 routes, bearer auth, `{error, status}` error bodies and gzip.

pub(crate) mod auth;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod images;
pub(crate) mod inspect;
pub(crate) mod instances;
pub(crate) mod listener;
pub(crate) mod operations;
pub(crate) mod params;
pub(crate) mod serve;
pub(crate) mod spawn_fields;
pub(crate) mod subprocesses;
pub(crate) mod trace;
pub(crate) mod whoami;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::decompression::RequestDecompressionLayer;
use uuid::Uuid;

use crate::ops::Ops;

/// Largest JSON request body (a spawn request carries its stdin inline).
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub ops: Arc<Ops>,
    /// A stable id for the token (`whoami.token_uuid`), derived from it without revealing it.
    pub token_uuid: Uuid,
    pub keepalive: Duration,
    /// Descriptors kept for starting runs (see [`listener::reserve`]).
    pub fd_reserve: u64,
}

/// Builds the router: every route under `/v1`, all behind the bearer-token check.
pub(crate) fn router(state: AppState, token: auth::TokenCheck) -> Router {
    let fd_reserve = state.fd_reserve;
    let v1 = Router::new()
        .route("/whoami", get(whoami::whoami))
        .route("/images", get(images::list))
        .route("/images/import", post(images::import))
        .route("/images/{image}/tag", patch(images::set_tag).delete(images::remove_tag))
        .route("/files", get(files::list).post(files::upload))
        .route("/files/{sha256}", get(files::get).head(files::head))
        .route("/instances", post(instances::spawn))
        .route("/operations", get(operations::list))
        .route("/operations/{op}", get(operations::get).delete(operations::cancel))
        .route("/operations/{op}/events", get(events::events))
        .route("/operations/{op}/subprocesses", post(subprocesses::create))
        .route("/operations/{op}/subprocesses/{spid}", get(subprocesses::get).delete(subprocesses::kill))
        .route("/operations/{op}/subprocesses/{spid}/stdin", post(subprocesses::stdin))
        .route("/inspect", get(inspect::redirect_root))
        .route("/inspect/", get(inspect::find_by_tag))
        .route("/inspect/{image}", get(inspect::redirect_image))
        .route("/inspect/{image}/", get(inspect::image))
        .route("/inspect/{image}/download", get(inspect::download).head(inspect::download_head))
        .route("/inspect/{image}/archive", get(inspect::archive).head(inspect::archive_head))
        .route("/inspect/{image}/list", get(inspect::list))
        .route("/inspect/{image}/grep", get(inspect::grep))
        .route_layer(axum::middleware::from_fn(trace::record_route))
        .fallback(error::fallback)
        .with_state(state);
    Router::new()
        .nest("/v1", v1)
        .fallback(error::fallback)
        .layer(axum::middleware::from_fn_with_state(token, auth::require_token))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(RequestDecompressionLayer::new())
        // Event streams are excluded by the default predicate; they gzip themselves with a
        // sync flush per event (see `events`).
        .layer(CompressionLayer::new().compress_when(DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE))))
        .layer(axum::middleware::map_response(move |resp| listener::close_when_short(resp, fd_reserve)))
        // Outermost: the span covers everything, refused tokens and unknown routes included.
        .layer(axum::middleware::from_fn(trace::request_span))
}

/// Bodies up to this size go out as they are. An operation record (~1.4 KB) or a spawn answer
/// fits in one TCP segment either way, and gzipping it only costs both sides CPU: measured on
/// the SDK, inflating small bodies was 5% of its time per run.
const COMPRESS_ABOVE: u16 = 4096;

/// Runs blocking work (SQLite, the disk) on a blocking thread: a store call waits for locks
/// and the disk, and under load those waits would stall the executor's few threads and with
/// them every connection.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, error::ApiError> + Send + 'static,
) -> Result<T, error::ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error::ApiError::internal(format!("a blocking task failed: {e}")))?
}

/// Derives the token's public id: a UUID from a hash of the token, so `whoami` can name the
/// token without revealing it.
pub(crate) fn token_uuid(token: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest([b"contree-local token id:".as_slice(), token.as_bytes()].concat());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}
