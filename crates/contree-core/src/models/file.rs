//! Uploaded files (`/files`, content-addressed by SHA-256 per namespace) and how a spawn
//! places them in the sandbox ([`FileSpec`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::serde_util;
use crate::error::{Error, Result};
use crate::validate;

/// Answer of `POST /files` (201). Spec `FileResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileResponse {
    /// UUID of the stored file (use it in [`FileSpec::uuid`]).
    pub uuid: Uuid,
    /// SHA-256 of the file content, lowercase hex.
    #[serde(default)]
    pub sha256: String,
    /// File size in bytes; -1 if unknown.
    #[serde(default = "minus_one", deserialize_with = "size_or_unknown")]
    pub size: i64,
}

fn minus_one() -> i64 {
    -1
}

/// A size that is missing or `null` is unknown (-1), never 0.
fn size_or_unknown<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    Ok(serde_util::opt_i64(d)?.unwrap_or(-1))
}

/// An uploaded file, as listed or looked up by SHA-256. Spec `File`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// UUID of the stored file.
    pub uuid: Uuid,
    /// SHA-256 of the file content, lowercase hex.
    #[serde(default)]
    pub sha256: String,
    /// File size in bytes; -1 if unknown.
    #[serde(default = "minus_one", deserialize_with = "size_or_unknown")]
    pub size: i64,
    /// When this namespace first uploaded the file (ISO 8601, as sent).
    #[serde(default)]
    pub created_at: String,
    /// Updated on each upload of the same content (ISO 8601, as sent).
    #[serde(default)]
    pub updated_at: String,
}

/// Answer of `GET /files`. Spec `FilesListResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FilesListResponse {
    /// The files of this page.
    #[serde(default, deserialize_with = "serde_util::null_default")]
    pub files: Vec<FileInfo>,
}

/// Places an uploaded file in the sandbox: the value of `files[<absolute path>]` in a spawn
/// request. The same UUID may map to several paths.
///
/// ```
/// use contree_core::models::FileSpec;
/// let uuid = "a9165a5d-5c86-4bd8-8ee4-ae46c19cf45d".parse().unwrap();
/// let spec = FileSpec::new(uuid).mode(0o755).unwrap().owner(1000, 1000);
/// assert_eq!(spec.mode.as_deref(), Some("0755"));
/// assert_eq!(spec.mode_bits().unwrap(), Some(0o755));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    /// UUID of the uploaded file ([`FileResponse::uuid`]).
    pub uuid: Uuid,
    /// Owner user ID (server default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Owner group ID (server default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// File mode as an octal string, e.g. `"0644"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl FileSpec {
    /// The file with server defaults for owner and mode.
    pub fn new(uuid: Uuid) -> Self {
        FileSpec { uuid, uid: None, gid: None, mode: None }
    }

    /// Sets the permission bits (at most `0o7777`), sent as 4-digit octal (`0o644` → `"0644"`).
    pub fn mode(mut self, mode: u32) -> Result<Self> {
        validate::file_mode("mode", mode)?;
        self.mode = Some(validate::format_mode(mode));
        Ok(self)
    }

    /// Sets the owner user and group IDs.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self
    }

    /// The mode as bits, parsed from the octal string (an optional `0o` prefix is accepted).
    /// `Ok(None)` when unset; an invalid string is an `InvalidArgument` error naming `mode`.
    pub fn mode_bits(&self) -> Result<Option<u32>> {
        let Some(raw) = self.mode.as_deref() else { return Ok(None) };
        let digits = raw.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if bits <= 0o7777 && !digits.is_empty() => Ok(Some(bits)),
            _ => Err(Error::invalid_argument("mode", format!("`{raw}` is not an octal file mode"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE_UUID: &str = "a9165a5d-5c86-4bd8-8ee4-ae46c19cf45d";
    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn file_response_parses_spec_example() {
        let r: FileResponse =
            serde_json::from_value(json!({"uuid": FILE_UUID, "sha256": SHA, "size": 1024, "x": true})).unwrap();
        assert_eq!(r.size, 1024);
        assert_eq!(r.sha256, SHA);
        let unknown: FileResponse = serde_json::from_value(json!({"uuid": FILE_UUID})).unwrap();
        assert_eq!(unknown.size, -1);
    }

    #[test]
    fn file_info_and_list() {
        let list: FilesListResponse = serde_json::from_value(json!({"files": [{
            "uuid": FILE_UUID, "sha256": "a".repeat(64), "size": 5,
            "created_at": "2024-01-01T12:00:00+00:00", "updated_at": "2024-01-01T12:00:00+00:00"
        }]}))
        .unwrap();
        assert_eq!(list.files[0].size, 5);
        assert_eq!(list.files[0].updated_at, "2024-01-01T12:00:00+00:00");
        assert!(serde_json::from_value::<FilesListResponse>(json!({})).unwrap().files.is_empty());
    }

    #[test]
    fn file_spec_serializes_only_what_is_set() {
        let uuid: Uuid = FILE_UUID.parse().unwrap();
        assert_eq!(serde_json::to_value(FileSpec::new(uuid)).unwrap(), json!({"uuid": FILE_UUID}));
        let spec = FileSpec::new(uuid).mode(0o644).unwrap().owner(0, 0);
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"uuid": FILE_UUID, "uid": 0, "gid": 0, "mode": "0644"})
        );
        let parsed: FileSpec = serde_json::from_value(
            json!({"uuid": "065def2a-e977-4852-8b26-a0ec05e85a90", "uid": 1000, "gid": 1000, "mode": "0600"}),
        )
        .unwrap();
        assert_eq!(parsed.mode_bits().unwrap(), Some(0o600));
    }

    #[test]
    fn file_spec_mode_validation() {
        let uuid: Uuid = FILE_UUID.parse().unwrap();
        let err = FileSpec::new(uuid).mode(0o17777).unwrap_err();
        assert_eq!(err.argument(), Some("mode"));
        for bad in ["", "0o", "999", "rwx", "77777"] {
            let spec = FileSpec { mode: Some(bad.into()), ..FileSpec::new(uuid) };
            assert_eq!(spec.mode_bits().unwrap_err().argument(), Some("mode"), "{bad}");
        }
        let spec = FileSpec { mode: Some("0o755".into()), ..FileSpec::new(uuid) };
        assert_eq!(spec.mode_bits().unwrap(), Some(0o755));
        assert_eq!(FileSpec::new(uuid).mode_bits().unwrap(), None);
    }
}
