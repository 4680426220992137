//! `/images`: listing with filters and pagination, tag assignment and removal, and import.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use contree_core::models::{
    Image, ImageImportRequest, ImageImportResponse, ImageListResponse, ImageSource, TagRequest,
};

use super::error::ApiError;
use super::params::{JsonBody, Query, parse_uuid};
use super::{AppState, blocking};
use crate::ops::{import, store_error};
use crate::store::{ImageFilter, ImageRecord, format_timestamp};

/// The wire form of a stored image.
pub(crate) fn to_wire(r: &ImageRecord) -> Image {
    Image {
        uuid: r.uuid,
        tag: r.tag.clone(),
        created_at: Some(format_timestamp(r.created_at)),
        operation_uuid: r.operation_uuid,
    }
}

/// `GET /images?limit&offset&tagged&tag&uuid&since&until`, newest first.
pub(crate) async fn list(State(state): State<AppState>, q: Query) -> Result<Json<ImageListResponse>, ApiError> {
    let limit = q.limit()?;
    let offset = q.offset()?;
    let tag_prefix = q.get("tag").filter(|t| !t.is_empty()).map(str::to_owned);
    let uuid = match q.get("uuid").filter(|u| !u.is_empty()) {
        Some(u) => Some(parse_uuid(u, "image")?),
        None => None,
    };
    let filter = ImageFilter {
        tagged: q.flag("tagged") || tag_prefix.is_some(),
        tag_prefix,
        uuid,
        since: q.time("since")?,
        until: q.time("until")?,
        limit: limit as u32,
        offset: offset as u64,
    };
    let images = blocking(move || state.ops.store.list_images(&filter).map_err(store_error)).await?;
    Ok(Json(ImageListResponse { images: images.iter().map(to_wire).collect() }))
}

/// `PATCH /images/{uuid}/tag` `{"tag": …}`: assigns the tag, moving it from any other image.
pub(crate) async fn set_tag(
    State(state): State<AppState>,
    Path(image): Path<String>,
    JsonBody(body): JsonBody<TagRequest>,
) -> Result<Json<Image>, ApiError> {
    let uuid = parse_uuid(&image, "image")?;
    if !ImageSource::is_valid_tag(&body.tag) {
        return Err(ApiError::bad_request(format!(
            "`{}` is not a valid tag (letters, digits, `_` and `-`, separated by `:`, `/` or `.`)",
            body.tag
        )));
    }
    let record = blocking(move || {
        if state.ops.store.get_image(uuid).map_err(store_error)?.is_none() {
            return Err(ApiError::not_found(format!("image {uuid} not found")));
        }
        state.ops.store.set_tag(uuid, &body.tag).map_err(store_error)
    })
    .await?;
    Ok(Json(to_wire(&record)))
}

/// `DELETE /images/{uuid}/tag[?tag=T]`: removes that tag, or every tag of the image. 204.
pub(crate) async fn remove_tag(
    State(state): State<AppState>,
    Path(image): Path<String>,
    q: Query,
) -> Result<StatusCode, ApiError> {
    let uuid = parse_uuid(&image, "image")?;
    let tag = q.get("tag").filter(|t| !t.is_empty()).map(str::to_owned);
    blocking(move || {
        let Some(record) = state.ops.store.get_image(uuid).map_err(store_error)? else {
            return Err(ApiError::not_found(format!("image {uuid} not found")));
        };
        if let Some(t) = &tag
            && record.tag.as_ref() != Some(t)
        {
            return Err(ApiError::not_found(format!("image {uuid} has no tag `{t}`")));
        }
        state.ops.store.remove_tag(uuid, tag.as_deref()).map_err(store_error)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /images/import` → 201 `{uuid}` + `Location` of the operation.
pub(crate) async fn import(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ImageImportRequest>,
) -> Result<Response, ApiError> {
    let uuid = blocking(move || import::import(&state.ops, body)).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/operations/{uuid}"))],
        Json(ImageImportResponse { uuid }),
    )
        .into_response())
}
