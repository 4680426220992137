//! `POST /instances`: validate the spawn request, queue the run, answer 201 at once.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use contree_core::models::InstanceSpawnRequest;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::params::JsonBody;

/// 201 with the request echoed (every spawn field, image resolved to its UUID, defaults
/// filled in, `result: null`) plus the operation `uuid`, and `Location: /v1/operations/<uuid>`.
/// The run itself is queued: it waits as PENDING while `max_concurrent_runs` runs are
/// executing. A field the server does not know is a 400 ([`super::spawn_fields`]).
pub(crate) async fn spawn(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    super::spawn_fields::check(&body)?;
    let req: InstanceSpawnRequest =
        serde_json::from_value(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    // Admission, validation (which reads images) and the insert all touch SQLite or /proc.
    let (uuid, mut instance) = super::blocking(move || state.ops.spawn_instance(req)).await?;
    if let Value::Object(m) = &mut instance {
        m.insert("uuid".to_owned(), Value::String(uuid.to_string()));
    }
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/v1/operations/{uuid}"))], Json(instance)).into_response())
}
