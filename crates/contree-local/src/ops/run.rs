//! Executing one instance run on a blocking thread: spawn the sandbox, turn its output into
//! events (capped per stream), record the exit, and turn the upper dir into the result image.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contree_core::models::{
    EventDataExit, EventDataInit, EventDataShutdown, EventDataSpawn, EventDataStream, EventDataTruncated, EventPayload,
    EventResources, OperationStatus, ShutdownReason, StreamName,
};
use uuid::Uuid;

use crate::sandbox::{self, ExitInfo, RunningSandbox, SandboxEvent, SandboxSpec, UpperState};
use crate::store::{ImageRecord, OperationRecord};

use super::live::{LiveOp, StopReason, now_ts};
use super::plan::{RunPlan, mask_env};
use super::{Ops, Outcome, stopped_outcome};

/// Largest payload of one stream event; bigger reads are split.
const MAX_CHUNK: usize = 16 * 1024;

/// Per-stream cap on what the event log keeps (`truncate_output_at`).
#[derive(Debug)]
pub(crate) struct StreamCap {
    name: StreamName,
    limit: u64,
    emitted: u64,
    dropped: u64,
}

impl StreamCap {
    pub fn new(name: StreamName, limit: u64) -> Self {
        StreamCap { name, limit, emitted: 0, dropped: 0 }
    }

    /// Records `bytes` as events of process `spid`, keeping at most `limit` bytes in total.
    pub fn record(&mut self, live: &LiveOp, spid: u32, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.emitted) as usize;
        let keep = bytes.len().min(room);
        self.dropped += (bytes.len() - keep) as u64;
        self.emitted += keep as u64;
        for chunk in bytes[..keep].chunks(MAX_CHUNK) {
            let data = EventDataStream::from_bytes(chunk).with_truncated(false);
            let payload = match self.name {
                StreamName::Stdin => EventPayload::Stdin(data),
                StreamName::Stderr => EventPayload::Stderr(data),
                _ => EventPayload::Stdout(data),
            };
            live.push(Some(spid), &payload);
        }
    }

    /// The `truncated` event to emit at EOF, if the cap was crossed.
    pub fn truncated_event(&self) -> Option<EventPayload> {
        (self.dropped > 0).then(|| {
            EventPayload::Truncated(EventDataTruncated {
                stream: self.name.clone(),
                bytes_emitted: self.emitted,
                bytes_dropped: self.dropped,
            })
        })
    }
}

/// How long a run that has its slot waits for descriptors to be freed (by other runs or by
/// connections closing) before it fails for lack of them: long enough for a burst of
/// connections to drain, short enough that a server stuck at its limit says so.
const FD_WAIT: Duration = Duration::from_secs(60);
/// How often that wait looks again.
const FD_POLL: Duration = Duration::from_millis(20);
/// Attempts to start the sandbox when each one fails for lack of descriptors (the wait is
/// bounded by [`FD_WAIT`] too; this bounds it in count).
const MAX_SPAWN_ATTEMPTS: u32 = 1000;

/// Starts the sandbox once enough descriptors are free, and tries again when it still fails
/// for lack of them: such a failure passes with the connections or runs that hold them, so
/// the run waits (bounded by [`FD_WAIT`], and a cancel ends the wait) instead of ending
/// FAILED. Spawns are admitted only with headroom ([`Ops::admit`]), so this is the rare race
/// of many connections opening between admission and start.
fn spawn_when_fds_allow(
    live: &LiveOp,
    run_dir: &std::path::Path,
    create_run_dir: impl Fn() -> std::io::Result<()>,
    files: usize,
    make_spec: impl Fn() -> SandboxSpec,
) -> Result<RunningSandbox, sandbox::SandboxError> {
    let need = crate::fds::FDS_PER_RUN + files as u64;
    let deadline = Instant::now() + FD_WAIT;
    let mut attempts = 0;
    loop {
        while !crate::fds::has_headroom(need) && Instant::now() < deadline && live.stop_reason().is_none() {
            std::thread::sleep(FD_POLL);
        }
        attempts += 1;
        match sandbox::spawn(make_spec()) {
            Err(e)
                if crate::fds::is_exhaustion(&e)
                    && attempts < MAX_SPAWN_ATTEMPTS
                    && Instant::now() < deadline
                    && live.stop_reason().is_none() =>
            {
                tracing::debug!(operation = %live.uuid, error = %e, "out of file descriptors starting a run; waiting");
                // A failed start may leave a partial run directory behind; start afresh.
                cleanup(run_dir);
                if let Err(e) = create_run_dir() {
                    return Err(sandbox::SandboxError::io("could not create the run directory", e));
                }
                std::thread::sleep(FD_POLL);
            }
            other => return other,
        }
    }
}

/// Runs the plan to its end and returns how it went (the caller writes `completion`).
pub(crate) fn execute(ops: &Ops, live: &Arc<LiveOp>, plan: RunPlan, record: &OperationRecord) -> Outcome {
    if let Some(reason) = live.stop_reason() {
        return stopped_outcome(Some(reason));
    }
    let started = std::time::Instant::now();
    {
        let mut st = live.lock();
        st.status = OperationStatus::Executing;
        st.started = Some(started);
    }
    let mut executing = record.clone();
    executing.status = OperationStatus::Executing;
    executing.started_at = Some(crate::store::now());
    if let Err(e) = ops.store.update_operation(&executing) {
        tracing::warn!(operation = %live.uuid, error = %e, "could not record EXECUTING");
    }

    let run_dir = ops.data_dir.join("runs").join(live.uuid.to_string());
    let started_at = now_ts();
    let stack = match ops.store.layer_stack(plan.source.uuid) {
        Ok(l) => l,
        Err(e) => return Outcome::failed(format!("could not read the image's layers: {e}")),
    };
    let create_run_dir = || match &ops.layer_quota {
        Some(quota) => quota.create_run_dir(&run_dir, plan.max_layer_bytes),
        None => std::fs::create_dir_all(&run_dir),
    };
    if let Err(e) = create_run_dir() {
        return Outcome::failed(format!("could not create the run directory: {e}"));
    }
    let make_spec = || SandboxSpec {
        lower_layers: stack.layers.clone(),
        own_root: stack.own_root,
        base: ops.base.clone(),
        run_dir: run_dir.clone(),
        command: plan.exec_command.clone(),
        args: plan.exec_args.clone(),
        shell: false,
        env: plan.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        cwd: plan.cwd.clone(),
        uid: plan.uid,
        gid: plan.gid,
        hostname: plan.hostname.clone(),
        network: plan.network,
        ids: ops.ids,
        files: plan.files.clone(),
        stdin: plan.stdin.clone(),
        keep_stdin_open: plan.keep_stdin_open,
        timeout: plan.timeout,
        cgroups: ops.cgroups.clone(),
    };
    let init = |pid: i32| {
        EventPayload::Init(EventDataInit {
            started_at: started_at.clone(),
            runtime_path: run_dir.display().to_string(),
            verbose: false,
            init_pid: pid,
            hostname: Some(plan.hostname.clone()),
            kernel: uname_field(|u| &u.release).zip(uname_field(|u| &u.version)).map(|(r, v)| format!("{r} {v}")),
            machine: uname_field(|u| &u.machine),
            boot_id: Some(live.uuid.to_string()),
        })
    };

    // The sandbox's phases (spawn, run, finish) are spans under the operation's.
    let phase = tracing::info_span!("sandbox.spawn", error.type = tracing::field::Empty).entered();
    let sb = match spawn_when_fds_allow(live, &run_dir, create_run_dir, plan.files.len(), make_spec) {
        Ok(sb) => sb,
        Err(e) => {
            phase.record("error.type", "spawn_failed");
            live.push(Some(0), &init(0));
            let msg = format!("could not start the command: {e}");
            live.push(Some(0), &EventPayload::Stderr(EventDataStream::from_bytes(format!("{msg}\n").as_bytes())));
            live.push(
                Some(0),
                &EventPayload::Shutdown(EventDataShutdown {
                    stopped_at: now_ts(),
                    reason: ShutdownReason::SpawnFailed,
                }),
            );
            cleanup(&run_dir);
            return Outcome::failed(msg);
        }
    };
    let Some(events) = sb.take_events() else {
        return Outcome::failed("the sandbox's events were already taken");
    };
    drop(phase);
    let sb: Arc<RunningSandbox> = Arc::new(sb);
    let pid = sb.pid();
    let phase = tracing::info_span!(
        "sandbox.run",
        process.exit.code = tracing::field::Empty,
        contree.timed_out = tracing::field::Empty,
        contree.oom_killed = tracing::field::Empty,
    )
    .entered();
    live.push(Some(0), &init(pid));
    live.push(
        Some(1),
        &EventPayload::Spawn(EventDataSpawn {
            pid,
            command: plan.exec_command.clone(),
            args: plan.exec_args.clone(),
            shell: plan.shell,
            cwd: plan.cwd.clone(),
            uid: plan.uid,
            gid: plan.gid,
            timeout: plan.timeout.map_or(0, |t| t.as_secs()),
            truncate_at: plan.truncate_at,
            env: mask_env(&plan.env),
        }),
    );
    let mut out_cap = StreamCap::new(StreamName::Stdout, plan.truncate_at);
    let mut err_cap = StreamCap::new(StreamName::Stderr, plan.truncate_at);
    {
        // Publish the process and deliver stdin written before it existed, in order.
        let mut stdin_cap = live.lock_stdin();
        stdin_cap.record(live, 1, &plan.stdin);
        let (pending, stop) = {
            let mut st = live.lock();
            st.sandbox = Some(sb.clone());
            (std::mem::take(&mut st.pending_stdin), st.stop.map(|_| libc::SIGKILL).or(st.pending_signal.take()))
        };
        for (bytes, close) in pending {
            stdin_cap.record(live, 1, &bytes);
            if sb.write_stdin(&bytes, close).is_err() {
                break;
            }
        }
        if let Some(signal) = stop {
            let _ = sb.kill(signal);
        }
    }
    // Extra processes (`POST …/subprocesses`) may start from now until the main one ends.
    live.subprocs.open(sb.clone(), plan.source.env.clone());

    let mut exit: Option<ExitInfo> = None;
    for ev in events.iter() {
        match ev {
            SandboxEvent::Stdout(b) => out_cap.record(live, 1, &b),
            SandboxEvent::Stderr(b) => err_cap.record(live, 1, &b),
            SandboxEvent::Exited(info) => {
                exit = Some(info);
                break;
            }
        }
    }
    // The sandbox is gone, and its extra processes with it: their exits are logged before
    // the main process's, and none starts any more.
    live.subprocs.close_and_wait();
    let stdin_truncated = {
        let stdin_cap = live.lock_stdin();
        let mut st = live.lock();
        st.sandbox = None;
        st.stdin_open = false;
        stdin_cap.truncated_event()
    };
    let stop = live.stop_reason();
    let (mut outcome, reason) = match &exit {
        None => (Outcome::failed("lost track of the sandboxed process"), ShutdownReason::Signal),
        Some(info) => {
            if info.oom_killed && info.signal <= 0 {
                // The command survived (a child of it was killed): its result stands, and
                // its stderr tells what happened.
                let note = format!("contree-local: {}\n", oom_message(ops));
                err_cap.record(live, 1, note.as_bytes());
            }
            live.push(Some(1), &EventPayload::Exit(exit_event(pid, info)));
            for t in [stdin_truncated, out_cap.truncated_event(), err_cap.truncated_event()].into_iter().flatten() {
                live.push(Some(1), &t);
            }
            let reason = if info.timed_out {
                ShutdownReason::Timeout
            } else if info.signal > 0 {
                ShutdownReason::Signal
            } else {
                ShutdownReason::JobComplete
            };
            let outcome = match stop {
                Some(r) => stopped_outcome(Some(r)),
                // Unlike a timeout, this is a kill the caller did not ask for and may not
                // recognise from a bare SIGKILL: the operation fails and says why.
                None if info.oom_killed && info.signal > 0 => Outcome::failed(oom_message(ops)),
                // A non-zero exit, a kill through the API or a timeout all complete the
                // operation: the process' fate is in `state`, not in the operation status.
                None => Outcome::success(None),
            };
            (outcome, reason)
        }
    };
    drop(sb);
    if let Some(info) = &exit {
        phase.record("process.exit.code", info.exit_code);
        phase.record("contree.timed_out", info.timed_out);
        phase.record("contree.oom_killed", info.oom_killed);
    }
    drop(phase);

    // The upper dir: a new image, the source image, or nothing.
    let phase = tracing::info_span!("sandbox.finish", contree.kept_image = keep_image(&outcome, &plan)).entered();
    let keep = keep_image(&outcome, &plan);
    match sandbox::finish(&run_dir) {
        Err(e) => {
            if keep {
                outcome = Outcome::failed(format!("could not finish the sandbox: {e}"));
            }
        }
        Ok(upper) if keep => match result_image(ops, live.uuid, &plan, upper) {
            Ok((uuid, new_image)) => {
                outcome.result_image = Some(uuid);
                outcome.new_image = new_image;
            }
            Err(e) => outcome = Outcome::failed(format!("could not store the result image: {e}")),
        },
        Ok(_) => {}
    }
    cleanup(&run_dir);
    drop(phase);
    live.push(Some(0), &EventPayload::Shutdown(EventDataShutdown { stopped_at: now_ts(), reason }));
    if outcome.status != OperationStatus::Success && stop == Some(StopReason::Cancelled) {
        outcome.error = Some("cancelled".to_owned());
    }
    outcome
}

/// Whether the run's filesystem is kept as its result (what `sandbox.finish` records).
fn keep_image(outcome: &Outcome, plan: &RunPlan) -> bool {
    outcome.status == OperationStatus::Success && !plan.disposable
}

/// The run's result image: the source image when nothing changed, else a new image (its
/// layer adopted now, its record returned to be stored with the operation's end).
fn result_image(ops: &Ops, op: Uuid, plan: &RunPlan, upper: UpperState) -> Result<(Uuid, Option<ImageRecord>), String> {
    let env_changed = plan.preserved_env.as_ref().is_some_and(|e| *e != plan.source.env);
    // The image's working directory is `/` when it has none recorded.
    let source_workdir = plan.source.workdir.as_deref().unwrap_or("/");
    let cwd_changed = plan.preserved_cwd.as_deref().is_some_and(|w| w != source_workdir);
    let layer = match upper {
        UpperState::Changed(dir) => Some(ops.store.adopt_layer(&dir).map_err(|e| e.to_string())?),
        // No new layer and no new metadata: the source image is the result (spec).
        UpperState::Unchanged if !env_changed && !cwd_changed => return Ok((plan.source.uuid, None)),
        UpperState::Unchanged => None,
    };
    let workdir = if cwd_changed { plan.preserved_cwd.clone() } else { plan.source.workdir.clone() };
    let image = ImageRecord::new(Uuid::new_v4(), Some(plan.source.uuid), layer)
        .with_operation(op)
        .with_env(plan.preserved_env.clone().unwrap_or_else(|| plan.source.env.clone()))
        .with_workdir(workdir);
    Ok((image.uuid, Some(image)))
}

/// What an OOM-killed run says, naming the limit.
fn oom_message(ops: &Ops) -> String {
    match ops.cgroups.as_ref().and_then(|c| c.limits().memory_bytes) {
        Some(n) => format!("the run was killed for exceeding its memory limit of {n} bytes (out of memory)"),
        None => "the run was killed for exceeding its memory limit (out of memory)".to_owned(),
    }
}

pub(crate) fn exit_event(pid: i32, info: &ExitInfo) -> EventDataExit {
    let r = &info.rusage;
    EventDataExit {
        pid,
        code: info.exit_code,
        signal: info.signal,
        core_dump: info.core_dump,
        timed_out: info.timed_out,
        duration_ms: info.duration.as_millis() as u64,
        resources: EventResources {
            user_time_us: r.user_time_us,
            sys_time_us: r.sys_time_us,
            max_rss_kb: r.max_rss_kb,
            shared_memory: r.shared_memory,
            unshared_memory: r.unshared_memory,
            swaps: r.swaps,
            minor_faults: r.minor_faults,
            major_faults: r.major_faults,
            voluntary_ctx_switches: r.voluntary_ctx_switches,
            involuntary_ctx_switches: r.involuntary_ctx_switches,
            block_input_ops: r.block_input_ops,
            block_output_ops: r.block_output_ops,
            ipc_msgs_sent: r.ipc_msgs_sent,
            ipc_msgs_received: r.ipc_msgs_received,
            signals_received: r.signals_received,
        },
    }
}

fn cleanup(run_dir: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(run_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %run_dir.display(), error = %e, "could not remove a run directory");
    }
}

struct Uname {
    release: String,
    version: String,
    machine: String,
}

/// One field of `uname(2)`, computed once.
fn uname_field(f: impl Fn(&Uname) -> &String) -> Option<String> {
    static UNAME: std::sync::OnceLock<Option<Uname>> = std::sync::OnceLock::new();
    let u = UNAME.get_or_init(|| {
        // SAFETY: `utsname` is plain data; `uname` fills it and we read NUL-terminated fields.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut u) } != 0 {
            return None;
        }
        let s = |a: &[libc::c_char]| {
            let bytes: Vec<u8> = a.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Some(Uname { release: s(&u.release), version: s(&u.version), machine: s(&u.machine) })
    });
    u.as_ref().map(|u| f(u).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use contree_core::models::{OperationEventType, OperationKind};

    #[test]
    fn caps_keep_the_first_bytes_and_report_drops() {
        let live = LiveOp::new(Uuid::new_v4(), OperationKind::Instance, false, 1 << 20);
        let mut cap = StreamCap::new(StreamName::Stdout, 5);
        cap.record(&live, 1, b"abc");
        cap.record(&live, 1, b"defgh");
        cap.record(&live, 1, b"ij");
        let evs = live.events();
        assert_eq!(evs.len(), 2);
        let out: Vec<u8> = evs
            .iter()
            .flat_map(|e| match e.payload() {
                EventPayload::Stdout(s) => s.to_bytes().unwrap(),
                _ => vec![],
            })
            .collect();
        assert_eq!(out, b"abcde");
        match cap.truncated_event().unwrap() {
            EventPayload::Truncated(t) => {
                assert_eq!((t.bytes_emitted, t.bytes_dropped), (5, 5));
                assert_eq!(t.stream, StreamName::Stdout);
            }
            _ => panic!("not a truncated event"),
        }
        let uncapped = StreamCap::new(StreamName::Stderr, 100);
        assert!(uncapped.truncated_event().is_none());
        assert!(evs.iter().all(|e| e.event_type == OperationEventType::Stdout));
    }

    #[test]
    fn big_reads_are_split_into_chunks() {
        let live = LiveOp::new(Uuid::new_v4(), OperationKind::Instance, false, 1 << 20);
        let mut cap = StreamCap::new(StreamName::Stdout, 1 << 20);
        cap.record(&live, 1, &vec![b'x'; MAX_CHUNK * 2 + 1]);
        assert_eq!(live.events().len(), 3);
    }
}
