//! Operation lifecycle: creation, the run queue, cancellation, the event log and its folding,
//! and persistence of the final state.
//!
//! Each operation appends to an event log (`init`, `spawn`, stream chunks, `exit`,
//! `truncated`, `shutdown`, `completion`). Everything else is derived from that log: event
//! streams, the folded result, `inflight` output and the subprocess view. While an operation
//! runs its log lives in memory ([`live::LiveOp`]); when it ends, the log and the final record
//! are written to the store.

pub(crate) mod echo;
pub(crate) mod fold;
pub(crate) mod import;
pub(crate) mod live;
pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod subproc;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contree_core::models::{EventDataCompletion, EventPayload, OperationKind, OperationStatus};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::images::base::BaseImage;
use crate::store::{EventRow, ImageRecord, OperationRecord, Store};

pub(crate) use live::{LiveOp, StopReason};

/// The `Retry-After` (seconds) of a spawn refused for lack of room: about the time a few
/// short runs take to make some.
const RETRY_AFTER_SECS: u64 = 1;

/// A run's place in the queue, from its admission until it gets a slot (or ends without
/// one). Dropping it gives the place back.
pub(crate) struct QueueSlot {
    queued: Arc<AtomicUsize>,
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Limits applied to runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunLimits {
    pub default_timeout: Option<Duration>,
    pub max_timeout: Duration,
    pub max_concurrent_runs: usize,
    /// How many admitted runs may wait for a slot ([`LocalConfig::max_queued_runs`](crate::LocalConfig::max_queued_runs)).
    pub max_queued_runs: usize,
    /// Runs may have a network ([`LocalConfig::networking`](crate::LocalConfig::networking)).
    pub networking: bool,
    /// Runs that don't say get a network: the spec's default, where the network helper is
    /// installed.
    pub networking_by_default: bool,
}

/// How registry imports are done ([`LocalConfig`](crate::LocalConfig)'s import fields).
#[derive(Debug, Clone)]
pub(crate) struct ImportSettings {
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// The most bytes one imported image may unpack to.
    pub max_bytes: u64,
    /// Imports running at once (`GET /whoami`'s `images_import_max_concurrency`); more wait
    /// as PENDING.
    pub slots: Arc<Semaphore>,
}

/// The operation registry, shared by every request handler.
pub(crate) struct Ops {
    pub store: Store,
    pub base: BaseImage,
    pub data_dir: PathBuf,
    /// The host ids sandboxes are mapped to.
    pub ids: crate::sandbox::IdRange,
    pub limits: RunLimits,
    /// The server's cgroup subtree, where every run gets its kernel limits; `None` when no
    /// limit is enforced (nothing asked for, or nothing enforceable: the start-up log says so).
    pub cgroups: Option<Arc<crate::sandbox::cgroup::Cgroups>>,
    /// Caps run layers at `max_layer_bytes`; `None` where the data dir can't (the start-up
    /// log says why, and spawns that set the cap are refused).
    pub layer_quota: Option<crate::layer_quota::LayerQuota>,
    pub imports: ImportSettings,
    queue: Arc<Semaphore>,
    /// Runs admitted but not started yet (see [`QueueSlot`]).
    queued: Arc<AtomicUsize>,
    live: Mutex<HashMap<Uuid, Arc<LiveOp>>>,
    /// Notified whenever an operation leaves the live set (shutdown waits on it).
    drained: Notify,
    closing: AtomicBool,
    /// A [`trim_when_idle`](Ops::trim_when_idle) is pending.
    trim_scheduled: Arc<AtomicBool>,
}

/// How an operation ended, before the `completion` event is written.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub status: OperationStatus,
    pub error: Option<String>,
    pub result_image: Option<Uuid>,
    pub result_tag: Option<String>,
    /// A new image to record together with the operation's end (one transaction).
    pub new_image: Option<ImageRecord>,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Self {
        Outcome {
            status: OperationStatus::Failed,
            error: Some(error.into()),
            result_image: None,
            result_tag: None,
            new_image: None,
        }
    }

    pub fn success(result_image: Option<Uuid>) -> Self {
        Outcome { status: OperationStatus::Success, error: None, result_image, result_tag: None, new_image: None }
    }
}

impl Ops {
    #[expect(clippy::too_many_arguments, reason = "one caller (the server's start); each is a distinct part")]
    pub fn new(
        store: Store,
        base: BaseImage,
        data_dir: PathBuf,
        ids: crate::sandbox::IdRange,
        limits: RunLimits,
        cgroups: Option<Arc<crate::sandbox::cgroup::Cgroups>>,
        layer_quota: Option<crate::layer_quota::LayerQuota>,
        imports: ImportSettings,
    ) -> Arc<Self> {
        Arc::new(Ops {
            store,
            base,
            data_dir,
            ids,
            queue: Arc::new(Semaphore::new(limits.max_concurrent_runs)),
            queued: Arc::new(AtomicUsize::new(0)),
            limits,
            cgroups,
            layer_quota,
            imports,
            live: Mutex::new(HashMap::new()),
            drained: Notify::new(),
            closing: AtomicBool::new(false),
            trim_scheduled: Arc::new(AtomicBool::new(false)),
        })
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<LiveOp>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live operation `uuid`, if it is still running.
    pub fn live(&self, uuid: Uuid) -> Option<Arc<LiveOp>> {
        self.live_map().get(&uuid).cloned()
    }

    /// Registers a new operation (already inserted in the store).
    fn register(&self, op: Arc<LiveOp>) -> Result<(), ApiError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"));
        }
        self.live_map().insert(op.uuid, op);
        Ok(())
    }

    /// Admits one more run, or refuses it with 429 and `Retry-After` when the queue is full or
    /// the server is short of descriptors. Called before anything about the spawn is
    /// recorded, so a refused request leaves nothing behind and may be replayed as is (the
    /// client libraries do, for 429).
    pub fn admit(&self) -> Result<QueueSlot, ApiError> {
        let too_many = |message: String| {
            ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, message).retry_after(RETRY_AFTER_SECS)
        };
        let max = self.limits.max_queued_runs;
        if self.queued.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| (q < max).then_some(q + 1)).is_err() {
            return Err(too_many(format!("{max} runs are already waiting to start (max_queued_runs); retry later")));
        }
        let slot = QueueSlot { queued: self.queued.clone() };
        // Runs already executing hold their descriptors; each free slot may start a run at
        // any moment, and this one may need one more.
        let idle_slots = self.queue.available_permits() as u64;
        // Each queued run's client will hold a connection to follow it, too.
        let queued = self.queued.load(Ordering::SeqCst) as u64;
        let need = crate::fds::FDS_PER_RUN * (idle_slots + 1) + crate::fds::FDS_MARGIN + queued;
        if !crate::fds::has_headroom(need) {
            tracing::warn!(need, free = ?crate::fds::free(), "refusing a spawn: too few free file descriptors");
            return Err(too_many(
                "the server is short of file descriptors (too many open connections); retry later".to_owned(),
            )
            .close_connection());
        }
        Ok(slot)
    }

    /// Creates an instance operation and queues its run. Returns the operation id and the
    /// metadata echo ([`echo`]) for the 201 answer.
    pub fn spawn_instance(
        self: &Arc<Self>,
        req: contree_core::models::InstanceSpawnRequest,
    ) -> Result<(Uuid, Value), ApiError> {
        let slot = self.admit()?;
        let (plan, meta) = plan::plan_instance(self, req)?;
        let uuid = Uuid::new_v4();
        let mut record = OperationRecord::new(uuid, OperationKind::Instance, meta.clone());
        record.image_uuid = Some(plan.source.uuid);
        self.store.insert_operation(&record).map_err(store_error)?;
        let live = LiveOp::new(uuid, OperationKind::Instance, plan.keep_stdin_open, plan.truncate_at);
        if let Err(e) = self.register(live.clone()) {
            // Never leave a PENDING record behind that nothing will run.
            let mut record = record;
            record.status = OperationStatus::Failed;
            record.error = Some(e.message().to_owned());
            record.finished_at = Some(crate::store::now());
            let _ = self.store.update_operation(&record);
            return Err(e);
        }
        let ops = self.clone();
        let span = live.span.clone();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let permit = tokio::select! {
                    p = ops.queue.clone().acquire_owned() => p.ok(),
                    _ = live.stop_notify.notified() => None,
                };
                // Started or stopped, the run no longer waits in the queue.
                drop(slot);
                let Some(permit) = permit else {
                    // Stopped while queued: nothing ran.
                    let outcome = stopped_outcome(live.stop_reason());
                    let ops2 = ops.clone();
                    let _ = tokio::task::spawn_blocking(move || ops2.finish(&live, record, outcome)).await;
                    return;
                };
                let ops2 = ops.clone();
                let live2 = live.clone();
                let rec2 = record.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let _in_operation = live2.span.enter();
                    let outcome = run::execute(&ops2, &live2, plan, &rec2);
                    drop(permit);
                    ops2.finish(&live2, rec2, outcome);
                })
                .await;
                if let Err(e) = joined {
                    // The run panicked: still end the operation, so no follower waits forever.
                    let outcome = Outcome::failed(format!("the run crashed: {e}"));
                    let _ = tokio::task::spawn_blocking(move || ops.finish(&live, record, outcome)).await;
                }
            },
            span,
        ));
        Ok((uuid, meta))
    }

    /// Writes the `completion` event, persists the log and the final record, and retires the
    /// live operation. Blocking (SQLite); called from blocking or short async contexts.
    pub fn finish(self: &Arc<Self>, live: &Arc<LiveOp>, mut record: OperationRecord, outcome: Outcome) {
        let now = crate::store::now();
        let ran = live.lock().started.map(|s| s.elapsed());
        let duration_ms = match ran {
            Some(d) => d.as_millis() as u64,
            None => (now - record.created_at).whole_milliseconds().max(0) as u64,
        };
        let success = outcome.status == OperationStatus::Success;
        let result_image = if success { outcome.result_image } else { None };
        let completion = live.prepare(
            None,
            &EventPayload::Completion(EventDataCompletion {
                status: outcome.status,
                duration_ms: Some(duration_ms),
                result_image_uuid: result_image,
                error: outcome.error.clone(),
                image_size_bytes: None,
            }),
        );
        record.status = outcome.status;
        record.error = outcome.error.clone();
        record.finished_at = Some(now);
        record.duration = Some(duration_ms as f64 / 1000.0);
        record.result_image_uuid = result_image;
        record.result_tag = if success { outcome.result_tag.clone() } else { None };
        if live.kind == OperationKind::Instance
            && let Some(result) = live.fold(1)
            && let Value::Object(m) = &mut record.metadata
        {
            m.insert("result".to_owned(), serde_json::to_value(&result).unwrap_or(Value::Null));
        }
        let rows: Vec<EventRow> = live
            .events()
            .iter()
            .map(|e| e.as_ref())
            .chain(std::iter::once(&completion))
            .map(|e| EventRow::new(e.id, serde_json::to_value(e).unwrap_or(Value::Null)))
            .collect();
        let new_image = if success { outcome.new_image.as_ref() } else { None };
        if let Err(e) = self.store.complete_operation(&record, &rows, new_image) {
            tracing::error!(operation = %live.uuid, error = %e, "could not record the end of an operation");
            // At least record the status, so the operation doesn't look alive forever.
            record.status = OperationStatus::Failed;
            record.error = Some(format!("could not record the result: {e}"));
            record.result_image_uuid = None;
            let _ = self.store.update_operation(&record);
        }
        live.set_status(record.status);
        live.span.record("contree.operation.status", tracing::field::display(record.status));
        live.span.record("contree.duration_ms", duration_ms);
        live.span.record("otel.status_code", if success { "OK" } else { "ERROR" });
        live.span.in_scope(
            || tracing::debug!(operation = %live.uuid, status = %record.status, duration_ms, "operation finished"),
        );
        // Only now that the store has the final record may followers see the completion:
        // a client reading the operation right after it gets the terminal status.
        live.publish(completion);
        self.forget(live);
    }

    fn forget(self: &Arc<Self>, live: &Arc<LiveOp>) {
        let idle = {
            let mut map = self.live_map();
            map.remove(&live.uuid);
            map.is_empty()
        };
        self.drained.notify_waiters();
        if idle {
            self.trim_when_idle();
        }
    }

    /// Hands memory freed by a burst back to the system once the server is idle: after
    /// [`TRIM_DELAYS`] of idleness, twice.
    ///
    /// Measured (issue 10): after 2,000 runs in flight had drained, the server's RSS stayed at
    /// ~255 MB with every run, connection and extra thread gone; `malloc_trim(0)` alone (from
    /// a debugger) brought it to 26 MB. So nothing of ours held it: glibc keeps freed memory
    /// in the arenas of the threads that used it (the blocking pool grows to hundreds of
    /// threads under load) and returns only what sits at the top of a heap. The first trim
    /// comes soon after the drain; the second once the blocking pool's extra threads have
    /// timed out (tokio keeps an idle one 10 s), because an exiting thread gives its malloc
    /// cache back to the arenas, which only a trim then returns (measured: 57 MB → 26 MB).
    /// Trims run on a blocking thread and are skipped while a run is live; with a steady
    /// trickle of runs they happen at most twice per 15 s, and a round that ended busy is
    /// followed by another, so the last drain of a burst is always trimmed.
    fn trim_when_idle(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        if self.trim_scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let ops = Arc::downgrade(self);
        let scheduled = self.trim_scheduled.clone();
        rt.spawn(async move {
            // Rounds go on until one ends with the late trim done while idle: a drain that
            // happened while this task was pending scheduled nothing of its own, so a round
            // that ended busy must not be the last. Bounded: a server never idle at a
            // round's end gives up after an hour, and its next drain schedules anew.
            'rounds: for _ in 0..MAX_TRIM_ROUNDS {
                for (i, delay) in TRIM_DELAYS.iter().enumerate() {
                    tokio::time::sleep(*delay).await;
                    let Some(ops) = ops.upgrade() else { break 'rounds };
                    let idle = ops.live_map().is_empty();
                    let store = ops.store.clone();
                    drop(ops);
                    if idle {
                        let _ = tokio::task::spawn_blocking(move || {
                            store.release_memory();
                            trim_heap();
                        })
                        .await;
                        if i + 1 == TRIM_DELAYS.len() {
                            break 'rounds;
                        }
                    }
                }
            }
            scheduled.store(false, Ordering::SeqCst);
        });
    }

    /// Cancels an operation: 202 when accepted, 409 when it already ended, 404 when unknown.
    pub fn cancel(&self, uuid: Uuid) -> Result<(), ApiError> {
        if let Some(live) = self.live(uuid)
            && live.request_stop(StopReason::Cancelled)
        {
            return Ok(());
        }
        match self.store.get_operation(uuid).map_err(store_error)? {
            None => Err(ApiError::not_found(format!("operation {uuid} not found"))),
            Some(_) => Err(ApiError::conflict("operation is not cancellable")),
        }
    }

    /// Stops accepting work, kills every run and waits (bounded) for them to be recorded.
    pub async fn shutdown(&self, grace: Duration) {
        self.kill_all();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.drained.notified();
            if self.live_map().is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Stops accepting work and kills every run, without waiting (usable from `Drop`).
    pub fn kill_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let all: Vec<_> = self.live_map().values().cloned().collect();
        for op in all {
            op.request_stop(StopReason::Shutdown);
        }
    }
}

/// When freed memory is trimmed after the server became idle: soon, and again (from then)
/// once the blocking pool's idle threads, kept 10 s by tokio, have exited.
const TRIM_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(14)];
/// Bound on the trim rounds of one schedule (15 s each: an hour).
const MAX_TRIM_ROUNDS: usize = 240;

/// Returns the allocator's free memory to the system (see [`Ops::trim_when_idle`]).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        // SAFETY: malloc_trim only rearranges the allocator's free lists; 0 keeps no padding.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(released = released != 0, took = ?started.elapsed(), "trimmed the heap after a drain");
    }
}

/// The outcome of an operation stopped before or while running.
pub(crate) fn stopped_outcome(reason: Option<StopReason>) -> Outcome {
    match reason {
        Some(StopReason::Shutdown) => Outcome::failed("the server shut down"),
        _ => Outcome { status: OperationStatus::Cancelled, ..Outcome::failed("cancelled") },
    }
}

/// The stored event log of a finished operation (events with `id > since`).
pub(crate) fn stored_events(
    store: &Store,
    uuid: Uuid,
    since: Option<u64>,
) -> Result<Vec<contree_core::models::OperationEvent>, ApiError> {
    let rows = store.load_events(uuid, since).map_err(store_error)?;
    Ok(rows.into_iter().filter_map(|r| serde_json::from_value(r.event).ok()).collect())
}

/// Maps a store failure to the API's error statuses (the store's errors already carry the
/// kind the API should answer with).
pub(crate) fn store_error(e: contree_core::Error) -> ApiError {
    ApiError::from(e)
}
