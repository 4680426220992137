//! Following an operation's event stream (`GET /operations/{id}/events`, SSE).
//!
//! The follower yields events the moment the server emits them, so completion is seen with no
//! fixed polling delay. It survives a broken stream: an in-band `sse_error`, malformed data, a
//! transport error or a clean end without `completion` all lead to a reconnect that resumes
//! with `Last-Event-Id`. When the events route does not exist (400/404/405/406) it falls back
//! to polling `GET /operations/{id}` with the configured curve and `Retry-After`, and then
//! synthesizes the final `completion` event from the status.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use contree_core::models::{OperationEvent, OperationResponse};
use contree_core::poll::PollCurve;
use contree_core::sse::SseParser;
use contree_core::{Error, Result};
use reqwest::Method;
use reqwest::header::HeaderValue;

use super::client::Client;
use super::http::Timeout;
use crate::transport::{self, Response};

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
    resp: Option<Response>,
    parser: SseParser,
    pending: VecDeque<Followed>,
    finished: bool,
    polling: bool,
    deadline: Option<Instant>,
    started: Instant,
    idle_reconnects: u32,
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
        }
    }

    /// Stop with OperationTimedOut (after cancelling the operation) at this instant.
    pub(crate) fn deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
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
                self.connect().await?;
                continue;
            }
            let idle = match self.remaining() {
                Some(left) => left.min(self.client.http().idle_limit()),
                None => self.client.http().idle_limit(),
            };
            let chunk = match self.resp.as_mut() {
                Some(resp) => transport::next_chunk(resp, idle).await,
                None => continue,
            };
            match chunk {
                Ok(Some(bytes)) => {
                    self.parser.push(&bytes);
                    self.drain_frames();
                }
                Ok(None) => {
                    // A clean end without `completion`: the server closed early; resume.
                    self.resp = None;
                    self.parser = SseParser::new();
                    self.idle_reconnects += 1;
                    if self.idle_reconnects > 1 {
                        let nap = Duration::from_millis(500).min(self.remaining().unwrap_or(Duration::MAX));
                        transport::sleep(nap).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(operation = %self.op_id, error = %e, "event stream broke; reconnecting");
                    self.resp = None;
                    self.parser = SseParser::new();
                    self.idle_reconnects += 1;
                    transport::sleep(backoff(self.idle_reconnects).min(self.remaining().unwrap_or(Duration::MAX)))
                        .await;
                }
            }
        }
    }

    fn drain_frames(&mut self) {
        while let Some(frame) = self.parser.next_frame() {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(operation = %self.op_id, error = %e, "oversized event frame; reconnecting");
                    self.resp = None;
                    return;
                }
            };
            if frame.event.as_deref() == Some("sse_error") {
                tracing::debug!(operation = %self.op_id, message = %frame.data, "server reported a broken event stream");
                self.resp = None;
                self.parser = SseParser::new();
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
                        self.resp = None;
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(operation = %self.op_id, error = %e, "malformed event data; reconnecting");
                    self.resp = None;
                    self.parser = SseParser::new();
                    return;
                }
            }
        }
    }

    #[crate::maybe]
    async fn connect(&mut self) -> Result<()> {
        let http = self.client.http();
        let mut query: Vec<(&str, String)> = vec![("follow", "1".into())];
        if let Some(spid) = self.spid {
            query.push(("spid", spid.to_string()));
        }
        let mut call = http
            .call_with_query(Method::GET, &["operations", &self.op_id, "events"], query)
            .header("accept", HeaderValue::from_static("text/event-stream"));
        if let Some(last) = self.last_id {
            call = call.header("last-event-id", HeaderValue::from(last));
        }
        let idle = self.client.http().idle_limit();
        let limit = self.remaining().map_or(idle, |r| r.min(idle).max(Duration::from_millis(1)));
        call.timeout = Timeout::Streaming { idle: limit };
        // Async reqwest puts no bound on a streamed call before its headers arrive: bound it
        // here, so a server that never answers cannot outlast the deadline.
        let Some(sent) = transport::within(limit, http.send(&call)).await else {
            self.idle_reconnects += 1;
            return Ok(());
        };
        match sent {
            Ok(resp) => {
                self.resp = Some(resp);
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
                // The retry policy already spent its attempts; keep following after a pause,
                // bounded by the deadline.
                self.idle_reconnects += 1;
                if self.deadline.is_none() && self.idle_reconnects > 20 {
                    return Err(e.with_operation(&self.op_id));
                }
                let wait = e.retry_after().unwrap_or_else(|| backoff(self.idle_reconnects));
                transport::sleep(wait.min(self.remaining().unwrap_or(Duration::MAX))).await;
                Ok(())
            }
        }
    }

    #[crate::maybe]
    async fn poll_once(&mut self) -> Result<()> {
        let (op, hint) = super::operation::get(&self.client, &self.op_id, false).await?;
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
        self.finished = true;
        if let Err(e) = super::operation::cancel(&self.client, &self.op_id).await {
            tracing::warn!(operation = %self.op_id, error = %e, "could not cancel the timed-out operation");
        }
        Error::operation_timed_out(&self.op_id, self.started.elapsed())
    }
}

fn backoff(attempt: u32) -> Duration {
    let ladder = [100u64, 200, 500, 1000, 2000, 5000];
    Duration::from_millis(ladder[(attempt.saturating_sub(1) as usize).min(ladder.len() - 1)])
}
