//! Live runs: `popen`-style process handles and event streams.
//!
//! Naming mirrors `std::process::Child` / `tokio::process::Child`: `wait`, `try_wait`,
//! `kill`, plus `communicate` from Python. The live stdout/stderr readers are fed by the
//! operation's event stream on a background task (async) or thread (blocking), so they see
//! output as the server emits it.
//!
//! Sharp edges:
//! - Output that nobody reads is buffered in memory (bounded by the run's
//!   `truncate_output_at`), so a process never stalls because a reader was dropped.
//! - `write_stdin` needs the process to be started with `Stdin::piped()`.
//! - Dropping a process handle before it finished cancels the operation (best effort).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use contree_core::models::{EventPayload, OperationResponse};
use contree_core::{Error, ExitStatus, ProcessFailure, Result};
use reqwest::Method;
use tokio::sync::{mpsc, oneshot};

use super::client::Client;
use super::events::{EventFollower, Followed};
use super::image::Image;
use super::run::{RunSpec, Started};
use super::subprocess::PreparedExec;
use super::trace::OpSpan;
use crate::transport::{self, PipeReader};

crate::flavor::declare! {
    /// One thing that happened in a live run.
    #[doc = crate::doc_examples::example!(run_events)]
    #[derive(Debug, Clone)]
    #[non_exhaustive]
    pub enum RunEvent {
        /// A chunk of standard output.
        Stdout(Bytes),
        /// A chunk of standard error.
        Stderr(Bytes),
        /// The command exited (the result image follows in `Finished`).
        Exit(ExitStatus),
        /// The operation finished: the result image, in state SUCCEEDED.
        Finished(Box<Image>),
    }
}

enum Phase {
    NotStarted,
    Following(Box<Following>),
    Done,
}

struct Following {
    started: Started,
    follower: EventFollower,
    polled: Option<OperationResponse>,
    /// What the live events delivered, so a finish from the status replays only the rest.
    seen: Seen,
}

/// How much of a run's output its live events delivered.
#[derive(Default)]
struct Seen {
    stdout: usize,
    stderr: usize,
    exit: bool,
}

crate::flavor::declare! {
    /// A run's events in order, starting the run on the first call.
    #[doc = crate::doc_examples::example!(run_events)]
    pub struct RunEvents {
        image: Image,
        spec: RunSpec,
        phase: Phase,
        queued: std::collections::VecDeque<RunEvent>,
        /// The run's `contree.run` span: each step of the events runs in it.
        op: OpSpan,
    }
}

impl RunEvents {
    pub(crate) fn new(image: Image, spec: RunSpec) -> Self {
        let op = OpSpan::run(&image);
        RunEvents { image, spec, phase: Phase::NotStarted, queued: Default::default(), op }
    }

    pub(crate) fn from_started(image: Image, spec: RunSpec, started: Started, op: OpSpan) -> Self {
        let follower = EventFollower::new(image.client.clone(), started.op_id.clone()).deadline(Some(started.deadline));
        RunEvents {
            image,
            spec,
            phase: Phase::Following(Box::new(Following { started, follower, polled: None, seen: Seen::default() })),
            queued: Default::default(),
            op,
        }
    }

    /// The operation id, once started.
    pub fn operation_id(&self) -> Option<&str> {
        match &self.phase {
            Phase::Following(f) => Some(&f.started.op_id),
            _ => None,
        }
    }

    /// Stops following without cancelling the operation on drop (someone else cancelled it).
    pub(crate) fn disarm(&mut self) {
        if let Phase::Following(f) = std::mem::replace(&mut self.phase, Phase::Done) {
            f.started.guard.disarm();
        }
    }

    /// The next event; `None` after `Finished`.
    #[crate::maybe]
    pub async fn next_event(&mut self) -> Result<Option<RunEvent>> {
        let span = self.op.span().clone();
        let next = transport::instrumented!(span, self.next_event_in_span()).await;
        match &next {
            Ok(Some(RunEvent::Finished(image))) => self.op.succeeded(image),
            Err(e) => self.op.failed(e),
            Ok(_) => {}
        }
        next
    }

    #[crate::maybe]
    async fn next_event_in_span(&mut self) -> Result<Option<RunEvent>> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Ok(Some(e));
            }
            match &mut self.phase {
                Phase::Done => return Ok(None),
                Phase::NotStarted => {
                    let started = super::run::start(&self.image, &self.spec).await?;
                    let follower = EventFollower::new(self.image.client.clone(), started.op_id.clone())
                        .deadline(Some(started.deadline));
                    self.phase = Phase::Following(Box::new(Following {
                        started,
                        follower,
                        polled: None,
                        seen: Seen::default(),
                    }));
                }
                Phase::Following(f) => match f.follower.next().await {
                    Err(e) => {
                        let phase = std::mem::replace(&mut self.phase, Phase::Done);
                        // On its deadline the follower has cancelled the operation already.
                        if e.is_operation_timed_out()
                            && let Phase::Following(f) = phase
                        {
                            f.started.guard.disarm();
                        }
                        return Err(e);
                    }
                    Ok(Some(Followed::Polled(op))) => f.polled = Some(*op),
                    Ok(Some(Followed::Event(ev))) => {
                        if ev.spid.is_some_and(|s| s != 1) {
                            continue;
                        }
                        match ev.payload() {
                            EventPayload::Stdout(s) => {
                                let bytes = s.to_bytes()?;
                                f.seen.stdout += bytes.len();
                                return Ok(Some(RunEvent::Stdout(Bytes::from(bytes))));
                            }
                            EventPayload::Stderr(s) => {
                                let bytes = s.to_bytes()?;
                                f.seen.stderr += bytes.len();
                                return Ok(Some(RunEvent::Stderr(Bytes::from(bytes))));
                            }
                            EventPayload::Exit(x) => {
                                f.seen.exit = true;
                                return Ok(Some(RunEvent::Exit(ExitStatus::from_wire(
                                    x.code.into(),
                                    x.signal.into(),
                                    x.timed_out,
                                ))));
                            }
                            _ => {}
                        }
                    }
                    Ok(None) => {
                        let Phase::Following(f) = std::mem::replace(&mut self.phase, Phase::Done) else {
                            unreachable!("matched Following above")
                        };
                        let Following { started, polled, seen, .. } = *f;
                        let from_status = polled.is_some();
                        let result = super::run::finish(&self.image, &self.spec, &started.op_id, polled).await;
                        started.guard.disarm();
                        let image = result?;
                        if from_status && let Some(out) = &image.output {
                            // Finished from the status (polling fallback, or a stream that
                            // never sent its end): replay what the live events did not deliver.
                            if out.stdout.len() > seen.stdout {
                                self.queued.push_back(RunEvent::Stdout(out.stdout.slice(seen.stdout..)));
                            }
                            if out.stderr.len() > seen.stderr {
                                self.queued.push_back(RunEvent::Stderr(out.stderr.slice(seen.stderr..)));
                            }
                            if !seen.exit {
                                self.queued.push_back(RunEvent::Exit(out.status));
                            }
                        }
                        self.queued.push_back(RunEvent::Finished(Box::new(image)));
                    }
                },
            }
        }
    }
}

crate::flavor::declare! {
    /// A process's live output as lines of text (text mode). Each line is checked to be
    /// UTF-8 (a Decode error otherwise) and comes without its line ending (`\n` or `\r\n`);
    /// a last line without a newline is still returned.
    #[doc = crate::doc_examples::example!(image_popen)]
    pub struct LineReader {
        pipe: PipeReader,
        pending: Vec<u8>,
        done: bool,
    }
}

impl std::fmt::Debug for LineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(super::short_type_name::<Self>()).field("buffered", &self.pending.len()).finish()
    }
}

impl LineReader {
    pub(crate) fn new(pipe: PipeReader) -> Self {
        LineReader { pipe, pending: Vec::new(), done: false }
    }

    /// The next line, or `None` at the end of the output.
    #[crate::maybe]
    pub async fn next_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return text_line(line).map(Some);
            }
            if self.done {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return text_line(std::mem::take(&mut self.pending)).map(Some);
            }
            match self.pipe.chunk().await {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => self.done = true,
            }
        }
    }
}

fn text_line(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::decode("the process wrote a line that is not UTF-8 text", e))
}

/// Feeds a process's live readers from its event stream, on a background task or thread.
pub(crate) struct ProcessDriver {
    events: RunEvents,
    stdout: mpsc::UnboundedSender<Bytes>,
    stderr: mpsc::UnboundedSender<Bytes>,
    done: oneshot::Sender<Result<Image>>,
    stop: Arc<AtomicBool>,
}

impl ProcessDriver {
    #[crate::maybe]
    pub(crate) async fn run(mut self) {
        let outcome = loop {
            if self.stop.load(Ordering::Relaxed) {
                // The dropped handle has cancelled the operation already.
                self.events.disarm();
                break Err(Error::operation_cancelled(self.events.operation_id().unwrap_or_default()));
            }
            match self.events.next_event().await {
                Ok(Some(RunEvent::Stdout(b))) => {
                    let _ = self.stdout.send(b);
                }
                Ok(Some(RunEvent::Stderr(b))) => {
                    let _ = self.stderr.send(b);
                }
                Ok(Some(RunEvent::Exit(_))) => {}
                Ok(Some(RunEvent::Finished(image))) => break Ok(*image),
                Ok(None) => break Err(Error::operation_failed("", "the event stream ended without a result")),
                Err(e) => break Err(e),
            }
        };
        // Closing the senders ends the readers (EOF) after the last chunk.
        drop(self.stdout);
        drop(self.stderr);
        let _ = self.done.send(outcome);
    }
}

crate::flavor::declare! {
    /// A running command: a live handle to an operation (popen).
    #[doc = crate::doc_examples::example!(process)]
    pub struct Process {
        client: Client,
        op_id: String,
        command: Vec<String>,
        stdin_open: bool,
        check: bool,
        stdout: Option<PipeReader>,
        stderr: Option<PipeReader>,
        done: Option<oneshot::Receiver<Result<Image>>>,
        finished: Option<Result<Image>>,
        stop: Arc<AtomicBool>,
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(super::short_type_name::<Self>())
            .field("operation_id", &self.op_id)
            .field("command", &self.command)
            .field("finished", &self.finished.is_some())
            .finish_non_exhaustive()
    }
}

impl Process {
    #[crate::maybe]
    pub(crate) async fn start(image: &Image, spec: &RunSpec) -> Result<Process> {
        let op = OpSpan::run(image);
        let started = match transport::instrumented!(op.span().clone(), super::run::start(image, spec)).await {
            Ok(started) => started,
            Err(e) => {
                op.failed(&e);
                return Err(e);
            }
        };
        let op_id = started.op_id.clone();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (err_tx, err_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let driver = ProcessDriver {
            events: RunEvents::from_started(image.clone(), spec.clone(), started, op),
            stdout: out_tx,
            stderr: err_tx,
            done: done_tx,
            stop: stop.clone(),
        };
        transport::spawn_driver(driver);
        Ok(Process {
            client: image.client.clone(),
            op_id,
            command: spec.command_line(),
            stdin_open: spec.stdin.is_piped(),
            check: false,
            stdout: Some(PipeReader::new(out_rx)),
            stderr: Some(PipeReader::new(err_rx)),
            done: Some(done_rx),
            finished: None,
            stop,
        })
    }

    /// Makes `wait()` fail with ProcessFailed when the command exits non-zero.
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }

    /// The operation id.
    pub fn id(&self) -> &str {
        &self.op_id
    }

    /// The live stdout reader (taken once).
    pub fn stdout(&mut self) -> Option<PipeReader> {
        self.stdout.take()
    }

    /// The live stderr reader (taken once).
    pub fn stderr(&mut self) -> Option<PipeReader> {
        self.stderr.take()
    }

    /// Text mode for stdout: the live output as lines of UTF-8 text (taken once, like
    /// [`stdout`](Self::stdout)).
    #[doc = crate::doc_examples::example!(image_popen)]
    pub fn stdout_lines(&mut self) -> Option<LineReader> {
        self.stdout.take().map(LineReader::new)
    }

    /// Text mode for stderr: see [`stdout_lines`](Self::stdout_lines).
    pub fn stderr_lines(&mut self) -> Option<LineReader> {
        self.stderr.take().map(LineReader::new)
    }

    /// Waits for the end and returns the exit status. With `check(true)`, a non-zero exit is
    /// a ProcessFailed error carrying the command, the code and the output.
    #[doc = crate::doc_examples::example!(process)]
    #[crate::maybe]
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let image = self.result().await?;
        let out = image.output()?;
        if self.check && !out.status.success() {
            return Err(Error::process_failed(ProcessFailure {
                command: self.command.clone(),
                exit_code: out.status.code_or_minus_one(),
                stdout: out.stdout.to_vec(),
                stderr: out.stderr.to_vec(),
            })
            .with_operation(&self.op_id));
        }
        Ok(out.status)
    }

    /// The exit status if the process has finished, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.finished.is_none()
            && let Some(rx) = self.done.as_mut()
        {
            match rx.try_recv() {
                Ok(r) => {
                    self.done = None;
                    self.finished = Some(r);
                }
                Err(oneshot::error::TryRecvError::Empty) => return Ok(None),
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.done = None;
                    self.finished = Some(Err(Error::operation_failed(&self.op_id, "the follower stopped")));
                }
            }
        }
        match &self.finished {
            Some(Ok(image)) => Ok(Some(image.output()?.status)),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(None),
        }
    }

    /// Same as [`try_wait`](Self::try_wait) (Python's name).
    pub fn poll(&mut self) -> Result<Option<ExitStatus>> {
        self.try_wait()
    }

    /// Waits for the end and returns the result image (state SUCCEEDED) with the output.
    #[doc = crate::doc_examples::example!(process_stdin)]
    #[crate::maybe]
    pub async fn wait_with_output(mut self) -> Result<Image> {
        self.wait().await?;
        self.result().await
    }

    /// Writes `input` to stdin (if any), closes it, waits, and returns (stdout, stderr).
    #[doc = crate::doc_examples::example!(prepared_spawn)]
    #[crate::maybe]
    pub async fn communicate(&mut self, input: impl Into<Bytes>) -> Result<(Bytes, Bytes)> {
        let input = input.into();
        if self.stdin_open {
            if !input.is_empty() {
                self.write_stdin(input).await?;
            }
            self.close_stdin().await?;
        } else if !input.is_empty() {
            return Err(Error::invalid_argument("input", "the process was not started with Stdin::piped()"));
        }
        self.wait().await?;
        let image = self.result().await?;
        let out = image.output()?;
        Ok((out.stdout.clone(), out.stderr.clone()))
    }

    /// Writes to the process's stdin (`POST …/subprocesses/1/stdin`), keeping it open.
    #[doc = crate::doc_examples::example!(process_stdin)]
    #[crate::maybe]
    pub async fn write_stdin(&self, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        self.send_stdin(&data, false).await
    }

    /// Closes the process's stdin (EOF).
    #[crate::maybe]
    pub async fn close_stdin(&self) -> Result<()> {
        self.send_stdin(&[], true).await
    }

    #[crate::maybe]
    async fn send_stdin(&self, data: &[u8], close: bool) -> Result<()> {
        super::subprocess::send_stdin(&self.client, &self.op_id, 1, self.stdin_open, data, close).await
    }

    /// Starts another process in this running instance (`POST …/subprocesses`): `argv[0]`
    /// is the program, the rest its arguments. It shares the instance's filesystem,
    /// network and limits while the main command runs, and has its own live handle; see
    /// the prepared exec for its options.
    #[doc = crate::doc_examples::example!(process_exec)]
    pub fn exec<I, S>(&self, argv: I) -> PreparedExec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PreparedExec::argv(self.client.clone(), self.op_id.clone(), argv)
    }

    /// Like [`exec`](Self::exec), for a shell command line (`sh -c`, with the image's
    /// environment).
    pub fn exec_shell(&self, command: impl Into<String>) -> PreparedExec {
        PreparedExec::shell(self.client.clone(), self.op_id.clone(), command.into())
    }

    /// Kills the process with SIGKILL; see [`signal`](Self::signal).
    #[doc = crate::doc_examples::example!(process_kill)]
    #[crate::maybe]
    pub async fn kill(&self) -> Result<()> {
        self.signal("KILL").await
    }

    /// Sends a signal (`TERM`, `KILL`, `INT`, or a number) to the process
    /// (`DELETE …/subprocesses/1?signal=`). When the server has no subprocess route, the
    /// operation is cancelled instead.
    #[crate::maybe]
    pub async fn signal(&self, signal: &str) -> Result<()> {
        let valid = !signal.is_empty() && signal.len() <= 16 && signal.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(Error::invalid_argument("signal", format!("`{signal}` is not a signal name or number")));
        }
        let http = self.client.http();
        let call = http.call_with_query(
            Method::DELETE,
            &["operations", &self.op_id, "subprocesses", "1"],
            [("signal", signal.to_string())],
        );
        match http.unit(&call).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.status(), Some(404 | 405 | 501)) => {
                super::operation::cancel(&self.client, &self.op_id).await
            }
            // Already finished: nothing left to kill.
            Err(e) if e.is_conflict() || e.is_gone() => Ok(()),
            Err(e) => Err(e.with_operation(&self.op_id)),
        }
    }

    /// The result image once finished (waiting for it), for the session that started it.
    #[crate::maybe]
    pub(crate) async fn finished_image(&mut self) -> Result<Image> {
        self.result().await
    }

    #[crate::maybe]
    async fn result(&mut self) -> Result<Image> {
        if self.finished.is_none() {
            let outcome = match self.done.take() {
                Some(rx) => transport::recv_done(rx)
                    .await
                    .unwrap_or_else(|| Err(Error::operation_failed(&self.op_id, "the follower stopped"))),
                None => Err(Error::operation_failed(&self.op_id, "the follower stopped")),
            };
            self.finished = Some(outcome);
        }
        match self.finished.as_ref() {
            Some(Ok(image)) => Ok(image.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => unreachable!("set above"),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let unfinished = self.finished.is_none() && self.done.as_mut().is_some_and(|rx| rx.try_recv().is_err());
        if unfinished {
            self.stop.store(true, Ordering::Relaxed);
            tracing::debug!(operation = %self.op_id, "process handle dropped in flight; cancelling");
            transport::cancel_in_background(self.client.clone(), self.op_id.clone());
        }
    }
}
