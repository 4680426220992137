//! `POST /images/import`. contree-local works offline: the only image it can "import" is its
//! built-in base image. Any other reference gives an operation that honestly FAILS with an
//! error saying so, rather than pretending.

use std::sync::Arc;

use contree_core::models::{ImageImportMetadata, ImageImportRequest, ImageSource, OperationKind};
use serde_json::Value;
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::images::base::BASE_IMAGE_TAG;
use crate::store::{ImageRecord, OperationRecord};

use super::live::LiveOp;
use super::{Ops, Outcome, store_error};

/// Whether an import reference names the built-in base image (`contree-local/base[:latest]`,
/// with or without a `docker://` scheme or a Docker Hub host).
pub(crate) fn names_base_image(url: &str) -> bool {
    let mut r = url.trim();
    for scheme in ["docker://", "oci://"] {
        if let Some(rest) = r.strip_prefix(scheme) {
            r = rest;
        }
    }
    for host in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = r.strip_prefix(host) {
            r = rest;
        }
    }
    let base = BASE_IMAGE_TAG.strip_suffix(":latest").unwrap_or(BASE_IMAGE_TAG);
    r == BASE_IMAGE_TAG || r == base
}

/// Creates an import operation and completes it right away.
pub(crate) fn import(ops: &Arc<Ops>, req: ImageImportRequest) -> Result<Uuid, ApiError> {
    if req.registry.url.trim().is_empty() {
        return Err(ApiError::bad_request("`registry.url` must not be empty"));
    }
    if let Some(tag) = &req.tag
        && !ImageSource::is_valid_tag(tag)
    {
        return Err(ApiError::bad_request(format!("`tag` `{tag}` is not a valid image tag")));
    }
    if req.timeout == Some(0) {
        return Err(ApiError::bad_request("`timeout` must be at least 1 second"));
    }
    let mut registry = req.registry.clone();
    if let Some(c) = &mut registry.credentials
        && c.password.is_some()
    {
        c.password = Some("<MASKED>".to_owned());
    }
    let meta = ImageImportMetadata {
        registry: Some(registry),
        tag: req.tag.clone(),
        timeout: Some(req.timeout.unwrap_or(300)),
    };
    let uuid = Uuid::new_v4();
    let record =
        OperationRecord::new(uuid, OperationKind::ImageImport, serde_json::to_value(&meta).unwrap_or(Value::Null));
    ops.store.insert_operation(&record).map_err(store_error)?;
    let live = LiveOp::new(uuid, OperationKind::ImageImport, false, 0);
    ops.register(live.clone())?;
    live.lock().started = Some(std::time::Instant::now());
    let outcome = if names_base_image(&req.registry.url) {
        match import_base(ops, uuid, req.tag.as_deref()) {
            Ok(image) => Outcome { result_tag: image.tag, ..Outcome::success(Some(image.uuid)) },
            Err(e) => Outcome::failed(e),
        }
    } else {
        Outcome::failed(format!(
            "registry imports are not available offline: contree-local only provides its built-in image `{BASE_IMAGE_TAG}` (import `docker://{BASE_IMAGE_TAG}`, or use `tag:{BASE_IMAGE_TAG}` directly)"
        ))
    };
    ops.finish(&live, record, outcome);
    Ok(uuid)
}

/// "Imports" the base image: the base itself, or — when another tag is asked for — an image
/// sharing its filesystem under that tag (so the base keeps its own tag).
fn import_base(ops: &Ops, op: Uuid, tag: Option<&str>) -> Result<ImageRecord, String> {
    let base = ops
        .store
        .get_image(ops.base.uuid)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the built-in base image is missing from the store".to_owned())?;
    let Some(tag) = tag.filter(|t| *t != BASE_IMAGE_TAG) else {
        return Ok(base);
    };
    if let Some(existing) = ops.store.find_by_tag(tag).map_err(|e| e.to_string())?
        && existing.parent == Some(base.uuid)
        && existing.layer.is_none()
    {
        return Ok(existing);
    }
    let alias = ImageRecord::new(Uuid::new_v4(), Some(base.uuid), None).with_operation(op).with_env(base.env.clone());
    ops.store.insert_image(&alias).map_err(|e| e.to_string())?;
    ops.store.set_tag(alias.uuid, tag).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_base_image_reference() {
        for ok in [
            BASE_IMAGE_TAG.to_owned(),
            format!("docker://{BASE_IMAGE_TAG}"),
            format!("docker://docker.io/{BASE_IMAGE_TAG}"),
            BASE_IMAGE_TAG.trim_end_matches(":latest").to_owned(),
        ] {
            assert!(names_base_image(&ok), "{ok}");
        }
        for bad in ["docker://docker.io/library/ubuntu:latest", "busybox", ""] {
            assert!(!names_base_image(bad), "{bad}");
        }
    }
}
