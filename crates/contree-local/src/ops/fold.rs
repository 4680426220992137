//! Folding an operation's event log into an `InstanceResult` — what `GET /operations/{id}`
//! (`metadata.result`, `inflight`) and `GET …/subprocesses/{spid}` return.

use contree_core::models::{
    EventDataExit, EventPayload, InstanceResources, InstanceResult, InstanceState, OperationEvent, StreamName,
    StreamRepr,
};

/// The result of process `spid`, or `None` when the log has no `spawn` event for it.
///
/// While the process runs, `state.exit_code` and `state.signal` are `-1` and `resources` is
/// empty; once the `exit` event is in, they carry the real values. Output is the concatenation
/// of the stream events (already capped when they were recorded), flagged `truncated` when a
/// `truncated` event exists for the stream.
pub(crate) fn instance_result<'a>(
    events: impl IntoIterator<Item = &'a OperationEvent>,
    spid: u32,
) -> Option<InstanceResult> {
    let mut spawned = false;
    let mut pid = -1;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut out_truncated = false;
    let mut err_truncated = false;
    let mut exit: Option<EventDataExit> = None;
    for ev in events {
        if ev.spid != Some(spid) {
            continue;
        }
        match ev.payload() {
            EventPayload::Spawn(s) => {
                spawned = true;
                pid = s.pid;
            }
            EventPayload::Stdout(s) => stdout.extend(s.to_bytes().unwrap_or_default()),
            EventPayload::Stderr(s) => stderr.extend(s.to_bytes().unwrap_or_default()),
            EventPayload::Exit(e) => exit = Some(e),
            EventPayload::Truncated(t) => match t.stream {
                StreamName::Stdout => out_truncated = true,
                StreamName::Stderr => err_truncated = true,
                _ => {}
            },
            _ => {}
        }
    }
    if !spawned {
        return None;
    }
    let mut result = InstanceResult {
        resources: InstanceResources::default(),
        state: InstanceState { pid, ..InstanceState::default() },
        stdout: StreamRepr::from_bytes(&stdout).with_truncated(out_truncated),
        stderr: StreamRepr::from_bytes(&stderr).with_truncated(err_truncated),
    };
    if let Some(e) = exit {
        result.state = InstanceState {
            continued: false,
            core_dump: e.core_dump,
            exit_code: e.code,
            pid: if e.pid > 0 { e.pid } else { pid },
            signal: e.signal,
            stopped: false,
            timed_out: e.timed_out,
        };
        result.resources = resources(&e);
    }
    Some(result)
}

/// Maps the `exit` event's rusage to the result's resource names and units (seconds, KB).
fn resources(e: &EventDataExit) -> InstanceResources {
    let r = &e.resources;
    let elapsed = e.duration_ms as f64 / 1000.0;
    InstanceResources {
        block_input: Some(r.block_input_ops),
        block_output: Some(r.block_output_ops),
        cost: Some(0.0),
        elapsed_time: Some(elapsed),
        involuntary_switches: Some(r.involuntary_ctx_switches),
        max_rss: Some(r.max_rss_kb),
        monotonic_time: Some(elapsed),
        page_faults: Some(r.minor_faults),
        page_faults_io: Some(r.major_faults),
        shared_memory: Some(r.shared_memory),
        signals: Some(r.signals_received),
        swaps: Some(r.swaps),
        system_cpu_time: Some(r.sys_time_us as f64 / 1e6),
        unshared_memory: Some(r.unshared_memory),
        user_cpu_time: Some(r.user_time_us as f64 / 1e6),
        voluntary_switches: Some(r.voluntary_ctx_switches),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contree_core::models::{EventDataSpawn, EventDataTruncated, EventResources};

    fn ev(id: u64, spid: u32, p: EventPayload) -> OperationEvent {
        OperationEvent::new(id, "2026-01-01T00:00:00Z", Some(spid), &p)
    }

    #[test]
    fn running_then_exited() {
        let mut log = vec![
            ev(1, 1, EventPayload::Spawn(EventDataSpawn { pid: 7, ..Default::default() })),
            ev(2, 1, EventPayload::Stdout(StreamRepr::from_bytes(b"hi "))),
            ev(3, 1, EventPayload::Stdout(StreamRepr::from_bytes(b"there\n"))),
            ev(4, 1, EventPayload::Stderr(StreamRepr::from_bytes(&[0xff]))),
        ];
        let r = instance_result(&log, 1).unwrap();
        assert_eq!(r.state.exit_code, -1);
        assert_eq!(r.state.signal, -1);
        assert_eq!(r.state.pid, 7);
        assert_eq!(r.stdout.to_bytes().unwrap(), b"hi there\n");
        assert_eq!(r.stderr.to_bytes().unwrap(), [0xff]);
        assert!(!r.stdout.is_truncated());
        log.push(ev(
            5,
            1,
            EventPayload::Exit(EventDataExit {
                pid: 7,
                code: 3,
                signal: -1,
                duration_ms: 1500,
                resources: EventResources { user_time_us: 2_000_000, max_rss_kb: 900, ..Default::default() },
                ..Default::default()
            }),
        ));
        log.push(ev(
            6,
            1,
            EventPayload::Truncated(EventDataTruncated {
                stream: StreamName::Stdout,
                bytes_emitted: 9,
                bytes_dropped: 1,
            }),
        ));
        let r = instance_result(&log, 1).unwrap();
        assert_eq!(r.state.exit_code, 3);
        assert_eq!(r.resources.elapsed_time, Some(1.5));
        assert_eq!(r.resources.user_cpu_time, Some(2.0));
        assert_eq!(r.resources.max_rss, Some(900));
        assert!(r.stdout.is_truncated());
        assert!(!r.stderr.is_truncated());
        assert!(instance_result(&log, 2).is_none());
    }
}
