//! `/operations`: status (with `inflight`), listing with filters, cancellation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contree_core::models::{
    InstanceResult, OperationKind, OperationMetadata, OperationResponse, OperationResult, OperationStatus,
    OperationSummary,
};
use serde_json::Value;
use uuid::Uuid;

use super::error::ApiError;
use super::params::{Query, parse_uuid};
use super::{AppState, blocking};
use crate::ops::store_error;
use crate::store::{OpFilter, OperationRecord, format_timestamp};

/// Builds the wire form of an operation from its record; `live_status` overrides the stored
/// status of a running operation and `partial` is the `inflight` result.
pub(crate) fn to_response(
    rec: &OperationRecord,
    live_status: Option<OperationStatus>,
    partial: Option<InstanceResult>,
) -> OperationResponse {
    let status = live_status.unwrap_or(rec.status);
    let kind = rec.kind.clone();
    let mut metadata = rec.metadata.clone();
    if kind == OperationKind::Instance {
        crate::ops::echo::complete(&mut metadata);
    }
    if let (Some(p), Value::Object(m)) = (&partial, &mut metadata) {
        m.insert("result".to_owned(), serde_json::to_value(p).unwrap_or(Value::Null));
    }
    let resources = metadata.get("result").and_then(|r| r.get("resources"));
    let num = |k: &str| resources.and_then(|r| r.get(k)).and_then(Value::as_f64);
    let consumed_cpu = match (num("user_cpu_time"), num("system_cpu_time")) {
        (Some(u), Some(s)) => Some(u + s),
        _ => None,
    };
    let consumed_memory = num("max_rss").map(|v| v as i64);
    let result = if status.is_terminal() {
        Some(OperationResult { image: rec.result_image_uuid, tag: rec.result_tag.clone(), stdout: None, stderr: None })
    } else {
        partial.as_ref().map(|p| OperationResult {
            image: None,
            tag: None,
            stdout: Some(p.stdout.clone()),
            stderr: Some(p.stderr.clone()),
        })
    };
    OperationResponse {
        uuid: rec.uuid,
        kind: Some(kind),
        status,
        error: rec.error.clone(),
        created_at: Some(format_timestamp(rec.created_at)),
        duration: shown_duration(rec, status, crate::store::now()),
        image_size: None,
        consumed_cpu,
        consumed_memory,
        image_uuid: rec.image_uuid,
        result_image_uuid: if status == OperationStatus::Success { rec.result_image_uuid } else { None },
        metadata: Some(OperationMetadata::Raw(metadata)),
        result,
    }
}

/// `duration`: the recorded one once the operation has ended; before that, the time so far
/// (running since it started, else waiting since it was created, as the final one counts),
/// never `null`, which clients that poll (the official Python SDK) refuse.
fn shown_duration(rec: &OperationRecord, status: OperationStatus, now: time::OffsetDateTime) -> Option<f64> {
    let since = rec.started_at.unwrap_or(rec.created_at);
    if status.is_terminal() {
        // An operation ended without a recorded duration (one the server was stopped in)
        // lasted until it was marked ended.
        return rec.duration.or_else(|| rec.finished_at.map(|end| (end - since).as_seconds_f64().max(0.0)));
    }
    Some((now - since).as_seconds_f64().max(0.0))
}

/// Loads an operation's record, or 404.
pub(crate) fn load(state: &AppState, uuid: Uuid) -> Result<OperationRecord, ApiError> {
    state
        .ops
        .store
        .get_operation(uuid)
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("operation {uuid} not found")))
}

/// The live status to show instead of the stored one, if any.
///
/// A run's live status turns terminal a moment before its final record (result, image,
/// output) is stored. Showing that terminal status with the older record would tell a poller
/// "done" with no result, so a terminal status is only ever shown from the record; and when
/// the record was finished between the two reads, the stored status wins.
fn shown_status(stored: OperationStatus, live: Option<OperationStatus>) -> Option<OperationStatus> {
    if stored.is_terminal() { None } else { live.filter(|s| !s.is_terminal()) }
}

/// `GET /operations/{id}[?inflight=1]` with `Retry-After: 1` (the poll delay hint).
pub(crate) async fn get(State(state): State<AppState>, Path(op): Path<String>, q: Query) -> Result<Response, ApiError> {
    let uuid = parse_uuid(&op, "operation")?;
    // The live view is read before the record: a run's end is committed to the store before
    // its live status turns terminal, so a terminal live status here means the record read
    // next is terminal too. (Read the other way round, a run ending in between would show
    // its terminal live status next to the record's old metadata, without a result.)
    let (status, partial) = match state.ops.live(uuid) {
        Some(l) => {
            let status = l.status();
            let partial = (q.flag("inflight") && !status.is_terminal()).then(|| l.fold(1)).flatten();
            (Some(status), partial)
        }
        None => (None, None),
    };
    let rec = {
        let state = state.clone();
        blocking(move || load(&state, uuid)).await?
    };
    // The record may have been finished since; the stored status and result then win. And a
    // terminal status is never shown next to a record that does not have it yet.
    let partial = if rec.status.is_terminal() { None } else { partial };
    let status = shown_status(rec.status, status);
    let mut resp = Json(to_response(&rec, status, partial)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(resp)
}

/// `GET /operations?limit&offset&status&kind&since&until` → a bare JSON array, newest first.
pub(crate) async fn list(State(state): State<AppState>, q: Query) -> Result<Json<Vec<OperationSummary>>, ApiError> {
    let status = match q.get("status").filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<OperationStatus>().map_err(|e| ApiError::bad_request(e.message().to_owned()))?),
        None => None,
    };
    let kind = match q.get("kind").filter(|s| !s.is_empty()) {
        Some(k) => match OperationKind::from_wire(k) {
            OperationKind::Other(_) => {
                return Err(ApiError::bad_request(format!("`kind` must be `instance` or `image_import`, got `{k}`")));
            }
            k => Some(k),
        },
        None => None,
    };
    let filter = OpFilter {
        status,
        kind,
        since: q.time("since")?,
        until: q.time("until")?,
        limit: q.limit()? as u32,
        offset: q.offset()? as u64,
    };
    let records = {
        let state = state.clone();
        blocking(move || state.ops.store.list_operations(&filter).map_err(store_error)).await?
    };
    Ok(Json(
        records
            .iter()
            .map(|r| {
                // A live status that turned terminal after the record was read would come
                // without the record's final fields: show the (slightly older) live state.
                let live =
                    state.ops.live(r.uuid).map(|l| l.status()).filter(|s| !r.status.is_terminal() && !s.is_terminal());
                to_response(r, live, None).summary()
            })
            .collect(),
    ))
}

/// `DELETE /operations/{id}` → 202, or 409 when it already ended.
pub(crate) async fn cancel(State(state): State<AppState>, Path(op): Path<String>) -> Result<StatusCode, ApiError> {
    let uuid = parse_uuid(&op, "operation")?;
    blocking(move || state.ops.cancel(uuid)).await?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_status_is_shown_only_once_the_record_has_it() {
        use OperationStatus::*;
        // Live says done, the record is not stored yet: keep showing the stored status.
        assert_eq!(shown_status(Executing, Some(Success)), None);
        assert_eq!(shown_status(Pending, Some(Failed)), None);
        // Running: the live status is fresher than the record.
        assert_eq!(shown_status(Pending, Some(Executing)), Some(Executing));
        // Stored as finished: the record wins whatever the live op says.
        assert_eq!(shown_status(Success, Some(Executing)), None);
        assert_eq!(shown_status(Executing, None), None);
    }

    #[test]
    fn duration_is_the_time_so_far_until_the_recorded_one() {
        let mut rec = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, Value::Null);
        let created = rec.created_at;
        let now = created + time::Duration::milliseconds(2500);
        assert_eq!(shown_duration(&rec, OperationStatus::Pending, now), Some(2.5));
        rec.started_at = Some(created + time::Duration::seconds(2));
        assert_eq!(shown_duration(&rec, OperationStatus::Executing, now), Some(0.5));
        rec.duration = Some(7.0);
        assert_eq!(shown_duration(&rec, OperationStatus::Success, now), Some(7.0));
        // A clock that went back never gives a negative duration.
        assert_eq!(shown_duration(&rec, OperationStatus::Executing, created), Some(0.0));
        // Ended without a recorded duration: until it was marked ended, not until now.
        rec.duration = None;
        rec.finished_at = Some(created + time::Duration::seconds(3));
        assert_eq!(shown_duration(&rec, OperationStatus::Failed, now + time::Duration::hours(1)), Some(1.0));
    }
}
