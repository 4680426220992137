//! `/operations/{id}/subprocesses/…`: the processes of a running instance — the main one
//! (spid 1) and extra ones started in its sandbox (spid ≥ 2) — stdin writes, signals, and
//! their results folded from the event log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use contree_core::models::{ClosableStreamRepr, InstanceResult, OperationKind, OperationStatus};

use super::error::ApiError;
use super::operations::load;
use super::params::{JsonBody, Query, parse_uuid};
use super::{AppState, blocking};
use crate::ops::{fold, stored_events, subproc};

/// The instance's main process.
const MAIN_SPID: u32 = 1;

fn parse_spid(raw: &str) -> Result<u32, ApiError> {
    match raw.trim().parse::<u32>() {
        Ok(s) if s >= 1 => Ok(s),
        _ => Err(ApiError::bad_request(format!("`{raw}` is not a valid spid (an integer ≥ 1)"))),
    }
}

/// Parses a signal given as a number (`15`) or a name with or without `SIG` (`TERM`).
pub(crate) fn parse_signal(raw: &str) -> Option<i32> {
    let s = raw.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "SYS" => libc::SIGSYS,
        _ => return None,
    })
}

/// `POST /operations/{id}/subprocesses` with an `ExecSpec` → 201 `{"spid"}` and a
/// `Location` naming the process's result. The process starts inside the running
/// instance's sandbox (see `sandbox::exec`); 409 when the operation is not a running
/// instance, 425 while it is still starting.
pub(crate) async fn create(
    State(state): State<AppState>,
    Path(op): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let uuid = parse_uuid(&op, "operation")?;
    let Some(live) = state.ops.live(uuid) else {
        blocking(move || load(&state, uuid)).await?;
        return Err(ApiError::conflict("the operation is not a running instance"));
    };
    if live.kind != OperationKind::Instance {
        return Err(ApiError::conflict("the operation is not an instance"));
    }
    let req = subproc::parse_exec_spec(body)?;
    let ops = state.ops.clone();
    let spid = blocking(move || subproc::start(&ops, &live, req)).await?;
    let location = format!("/v1/operations/{uuid}/subprocesses/{spid}");
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, location)], Json(serde_json::json!({ "spid": spid })))
        .into_response())
}

/// `GET /operations/{id}/subprocesses/{spid}` → the process' `InstanceResult`, folded from the
/// event log (exit code and signal are -1 while it runs).
pub(crate) async fn get(
    State(state): State<AppState>,
    Path((op, spid)): Path<(String, String)>,
) -> Result<Json<InstanceResult>, ApiError> {
    let uuid = parse_uuid(&op, "operation")?;
    let spid = parse_spid(&spid)?;
    let folded = match state.ops.live(uuid) {
        Some(live) => match live.fold(spid) {
            Some(r) => Some(r),
            None if spid == MAIN_SPID && !live.status().is_terminal() => {
                return Err(ApiError::new(StatusCode::TOO_EARLY, "the process has not started yet").retry_after(1));
            }
            None => None,
        },
        None => {
            let state = state.clone();
            blocking(move || {
                load(&state, uuid)?;
                let events = stored_events(&state.ops.store, uuid, None)?;
                Ok(fold::instance_result(events.iter(), spid))
            })
            .await?
        }
    };
    folded.map(Json).ok_or_else(|| ApiError::not_found(format!("operation {uuid} has no process with spid {spid}")))
}

/// `DELETE /operations/{id}/subprocesses/{spid}[?signal=S]` → 204 once the signal is sent to
/// the process (default SIGKILL). Killing spid 1 ends the instance.
pub(crate) async fn kill(
    State(state): State<AppState>,
    Path((op, spid)): Path<(String, String)>,
    q: Query,
) -> Result<StatusCode, ApiError> {
    let uuid = parse_uuid(&op, "operation")?;
    let spid = parse_spid(&spid)?;
    let signal = match q.get("signal").filter(|s| !s.trim().is_empty()) {
        None => libc::SIGKILL,
        Some(s) => parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("unknown signal `{s}`")))?,
    };
    let Some(live) = state.ops.live(uuid) else {
        load(&state, uuid)?;
        return Err(ApiError::conflict("the operation is not a running instance"));
    };
    if live.kind != OperationKind::Instance {
        return Err(ApiError::conflict("the operation is not an instance"));
    }
    if spid != MAIN_SPID {
        let proc_ =
            live.subprocs.get(spid).ok_or_else(|| ApiError::not_found(format!("no live process with spid {spid}")))?;
        proc_.kill(signal)?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let (sandbox, status) = {
        let st = live.lock();
        (st.sandbox.clone(), st.status)
    };
    match sandbox {
        Some(sb) => match sb.kill(signal) {
            Ok(()) => Ok(StatusCode::NO_CONTENT),
            Err(e) => Err(ApiError::not_found(format!("no live process with spid {spid}: {e}"))),
        },
        None if status == OperationStatus::Pending || status == OperationStatus::Assigned => {
            Err(ApiError::new(StatusCode::TOO_EARLY, "the process has not started yet").retry_after(1))
        }
        None if status.is_terminal() => Err(ApiError::conflict("the operation is not a running instance")),
        None => {
            // EXECUTING but not yet published: the runner delivers the signal right after.
            live.lock().pending_signal = Some(signal);
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// `POST /operations/{id}/subprocesses/{spid}/stdin` `{value, encoding?, close?}` → 204.
/// Only for a process started with `stdin.close = false`; 409 once its stdin is closed, 410
/// once the instance ended. Writes made before the process started are delivered at start.
pub(crate) async fn stdin(
    State(state): State<AppState>,
    Path((op, spid)): Path<(String, String)>,
    JsonBody(body): JsonBody<ClosableStreamRepr>,
) -> Result<StatusCode, ApiError> {
    let uuid = parse_uuid(&op, "operation")?;
    let spid = parse_spid(&spid)?;
    let bytes = body.to_bytes().map_err(|e| ApiError::bad_request(format!("`value` could not be decoded: {e}")))?;
    let close = body.closes();
    let Some(live) = state.ops.live(uuid) else {
        load(&state, uuid)?;
        return Err(ApiError::gone("the instance has finished"));
    };
    if live.kind != OperationKind::Instance {
        return Err(ApiError::conflict("the operation is not an instance"));
    }
    if spid != MAIN_SPID {
        let Some(proc_) = live.subprocs.get(spid) else {
            if live.status().is_terminal() {
                return Err(ApiError::gone("the instance has finished"));
            }
            return Err(ApiError::not_found(format!("no live process with spid {spid}")));
        };
        // Queued, never blocking on the process; the lock is only the log's.
        return tokio::task::spawn_blocking(move || {
            proc_.write_stdin(&live, spid, &bytes, close).map(|()| StatusCode::NO_CONTENT)
        })
        .await
        .map_err(|e| ApiError::internal(format!("stdin task failed: {e}")))?;
    }
    // Pipe writes may block until the process reads: keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut cap = live.lock_stdin();
        let sandbox = {
            let mut st = live.lock();
            if st.status.is_terminal() {
                return Err(ApiError::gone("the instance has finished"));
            }
            if !st.stdin_open {
                return Err(ApiError::conflict(
                    "stdin is closed (the process was started without `stdin.close: false`, or it was closed)",
                ));
            }
            if close {
                st.stdin_open = false;
            }
            match st.sandbox.clone() {
                Some(sb) => sb,
                None => {
                    // Not started yet: delivered (and recorded) right after the spawn.
                    st.pending_stdin.push((bytes, close));
                    return Ok(StatusCode::NO_CONTENT);
                }
            }
        };
        cap.record(&live, MAIN_SPID, &bytes);
        sandbox
            .write_stdin(&bytes, close)
            .map_err(|e| ApiError::conflict(format!("could not write to the process' stdin: {e}")))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
    .map_err(|e| ApiError::internal(format!("stdin task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(parse_signal("15"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("TERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("sigterm"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("KILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("-9"), None);
    }
}
