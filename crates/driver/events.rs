//! Following an operation's event stream (`GET /operations/{id}/events`, SSE).
//!
//! The follower yields events the moment the server emits them, so completion is seen with no
//! fixed polling delay. It survives a broken stream: an in-band `sse_error`, malformed data, a
//! transport error, a stream silent for longer than `sse_keepalive_timeout`, a refused
//! reconnect or a clean end without `completion`. After any of these it first reads the
//! operation's status (bounded by the deadline):
//! - still running: it pauses (the server's `Retry-After`, else a short ladder) and resumes
//!   with `Last-Event-Id`;
//! - finished: it reconnects once more, briefly, to collect the events it missed (the server
//!   replays a finished operation's log and closes); if that too ends without `completion`,
//!   it finishes from the status, as the polling fallback does. So following never outlives
//!   the operation.
//!
//! When the events route does not exist (400/404/405/406) it falls back to polling
//! `GET /operations/{id}` with the configured curve and `Retry-After`, and then synthesizes the
//! final `completion` event from the status. Nothing waits past the deadline: at the deadline
//! the operation is cancelled and the error is OperationTimedOut.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use contree_core::models::{OperationEvent, OperationResponse};
use contree_core::poll::PollCurve;
use contree_core::sse::SseParser;
use contree_core::{Error, Result};
use reqwest::Method;
use reqwest::header::HeaderValue;

use super::client::Client;
use super::http::{StreamSlot, Timeout};
use crate::transport::{self, EventBody};

/// What the follower produces.
#[derive(Debug, Clone)]
pub(crate) enum Followed {
    /// An event, as the server sent it.
    Event(OperationEvent),
    /// The events route is unavailable and polling saw the operation finish: the terminal
    /// status answer (no individual events are known).
    Polled(Box<OperationResponse>),
}

/// Reads one operation's events in order, reconnecting as needed.
pub(crate) struct EventFollower {
    client: Client,
    op_id: String,
    spid: Option<u32>,
    last_id: Option<u64>,
    resp: Option<EventBody>,
    parser: SseParser,
    pending: VecDeque<Followed>,
    finished: bool,
    polling: bool,
    deadline: Option<Instant>,
    started: Instant,
    idle_reconnects: u32,
    /// The stream broke: read the status before connecting again.
    broken: bool,
    /// The event stream's share of the connection bound (HTTP/1.1), held while it is open.
    stream_slot: Option<transport::Permit>,
    /// How long the server asked to wait before the next connect (its `Retry-After`).
    pause: Option<Duration>,
    /// The last `Retry-After` seen, kept in the timeout error.
    last_hint: Option<Duration>,
    /// The operation is finished: the status read after a break, while the last connect
    /// collects the events still missing. `drain_until` bounds that connect.
    terminal: Option<Box<OperationResponse>>,
    drain_until: Option<Instant>,
}

impl EventFollower {
    pub(crate) fn new(client: Client, op_id: impl Into<String>) -> Self {
        EventFollower {
            client,
            op_id: op_id.into(),
            spid: None,
            last_id: None,
            resp: None,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            finished: false,
            polling: false,
            deadline: None,
            started: Instant::now(),
            idle_reconnects: 0,
            broken: false,
            pause: None,
            last_hint: None,
            terminal: None,
            drain_until: None,
            stream_slot: None,
        }
    }

    /// Follows only the events of process `spid` (`?spid=N`).
    pub(crate) fn spid(mut self, spid: u32) -> Self {
        self.spid = Some(spid);
        self
    }

    /// Stop with OperationTimedOut (after cancelling the operation) at this instant.
    pub(crate) fn deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The instant the current connection must end by: the deadline, or sooner while
    /// collecting the last events of a finished operation.
    fn limit(&self) -> Option<Instant> {
        match (self.deadline, self.drain_until) {
            (Some(d), Some(t)) => Some(d.min(t)),
            (d, t) => d.or(t),
        }
    }

    /// The stream is gone (closed, broken or never opened): drop it and read the status
    /// before the next connect.
    fn drop_stream(&mut self) {
        self.resp = None;
        self.stream_slot = None;
        self.parser = SseParser::new();
        self.broken = true;
    }

    /// The next event, or `None` after `completion` (or after the polled terminal status).
    #[crate::maybe]
    pub(crate) async fn next(&mut self) -> Result<Option<Followed>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if self.finished {
                return Ok(None);
            }
            if self.remaining() == Some(Duration::ZERO) {
                return Err(self.time_out().await);
            }
            if self.polling {
                self.poll_once().await?;
                continue;
            }
            if self.resp.is_none() {
                if self.broken {
                    self.broken = false;
                    self.after_break().await?;
                } else {
                    self.connect().await?;
                }
                continue;
            }
            let now = Instant::now();
            let idle = match self.limit() {
                Some(limit) => limit.saturating_duration_since(now).min(self.client.http().sse_idle_limit()),
                None => self.client.http().sse_idle_limit(),
            };
            let chunk = match self.resp.as_mut() {
                Some(body) => transport::next_event_chunk(body, idle).await,
                None => continue,
            };
            match chunk {
                Ok(Some(bytes)) => {
                    self.parser.push(&bytes);
                    self.drain_frames();
                }
                Ok(None) => {
                    tracing::debug!(operation = %self.op_id, "event stream ended without completion");
                    self.drop_stream();
                }
                Err(e) => {
                    tracing::debug!(operation = %self.op_id, error = %super::trace::redacted(&e), "event stream broke");
                    self.drop_stream();
                }
            }
        }
    }

    /// After a break: finish if the operation has (or collect its last events once), else
    /// pause and let the loop reconnect.
    #[crate::maybe]
    async fn after_break(&mut self) -> Result<()> {
        if let Some(op) = self.terminal.take() {
            // Even the last connect of a finished operation ended without `completion`.
            tracing::debug!(operation = %self.op_id, status = %op.status, "finishing from the operation's status");
            self.drain_until = None;
            self.finished = true;
            self.pending.push_back(Followed::Polled(op));
            return Ok(());
        }
        match super::operation::get_by(&self.client, &self.op_id, false, self.deadline).await {
            Ok((op, _)) if op.status.is_terminal() => {
                tracing::debug!(operation = %self.op_id, status = %op.status, "the operation finished; collecting its last events");
                self.terminal = Some(Box::new(op));
                let budget = self.client.config().transport_timeout;
                self.drain_until = Some(Instant::now() + budget);
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if e.is_unauthorized() || e.is_forbidden() => return Err(e.with_operation(&self.op_id)),
            Err(e) => {
                tracing::debug!(operation = %self.op_id, error = %super::trace::redacted(&e), "cannot read the operation's status")
            }
        }
        self.idle_reconnects += 1;
        if self.deadline.is_none() && self.idle_reconnects > 20 {
            return Err(
                Error::transport(true, "the event stream kept breaking (20 reconnects)").with_operation(&self.op_id)
            );
        }
        let pause = self.pause.take().unwrap_or_else(|| backoff(self.idle_reconnects));
        transport::sleep(pause.min(self.remaining().unwrap_or(Duration::MAX))).await;
        Ok(())
    }

    fn drain_frames(&mut self) {
        while let Some(frame) = self.parser.next_frame() {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(operation = %self.op_id, error = %e, "oversized event frame; reconnecting");
                    self.drop_stream();
                    return;
                }
            };
            if frame.event.as_deref() == Some("sse_error") {
                tracing::debug!(operation = %self.op_id, message = %frame.data, "server reported a broken event stream");
                self.drop_stream();
                return;
            }
            if frame.data.is_empty() {
                continue;
            }
            match serde_json::from_str::<OperationEvent>(&frame.data) {
                Ok(event) => {
                    if self.last_id.is_some_and(|last| event.id <= last) {
                        continue; // a replay after reconnect
                    }
                    self.last_id = Some(event.id);
                    self.idle_reconnects = 0;
                    let done = event.is_completion();
                    self.pending.push_back(Followed::Event(event));
                    if done {
                        self.finished = true;
                        // The server ends the body right after `completion`: reading it to
                        // its end (in the background) keeps an HTTP/1.1 connection reusable.
                        if let Some(body) = self.resp.take() {
                            transport::finish_event_body(body);
                        }
                        self.stream_slot = None;
                        self.terminal = None;
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(operation = %self.op_id, error = %e, "malformed event data; reconnecting");
                    self.drop_stream();
                    return;
                }
            }
        }
    }

    #[crate::maybe]
    async fn connect(&mut self) -> Result<()> {
        let http = self.client.http();
        match http.try_stream_slot() {
            StreamSlot::Unbounded => {}
            StreamSlot::Held(permit) => self.stream_slot = Some(permit),
            StreamSlot::Full => {
                // Every connection that streams may take is streaming: poll this one, so
                // that sockets stay bounded and short requests still find a connection.
                tracing::debug!(operation = %self.op_id, "connection bound reached; following by polling");
                self.polling = true;
                return Ok(());
            }
        }
        let mut query: Vec<(&str, String)> = vec![("follow", "1".into())];
        if let Some(spid) = self.spid {
            query.push(("spid", spid.to_string()));
        }
        let mut call = http
            .call_with_query(Method::GET, &["operations", &self.op_id, "events"], query)
            .header("accept", HeaderValue::from_static("text/event-stream"))
            // Events are small and each is flushed on its own: gzipped, every one would start
            // a new deflate block (measured: inflating them was a visible share of the SDK's CPU
            // per run), for little saved on the wire.
            .header("accept-encoding", HeaderValue::from_static("identity"));
        if let Some(last) = self.last_id {
            call = call.header("last-event-id", HeaderValue::from(last));
        }
        // Waiting for the headers is bounded like a silent stream, and by the deadline.
        let idle = http.sse_idle_limit();
        let limit = match self.limit() {
            Some(t) => t.saturating_duration_since(Instant::now()).min(idle).max(Duration::from_millis(1)),
            None => idle,
        };
        call.timeout = Timeout::Streaming { idle: limit };
        let call = call.deadline(Some(Instant::now() + limit));
        let Some(sent) = transport::within(limit, || http.send(&call)).await else {
            self.drop_stream();
            return Ok(());
        };
        match sent {
            Ok(resp) => {
                self.resp = Some(transport::event_body(resp));
                Ok(())
            }
            Err(e) if matches!(e.status(), Some(400 | 404 | 405 | 406)) => {
                tracing::debug!(operation = %self.op_id, status = e.status(), "events route unavailable; polling instead");
                self.polling = true;
                Ok(())
            }
            Err(e) if e.is_unauthorized() || e.is_forbidden() => Err(e.with_operation(&self.op_id)),
            Err(e) if e.is_status() && !matches!(e.status(), Some(410 | 425 | 429 | 500..=599)) => {
                Err(e.with_operation(&self.op_id))
            }
            Err(e) => {
                // The retry policy spent its attempts (or the deadline is near): check the
                // status, then keep following after the server's pause, bounded by the deadline.
                tracing::debug!(operation = %self.op_id, error = %super::trace::redacted(&e), "cannot open the event stream");
                if let Some(hint) = e.retry_after() {
                    self.pause = Some(hint);
                    self.last_hint = Some(hint);
                }
                self.drop_stream();
                Ok(())
            }
        }
    }

    #[crate::maybe]
    async fn poll_once(&mut self) -> Result<()> {
        let (op, hint) = match super::operation::get_by(&self.client, &self.op_id, false, self.deadline).await {
            Ok(answer) => answer,
            // The deadline cut the status read short: the loop reports the timeout.
            Err(e) if e.is_timeout() && self.remaining() == Some(Duration::ZERO) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(hint) = hint {
            self.last_hint = Some(hint);
        }
        if op.status.is_terminal() {
            self.finished = true;
            self.pending.push_back(Followed::Polled(Box::new(op)));
            return Ok(());
        }
        let config = self.client.config();
        let curve = PollCurve {
            min: config.operation_poll_min,
            max: config.operation_poll_max,
            steepness: config.operation_poll_backoff_grow,
        };
        let horizon = self.deadline.map_or(config.run_timeout(), |d| d.saturating_duration_since(self.started));
        let nap = curve.next_sleep(self.started.elapsed(), horizon, hint, rand::random::<f64>());
        transport::sleep(nap.min(self.remaining().unwrap_or(Duration::MAX))).await;
        Ok(())
    }

    /// The deadline passed: cancel the operation on the server and report it.
    #[crate::maybe]
    async fn time_out(&mut self) -> Error {
        self.resp = None;
        self.stream_slot = None;
        self.finished = true;
        // Best effort, and briefly: the caller's deadline has passed already.
        let grace = Some(Instant::now() + CANCEL_GRACE);
        if let Err(e) = super::operation::cancel_by(&self.client, &self.op_id, grace).await {
            tracing::warn!(operation = %self.op_id, error = %super::trace::redacted(&e), "could not cancel the timed-out operation");
        }
        let err = Error::operation_timed_out(&self.op_id, self.started.elapsed());
        match self.last_hint {
            Some(hint) => err
                .with_retry_after(hint)
                .with_source(format!("the server last asked to retry after {:.1}s", hint.as_secs_f64())),
            None => err,
        }
    }
}

/// How long cancelling a timed-out operation may take past the caller's deadline.
const CANCEL_GRACE: Duration = Duration::from_millis(500);

fn backoff(attempt: u32) -> Duration {
    let ladder = [100u64, 200, 500, 1000, 2000, 5000];
    Duration::from_millis(ladder[(attempt.saturating_sub(1) as usize).min(ladder.len() - 1)])
}
