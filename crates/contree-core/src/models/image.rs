//! Images: listing, tagging and importing from a registry (`/images`, `/images/import`,
//! `/images/{uuid}/tag`, and `GET /inspect/{uuid}/`, which answers an [`Image`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::serde_util;

/// An image. Spec `Image`.
///
/// Nullable fields (`tag`, `operation_uuid`) serialize as `null` like the real server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The image UUID.
    pub uuid: Uuid,
    /// Tag to identify the image, if any.
    #[serde(default)]
    pub tag: Option<String>,
    /// ISO 8601 timestamp of when the image was created, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// UUID of the operation that created this image; `null` for images of another namespace
    /// (e.g. public images) or images not created by an operation.
    #[serde(default, deserialize_with = "serde_util::opt_uuid")]
    pub operation_uuid: Option<Uuid>,
}

/// Answer of `GET /images`. Spec `ImageListResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageListResponse {
    /// The images of this page.
    #[serde(default, deserialize_with = "serde_util::null_default")]
    pub images: Vec<Image>,
}

/// Body of `PATCH /images/{uuid}/tag`: the new tag. Tags are unique per namespace, so the
/// tag moves here from any other image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRequest {
    /// New tag for the image.
    pub tag: String,
}

impl TagRequest {
    /// A request to set `tag`.
    pub fn new(tag: impl Into<String>) -> Self {
        TagRequest { tag: tag.into() }
    }
}

/// Credentials for a private registry. The password never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegistryCredentials {
    /// Username for the registry authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for the registry authentication (`"<MASKED>"` when echoed by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl RegistryCredentials {
    /// Username and password credentials.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        RegistryCredentials { username: Some(username.into()), password: Some(password.into()) }
    }
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where to import an image from: a registry URL and optional credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageRegistry {
    /// URL of the image in its registry, e.g. `docker://docker.io/library/busybox:latest`.
    #[serde(default)]
    pub url: String,
    /// Credentials for the registry, if it needs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<RegistryCredentials>,
}

/// Body of `POST /images/import`. Spec `ImageImportRequest`.
///
/// ```
/// use contree_core::models::ImageImportRequest;
/// let req = ImageImportRequest::new("docker://docker.io/library/alpine:3").tag("alpine:3");
/// assert_eq!(
///     serde_json::to_value(&req).unwrap(),
///     serde_json::json!({"registry": {"url": "docker://docker.io/library/alpine:3"}, "tag": "alpine:3"})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageImportRequest {
    /// The registry to import from.
    pub registry: ImageRegistry,
    /// Tag for the imported image; if omitted the image is private, reachable by UUID only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Maximum time in seconds for the import (server default 300).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_u64")]
    pub timeout: Option<u64>,
}

impl ImageImportRequest {
    /// An import of `url` without credentials, tag or timeout.
    pub fn new(url: impl Into<String>) -> Self {
        ImageImportRequest { registry: ImageRegistry { url: url.into(), credentials: None }, tag: None, timeout: None }
    }

    /// Sets the tag of the imported image.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Sets the import timeout in seconds.
    pub fn timeout(mut self, seconds: u64) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// Sets registry credentials.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.registry.credentials = Some(RegistryCredentials::new(username, password));
        self
    }
}

/// Answer of `POST /images/import` (201): the id of the import operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageImportResponse {
    /// UUID of the import operation (poll `GET /operations/{uuid}`).
    pub uuid: Uuid,
}

/// The metadata of an `image_import` operation: the import request as the server recorded
/// it, with the password masked. Spec `ImageImportMetadata`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageImportMetadata {
    /// The registry imported from (`credentials.password` is always `"<MASKED>"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<ImageRegistry>,
    /// Tag requested for the imported image.
    #[serde(default)]
    pub tag: Option<String>,
    /// Maximum time in seconds for the import.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_u64")]
    pub timeout: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IMAGE_UUID: &str = "12345678-9abc-baba-deda-0123456789ab";

    #[test]
    fn image_parses_spec_example() {
        let img: Image = serde_json::from_value(json!({
            "uuid": IMAGE_UUID,
            "tag": "busybox:latest",
            "created_at": "2024-01-01T12:00:00+00:00",
            "operation_uuid": null,
            "unknown": {"x": 1}
        }))
        .unwrap();
        assert_eq!(img.uuid.to_string(), IMAGE_UUID);
        assert_eq!(img.tag.as_deref(), Some("busybox:latest"));
        assert_eq!(img.created_at.as_deref(), Some("2024-01-01T12:00:00+00:00"));
        assert_eq!(img.operation_uuid, None);
    }

    #[test]
    fn image_tolerates_missing_optionals_and_serializes_nulls() {
        let img: Image = serde_json::from_value(json!({"uuid": IMAGE_UUID})).unwrap();
        assert_eq!(img.tag, None);
        assert_eq!(img.created_at, None);
        assert_eq!(
            serde_json::to_value(&img).unwrap(),
            json!({"uuid": IMAGE_UUID, "tag": null, "operation_uuid": null})
        );
        let img: Image = serde_json::from_value(json!({"uuid": IMAGE_UUID, "operation_uuid": ""})).unwrap();
        assert_eq!(img.operation_uuid, None);
    }

    #[test]
    fn list_response() {
        let list: ImageListResponse =
            serde_json::from_value(json!({"images": [{"uuid": IMAGE_UUID, "tag": null}]})).unwrap();
        assert_eq!(list.images.len(), 1);
        assert_eq!(serde_json::from_value::<ImageListResponse>(json!({})).unwrap().images, vec![]);
        assert_eq!(serde_json::from_value::<ImageListResponse>(json!({"images": null})).unwrap().images, vec![]);
    }

    #[test]
    fn import_request_roundtrip_and_defaults() {
        let req: ImageImportRequest = serde_json::from_value(json!({
            "registry": {"url": "docker://docker.io/busybox:latest",
                         "credentials": {"username": "myuser", "password": "secret"}},
            "tag": "busybox:latest",
            "timeout": 300
        }))
        .unwrap();
        assert_eq!(req.registry.credentials.as_ref().unwrap().username.as_deref(), Some("myuser"));
        assert_eq!(req.timeout, Some(300));
        let minimal = ImageImportRequest::new("docker://docker.io/busybox:latest");
        assert_eq!(
            serde_json::to_value(&minimal).unwrap(),
            json!({"registry": {"url": "docker://docker.io/busybox:latest"}})
        );
        let full = minimal.tag("busybox:latest").timeout(300).credentials("myuser", "secret");
        assert_eq!(full, req);
    }

    #[test]
    fn credentials_debug_hides_password() {
        let req = ImageImportRequest::new("docker://r/x").credentials("user", "hunter2");
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("user"), "{dbg}");
    }

    #[test]
    fn import_metadata_parses_stub_example() {
        let m: ImageImportMetadata = serde_json::from_value(json!({
            "registry": {"url": "docker://docker.io/busybox:latest",
                         "credentials": {"username": "u", "password": "<MASKED>"}},
            "tag": "busybox:latest",
            "timeout": 300
        }))
        .unwrap();
        assert_eq!(m.registry.unwrap().url, "docker://docker.io/busybox:latest");
        assert_eq!(m.timeout, Some(300));
        let empty: ImageImportMetadata = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, ImageImportMetadata::default());
    }

    #[test]
    fn tag_request_and_import_response() {
        assert_eq!(serde_json::to_value(TagRequest::new("x:1")).unwrap(), json!({"tag": "x:1"}));
        let r: ImageImportResponse = serde_json::from_value(json!({"uuid": IMAGE_UUID})).unwrap();
        assert_eq!(r.uuid.to_string(), IMAGE_UUID);
    }
}
