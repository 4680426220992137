//! A running operation: its event log, the fan-out to event-stream followers, and the handles
//! used to cancel it or talk to its process.
//!
//! The event log is the source of truth (the same design as the real service): the status an
//! API call reports, the folded result, `inflight` output and the subprocess view are all
//! derived from it or kept next to it under one lock, so they never disagree.

use std::sync::{Arc, Mutex, MutexGuard};

use contree_core::models::{EventPayload, OperationEvent, OperationKind, OperationStatus, StreamName};
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

use crate::sandbox::RunningSandbox;

use super::fold;
use super::run::StreamCap;

/// How many events a slow follower may lag behind before it re-reads the log (from memory,
/// so lagging is cheap). The channel allocates every slot up front, for each operation from
/// its creation, queued ones included: 1,024 slots were ~40 KB per run in flight.
const FANOUT_CAPACITY: usize = 64;

/// The span of operation `uuid`, following from the current span (the spawn request's).
fn operation_span(uuid: Uuid, kind: &OperationKind) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "contree.operation",
        contree.operation.id = %uuid,
        contree.operation.kind = ?kind,
        contree.operation.status = tracing::field::Empty,
        contree.duration_ms = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    span.follows_from(tracing::Span::current());
    span
}

/// Why an operation is being stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// `DELETE /operations/{id}`: ends CANCELLED.
    Cancelled,
    /// The server is shutting down: ends FAILED.
    Shutdown,
}

/// Mutable state of a live operation.
pub(crate) struct LiveState {
    pub status: OperationStatus,
    /// Every event so far, in id order.
    pub log: Vec<Arc<OperationEvent>>,
    next_id: u64,
    /// The process, once spawned and until it exited.
    pub sandbox: Option<Arc<RunningSandbox>>,
    /// Whether the main process' stdin pipe accepts writes (`stdin.close == false`).
    pub stdin_open: bool,
    /// Stdin written through the API before the process started, delivered right after.
    pub pending_stdin: Vec<(Vec<u8>, bool)>,
    /// A signal sent through the API while the process was being started, delivered as soon
    /// as it is published (the status says EXECUTING a few ms before that).
    pub pending_signal: Option<i32>,
    /// Set once a stop was requested.
    pub stop: Option<StopReason>,
    /// When the run started executing.
    pub started: Option<std::time::Instant>,
}

/// A live (non-terminal) operation.
pub(crate) struct LiveOp {
    pub uuid: Uuid,
    pub kind: OperationKind,
    state: Mutex<LiveState>,
    tx: broadcast::Sender<Arc<OperationEvent>>,
    /// Wakes a run still waiting in the queue when it is cancelled.
    pub stop_notify: Notify,
    /// Serialises stdin writes and caps what the log keeps of them (kept apart from `state`
    /// so that a full pipe never blocks readers of the log).
    pub stdin: Mutex<StreamCap>,
    /// Its extra processes (spid ≥ 2).
    pub subprocs: super::subproc::Subprocs,
    /// Its `contree.operation` span: a root (the operation outlives the request that made it,
    /// which it follows from), entered by whatever works on the operation; the sandbox's
    /// phases are its children.
    pub span: tracing::Span,
}

impl LiveOp {
    pub fn new(uuid: Uuid, kind: OperationKind, stdin_open: bool, truncate_at: u64) -> Arc<Self> {
        let (tx, _) = broadcast::channel(FANOUT_CAPACITY);
        let span = operation_span(uuid, &kind);
        Arc::new(LiveOp {
            uuid,
            kind,
            state: Mutex::new(LiveState {
                status: OperationStatus::Pending,
                log: Vec::new(),
                next_id: 1,
                sandbox: None,
                stdin_open,
                pending_stdin: Vec::new(),
                pending_signal: None,
                stop: None,
                started: None,
            }),
            tx,
            stop_notify: Notify::new(),
            stdin: Mutex::new(StreamCap::new(StreamName::Stdin, truncate_at)),
            subprocs: Default::default(),
            span,
        })
    }

    /// Locks the stdin side (see [`LiveOp::stdin`]).
    pub fn lock_stdin(&self) -> MutexGuard<'_, StreamCap> {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state; a panic elsewhere never makes the log unreadable.
    pub fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> OperationStatus {
        self.lock().status
    }

    pub fn set_status(&self, status: OperationStatus) {
        self.lock().status = status;
    }

    /// Builds the next event without logging or sending it: the caller persists it first,
    /// then [`LiveOp::publish`]es it, so followers never see an event the store lacks.
    pub fn prepare(&self, spid: Option<u32>, payload: &EventPayload) -> OperationEvent {
        OperationEvent::new(self.lock().next_id, now_ts(), spid, payload)
    }

    /// Logs and sends an event made by [`LiveOp::prepare`].
    pub fn publish(&self, mut ev: OperationEvent) -> Arc<OperationEvent> {
        let mut st = self.lock();
        // Nothing is pushed after the exit, but keep ids strictly increasing regardless.
        ev.id = ev.id.max(st.next_id);
        st.next_id = ev.id + 1;
        let ev = Arc::new(ev);
        st.log.push(ev.clone());
        let _ = self.tx.send(ev.clone());
        ev
    }

    /// Appends an event (ids strictly increasing, starting at 1) and forwards it to followers.
    pub fn push(&self, spid: Option<u32>, payload: &EventPayload) -> Arc<OperationEvent> {
        let mut st = self.lock();
        let ev = Arc::new(OperationEvent::new(st.next_id, now_ts(), spid, payload));
        st.next_id += 1;
        st.log.push(ev.clone());
        // Sending under the lock keeps the broadcast order equal to the log order.
        let _ = self.tx.send(ev.clone());
        ev
    }

    /// The events with `id > since`, and a receiver for every later one (taken under the same
    /// lock, so nothing falls between the two).
    pub fn subscribe(&self, since: u64) -> (Vec<Arc<OperationEvent>>, broadcast::Receiver<Arc<OperationEvent>>) {
        let st = self.lock();
        let rx = self.tx.subscribe();
        (events_after(&st.log, since), rx)
    }

    /// The events with `id > since`.
    pub fn events_after(&self, since: u64) -> Vec<Arc<OperationEvent>> {
        events_after(&self.lock().log, since)
    }

    /// A snapshot of the whole log.
    pub fn events(&self) -> Vec<Arc<OperationEvent>> {
        self.lock().log.clone()
    }

    /// Folds the log into the result of process `spid` (see [`fold::instance_result`]).
    pub fn fold(&self, spid: u32) -> Option<contree_core::models::InstanceResult> {
        let st = self.lock();
        fold::instance_result(st.log.iter().map(|e| e.as_ref()), spid)
    }

    /// Asks the operation to stop. Returns `false` when it is already terminal. A queued run
    /// is woken up; a running process tree is killed.
    pub fn request_stop(&self, reason: StopReason) -> bool {
        let sandbox = {
            let mut st = self.lock();
            if st.status.is_terminal() {
                return false;
            }
            if st.stop.is_none() {
                st.stop = Some(reason);
            }
            st.sandbox.clone()
        };
        self.stop_notify.notify_one();
        if let Some(sb) = sandbox {
            // A process that already exited is fine: it is stopping anyway.
            let _ = sb.kill(libc::SIGKILL);
        }
        true
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.lock().stop
    }
}

fn events_after(log: &[Arc<OperationEvent>], since: u64) -> Vec<Arc<OperationEvent>> {
    // Ids are increasing: binary search for the first one past `since`.
    let start = log.partition_point(|e| e.id <= since);
    log[start..].to_vec()
}

/// An event timestamp: RFC 3339 UTC with nanoseconds and `Z`.
pub(crate) fn now_ts() -> String {
    crate::api::params::rfc3339(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use contree_core::models::{EventDataStream, OperationEventType};

    #[tokio::test]
    async fn ids_increase_and_followers_see_later_events() {
        let op = LiveOp::new(Uuid::new_v4(), OperationKind::Instance, false, 1 << 20);
        let a = op.push(Some(1), &EventPayload::Stdout(EventDataStream::from_bytes(b"a")));
        assert_eq!(a.id, 1);
        let (snap, mut rx) = op.subscribe(0);
        assert_eq!(snap.len(), 1);
        let b = op.push(Some(1), &EventPayload::Stdout(EventDataStream::from_bytes(b"b")));
        assert_eq!(b.id, 2);
        let got = rx.recv().await.unwrap();
        assert_eq!(got.id, 2);
        assert_eq!(got.event_type, OperationEventType::Stdout);
        assert_eq!(op.events_after(1).len(), 1);
        assert!(op.events_after(2).is_empty());
    }

    #[test]
    fn stop_is_refused_once_terminal() {
        let op = LiveOp::new(Uuid::new_v4(), OperationKind::Instance, false, 1 << 20);
        assert!(op.request_stop(StopReason::Cancelled));
        assert_eq!(op.stop_reason(), Some(StopReason::Cancelled));
        op.set_status(OperationStatus::Cancelled);
        assert!(!op.request_stop(StopReason::Cancelled));
    }
}
