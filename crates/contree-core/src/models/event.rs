//! The operation event log (`GET /operations/{id}/events`, one [`OperationEvent`] per SSE
//! frame) and the typed payload of each event type.
//!
//! Events never fail to parse because of their `data`: [`OperationEvent::payload`] returns
//! [`EventPayload::Unknown`] for unknown types and for data that does not fit its type.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::operation::OperationStatus;
use super::serde_util::{self, string_enum};
use super::stream::StreamRepr;

string_enum! {
    /// The type of an event. Spec `OperationEventType`; unknown types are kept in `Other`.
    pub enum OperationEventType {
        /// Operation start-up snapshot (spid 0, first).
        Init => "init",
        /// A process started.
        Spawn => "spawn",
        /// Bytes written to a process's stdin.
        Stdin => "stdin",
        /// A chunk of standard output.
        Stdout => "stdout",
        /// A chunk of standard error.
        Stderr => "stderr",
        /// A process exited.
        Exit => "exit",
        /// A stream crossed its per-stream cap (emitted at stream EOF).
        Truncated => "truncated",
        /// The event log hit its size budget; later stream events are dropped.
        SizeCap => "size_cap",
        /// Network counters and configuration.
        Network => "network",
        /// The operation is winding down.
        Shutdown => "shutdown",
        /// The operation reached a terminal status (always last, no spid).
        Completion => "completion",
    }
}

/// One event of an operation's log. Spec `OperationEvent`.
///
/// ```
/// use contree_core::models::{EventPayload, OperationEvent};
/// let ev: OperationEvent = serde_json::from_str(
///     r#"{"id":2,"ts":"2026-06-08T20:00:00.12Z","spid":1,"type":"stdout","data":{"value":"hi\n","encoding":"ascii"}}"#,
/// ).unwrap();
/// match ev.payload() {
///     EventPayload::Stdout(chunk) => assert_eq!(chunk.to_bytes().unwrap(), b"hi\n"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationEvent {
    /// Sequential id, strictly increasing within an operation (gaps possible); resume with it.
    pub id: u64,
    /// UTC time the event was emitted (ISO 8601, up to nanoseconds), as sent.
    #[serde(default)]
    pub ts: String,
    /// Spawned process id: 0 daemon, 1 main process, ≥2 subprocesses; absent on `completion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spid: Option<u32>,
    /// The event type; selects the shape of `data`.
    #[serde(rename = "type")]
    pub event_type: OperationEventType,
    /// The per-type payload, as sent. See [`OperationEvent::payload`].
    #[serde(default)]
    pub data: Value,
}

impl OperationEvent {
    /// An event carrying `payload` (its type is taken from the payload).
    pub fn new(id: u64, ts: impl Into<String>, spid: Option<u32>, payload: &EventPayload) -> Self {
        OperationEvent { id, ts: ts.into(), spid, event_type: payload.event_type(), data: payload.to_data() }
    }

    /// The typed payload. Never fails: unknown types and data that does not fit the type
    /// give [`EventPayload::Unknown`].
    pub fn payload(&self) -> EventPayload {
        EventPayload::parse(&self.event_type, &self.data)
    }

    /// Whether this is the terminal `completion` event.
    pub fn is_completion(&self) -> bool {
        self.event_type == OperationEventType::Completion
    }
}

/// The typed `data` of an event, by [`OperationEventType`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventPayload {
    /// `init`.
    Init(EventDataInit),
    /// `spawn`.
    Spawn(EventDataSpawn),
    /// `stdin`.
    Stdin(EventDataStream),
    /// `stdout`.
    Stdout(EventDataStream),
    /// `stderr`.
    Stderr(EventDataStream),
    /// `exit`.
    Exit(EventDataExit),
    /// `truncated`.
    Truncated(EventDataTruncated),
    /// `size_cap`.
    SizeCap(EventDataSizeCap),
    /// `network`.
    Network(EventDataNetwork),
    /// `shutdown`.
    Shutdown(EventDataShutdown),
    /// `completion`.
    Completion(EventDataCompletion),
    /// An unknown type, or data that does not fit its type: kept as sent.
    Unknown {
        /// The event type as sent.
        event_type: String,
        /// The data as sent.
        data: Value,
    },
}

impl EventPayload {
    /// Types `data` by `event_type`; falls back to [`EventPayload::Unknown`].
    pub fn parse(event_type: &OperationEventType, data: &Value) -> Self {
        fn typed<'a, T: Deserialize<'a>>(data: &'a Value, wrap: fn(T) -> EventPayload) -> Option<EventPayload> {
            T::deserialize(data).ok().map(wrap)
        }
        let parsed = match event_type {
            OperationEventType::Init => typed(data, EventPayload::Init),
            OperationEventType::Spawn => typed(data, EventPayload::Spawn),
            OperationEventType::Stdin => typed(data, EventPayload::Stdin),
            OperationEventType::Stdout => typed(data, EventPayload::Stdout),
            OperationEventType::Stderr => typed(data, EventPayload::Stderr),
            OperationEventType::Exit => typed(data, EventPayload::Exit),
            OperationEventType::Truncated => typed(data, EventPayload::Truncated),
            OperationEventType::SizeCap => typed(data, EventPayload::SizeCap),
            OperationEventType::Network => typed(data, EventPayload::Network),
            OperationEventType::Shutdown => typed(data, EventPayload::Shutdown),
            OperationEventType::Completion => typed(data, EventPayload::Completion),
            OperationEventType::Other(_) => None,
        };
        parsed
            .unwrap_or_else(|| EventPayload::Unknown { event_type: event_type.as_str().to_owned(), data: data.clone() })
    }

    /// The event type this payload belongs to.
    pub fn event_type(&self) -> OperationEventType {
        match self {
            EventPayload::Init(_) => OperationEventType::Init,
            EventPayload::Spawn(_) => OperationEventType::Spawn,
            EventPayload::Stdin(_) => OperationEventType::Stdin,
            EventPayload::Stdout(_) => OperationEventType::Stdout,
            EventPayload::Stderr(_) => OperationEventType::Stderr,
            EventPayload::Exit(_) => OperationEventType::Exit,
            EventPayload::Truncated(_) => OperationEventType::Truncated,
            EventPayload::SizeCap(_) => OperationEventType::SizeCap,
            EventPayload::Network(_) => OperationEventType::Network,
            EventPayload::Shutdown(_) => OperationEventType::Shutdown,
            EventPayload::Completion(_) => OperationEventType::Completion,
            EventPayload::Unknown { event_type, .. } => OperationEventType::from_wire(event_type),
        }
    }

    /// The payload as the JSON `data` of an event.
    pub fn to_data(&self) -> Value {
        // These types have string keys only, so serializing cannot fail; Null is unreachable.
        let value = match self {
            EventPayload::Init(d) => serde_json::to_value(d),
            EventPayload::Spawn(d) => serde_json::to_value(d),
            EventPayload::Stdin(d) | EventPayload::Stdout(d) | EventPayload::Stderr(d) => serde_json::to_value(d),
            EventPayload::Exit(d) => serde_json::to_value(d),
            EventPayload::Truncated(d) => serde_json::to_value(d),
            EventPayload::SizeCap(d) => serde_json::to_value(d),
            EventPayload::Network(d) => serde_json::to_value(d),
            EventPayload::Shutdown(d) => serde_json::to_value(d),
            EventPayload::Completion(d) => serde_json::to_value(d),
            EventPayload::Unknown { data, .. } => return data.clone(),
        };
        value.unwrap_or_default()
    }
}

/// `init` data: the operation's start-up snapshot. Spec `EventDataInit`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventDataInit {
    /// When the operation started (ISO 8601), as sent.
    pub started_at: String,
    /// Internal runtime directory of the operation.
    pub runtime_path: String,
    /// Whether the runtime is verbose.
    pub verbose: bool,
    /// PID of the operation's init process.
    pub init_pid: i32,
    /// Hostname of the sandbox (best effort).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Kernel release and version (best effort).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Machine architecture, e.g. `x86_64` (best effort).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Operation-unique boot identifier (best effort).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// `spawn` data: how a process was started. Spec `EventDataSpawn`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventDataSpawn {
    /// Kernel PID of the process.
    pub pid: i32,
    /// The executable (for shell runs, the shell).
    pub command: String,
    /// The arguments (for shell runs, `-c <expression>`).
    #[serde(deserialize_with = "serde_util::null_default")]
    pub args: Vec<String>,
    /// Whether the command was wrapped in `<shell> -c`.
    pub shell: bool,
    /// Working directory.
    pub cwd: String,
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
    /// Per-process kill deadline in seconds.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub timeout: u64,
    /// Per-stream cap in bytes above which stream chunks stop being emitted.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub truncate_at: u64,
    /// Environment of the process; values of secret-looking keys are `"<MASKED>"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "serde_util::env_map")]
    pub env: BTreeMap<String, String>,
}

/// `stdin` / `stdout` / `stderr` data: one chunk of a stream (at most a few KB). Spec
/// `EventDataStream`; the same shape as [`StreamRepr`] (`truncated` is always false here).
pub type EventDataStream = StreamRepr;

/// Resource usage of a process at exit. Spec `EventResources`. Times are in microseconds;
/// unsupported counters are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventResources {
    /// User CPU time, µs.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub user_time_us: i64,
    /// System CPU time, µs.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub sys_time_us: i64,
    /// Peak resident set size, KB.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub max_rss_kb: i64,
    /// Shared memory (platform units).
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub shared_memory: i64,
    /// Unshared memory (platform units).
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub unshared_memory: i64,
    /// Swaps.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub swaps: i64,
    /// Minor page faults.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub minor_faults: i64,
    /// Major page faults.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub major_faults: i64,
    /// Voluntary context switches.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub voluntary_ctx_switches: i64,
    /// Involuntary context switches.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub involuntary_ctx_switches: i64,
    /// Block input operations.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub block_input_ops: i64,
    /// Block output operations.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub block_output_ops: i64,
    /// IPC messages sent.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub ipc_msgs_sent: i64,
    /// IPC messages received.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub ipc_msgs_received: i64,
    /// Signals received.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub signals_received: i64,
}

fn minus_one() -> i32 {
    -1
}

/// `exit` data: how a process ended. Spec `EventDataExit`.
///
/// `code` and `signal` are -1 when not applicable (or missing): a normal exit has
/// `signal = -1`, a killed process `code = -1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDataExit {
    /// Kernel PID of the process.
    #[serde(default)]
    pub pid: i32,
    /// Exit code (0..255), or -1 if killed by a signal.
    #[serde(default = "minus_one")]
    pub code: i32,
    /// Terminating signal, or -1 on a normal exit.
    #[serde(default = "minus_one")]
    pub signal: i32,
    /// Whether the signal produced a core dump (missing in old events: false).
    #[serde(default)]
    pub core_dump: bool,
    /// True only if the process's own timeout fired the kill.
    #[serde(default)]
    pub timed_out: bool,
    /// Wall-clock time from spawn to exit, in milliseconds.
    #[serde(default, deserialize_with = "serde_util::u64_or_zero")]
    pub duration_ms: u64,
    /// Resource usage at exit.
    #[serde(default, deserialize_with = "serde_util::null_default")]
    pub resources: EventResources,
}

impl Default for EventDataExit {
    fn default() -> Self {
        EventDataExit {
            pid: 0,
            code: -1,
            signal: -1,
            core_dump: false,
            timed_out: false,
            duration_ms: 0,
            resources: EventResources::default(),
        }
    }
}

impl EventDataExit {
    /// The wall-clock duration.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }
}

string_enum! {
    /// A process stream, as named by `truncated` events.
    pub enum StreamName {
        /// Standard input.
        Stdin => "stdin",
        /// Standard output.
        Stdout => "stdout",
        /// Standard error.
        Stderr => "stderr",
    }
}

/// `truncated` data: a stream crossed its cap; final totals at stream EOF. Spec
/// `EventDataTruncated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDataTruncated {
    /// Which stream.
    pub stream: StreamName,
    /// Bytes delivered before the cap.
    #[serde(default, deserialize_with = "serde_util::u64_or_zero")]
    pub bytes_emitted: u64,
    /// Bytes consumed but suppressed by the cap.
    #[serde(default, deserialize_with = "serde_util::u64_or_zero")]
    pub bytes_dropped: u64,
}

/// `size_cap` data: the event log reached its budget. Spec `EventDataSizeCap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventDataSizeCap {
    /// Size budget at which dropping started, in bytes.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub limit_bytes: u64,
    /// Approximate event-log size when the cap was hit, in bytes.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub file_size: u64,
}

/// Counters of one network interface. Spec `NetworkInterface`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkInterface {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Bytes received.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub rx_bytes: u64,
    /// Packets received.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub rx_packets: u64,
    /// Receive errors.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub rx_errs: u64,
    /// Received packets dropped.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub rx_drop: u64,
    /// Bytes sent.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub tx_bytes: u64,
    /// Packets sent.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub tx_packets: u64,
    /// Send errors.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub tx_errs: u64,
    /// Sent packets dropped.
    #[serde(deserialize_with = "serde_util::u64_or_zero")]
    pub tx_drop: u64,
}

/// The network parameters that were applied (only requested keys are present).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfigured {
    /// IPv4 address with prefix, e.g. `10.0.0.5/24`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip4: Option<String>,
    /// IPv4 gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip4_gw: Option<String>,
    /// IPv6 address with prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    /// IPv6 gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6_gw: Option<String>,
    /// Gateway MAC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw_mac: Option<String>,
    /// DNS server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<String>,
}

/// `network` data: interface counters (a baseline) and the applied configuration. Spec
/// `EventDataNetwork`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventDataNetwork {
    /// Per-interface counters (empty when `error` is set).
    #[serde(deserialize_with = "serde_util::null_default")]
    pub interfaces: Vec<NetworkInterface>,
    /// The network parameters that were applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configured: Option<NetworkConfigured>,
    /// Set if reading the counters failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

string_enum! {
    /// Why an operation shut down. More reasons may be added; they land in `Other`.
    pub enum ShutdownReason {
        /// The process exited normally.
        JobComplete => "job_complete",
        /// The operation timeout fired.
        Timeout => "timeout",
        /// The process could not be started.
        SpawnFailed => "spawn_failed",
        /// Terminated by an external signal.
        Signal => "signal",
    }
}

/// `shutdown` data: the operation is about to wind down. Spec `EventDataShutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDataShutdown {
    /// When the operation stopped (ISO 8601), as sent.
    #[serde(default)]
    pub stopped_at: String,
    /// Why it stopped.
    pub reason: ShutdownReason,
}

/// `completion` data: the operation's outcome; always the last event. Spec
/// `EventDataCompletion`.
///
/// Also reads the legacy spellings some servers still send (wire-protocol.md §9 Q1):
/// `duration` (seconds, a float) for `duration_ms`, and `result_image` for
/// `result_image_uuid`. The spec names win when both are present; serialization always
/// uses the spec names.
///
/// ```
/// use contree_core::models::EventDataCompletion;
/// let legacy: EventDataCompletion = serde_json::from_str(
///     r#"{"status":"SUCCESS","error":null,"duration":1.5,"result_image":"12345678-9abc-baba-deda-0123456789ab"}"#,
/// ).unwrap();
/// assert_eq!(legacy.duration_ms, Some(1500));
/// assert!(legacy.result_image_uuid.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CompletionWire")]
pub struct EventDataCompletion {
    /// Terminal status: SUCCESS, FAILED or CANCELLED.
    pub status: OperationStatus,
    /// Wall-clock duration of the operation in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The result image; `null` for disposable runs and for FAILED/CANCELLED.
    pub result_image_uuid: Option<Uuid>,
    /// Short error message for FAILED/CANCELLED; `null` on success.
    pub error: Option<String>,
    /// Size of the result image's layer in bytes (0 when nothing was persisted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size_bytes: Option<u64>,
}

impl EventDataCompletion {
    /// The duration, when the server sent one.
    pub fn duration(&self) -> Option<Duration> {
        self.duration_ms.map(Duration::from_millis)
    }
}

/// `completion` data with both the spec and the legacy field names.
#[derive(Deserialize)]
struct CompletionWire {
    status: OperationStatus,
    #[serde(default, deserialize_with = "serde_util::opt_u64")]
    duration_ms: Option<u64>,
    /// Legacy: seconds.
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default, deserialize_with = "serde_util::opt_uuid")]
    result_image_uuid: Option<Uuid>,
    /// Legacy name of `result_image_uuid`.
    #[serde(default, deserialize_with = "serde_util::opt_uuid")]
    result_image: Option<Uuid>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, deserialize_with = "serde_util::opt_u64")]
    image_size_bytes: Option<u64>,
}

impl From<CompletionWire> for EventDataCompletion {
    fn from(wire: CompletionWire) -> Self {
        let legacy_ms = wire
            .duration
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            // Saturating float-to-int cast; durations this long do not occur.
            .map(|secs| (secs * 1000.0).round() as u64);
        EventDataCompletion {
            status: wire.status,
            duration_ms: wire.duration_ms.or(legacy_ms),
            result_image_uuid: wire.result_image_uuid.or(wire.result_image),
            error: wire.error,
            image_size_bytes: wire.image_size_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoding;
    use serde_json::json;

    const IMG: &str = "12345678-9abc-baba-deda-0123456789ab";

    fn event(v: Value) -> OperationEvent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn init_event_from_stub() {
        let ev = event(json!({
            "id": 0, "ts": "2026-06-08T20:00:00Z", "spid": 0, "type": "init",
            "data": {"started_at": "2026-06-08T20:00:00.000000000Z", "runtime_path": "/run/contreeinitd",
                     "verbose": false, "init_pid": 1, "hostname": "vm-abc123", "new_field": true}
        }));
        assert_eq!(ev.id, 0);
        assert_eq!(ev.spid, Some(0));
        assert_eq!(ev.event_type, OperationEventType::Init);
        let EventPayload::Init(init) = ev.payload() else { panic!("{:?}", ev.payload()) };
        assert_eq!(init.init_pid, 1);
        assert_eq!(init.runtime_path, "/run/contreeinitd");
        assert_eq!(init.hostname.as_deref(), Some("vm-abc123"));
        assert_eq!(init.kernel, None);
    }

    #[test]
    fn spec_sse_example_minimal_data_still_types() {
        // The spec's SSE example carries only a few fields per event.
        let ev = event(json!({"id":0,"ts":"2026-06-08T20:00:00Z","spid":0,"type":"init","data":{"init_pid":1}}));
        assert!(matches!(ev.payload(), EventPayload::Init(EventDataInit { init_pid: 1, .. })));
        let ev = event(json!({"id":1,"ts":"2026-06-08T20:00:00.10Z","spid":1,"type":"spawn","data":{"pid":4242}}));
        assert!(matches!(ev.payload(), EventPayload::Spawn(EventDataSpawn { pid: 4242, .. })));
        let ev =
            event(json!({"id":2,"ts":"2026-06-08T20:00:00.12Z","spid":1,"type":"exit","data":{"pid":4242,"code":0}}));
        let EventPayload::Exit(exit) = ev.payload() else { panic!() };
        assert_eq!((exit.pid, exit.code, exit.signal), (4242, 0, -1));
    }

    #[test]
    fn spawn_event_from_stub() {
        let ev = event(json!({
            "id": 1, "ts": "2026-06-08T20:00:00.10Z", "spid": 1, "type": "spawn",
            "data": {"pid": 4242, "command": "/bin/sh", "args": ["-c", "echo hi"], "shell": true,
                     "cwd": "/", "uid": 0, "gid": 0, "timeout": 60, "truncate_at": 1048576,
                     "env": {"PATH": "/usr/bin:/bin", "DATABASE_PASSWORD": "<MASKED>"}}
        }));
        let EventPayload::Spawn(spawn) = ev.payload() else { panic!() };
        assert_eq!(spawn.args, vec!["-c", "echo hi"]);
        assert_eq!(spawn.truncate_at, 1048576);
        assert_eq!(spawn.env["DATABASE_PASSWORD"], "<MASKED>");
    }

    #[test]
    fn stream_events() {
        for (ty, wrap) in [
            ("stdout", EventPayload::Stdout as fn(EventDataStream) -> EventPayload),
            ("stderr", EventPayload::Stderr),
            ("stdin", EventPayload::Stdin),
        ] {
            let ev = event(json!({"id": 5, "ts": "t", "spid": 1, "type": ty,
                                  "data": {"value": "AAE=", "encoding": "base64", "truncated": false}}));
            let expected = StreamRepr { value: "AAE=".into(), encoding: Encoding::Base64, truncated: Some(false) };
            assert_eq!(ev.payload(), wrap(expected.clone()));
            assert_eq!(expected.to_bytes().unwrap(), vec![0, 1]);
        }
    }

    #[test]
    fn exit_event_from_stub() {
        let ev = event(json!({
            "id": 2, "ts": "2026-06-08T20:00:00.12Z", "spid": 1, "type": "exit",
            "data": {"pid": 4242, "code": 0, "signal": -1, "timed_out": false, "duration_ms": 12,
                     "resources": {"user_time_us": 1000, "sys_time_us": 500, "max_rss_kb": 1024,
                                   "shared_memory": 0, "unshared_memory": 0, "swaps": 0, "minor_faults": 0,
                                   "major_faults": 0, "voluntary_ctx_switches": 0, "involuntary_ctx_switches": 0,
                                   "block_input_ops": 0, "block_output_ops": 0, "ipc_msgs_sent": 0,
                                   "ipc_msgs_received": 0, "signals_received": 0}}
        }));
        let EventPayload::Exit(exit) = ev.payload() else { panic!() };
        assert_eq!(exit.code, 0);
        assert!(!exit.core_dump);
        assert_eq!(exit.duration(), Duration::from_millis(12));
        assert_eq!(exit.resources.user_time_us, 1000);
        assert_eq!(exit.resources.max_rss_kb, 1024);
    }

    #[test]
    fn service_events() {
        let p = event(json!({"id": 7, "ts": "t", "spid": 1, "type": "truncated",
                             "data": {"stream": "stdout", "bytes_emitted": 1048576, "bytes_dropped": 4096}}))
        .payload();
        assert_eq!(
            p,
            EventPayload::Truncated(EventDataTruncated {
                stream: StreamName::Stdout,
                bytes_emitted: 1048576,
                bytes_dropped: 4096
            })
        );
        let p = event(json!({"id": 8, "ts": "t", "spid": 0, "type": "size_cap",
                             "data": {"limit_bytes": 104857600, "file_size": 104800000}}))
        .payload();
        assert_eq!(p, EventPayload::SizeCap(EventDataSizeCap { limit_bytes: 104857600, file_size: 104800000 }));
        let p = event(json!({"id": 9, "ts": "t", "spid": 0, "type": "network", "data": {
            "interfaces": [{"name": "eth0", "rx_bytes": 10, "rx_packets": 1, "rx_errs": 0, "rx_drop": 0,
                            "tx_bytes": 20, "tx_packets": 2, "tx_errs": 0, "tx_drop": 0}],
            "configured": {"ip4": "10.0.0.5/24", "ip4_gw": "10.0.0.1", "nameserver": "8.8.8.8"}
        }}))
        .payload();
        let EventPayload::Network(net) = p else { panic!() };
        assert_eq!(net.interfaces[0].tx_bytes, 20);
        assert_eq!(net.configured.unwrap().ip4_gw.as_deref(), Some("10.0.0.1"));
        let p = event(json!({"id": 10, "ts": "t", "spid": 0, "type": "shutdown",
                             "data": {"stopped_at": "2026-06-08T20:01:34.567890123Z", "reason": "job_complete"}}))
        .payload();
        let EventPayload::Shutdown(s) = p else { panic!() };
        assert_eq!(s.reason, ShutdownReason::JobComplete);
        let s: EventDataShutdown = serde_json::from_value(json!({"stopped_at": "t", "reason": "oom"})).unwrap();
        assert_eq!(s.reason, ShutdownReason::Other("oom".into()));
    }

    #[test]
    fn completion_with_spec_names() {
        let ev = event(json!({"id": 11, "ts": "t", "type": "completion", "data": {
            "status": "SUCCESS", "result_image_uuid": IMG, "error": null,
            "duration_ms": 4327, "image_size_bytes": 134217728
        }}));
        assert_eq!(ev.spid, None);
        assert!(ev.is_completion());
        let EventPayload::Completion(c) = ev.payload() else { panic!() };
        assert_eq!(c.status, OperationStatus::Success);
        assert_eq!(c.duration_ms, Some(4327));
        assert_eq!(c.result_image_uuid.unwrap().to_string(), IMG);
        assert_eq!(c.image_size_bytes, Some(134217728));
        assert_eq!(c.duration(), Some(Duration::from_millis(4327)));
    }

    #[test]
    fn completion_with_legacy_names() {
        // The Python stub's completion event.
        let ev = event(json!({"id": 3, "ts": "2026-06-08T20:00:00.20Z", "spid": 0, "type": "completion",
                              "data": {"status": "SUCCESS", "error": null, "duration": 1.5, "result_image": IMG}}));
        let EventPayload::Completion(c) = ev.payload() else { panic!("{:?}", ev.payload()) };
        assert_eq!(c.duration_ms, Some(1500));
        assert_eq!(c.result_image_uuid.unwrap().to_string(), IMG);
        // Serialization uses the spec names only.
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v, json!({"status": "SUCCESS", "duration_ms": 1500, "result_image_uuid": IMG, "error": null}));
    }

    #[test]
    fn completion_spec_names_win_and_both_spellings_together_parse() {
        let other = "00000000-0000-0000-0000-000000000001";
        let c: EventDataCompletion = serde_json::from_value(json!({
            "status": "FAILED", "duration_ms": 10, "duration": 99.0,
            "result_image_uuid": null, "result_image": other, "error": "spawn failed"
        }))
        .unwrap();
        assert_eq!(c.duration_ms, Some(10));
        // `null` under the spec name means "absent", so the legacy value is used.
        assert_eq!(c.result_image_uuid.unwrap().to_string(), other);
        assert_eq!(c.error.as_deref(), Some("spawn failed"));
        let c: EventDataCompletion = serde_json::from_value(json!({"status": "CANCELLED"})).unwrap();
        assert_eq!((c.duration_ms, c.result_image_uuid), (None, None));
    }

    #[test]
    fn unknown_types_and_bad_data_yield_unknown() {
        let ev = event(json!({"id": 12, "ts": "t", "spid": 0, "type": "heartbeat", "data": {"n": 1}}));
        assert_eq!(ev.event_type, OperationEventType::Other("heartbeat".into()));
        assert_eq!(ev.payload(), EventPayload::Unknown { event_type: "heartbeat".into(), data: json!({"n": 1}) });

        let ev = event(json!({"id": 13, "ts": "t", "spid": 1, "type": "exit", "data": {"code": "zero"}}));
        assert_eq!(ev.payload(), EventPayload::Unknown { event_type: "exit".into(), data: json!({"code": "zero"}) });

        // A status from a newer server parses (as `Unknown`); a status that is not even text
        // does not fit the type.
        let ev = event(json!({"id": 14, "ts": "t", "type": "completion", "data": {"status": "WEIRD"}}));
        match ev.payload() {
            EventPayload::Completion(c) => assert_eq!(c.status, OperationStatus::Unknown),
            other => panic!("expected a completion, got {other:?}"),
        }
        let ev = event(json!({"id": 14, "ts": "t", "type": "completion", "data": {"status": 7}}));
        assert!(matches!(ev.payload(), EventPayload::Unknown { .. }));

        let ev = event(json!({"id": 15, "ts": "t", "type": "stdout", "data": "plain text"}));
        assert!(matches!(ev.payload(), EventPayload::Unknown { .. }));

        // Missing data entirely is tolerated at the event level.
        let ev = event(json!({"id": 16, "type": "truncated"}));
        assert_eq!(ev.data, Value::Null);
        assert!(matches!(ev.payload(), EventPayload::Unknown { .. }));
    }

    #[test]
    fn building_events_for_a_server() {
        let payload = EventPayload::Stdout(StreamRepr::from_bytes(b"hi\n"));
        let ev = OperationEvent::new(4, "2026-06-08T20:00:00Z", Some(1), &payload);
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            json!({"id": 4, "ts": "2026-06-08T20:00:00Z", "spid": 1, "type": "stdout",
                   "data": {"value": "hi\n", "encoding": "ascii"}})
        );
        assert_eq!(ev.payload(), payload);

        let completion = EventPayload::Completion(EventDataCompletion {
            status: OperationStatus::Success,
            duration_ms: Some(5),
            result_image_uuid: None,
            error: None,
            image_size_bytes: Some(0),
        });
        let ev = OperationEvent::new(9, "t", None, &completion);
        assert!(ev.is_completion());
        assert_eq!(ev.payload(), completion);
        let v = serde_json::to_value(&ev).unwrap();
        assert!(v.get("spid").is_none());

        let unknown = EventPayload::Unknown { event_type: "custom".into(), data: json!([1]) };
        let ev = OperationEvent::new(10, "t", Some(0), &unknown);
        assert_eq!(ev.event_type, OperationEventType::Other("custom".into()));
        assert_eq!(ev.payload(), unknown);
    }

    #[test]
    fn event_type_spellings() {
        assert_eq!(serde_json::to_value(OperationEventType::SizeCap).unwrap(), json!("size_cap"));
        assert_eq!(serde_json::from_value::<OperationEventType>(json!("STDOUT")).unwrap(), OperationEventType::Stdout);
    }
}
