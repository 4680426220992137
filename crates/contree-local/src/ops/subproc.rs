//! Extra processes of a running instance (`POST /operations/{id}/subprocesses`, spid ≥ 2):
//! the request checked as hostile input, the process started by the run's sandbox (see
//! `sandbox::exec`), and its output, stdin and exit recorded in the operation's event log
//! under its spid, like the main process's under spid 1.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use contree_core::models::{EventDataSpawn, EventPayload, ExecSpec, OperationStatus, StreamName};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::config::MAX_TRUNCATE_OUTPUT_AT;
use crate::sandbox::{RunningSandbox, RunningSubprocess, SandboxError, SandboxEvent, SubprocessSpec};

use super::Ops;
use super::live::LiveOp;
use super::plan::{DEFAULT_PATH, DEFAULT_TRUNCATE_AT, mask_env};
use super::run::{StreamCap, exit_event};

/// The first spid of an extra process (1 is the main process).
pub(crate) const FIRST_SPID: u32 = 2;
/// Extra processes alive at once in one instance.
pub(crate) const MAX_LIVE: usize = 64;
/// Extra processes over an instance's life (each adds to its event log).
pub(crate) const MAX_TOTAL: u32 = 4096;
/// Descriptors starting one extra process holds on the server's side at its peak (twelve
/// today, see `sandbox::exec`), with room to spare.
const FDS_PER_PROCESS: u64 = 24;
/// Arguments (or environment variables) of one process.
const MAX_ITEMS: usize = 4000;
/// Bytes of argv and environment together (a quarter of Linux's usual `ARG_MAX`).
const MAX_ARG_BYTES: usize = 512 * 1024;
/// The fields of an `ExecSpec`: anything else (`image`, `timeout`, `files`, …) belongs to
/// the instance and is refused rather than ignored.
const EXEC_FIELDS: [&str; 9] = ["command", "args", "shell", "env", "cwd", "uid", "gid", "stdin", "truncate_output_at"];

/// The extra processes of one live instance.
pub(crate) struct Subprocs {
    /// Held for reading while a process starts, for writing when the instance's main
    /// process has ended: no process starts, and no event is logged, after the run's end.
    gate: RwLock<Gate>,
    next_spid: AtomicU32,
    live: Mutex<HashMap<u32, Arc<Subproc>>>,
}

#[derive(Default)]
struct Gate {
    sandbox: Option<Arc<RunningSandbox>>,
    /// The image's environment (inherited by `shell` processes, like the main one).
    image_env: BTreeMap<String, String>,
    closed: bool,
}

/// One live extra process.
pub(crate) struct Subproc {
    handle: RunningSubprocess,
    /// Serialises its stdin writes and caps what the log keeps of them.
    stdin: Mutex<StreamCap>,
    stdin_open: AtomicBool,
}

impl Default for Subprocs {
    fn default() -> Self {
        Subprocs { gate: RwLock::default(), next_spid: AtomicU32::new(FIRST_SPID), live: Mutex::default() }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Subprocs {
    /// The main process has started: extra processes may start in `sandbox`.
    pub fn open(&self, sandbox: Arc<RunningSandbox>, image_env: BTreeMap<String, String>) {
        let mut g = self.gate.write().unwrap_or_else(|e| e.into_inner());
        if !g.closed {
            g.sandbox = Some(sandbox);
            g.image_env = image_env;
        }
    }

    /// The main process (and with it the sandbox) has ended: refuses new processes, waits
    /// for those being started, then for every one's exit to be logged (they die with the
    /// sandbox, so this is quick).
    pub fn close_and_wait(&self) {
        {
            let mut g = self.gate.write().unwrap_or_else(|e| e.into_inner());
            g.closed = true;
            g.sandbox = None;
        }
        let procs: Vec<Arc<Subproc>> = lock(&self.live).values().cloned().collect();
        for p in procs {
            p.handle.wait();
        }
    }

    /// A live extra process.
    pub fn get(&self, spid: u32) -> Option<Arc<Subproc>> {
        lock(&self.live).get(&spid).cloned()
    }
}

impl Subproc {
    /// Writes to its stdin (and logs it), for `POST …/subprocesses/{spid}/stdin`.
    pub fn write_stdin(&self, live: &LiveOp, spid: u32, bytes: &[u8], close: bool) -> Result<(), ApiError> {
        let mut cap = lock(&self.stdin);
        if !self.stdin_open.load(Ordering::SeqCst) {
            return Err(ApiError::conflict(
                "stdin is closed (the process was started without `stdin.close: false`, or it was closed)",
            ));
        }
        if close {
            self.stdin_open.store(false, Ordering::SeqCst);
        }
        cap.record(live, spid, bytes);
        self.handle
            .write_stdin(bytes, close)
            .map_err(|e| ApiError::conflict(format!("could not write to the process' stdin: {e}")))
    }

    /// Signals its process group.
    pub fn kill(&self, signal: i32) -> Result<(), ApiError> {
        self.handle.kill(signal).map_err(|e| ApiError::internal(format!("could not signal the process: {e}")))
    }
}

/// An `ExecSpec` checked: the process to start and the `spawn` event's fields.
struct Checked {
    spec: SubprocessSpec,
    /// What the spawn event shows (the shell wrapper included, like the main process's).
    command: String,
    args: Vec<String>,
    shell: bool,
    env: BTreeMap<String, String>,
    truncate_at: u64,
}

/// Parses and checks the body of `POST /operations/{id}/subprocesses`: every byte is the
/// caller's and is checked before anything reaches the sandbox.
pub(crate) fn parse_exec_spec(body: Value) -> Result<ExecSpec, ApiError> {
    let Value::Object(map) = &body else {
        return Err(ApiError::bad_request("the request body must be a JSON object (an ExecSpec)"));
    };
    if let Some(k) = map.keys().find(|k| !EXEC_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "`{k}` is not accepted here: a subprocess takes only {} (the instance's own settings apply)",
            EXEC_FIELDS.map(|f| format!("`{f}`")).join(", ")
        )));
    }
    serde_json::from_value(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn check(ops: &Ops, req: ExecSpec, image_env: &BTreeMap<String, String>) -> Result<Checked, ApiError> {
    if req.command.is_empty() {
        return Err(ApiError::bad_request("`command` must not be empty"));
    }
    let shell = req.shell.unwrap_or(false);
    if shell && !req.args.is_empty() {
        return Err(ApiError::bad_request("`args` must be empty when `shell` is true"));
    }
    if req.args.len() > MAX_ITEMS || req.env.len() > MAX_ITEMS {
        return Err(ApiError::bad_request(format!("at most {MAX_ITEMS} `args` and {MAX_ITEMS} `env` entries")));
    }
    let mut bytes = req.command.len();
    no_nul("command", &req.command)?;
    for a in &req.args {
        no_nul("args", a)?;
        bytes += a.len() + 1;
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ApiError::bad_request(format!("`env` key `{k}` is not a valid variable name")));
        }
        no_nul("env", v)?;
        bytes += k.len() + v.len() + 2;
    }
    if bytes > MAX_ARG_BYTES {
        return Err(ApiError::bad_request(format!(
            "`command`, `args` and `env` add up to {bytes} bytes; at most {MAX_ARG_BYTES} are accepted"
        )));
    }
    let cwd = req.cwd.clone().unwrap_or_default();
    if !cwd.is_empty() && !cwd.starts_with('/') {
        return Err(ApiError::bad_request("`cwd` must be an absolute path or empty"));
    }
    no_nul("cwd", &cwd)?;
    let count = ops.ids.count();
    let uid = req.uid.unwrap_or(0);
    let gid = req.gid.unwrap_or(0);
    for (field, id) in [("uid", uid), ("gid", gid)] {
        if id >= count {
            return Err(ApiError::bad_request(format!(
                "`{field}` {id} is outside the sandbox's id range: ids run from 0 to {}",
                count - 1
            )));
        }
    }
    let truncate_at = req.truncate_output_at.unwrap_or(DEFAULT_TRUNCATE_AT);
    if truncate_at > MAX_TRUNCATE_OUTPUT_AT {
        return Err(ApiError::bad_request(format!("`truncate_output_at` must be at most {MAX_TRUNCATE_OUTPUT_AT}")));
    }
    let (stdin, keep_stdin_open) = match &req.stdin {
        None => (Vec::new(), false),
        Some(s) => (
            s.to_bytes().map_err(|e| ApiError::bad_request(format!("`stdin` could not be decoded: {e}")))?,
            !s.closes(),
        ),
    };
    // As for the main process: a shell inherits the image's env (request values win, an
    // empty value unsets); otherwise only the request's env applies.
    let mut env = if shell {
        let mut merged = image_env.clone();
        for (k, v) in &req.env {
            if v.is_empty() {
                merged.remove(k);
            } else {
                merged.insert(k.clone(), v.clone());
            }
        }
        merged
    } else {
        req.env.clone()
    };
    env.entry("PATH".to_owned()).or_insert_with(|| DEFAULT_PATH.to_owned());
    let (command, args) = if shell {
        let sh = env.get("SHELL").filter(|s| !s.is_empty()).cloned().unwrap_or_else(|| "/bin/sh".to_owned());
        (sh, vec!["-c".to_owned(), req.command.clone()])
    } else {
        (req.command.clone(), req.args.clone())
    };
    let spec = SubprocessSpec {
        command: command.clone(),
        args: args.clone(),
        shell: false,
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        cwd: if cwd.is_empty() { "/".to_owned() } else { cwd },
        uid,
        gid,
        stdin,
        keep_stdin_open,
    };
    Ok(Checked { spec, command, args, shell, env, truncate_at })
}

fn no_nul(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::bad_request(format!("`{field}` must not contain NUL bytes")));
    }
    Ok(())
}

/// What the sink of a process does with its events: nothing is logged before its `spawn`
/// event, so events that come first wait here.
struct SinkState {
    ready: bool,
    pending: Vec<SandboxEvent>,
    out: StreamCap,
    err: StreamCap,
}

/// Starts an extra process in `live`'s sandbox and returns its spid. Blocking.
pub(crate) fn start(ops: &Ops, live: &Arc<LiveOp>, req: ExecSpec) -> Result<u32, ApiError> {
    let subs = &live.subprocs;
    let gate = subs.gate.read().unwrap_or_else(|e| e.into_inner());
    let not_running = || ApiError::conflict("the operation is not a running instance (its main process has ended)");
    if gate.closed {
        return Err(not_running());
    }
    let Some(sandbox) = gate.sandbox.clone() else {
        return match live.status() {
            s if s.is_terminal() => Err(not_running()),
            OperationStatus::Pending | OperationStatus::Assigned | OperationStatus::Executing => {
                Err(ApiError::new(axum::http::StatusCode::TOO_EARLY, "the instance has not started yet").retry_after(1))
            }
            _ => Err(not_running()),
        };
    };
    let checked = check(ops, req, &gate.image_env)?;
    if lock(&subs.live).len() >= MAX_LIVE {
        return Err(ApiError::conflict(format!(
            "this instance already runs {MAX_LIVE} subprocesses; wait for one to exit"
        )));
    }
    // Its pipes, socket, eventfd and plan on the server's side: refused (the client retries)
    // rather than failing half-started when the descriptors run out.
    if !crate::fds::has_headroom(FDS_PER_PROCESS) {
        return Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "the server is short of file descriptors; retry shortly",
        )
        .retry_after(1)
        .close_connection());
    }
    let spid = subs.next_spid.fetch_add(1, Ordering::SeqCst);
    if spid >= FIRST_SPID + MAX_TOTAL {
        return Err(ApiError::conflict(format!("an instance can start at most {MAX_TOTAL} subprocesses")));
    }

    let sink_state = Arc::new(Mutex::new(SinkState {
        ready: false,
        pending: Vec::new(),
        out: StreamCap::new(StreamName::Stdout, checked.truncate_at),
        err: StreamCap::new(StreamName::Stderr, checked.truncate_at),
    }));
    let stdin_cap = Arc::new(Mutex::new(None::<Arc<Subproc>>));
    let sink = {
        let live = Arc::clone(live);
        let sink_state = Arc::clone(&sink_state);
        let me = Arc::clone(&stdin_cap);
        move |ev: SandboxEvent| {
            let mut st = lock(&sink_state);
            if !st.ready {
                st.pending.push(ev);
                return;
            }
            handle_event(&live, spid, &mut st, &me, ev);
        }
    };
    let handle = match sandbox.exec(spid, checked.spec.clone(), sink) {
        Ok(h) => h,
        Err(SandboxError::Ended) => return Err(not_running()),
        Err(e @ (SandboxError::InvalidArgument { .. } | SandboxError::Setup { .. })) => {
            return Err(setup_error(e));
        }
        Err(e) if crate::fds::is_exhaustion(&e) => {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!("the server is short of file descriptors ({e}); retry shortly"),
            )
            .retry_after(1)
            .close_connection());
        }
        Err(e) => return Err(ApiError::internal(format!("could not start the subprocess: {e}"))),
    };
    let pid = handle.pid();
    let proc_ = Arc::new(Subproc {
        handle,
        stdin: Mutex::new(StreamCap::new(StreamName::Stdin, checked.truncate_at)),
        stdin_open: AtomicBool::new(checked.spec.keep_stdin_open),
    });
    let mut st = lock(&sink_state);
    live.push(
        Some(spid),
        &EventPayload::Spawn(EventDataSpawn {
            pid,
            command: checked.command,
            args: checked.args,
            shell: checked.shell,
            cwd: checked.spec.cwd.clone(),
            uid: checked.spec.uid,
            gid: checked.spec.gid,
            timeout: 0,
            truncate_at: checked.truncate_at,
            env: mask_env(&checked.env),
        }),
    );
    lock(&proc_.stdin).record(live, spid, &checked.spec.stdin);
    lock(&subs.live).insert(spid, Arc::clone(&proc_));
    *lock(&stdin_cap) = Some(proc_);
    st.ready = true;
    for ev in std::mem::take(&mut st.pending) {
        handle_event(live, spid, &mut st, &stdin_cap, ev);
    }
    Ok(spid)
}

fn setup_error(e: SandboxError) -> ApiError {
    let busy = matches!(&e, SandboxError::Setup { source, .. }
        if matches!(source.raw_os_error(), Some(libc::EAGAIN | libc::ENOMEM)));
    if busy {
        ApiError::conflict(format!("could not start the subprocess (the instance's process limit?): {e}"))
    } else {
        ApiError::bad_request(format!("could not start the subprocess: {e}"))
    }
}

fn handle_event(live: &LiveOp, spid: u32, st: &mut SinkState, me: &Mutex<Option<Arc<Subproc>>>, ev: SandboxEvent) {
    match ev {
        SandboxEvent::Stdout(b) => st.out.record(live, spid, &b),
        SandboxEvent::Stderr(b) => st.err.record(live, spid, &b),
        SandboxEvent::Exited(info) => {
            let proc_ = lock(me).take();
            let stdin_truncated = proc_.as_ref().and_then(|p| {
                let cap = lock(&p.stdin);
                p.stdin_open.store(false, Ordering::SeqCst);
                cap.truncated_event()
            });
            let pid = proc_.as_ref().map_or(-1, |p| p.handle.pid());
            live.push(Some(spid), &EventPayload::Exit(exit_event(pid, &info)));
            for t in [stdin_truncated, st.out.truncated_event(), st.err.truncated_event()].into_iter().flatten() {
                live.push(Some(spid), &t);
            }
            lock(&live.subprocs.live).remove(&spid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_fields_are_refused_not_ignored() {
        for field in ["image", "timeout", "files", "hostname", "disposable", "preserve_env", "resources_limits"] {
            let body = serde_json::json!({"command": "true", field: 1});
            let err = parse_exec_spec(body).unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
            assert!(err.message().contains(&format!("`{field}`")), "{}", err.message());
        }
        let ok = parse_exec_spec(serde_json::json!({"command": "ls", "args": ["-l"], "cwd": "/tmp"})).unwrap();
        assert_eq!(ok.args, vec!["-l".to_owned()]);
        assert!(parse_exec_spec(serde_json::json!(["ls"])).is_err());
        assert!(parse_exec_spec(serde_json::json!({"args": []})).is_err(), "command is required");
    }
}
