//! `POST /instances`: validate the spawn request, queue the run, answer 201 at once.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use contree_core::models::{InstanceSpawnRequest, InstanceSpawnResponse};

use super::AppState;
use super::error::ApiError;
use super::params::JsonBody;

/// 201 with the request echoed (image resolved to its UUID, defaults filled in) plus the
/// operation `uuid`, and `Location: /v1/operations/<uuid>`. The run itself is queued: it
/// waits as PENDING while `max_concurrent_runs` runs are executing.
pub(crate) async fn spawn(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<InstanceSpawnRequest>,
) -> Result<Response, ApiError> {
    // Admission, validation (which reads images) and the insert all touch SQLite or /proc.
    let (uuid, instance) = super::blocking(move || state.ops.spawn_instance(req)).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/operations/{uuid}"))],
        Json(InstanceSpawnResponse { uuid, instance }),
    )
        .into_response())
}
