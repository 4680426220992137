//! What a finished run left behind: output, exit status, timing and resources.

use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::models::{InstanceResources, OperationResponse};
use crate::{Error, Result};

/// How a command ended. Mirrors `std::process::ExitStatus`, plus the sandbox's timeout flag.
///
/// ```
/// use contree_core::ExitStatus;
/// let ok = ExitStatus { code: Some(0), signal: None, timed_out: false };
/// assert!(ok.success());
/// let killed = ExitStatus { code: None, signal: Some(9), timed_out: true };
/// assert!(!killed.success());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    /// The exit code, when the command exited on its own.
    pub code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Whether the server killed it at the run's timeout.
    pub timed_out: bool,
}

impl ExitStatus {
    /// Exited with code 0, not by a signal, not timed out.
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.signal.is_none() && !self.timed_out
    }

    /// From the wire's `-1 = none` convention.
    pub fn from_wire(code: i64, signal: i64, timed_out: bool) -> ExitStatus {
        ExitStatus {
            code: (code >= 0 && signal < 1).then_some(code as i32),
            signal: (signal > 0).then_some(signal as i32),
            timed_out,
        }
    }

    /// The exit code, or `-1` when there is none (the wire's convention).
    pub fn code_or_minus_one(&self) -> i32 {
        self.code.unwrap_or(-1)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (_, Some(s)) => write!(f, "signal: {s}")?,
            (Some(c), None) => write!(f, "exit status: {c}")?,
            (None, None) => f.write_str("exit status: unknown")?,
        }
        if self.timed_out {
            f.write_str(" (timed out)")?;
        }
        Ok(())
    }
}

/// The result of one finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// The operation that ran the command.
    pub operation_id: Uuid,
    /// The command line as run (`sh -c …` for shell commands).
    pub command: Vec<String>,
    /// Captured standard output (capped server-side at `truncate_output_at`).
    pub stdout: Bytes,
    /// Captured standard error.
    pub stderr: Bytes,
    /// How the command ended.
    pub status: ExitStatus,
    /// Wall-clock time of the command.
    pub elapsed: Duration,
    /// Whether stdout or stderr was cut at `truncate_output_at`.
    pub truncated: bool,
    /// rusage and cost as the server reports them.
    pub resources: InstanceResources,
    /// The image the run produced (`None` for disposable runs).
    pub result_image: Option<Uuid>,
}

impl RunOutput {
    /// Builds the result from a finished instance operation.
    pub fn from_operation(op: &OperationResponse, command: Vec<String>) -> Result<RunOutput> {
        let result = op.instance_result().ok_or_else(|| {
            Error::decode(
                "the operation finished without a result",
                std::io::Error::other("metadata.result is missing"),
            )
            .with_operation(op.uuid.to_string())
        })?;
        let stdout = result.stdout.to_bytes().map_err(|e| e.with_operation(op.uuid.to_string()))?;
        let stderr = result.stderr.to_bytes().map_err(|e| e.with_operation(op.uuid.to_string()))?;
        let state = &result.state;
        let elapsed = result
            .resources
            .elapsed_time
            .or(op.duration)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or_default();
        let result_image = op.result_image_uuid.or_else(|| op.result.as_ref().and_then(|r| r.image));
        Ok(RunOutput {
            operation_id: op.uuid,
            command,
            stdout: Bytes::from(stdout),
            stderr: Bytes::from(stderr),
            status: ExitStatus::from_wire(state.exit_code.into(), state.signal.into(), state.timed_out),
            elapsed,
            truncated: result.stdout.truncated.unwrap_or(false) || result.stderr.truncated.unwrap_or(false),
            resources: result.resources.clone(),
            result_image,
        })
    }

    /// stdout as text, replacing invalid UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text, replacing invalid UTF-8.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_sentinels_map_to_options() {
        assert_eq!(ExitStatus::from_wire(3, -1, false), ExitStatus { code: Some(3), signal: None, timed_out: false });
        assert_eq!(ExitStatus::from_wire(-1, 9, true), ExitStatus { code: None, signal: Some(9), timed_out: true });
        assert!(!ExitStatus::from_wire(0, -1, true).success());
        assert_eq!(ExitStatus::from_wire(-1, 15, false).to_string(), "signal: 15");
    }

    #[test]
    fn output_is_built_from_a_finished_operation() {
        let op: OperationResponse = serde_json::from_value(serde_json::json!({
            "uuid": "87654321-9abc-baba-deda-0123456789ab",
            "kind": "instance",
            "status": "SUCCESS",
            "result_image_uuid": "12345678-9abc-baba-deda-0123456789ab",
            "metadata": {
                "command": "echo", "image": "12345678-9abc-baba-deda-0123456789ab",
                "result": {
                    "resources": {"elapsed_time": 0.25, "max_rss": 1024},
                    "state": {"exit_code": 2, "pid": 1, "signal": -1, "timed_out": false},
                    "stdout": {"value": "aGkK", "encoding": "base64", "truncated": true},
                    "stderr": {"value": "oops\n", "encoding": "ascii"}
                }
            }
        }))
        .unwrap();
        let out = RunOutput::from_operation(&op, vec!["echo".into()]).unwrap();
        assert_eq!(&out.stdout[..], b"hi\n");
        assert_eq!(out.stderr_text(), "oops\n");
        assert_eq!(out.status.code, Some(2));
        assert!(out.truncated);
        assert_eq!(out.elapsed, Duration::from_millis(250));
        assert!(out.result_image.is_some());
    }

    #[test]
    fn missing_result_is_a_decode_error() {
        let op: OperationResponse = serde_json::from_value(serde_json::json!({
            "uuid": "87654321-9abc-baba-deda-0123456789ab", "kind": "instance", "status": "SUCCESS"
        }))
        .unwrap();
        assert!(RunOutput::from_operation(&op, vec![]).unwrap_err().is_decode());
    }
}
