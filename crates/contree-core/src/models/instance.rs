//! Running commands: the spawn request (`POST /instances`), the subprocess request
//! (`POST /operations/{id}/subprocesses`), and the result of a process.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::file::FileSpec;
use super::operation::OperationInstanceMetadata;
use super::serde_util;
use super::stream::{ClosableStreamRepr, StreamRepr};
use crate::error::{Error, Result};
use crate::validate;

/// The image a spawn runs on: a UUID, or a tag (sent as `"tag:<tag>"`). Spec `ImageSource`.
///
/// The server resolves a tag to a UUID when the operation is created and records the UUID.
///
/// ```
/// use contree_core::models::ImageSource;
/// let by_tag: ImageSource = "tag:busybox:latest".parse().unwrap();
/// assert_eq!(by_tag.as_tag(), Some("busybox:latest"));
/// assert_eq!(by_tag.to_string(), "tag:busybox:latest");
///
/// let by_uuid: ImageSource = "12345678-9abc-baba-deda-0123456789ab".parse().unwrap();
/// assert!(by_uuid.as_uuid().is_some());
///
/// assert!("busybox:latest".parse::<ImageSource>().unwrap_err().is_invalid_argument());
/// assert!(ImageSource::tag("bad tag").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageSource {
    /// An image UUID (serialized hyphenated).
    Uuid(Uuid),
    /// An image tag, without the `tag:` prefix (serialized as `tag:<tag>`).
    Tag(String),
}

impl ImageSource {
    /// A tag source, checked against the spec pattern
    /// `^[A-Za-z0-9][A-Za-z0-9_-]*(?:[:/.][A-Za-z0-9_-]+)*$` (e.g. `ubuntu:latest`).
    pub fn tag(tag: impl Into<String>) -> Result<Self> {
        let tag = tag.into();
        validate::tag("image", &tag)?;
        Ok(ImageSource::Tag(tag))
    }

    /// Whether `tag` (without `tag:`) matches the spec's tag pattern.
    pub fn is_valid_tag(tag: &str) -> bool {
        validate::tag("image", tag).is_ok()
    }

    /// Parses `"<uuid>"` or `"tag:<tag>"`. Anything else is an `InvalidArgument` error naming
    /// `image`.
    pub fn parse(value: &str) -> Result<Self> {
        if let Some(tag) = value.strip_prefix("tag:") {
            return ImageSource::tag(tag);
        }
        Uuid::try_parse(value).map(ImageSource::Uuid).map_err(|_| {
            Error::invalid_argument("image", format!("`{value}` is neither an image UUID nor `tag:<tag>`"))
        })
    }

    /// The UUID, if this is a UUID source.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            ImageSource::Uuid(uuid) => Some(*uuid),
            ImageSource::Tag(_) => None,
        }
    }

    /// The tag (without `tag:`), if this is a tag source.
    pub fn as_tag(&self) -> Option<&str> {
        match self {
            ImageSource::Uuid(_) => None,
            ImageSource::Tag(tag) => Some(tag),
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Uuid(uuid) => write!(f, "{}", uuid.hyphenated()),
            ImageSource::Tag(tag) => write!(f, "tag:{tag}"),
        }
    }
}

impl FromStr for ImageSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ImageSource::parse(s)
    }
}

impl From<Uuid> for ImageSource {
    fn from(uuid: Uuid) -> Self {
        ImageSource::Uuid(uuid)
    }
}

impl Serialize for ImageSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ImageSource::parse(&raw).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

/// For echoes (spawn response, operation metadata), where the server has already accepted the
/// value: `null`/`""` → `None`, a UUID or `tag:<tag>` as usual, and any other string is kept
/// as a tag rather than failing the response.
pub(crate) fn lenient_image_source<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<ImageSource>, D::Error> {
    Ok(match Option::<String>::deserialize(d)? {
        None => None,
        Some(s) if s.trim().is_empty() => None,
        Some(s) => Some(ImageSource::parse(&s).unwrap_or_else(|_| {
            let tag = s.strip_prefix("tag:").unwrap_or(&s);
            ImageSource::Tag(tag.to_owned())
        })),
    })
}

/// Limits on the sandbox's resources. Spec `InstanceResourcesLimits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceResourcesLimits {
    /// Maximum writable layer size in bytes (server default 12884901888, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_u64")]
    pub max_layer_bytes: Option<u64>,
}

/// Network settings of the sandbox. Spec `InstanceNetworking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceNetworking {
    /// Network access; `false` starts the VM without a network interface (server default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Body of `POST /instances`: run a command in a new sandbox. Spec `InstanceSpawnRequest`.
///
/// Unset fields are omitted on the wire so the server's defaults apply.
///
/// ```
/// use contree_core::models::{ImageSource, InstanceSpawnRequest};
/// let req = InstanceSpawnRequest::new("echo hi", ImageSource::tag("busybox:latest").unwrap())
///     .shell(true)
///     .env("GREETING", "hi")
///     .timeout(30);
/// assert_eq!(
///     serde_json::to_value(&req).unwrap(),
///     serde_json::json!({
///         "command": "echo hi", "image": "tag:busybox:latest", "shell": true,
///         "env": {"GREETING": "hi"}, "timeout": 30
///     })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpawnRequest {
    /// A shell expression if `shell` is true, else the path of the executable in the image.
    pub command: String,
    /// The image to run on: a UUID or `tag:<tag>`.
    pub image: ImageSource,
    /// Arguments for the executable; used only when `shell` is false (server default `[]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "serde_util::null_default")]
    pub args: Vec<String>,
    /// Run `command` through a shell (`<shell> -c`), inheriting the image's `ENV` (server default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    /// Environment variables; merged with the image's when `shell` is true. Empty means unset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "serde_util::env_map")]
    pub env: BTreeMap<String, String>,
    /// Write the merged environment back into the result image (server default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_env: Option<bool>,
    /// Save the resolved initial working directory as the result image's default (server default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_cwd: Option<bool>,
    /// Absolute working directory, created if missing; `""` means the image default (server default `""`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// User ID to run as (server default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group ID to run as (server default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Hostname inside the sandbox (server default `"linuxkit"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Keep no result image (server default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposable: Option<bool>,
    /// Maximum execution time in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_u64")]
    pub timeout: Option<u64>,
    /// Bytes kept per stream in the event log (server default 1048576, at most 10485760).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_u64")]
    pub truncate_output_at: Option<u64>,
    /// Bytes fed to the process's stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<ClosableStreamRepr>,
    /// Uploaded files to place, keyed by absolute path in the sandbox.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "serde_util::null_default")]
    pub files: BTreeMap<String, FileSpec>,
    /// Resource limits of the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_limits: Option<InstanceResourcesLimits>,
    /// Network settings of the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<InstanceNetworking>,
}

impl InstanceSpawnRequest {
    /// A request to run `command` on `image`, everything else left to the server.
    pub fn new(command: impl Into<String>, image: impl Into<ImageSource>) -> Self {
        InstanceSpawnRequest {
            command: command.into(),
            image: image.into(),
            args: Vec::new(),
            shell: None,
            env: BTreeMap::new(),
            preserve_env: None,
            preserve_cwd: None,
            cwd: None,
            uid: None,
            gid: None,
            hostname: None,
            disposable: None,
            timeout: None,
            truncate_output_at: None,
            stdin: None,
            files: BTreeMap::new(),
            resources_limits: None,
            networking: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs `command` through a shell.
    pub fn shell(mut self, shell: bool) -> Self {
        self.shell = Some(shell);
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Writes the merged environment back into the result image.
    pub fn preserve_env(mut self, preserve: bool) -> Self {
        self.preserve_env = Some(preserve);
        self
    }

    /// Saves the initial working directory as the result image's default.
    pub fn preserve_cwd(mut self, preserve: bool) -> Self {
        self.preserve_cwd = Some(preserve);
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Sets the user ID.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Sets the group ID.
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Sets the hostname.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Keeps (`false`) or discards (`true`) the result image.
    pub fn disposable(mut self, disposable: bool) -> Self {
        self.disposable = Some(disposable);
        self
    }

    /// Sets the execution time limit in seconds.
    pub fn timeout(mut self, seconds: u64) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// Sets the per-stream cap of the event log in bytes.
    pub fn truncate_output_at(mut self, bytes: u64) -> Self {
        self.truncate_output_at = Some(bytes);
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, stdin: ClosableStreamRepr) -> Self {
        self.stdin = Some(stdin);
        self
    }

    /// Places an uploaded file at `path`.
    pub fn file(mut self, path: impl Into<String>, spec: FileSpec) -> Self {
        self.files.insert(path.into(), spec);
        self
    }

    /// Limits the writable layer size in bytes.
    pub fn max_layer_bytes(mut self, bytes: u64) -> Self {
        self.resources_limits = Some(InstanceResourcesLimits { max_layer_bytes: Some(bytes) });
        self
    }

    /// Enables or disables networking.
    pub fn networking(mut self, enabled: bool) -> Self {
        self.networking = Some(InstanceNetworking { enabled: Some(enabled) });
        self
    }
}

/// Answer of `POST /instances` (201): the operation id and the request as the server parsed
/// it (with `image` resolved to a UUID). Spec `InstanceSpawnResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpawnResponse {
    /// UUID of the created operation.
    pub uuid: Uuid,
    /// The echoed request fields and the `result`, if any.
    #[serde(flatten)]
    pub instance: OperationInstanceMetadata,
}

/// Body of `POST /operations/{id}/subprocesses`: run another process in a running sandbox.
/// Spec `ExecSpec`.
///
/// ```
/// use contree_core::models::ExecSpec;
/// let spec = ExecSpec::new("/bin/ls").arg("-la").cwd("/tmp");
/// assert_eq!(
///     serde_json::to_value(&spec).unwrap(),
///     serde_json::json!({"command": "/bin/ls", "args": ["-la"], "cwd": "/tmp"})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// A shell expression if `shell` is true, else the path of the executable.
    pub command: String,
    /// Arguments for the executable when `shell` is false (server default `[]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "serde_util::null_default")]
    pub args: Vec<String>,
    /// Run `command` through a shell (server default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    /// Environment variables of the process. Empty means unset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "serde_util::env_map")]
    pub env: BTreeMap<String, String>,
    /// Working directory; `""` means the image or server default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// User ID to run as (server default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group ID to run as (server default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Bytes fed to stdin; `close: false` keeps the pipe open for later writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<ClosableStreamRepr>,
    /// Bytes kept per stream in the event log (server default 1048576, at most 10485760).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_u64")]
    pub truncate_output_at: Option<u64>,
}

impl ExecSpec {
    /// A request to run `command`, everything else left to the server.
    pub fn new(command: impl Into<String>) -> Self {
        ExecSpec {
            command: command.into(),
            args: Vec::new(),
            shell: None,
            env: BTreeMap::new(),
            cwd: None,
            uid: None,
            gid: None,
            stdin: None,
            truncate_output_at: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs `command` through a shell.
    pub fn shell(mut self, shell: bool) -> Self {
        self.shell = Some(shell);
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Sets the user and group IDs.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, stdin: ClosableStreamRepr) -> Self {
        self.stdin = Some(stdin);
        self
    }

    /// Sets the per-stream cap of the event log in bytes.
    pub fn truncate_output_at(mut self, bytes: u64) -> Self {
        self.truncate_output_at = Some(bytes);
        self
    }
}

/// Resource usage of a finished process (`InstanceResult.resources`). Every field may be
/// missing; integer fields also accept floats from other servers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceResources {
    /// Block input operations.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub block_input: Option<i64>,
    /// Block output operations.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub block_output: Option<i64>,
    /// Operation cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Elapsed wall time in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_time: Option<f64>,
    /// Involuntary context switches.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub involuntary_switches: Option<i64>,
    /// Maximum resident set size in KB.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub max_rss: Option<i64>,
    /// Monotonic time measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monotonic_time: Option<f64>,
    /// Page faults.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub page_faults: Option<i64>,
    /// Page faults requiring I/O.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub page_faults_io: Option<i64>,
    /// Shared memory size.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub shared_memory: Option<i64>,
    /// Signals received.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub signals: Option<i64>,
    /// Swaps.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub swaps: Option<i64>,
    /// System CPU time used, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_cpu_time: Option<f64>,
    /// Unshared memory size.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub unshared_memory: Option<i64>,
    /// User CPU time used, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_cpu_time: Option<f64>,
    /// Voluntary context switches.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "serde_util::opt_i64")]
    pub voluntary_switches: Option<i64>,
}

fn minus_one() -> i32 {
    -1
}

/// How a process ended (`InstanceResult.state`). Numbers are `-1` when unknown: while the
/// process runs, when not applicable (`signal` on a normal exit, `exit_code` when killed),
/// or when the server left them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Whether the process was continued from a stop.
    #[serde(default)]
    pub continued: bool,
    /// Whether a core dump was generated.
    #[serde(default)]
    pub core_dump: bool,
    /// Exit code (0..255), or -1.
    #[serde(default = "minus_one")]
    pub exit_code: i32,
    /// Process ID, or -1.
    #[serde(default = "minus_one")]
    pub pid: i32,
    /// Signal that terminated the process, or -1.
    #[serde(default = "minus_one")]
    pub signal: i32,
    /// Whether the process was stopped.
    #[serde(default)]
    pub stopped: bool,
    /// Whether the process was killed because its timeout was reached.
    #[serde(default)]
    pub timed_out: bool,
}

impl Default for InstanceState {
    fn default() -> Self {
        InstanceState {
            continued: false,
            core_dump: false,
            exit_code: -1,
            pid: -1,
            signal: -1,
            stopped: false,
            timed_out: false,
        }
    }
}

/// The result of a process: usage, exit state and captured output. Spec `InstanceResult`.
///
/// ```
/// use contree_core::models::InstanceResult;
/// let r: InstanceResult = serde_json::from_str(r#"{
///     "state": {"exit_code": 0, "pid": 42},
///     "stdout": {"value": "aGkK", "encoding": "base64"}
/// }"#).unwrap();
/// assert_eq!(r.state.exit_code, 0);
/// assert_eq!(r.stdout.to_bytes().unwrap(), b"hi\n");
/// assert_eq!(r.stderr.to_bytes().unwrap(), b"");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceResult {
    /// Resource usage.
    #[serde(deserialize_with = "serde_util::null_default")]
    pub resources: InstanceResources,
    /// Exit state.
    #[serde(deserialize_with = "serde_util::null_default")]
    pub state: InstanceState,
    /// Captured standard output (empty when missing).
    #[serde(deserialize_with = "serde_util::null_default")]
    pub stdout: StreamRepr,
    /// Captured standard error (empty when missing).
    #[serde(deserialize_with = "serde_util::null_default")]
    pub stderr: StreamRepr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoding;
    use serde_json::json;

    const IMAGE_UUID: &str = "12345678-9abc-baba-deda-0123456789ab";

    #[test]
    fn image_source_parse_and_display() {
        let u: ImageSource = IMAGE_UUID.parse().unwrap();
        assert_eq!(u.to_string(), IMAGE_UUID);
        let upper: ImageSource = IMAGE_UUID.to_uppercase().parse().unwrap();
        assert_eq!(upper, u);
        let t: ImageSource = "tag:ubuntu:latest".parse().unwrap();
        assert_eq!(t, ImageSource::Tag("ubuntu:latest".into()));
        assert_eq!(serde_json::to_value(&t).unwrap(), json!("tag:ubuntu:latest"));
        assert_eq!(serde_json::from_value::<ImageSource>(json!(IMAGE_UUID)).unwrap(), u);
        for bad in ["", "tag:", "ubuntu", "tag:-x", "tag:a::b", "tag:a/", "tag:a b", "tag:é"] {
            let err = ImageSource::parse(bad).unwrap_err();
            assert_eq!(err.argument(), Some("image"), "{bad}");
            assert!(serde_json::from_value::<ImageSource>(json!(bad)).is_err(), "{bad}");
        }
        for good in ["busybox", "busybox:latest", "ghcr.io/org/app:v1.2", "a_b-c", "0"] {
            assert!(ImageSource::is_valid_tag(good), "{good}");
        }
    }

    #[test]
    fn spawn_request_omits_unset_fields() {
        let req = InstanceSpawnRequest::new("/bin/app", ImageSource::Uuid(IMAGE_UUID.parse().unwrap()));
        assert_eq!(serde_json::to_value(&req).unwrap(), json!({"command": "/bin/app", "image": IMAGE_UUID}));
    }

    #[test]
    fn spawn_request_serializes_every_field_with_spec_names() {
        let file: Uuid = "a9165a5d-5c86-4bd8-8ee4-ae46c19cf45d".parse().unwrap();
        let req = InstanceSpawnRequest::new("/bin/app", ImageSource::tag("busybox:latest").unwrap())
            .args(["arg1", "arg2"])
            .shell(false)
            .env("KEY1", "value1")
            .preserve_env(true)
            .preserve_cwd(true)
            .cwd("/app")
            .uid(1)
            .gid(2)
            .hostname("container-name")
            .disposable(false)
            .timeout(60)
            .truncate_output_at(65535)
            .stdin(ClosableStreamRepr::from_bytes(b"hello\n").keep_open())
            .file("/root/hello.txt", FileSpec::new(file).mode(0o644).unwrap().owner(0, 0))
            .max_layer_bytes(1073741824)
            .networking(false);
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({
                "command": "/bin/app", "image": "tag:busybox:latest", "args": ["arg1", "arg2"],
                "shell": false, "env": {"KEY1": "value1"}, "preserve_env": true, "preserve_cwd": true,
                "cwd": "/app", "uid": 1, "gid": 2, "hostname": "container-name", "disposable": false,
                "timeout": 60, "truncate_output_at": 65535,
                "stdin": {"value": "hello\n", "encoding": "ascii", "close": false},
                "files": {"/root/hello.txt": {"uuid": "a9165a5d-5c86-4bd8-8ee4-ae46c19cf45d", "uid": 0, "gid": 0, "mode": "0644"}},
                "resources_limits": {"max_layer_bytes": 1073741824},
                "networking": {"enabled": false}
            })
        );
        let back: InstanceSpawnRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn spawn_request_parsing_is_lenient() {
        let req: InstanceSpawnRequest = serde_json::from_value(json!({
            "command": "env", "image": "tag:busybox:latest", "env": {"A": "1", "B": null},
            "args": null, "files": null, "unknown": 5, "timeout": 60.0
        }))
        .unwrap();
        assert_eq!(req.env.get("B").map(String::as_str), Some(""));
        assert!(req.args.is_empty() && req.files.is_empty());
        assert_eq!(req.timeout, Some(60));
        let req: InstanceSpawnRequest =
            serde_json::from_value(json!({"command": "env", "image": IMAGE_UUID, "env": null})).unwrap();
        assert!(req.env.is_empty());
        assert!(serde_json::from_value::<InstanceSpawnRequest>(json!({"command": "x", "image": "nope"})).is_err());
        assert!(serde_json::from_value::<InstanceSpawnRequest>(json!({"image": IMAGE_UUID})).is_err());
    }

    #[test]
    fn spawn_response_parses_stub_echo() {
        // The stub answers {"uuid": OP, **request_body}; the real server resolves the image.
        let r: InstanceSpawnResponse = serde_json::from_value(json!({
            "uuid": "87654321-9abc-baba-deda-0123456789ab",
            "command": "echo hi", "image": "tag:busybox:latest", "shell": true,
            "env": {"K": "V"}, "timeout": 60, "result": null, "extra": "ignored"
        }))
        .unwrap();
        assert_eq!(r.uuid.to_string(), "87654321-9abc-baba-deda-0123456789ab");
        assert_eq!(r.instance.command, "echo hi");
        assert_eq!(r.instance.image, Some(ImageSource::Tag("busybox:latest".into())));
        assert_eq!(r.instance.shell, Some(true));
        assert_eq!(r.instance.timeout, Some(60));
        assert_eq!(r.instance.result, None);
        let resolved: InstanceSpawnResponse = serde_json::from_value(json!({
            "uuid": "87654321-9abc-baba-deda-0123456789ab", "command": "x", "image": IMAGE_UUID
        }))
        .unwrap();
        assert_eq!(resolved.instance.image_uuid(), Some(IMAGE_UUID.parse().unwrap()));
    }

    #[test]
    fn exec_spec_roundtrip() {
        let spec = ExecSpec::new("sh")
            .shell(true)
            .env("A", "b")
            .user(1000, 1000)
            .stdin(ClosableStreamRepr::close_only())
            .truncate_output_at(10);
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v,
            json!({"command": "sh", "shell": true, "env": {"A": "b"}, "uid": 1000, "gid": 1000,
                   "stdin": {"value": "", "close": true}, "truncate_output_at": 10})
        );
        assert_eq!(serde_json::from_value::<ExecSpec>(v).unwrap(), spec);
        assert_eq!(serde_json::to_value(ExecSpec::new("true")).unwrap(), json!({"command": "true"}));
    }

    #[test]
    fn instance_result_parses_stub_example() {
        let r: InstanceResult = serde_json::from_value(json!({
            "resources": {"elapsed_time": 0.2, "max_rss": 1024},
            "state": {"exit_code": 0, "pid": 42},
            "stdout": {"value": "aGkK", "encoding": "base64", "truncated": false},
            "stderr": {"value": "", "encoding": "ascii"}
        }))
        .unwrap();
        assert_eq!(r.resources.elapsed_time, Some(0.2));
        assert_eq!(r.resources.max_rss, Some(1024));
        assert_eq!(r.resources.cost, None);
        assert_eq!(r.state.exit_code, 0);
        assert_eq!(r.state.pid, 42);
        assert_eq!(r.state.signal, -1);
        assert!(!r.state.timed_out);
        assert_eq!(r.stdout.to_bytes().unwrap(), b"hi\n");
        assert_eq!(r.stdout.encoding, Encoding::Base64);
    }

    #[test]
    fn instance_result_tolerates_missing_and_odd_values() {
        let r: InstanceResult = serde_json::from_value(json!({})).unwrap();
        assert_eq!(r.state.exit_code, -1);
        assert_eq!(r.stdout, StreamRepr::default());
        let r: InstanceResult = serde_json::from_value(json!({
            "resources": {"max_rss": 2048.0, "user_cpu_time": 1, "future": "x"},
            "state": null, "stdout": null
        }))
        .unwrap();
        assert_eq!(r.resources.max_rss, Some(2048));
        assert_eq!(r.resources.user_cpu_time, Some(1.0));
        assert_eq!(r.state, InstanceState::default());
    }

    proptest::proptest! {
        #[test]
        fn image_source_roundtrips_through_its_wire_form(
            bytes in proptest::prelude::any::<[u8; 16]>(),
            tag in "[A-Za-z0-9][A-Za-z0-9_-]{0,8}([:/.][A-Za-z0-9_-]{1,8}){0,3}",
        ) {
            for source in [ImageSource::Uuid(Uuid::from_bytes(bytes)), ImageSource::tag(tag.clone()).unwrap()] {
                let wire = serde_json::to_value(&source).unwrap();
                proptest::prop_assert_eq!(wire.as_str().unwrap(), source.to_string());
                proptest::prop_assert_eq!(serde_json::from_value::<ImageSource>(wire).unwrap(), source);
            }
        }
    }
}
