//! Operations: the asynchronous jobs behind spawns and imports (`/operations`,
//! `/operations/{id}`, `/operations/{id}/subprocesses`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use super::file::FileSpec;
use super::image::ImageImportMetadata;
use super::instance::{
    ImageSource, InstanceNetworking, InstanceResourcesLimits, InstanceResult, InstanceSpawnRequest,
    lenient_image_source,
};
use super::serde_util::{self, string_enum};
use super::stream::{ClosableStreamRepr, StreamRepr};
use crate::error::Error;

/// Where an operation is in its life: `PENDING` → `ASSIGNED` → `EXECUTING` → one of the
/// terminal `SUCCESS`, `FAILED`, `CANCELLED`.
///
/// Serializes upper case; parsing ignores case (the spec's own example says `success`).
///
/// ```
/// use contree_core::models::OperationStatus;
/// let s: OperationStatus = serde_json::from_str(r#""success""#).unwrap();
/// assert_eq!(s, OperationStatus::Success);
/// assert!(s.is_terminal());
/// assert!(!OperationStatus::Executing.is_terminal());
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#""SUCCESS""#);
/// ```
///
/// A status this SDK does not know (from a newer server) parses as [`OperationStatus::Unknown`],
/// which is neither terminal nor active: waiting on it keeps polling until the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OperationStatus {
    /// Queued, not yet picked up by a worker.
    Pending,
    /// A worker holds the operation.
    Assigned,
    /// Running.
    Executing,
    /// Finished successfully (a command's non-zero exit code can still be a success).
    Success,
    /// Failed (spawn failure, error, timeout).
    Failed,
    /// Cancelled.
    Cancelled,
    /// A status this SDK does not know (sent by a newer server). Serializes as `UNKNOWN`.
    Unknown,
}

impl OperationStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OperationStatus; 6] = [
        OperationStatus::Pending,
        OperationStatus::Assigned,
        OperationStatus::Executing,
        OperationStatus::Success,
        OperationStatus::Failed,
        OperationStatus::Cancelled,
    ];

    /// The wire spelling, e.g. `"EXECUTING"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Pending => "PENDING",
            OperationStatus::Assigned => "ASSIGNED",
            OperationStatus::Executing => "EXECUTING",
            OperationStatus::Success => "SUCCESS",
            OperationStatus::Failed => "FAILED",
            OperationStatus::Cancelled => "CANCELLED",
            OperationStatus::Unknown => "UNKNOWN",
        }
    }

    /// `SUCCESS`, `FAILED` or `CANCELLED`: the operation will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, OperationStatus::Success | OperationStatus::Failed | OperationStatus::Cancelled)
    }

    /// `PENDING`, `ASSIGNED` or `EXECUTING`.
    pub fn is_active(self) -> bool {
        matches!(self, OperationStatus::Pending | OperationStatus::Assigned | OperationStatus::Executing)
    }
}

impl fmt::Display for OperationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperationStatus {
    type Err = Error;
    /// Ignores case; also accepts the American `CANCELED`. Strict: an unknown status is an
    /// error here (a filter a server must reject), while a response body parses it as
    /// [`OperationStatus::Unknown`].
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("CANCELED") {
            return Ok(OperationStatus::Cancelled);
        }
        OperationStatus::ALL.into_iter().find(|st| t.eq_ignore_ascii_case(st.as_str())).ok_or_else(|| {
            Error::invalid_argument(
                "status",
                format!("`{s}` is not one of PENDING, ASSIGNED, EXECUTING, SUCCESS, FAILED, CANCELLED"),
            )
        })
    }
}

impl Serialize for OperationStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OperationStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Ok(raw.parse().unwrap_or(OperationStatus::Unknown))
    }
}

string_enum! {
    /// What an operation does. Parsing ignores case (some servers send `INSTANCE`); unknown
    /// kinds are kept in `Other`.
    pub enum OperationKind {
        /// A spawned instance (`POST /instances`).
        Instance => "instance",
        /// An image import (`POST /images/import`).
        ImageImport => "image_import",
    }
}

/// One operation as listed by `GET /operations`. Spec `OperationSummary`.
///
/// `uuid` and `status` must be present (an operation is useless without them); every other
/// field may be missing. Nullable fields serialize as `null`, like the real server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationSummary {
    /// The operation UUID.
    pub uuid: Uuid,
    /// Type of the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<OperationKind>,
    /// Current status.
    pub status: OperationStatus,
    /// Error message if the operation failed.
    #[serde(default)]
    pub error: Option<String>,
    /// ISO 8601 timestamp of creation, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Duration in seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Bytes written for the result image; `null` when not measured.
    #[serde(default, deserialize_with = "serde_util::opt_i64")]
    pub image_size: Option<i64>,
    /// CPU seconds (user + system); `null` when not measured.
    #[serde(default)]
    pub consumed_cpu: Option<f64>,
    /// Peak memory (max_rss, units as reported by getrusage); `null` when not measured.
    #[serde(default, deserialize_with = "serde_util::opt_i64")]
    pub consumed_memory: Option<i64>,
    /// UUID of the source image (instances); `null` for imports.
    #[serde(default, deserialize_with = "serde_util::opt_uuid")]
    pub image_uuid: Option<Uuid>,
    /// UUID of the produced image; set only on SUCCESS.
    #[serde(default, deserialize_with = "serde_util::opt_uuid")]
    pub result_image_uuid: Option<Uuid>,
}

/// Answer of `GET /operations`: a bare JSON array of summaries. Parsing also accepts an
/// `{"operations": [...]}` envelope, which some servers send.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct OperationListResponse(pub Vec<OperationSummary>);

impl<'de> Deserialize<'de> for OperationListResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            List(Vec<OperationSummary>),
            Envelope {
                #[serde(default, deserialize_with = "serde_util::null_default")]
                operations: Vec<OperationSummary>,
            },
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::List(ops) | Wire::Envelope { operations: ops } => OperationListResponse(ops),
        })
    }
}

impl From<OperationListResponse> for Vec<OperationSummary> {
    fn from(list: OperationListResponse) -> Self {
        list.0
    }
}

impl IntoIterator for OperationListResponse {
    type Item = OperationSummary;
    type IntoIter = std::vec::IntoIter<OperationSummary>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The metadata of an `instance` operation: the spawn request as the server parsed it (with
/// `image` resolved to a UUID) plus the process result. Spec `OperationInstanceMetadata`;
/// also the body of [`InstanceSpawnResponse`](super::InstanceSpawnResponse).
///
/// Every field may be missing (older servers echo only a few).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OperationInstanceMetadata {
    /// The command that was run.
    pub command: String,
    /// The image run on: normally the resolved UUID.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient_image_source")]
    pub image: Option<ImageSource>,
    /// Arguments of the command.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "serde_util::null_default")]
    pub args: Vec<String>,
    /// Whether the command ran through a shell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    /// Environment variables given (secret values may be masked).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "serde_util::env_map")]
    pub env: BTreeMap<String, String>,
    /// Whether the environment was written back into the result image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preserve_env: Option<bool>,
    /// Whether the working directory was saved into the result image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preserve_cwd: Option<bool>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// User ID the process ran as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group ID the process ran as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Hostname inside the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Whether the run kept no result image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposable: Option<bool>,
    /// Execution time limit in seconds.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_u64")]
    pub timeout: Option<u64>,
    /// Bytes kept per stream in the event log.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_u64")]
    pub truncate_output_at: Option<u64>,
    /// Stdin given to the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<ClosableStreamRepr>,
    /// Files placed in the sandbox, keyed by absolute path.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "serde_util::null_default")]
    pub files: BTreeMap<String, FileSpec>,
    /// Resource limits of the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources_limits: Option<InstanceResourcesLimits>,
    /// Network settings of the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networking: Option<InstanceNetworking>,
    /// The process result, once there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<InstanceResult>,
}

impl OperationInstanceMetadata {
    /// The metadata a server records for `request`, with the image resolved to `image`.
    pub fn from_request(request: InstanceSpawnRequest, image: Uuid) -> Self {
        OperationInstanceMetadata {
            command: request.command,
            image: Some(ImageSource::Uuid(image)),
            args: request.args,
            shell: request.shell,
            env: request.env,
            preserve_env: request.preserve_env,
            preserve_cwd: request.preserve_cwd,
            cwd: request.cwd,
            uid: request.uid,
            gid: request.gid,
            hostname: request.hostname,
            disposable: request.disposable,
            timeout: request.timeout,
            truncate_output_at: request.truncate_output_at,
            stdin: request.stdin,
            files: request.files,
            resources_limits: request.resources_limits,
            networking: request.networking,
            result: None,
        }
    }

    /// The image UUID, when `image` is one.
    pub fn image_uuid(&self) -> Option<Uuid> {
        self.image.as_ref().and_then(ImageSource::as_uuid)
    }

    /// Whether the run was disposable (unset means the server default, `false`).
    pub fn is_disposable(&self) -> bool {
        self.disposable.unwrap_or(false)
    }
}

/// `metadata` of an operation, chosen by the operation's top-level `kind`.
///
/// Serializes as the inner object (no tag).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum OperationMetadata {
    /// `kind = instance`.
    Instance(Box<OperationInstanceMetadata>),
    /// `kind = image_import`.
    ImageImport(ImageImportMetadata),
    /// An unknown or missing kind, or metadata that did not parse as its kind: the JSON as sent.
    Raw(Value),
}

impl OperationMetadata {
    /// Types `value` by `kind`; falls back to [`OperationMetadata::Raw`] instead of failing.
    pub fn from_value(kind: Option<&OperationKind>, value: Value) -> Self {
        match kind {
            Some(OperationKind::Instance) => match OperationInstanceMetadata::deserialize(&value) {
                Ok(meta) => OperationMetadata::Instance(Box::new(meta)),
                Err(_) => OperationMetadata::Raw(value),
            },
            Some(OperationKind::ImageImport) => match ImageImportMetadata::deserialize(&value) {
                Ok(meta) => OperationMetadata::ImageImport(meta),
                Err(_) => OperationMetadata::Raw(value),
            },
            _ => OperationMetadata::Raw(value),
        }
    }

    /// The instance metadata, if this is one.
    pub fn as_instance(&self) -> Option<&OperationInstanceMetadata> {
        match self {
            OperationMetadata::Instance(meta) => Some(meta),
            _ => None,
        }
    }

    /// The import metadata, if this is one.
    pub fn as_image_import(&self) -> Option<&ImageImportMetadata> {
        match self {
            OperationMetadata::ImageImport(meta) => Some(meta),
            _ => None,
        }
    }
}

/// `result` of an operation: the result image and, for imports, its tag.
///
/// With `?inflight=1` on an executing instance, the server also attaches partial
/// `stdout`/`stderr` here.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OperationResult {
    /// UUID of the result image; `null` for disposable runs and failures.
    #[serde(deserialize_with = "serde_util::opt_uuid")]
    pub image: Option<Uuid>,
    /// Tag assigned to the imported image.
    pub tag: Option<String>,
    /// Partial stdout (with `?inflight=1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<StreamRepr>,
    /// Partial stderr (with `?inflight=1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<StreamRepr>,
}

/// Answer of `GET /operations/{id}`. Spec `OperationResponse`.
///
/// `metadata` is typed by the top-level `kind`; metadata that is unknown or does not parse
/// is kept raw rather than failing the response. As in [`OperationSummary`], only `uuid` and
/// `status` are required.
///
/// ```
/// use contree_core::models::{OperationKind, OperationResponse, OperationStatus};
/// let op: OperationResponse = serde_json::from_str(r#"{
///     "uuid": "87654321-9abc-baba-deda-0123456789ab", "kind": "INSTANCE", "status": "SUCCESS",
///     "metadata": {"command": "echo hi", "result": {"state": {"exit_code": 0}}},
///     "result": {"image": "12345678-9abc-baba-deda-0123456789ab", "tag": null}
/// }"#).unwrap();
/// assert_eq!(op.kind, Some(OperationKind::Instance));
/// assert_eq!(op.status, OperationStatus::Success);
/// let meta = op.instance_metadata().unwrap();
/// assert_eq!(meta.result.as_ref().unwrap().state.exit_code, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "OperationResponseWire")]
pub struct OperationResponse {
    /// The operation UUID.
    pub uuid: Uuid,
    /// Type of the operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<OperationKind>,
    /// Current status.
    pub status: OperationStatus,
    /// Error message if the operation failed.
    pub error: Option<String>,
    /// ISO 8601 timestamp of creation, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Duration in seconds.
    pub duration: Option<f64>,
    /// Bytes written for the result image; `null` when not measured.
    pub image_size: Option<i64>,
    /// CPU seconds (user + system); `null` when not measured.
    pub consumed_cpu: Option<f64>,
    /// Peak memory (max_rss, units as reported by getrusage); `null` when not measured.
    pub consumed_memory: Option<i64>,
    /// UUID of the source image (instances); `null` for imports.
    pub image_uuid: Option<Uuid>,
    /// UUID of the produced image; set only on SUCCESS.
    pub result_image_uuid: Option<Uuid>,
    /// Kind-specific metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<OperationMetadata>,
    /// The result image (and tag for imports), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<OperationResult>,
}

impl OperationResponse {
    /// The instance metadata, when this is an instance operation whose metadata parsed.
    pub fn instance_metadata(&self) -> Option<&OperationInstanceMetadata> {
        self.metadata.as_ref().and_then(OperationMetadata::as_instance)
    }

    /// The import metadata, when this is an import operation whose metadata parsed.
    pub fn import_metadata(&self) -> Option<&ImageImportMetadata> {
        self.metadata.as_ref().and_then(OperationMetadata::as_image_import)
    }

    /// The process result (`metadata.result`) of an instance operation.
    pub fn instance_result(&self) -> Option<&InstanceResult> {
        self.instance_metadata().and_then(|m| m.result.as_ref())
    }

    /// The summary fields alone.
    pub fn summary(&self) -> OperationSummary {
        OperationSummary {
            uuid: self.uuid,
            kind: self.kind.clone(),
            status: self.status,
            error: self.error.clone(),
            created_at: self.created_at.clone(),
            duration: self.duration,
            image_size: self.image_size,
            consumed_cpu: self.consumed_cpu,
            consumed_memory: self.consumed_memory,
            image_uuid: self.image_uuid,
            result_image_uuid: self.result_image_uuid,
        }
    }
}

/// What `GET /operations/{id}` looks like before `metadata` is typed by `kind`.
#[derive(Deserialize)]
struct OperationResponseWire {
    #[serde(flatten)]
    summary: OperationSummary,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    result: Option<OperationResult>,
}

impl From<OperationResponseWire> for OperationResponse {
    fn from(wire: OperationResponseWire) -> Self {
        let s = wire.summary;
        let metadata = wire.metadata.map(|v| OperationMetadata::from_value(s.kind.as_ref(), v));
        OperationResponse {
            uuid: s.uuid,
            kind: s.kind,
            status: s.status,
            error: s.error,
            created_at: s.created_at,
            duration: s.duration,
            image_size: s.image_size,
            consumed_cpu: s.consumed_cpu,
            consumed_memory: s.consumed_memory,
            image_uuid: s.image_uuid,
            result_image_uuid: s.result_image_uuid,
            metadata,
            result: wire.result,
        }
    }
}

/// Answer of `POST /operations/{id}/subprocesses` (201).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubprocessCreated {
    /// Spawned process id of the new process (≥ 2; 1 is the main process).
    pub spid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OP: &str = "87654321-9abc-baba-deda-0123456789ab";
    const IMG: &str = "12345678-9abc-baba-deda-0123456789ab";

    fn stub_operation_response() -> Value {
        json!({
            "uuid": OP, "kind": "instance", "status": "SUCCESS", "error": null,
            "created_at": "2024-01-01T12:00:00+00:00", "duration": 1.5,
            "metadata": {
                "command": "echo hi", "image": IMG, "shell": true,
                "result": {
                    "resources": {"elapsed_time": 0.2, "max_rss": 1024},
                    "state": {"exit_code": 0, "pid": 42},
                    "stdout": {"value": "aGkK", "encoding": "base64", "truncated": false},
                    "stderr": {"value": "", "encoding": "ascii"}
                }
            },
            "result_image_uuid": IMG,
            "result": {"image": IMG, "tag": null}
        })
    }

    #[test]
    fn status_parsing_and_terminality() {
        for s in OperationStatus::ALL {
            assert_eq!(s.as_str().parse::<OperationStatus>().unwrap(), s);
            assert_eq!(s.as_str().to_lowercase().parse::<OperationStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        let terminal: Vec<_> = OperationStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [OperationStatus::Success, OperationStatus::Failed, OperationStatus::Cancelled]);
        assert_eq!("canceled".parse::<OperationStatus>().unwrap(), OperationStatus::Cancelled);
        assert_eq!("DONE".parse::<OperationStatus>().unwrap_err().argument(), Some("status"));
        // A newer server's status parses (and is neither terminal nor active); a filter
        // value (FromStr) stays strict.
        let unknown: OperationStatus = serde_json::from_value(json!("DONE")).unwrap();
        assert_eq!(unknown, OperationStatus::Unknown);
        assert!(!unknown.is_terminal() && !unknown.is_active());
        assert!(serde_json::from_value::<OperationStatus>(json!(3)).is_err());
    }

    #[test]
    fn an_operation_with_an_unknown_status_parses() {
        let mut body = stub_operation_response();
        body["status"] = json!("SUSPENDED");
        let op: OperationResponse = serde_json::from_value(body).unwrap();
        assert_eq!(op.status, OperationStatus::Unknown);
        assert_eq!(op.uuid.to_string(), OP);
    }

    #[test]
    fn kind_accepts_any_case_and_keeps_unknown() {
        let k: OperationKind = serde_json::from_value(json!("INSTANCE")).unwrap();
        assert_eq!(k, OperationKind::Instance);
        let k: OperationKind = serde_json::from_value(json!("Image_Import")).unwrap();
        assert_eq!(k, OperationKind::ImageImport);
        assert_eq!(serde_json::to_value(&k).unwrap(), json!("image_import"));
        let k: OperationKind = serde_json::from_value(json!("snapshot")).unwrap();
        assert_eq!(k, OperationKind::Other("snapshot".into()));
        assert_eq!(serde_json::to_value(&k).unwrap(), json!("snapshot"));
    }

    #[test]
    fn summary_parses_stub_example_and_serializes_nulls() {
        let s: OperationSummary = serde_json::from_value(json!({
            "uuid": OP, "kind": "instance", "status": "SUCCESS", "error": null,
            "created_at": "2024-01-01T12:00:00+00:00", "duration": 1.5,
            "image_uuid": IMG, "result_image_uuid": IMG, "unknown": 1
        }))
        .unwrap();
        assert_eq!(s.kind, Some(OperationKind::Instance));
        assert_eq!(s.duration, Some(1.5));
        assert_eq!(s.image_size, None);
        assert_eq!(s.result_image_uuid.unwrap().to_string(), IMG);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["image_size"], Value::Null);
        assert_eq!(v["status"], json!("SUCCESS"));
        // Minimal and odd-typed numbers.
        let s: OperationSummary = serde_json::from_value(json!({
            "uuid": OP, "status": "pending", "duration": 2, "consumed_memory": 1024.0, "image_uuid": ""
        }))
        .unwrap();
        assert_eq!(s.kind, None);
        assert_eq!(s.duration, Some(2.0));
        assert_eq!(s.consumed_memory, Some(1024));
        assert_eq!(s.image_uuid, None);
    }

    #[test]
    fn list_accepts_bare_array_and_envelope() {
        let item = json!({"uuid": OP, "status": "EXECUTING", "kind": "instance"});
        let bare: OperationListResponse = serde_json::from_value(json!([item.clone()])).unwrap();
        let env: OperationListResponse = serde_json::from_value(json!({"operations": [item]})).unwrap();
        assert_eq!(bare, env);
        assert_eq!(bare.0.len(), 1);
        assert!(serde_json::to_value(&bare).unwrap().is_array());
    }

    #[test]
    fn response_types_instance_metadata() {
        let op: OperationResponse = serde_json::from_value(stub_operation_response()).unwrap();
        let meta = op.instance_metadata().expect("instance metadata");
        assert_eq!(meta.command, "echo hi");
        assert_eq!(meta.image_uuid().unwrap().to_string(), IMG);
        assert_eq!(meta.shell, Some(true));
        let result = op.instance_result().unwrap();
        assert_eq!(result.stdout.to_bytes().unwrap(), b"hi\n");
        assert_eq!(op.result.as_ref().unwrap().image.unwrap().to_string(), IMG);
        assert_eq!(op.result.as_ref().unwrap().tag, None);
        assert_eq!(op.summary().duration, Some(1.5));
    }

    #[test]
    fn response_types_import_metadata() {
        let op: OperationResponse = serde_json::from_value(json!({
            "uuid": OP, "kind": "image_import", "status": "SUCCESS",
            "created_at": "2024-01-01T12:00:00+00:00",
            "metadata": {"registry": {"url": "docker://docker.io/busybox:latest"}, "tag": "busybox:latest", "timeout": 300},
            "result": {"image": IMG, "tag": "busybox:latest"}
        }))
        .unwrap();
        let meta = op.import_metadata().expect("import metadata");
        assert_eq!(meta.tag.as_deref(), Some("busybox:latest"));
        assert_eq!(op.result.unwrap().tag.as_deref(), Some("busybox:latest"));
    }

    #[test]
    fn upper_case_kind_still_types_metadata() {
        let mut v = stub_operation_response();
        v["kind"] = json!("INSTANCE");
        let op: OperationResponse = serde_json::from_value(v).unwrap();
        assert!(op.instance_metadata().is_some());
    }

    #[test]
    fn unknown_kind_or_bad_metadata_stays_raw() {
        let op: OperationResponse = serde_json::from_value(json!({
            "uuid": OP, "kind": "snapshot", "status": "PENDING", "metadata": {"x": 1}
        }))
        .unwrap();
        assert_eq!(op.metadata, Some(OperationMetadata::Raw(json!({"x": 1}))));
        assert_eq!(op.kind, Some(OperationKind::Other("snapshot".into())));

        let op: OperationResponse = serde_json::from_value(json!({
            "uuid": OP, "kind": "instance", "status": "FAILED", "error": "boom",
            "metadata": {"command": ["not", "a", "string"]}
        }))
        .unwrap();
        assert_eq!(op.metadata, Some(OperationMetadata::Raw(json!({"command": ["not", "a", "string"]}))));
        assert_eq!(op.error.as_deref(), Some("boom"));

        let op: OperationResponse =
            serde_json::from_value(json!({"uuid": OP, "status": "PENDING", "metadata": null})).unwrap();
        assert_eq!(op.metadata, None);
        assert_eq!(op.result, None);
    }

    #[test]
    fn response_roundtrips_through_serialization() {
        let op: OperationResponse = serde_json::from_value(stub_operation_response()).unwrap();
        let again: OperationResponse = serde_json::from_value(serde_json::to_value(&op).unwrap()).unwrap();
        assert_eq!(again, op);
    }

    #[test]
    fn metadata_from_request_resolves_image() {
        let req = InstanceSpawnRequest::new("ls", ImageSource::tag("busybox").unwrap()).disposable(true);
        let meta = OperationInstanceMetadata::from_request(req, IMG.parse().unwrap());
        assert_eq!(meta.image_uuid().unwrap().to_string(), IMG);
        assert!(meta.is_disposable());
        assert_eq!(serde_json::to_value(&meta).unwrap(), json!({"command": "ls", "image": IMG, "disposable": true}));
    }

    #[test]
    fn inflight_result_carries_partial_output() {
        let r: OperationResult = serde_json::from_value(json!({
            "image": null, "stdout": {"value": "part", "encoding": "ascii"}
        }))
        .unwrap();
        assert_eq!(r.stdout.unwrap().to_bytes().unwrap(), b"part");
        assert_eq!(serde_json::to_value(OperationResult::default()).unwrap(), json!({"image": null, "tag": null}));
    }

    #[test]
    fn subprocess_created() {
        let s: SubprocessCreated = serde_json::from_value(json!({"spid": 2})).unwrap();
        assert_eq!(s.spid, 2);
        assert_eq!(serde_json::to_value(s).unwrap(), json!({"spid": 2}));
    }
}
