//! Extra processes in a running instance (`POST /operations/{id}/subprocesses`).
//!
//! A live process handle ([`Process`](super::process::Process)) can start more processes in
//! the same running sandbox: same filesystem, network, hostname and limits, while the main
//! command runs. Each one gets a handle of its own, shaped like the main one: live stdout and
//! stderr, stdin writes, `wait`, `kill`.
//!
//! Sharp edges:
//! - Extra processes end with the instance: when the main command exits, they are killed
//!   (their status says SIGKILL). Start them while the main command runs (e.g. a long
//!   `sleep`, or a server the extra processes talk to).
//! - They never change what the run produces: the main command's output stays the run's
//!   output, and their file writes land in the same sandbox as the main command's.
//! - Dropping a handle stops following it but leaves the process running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use contree_core::models::{ClosableStreamRepr, EventPayload, ExecSpec, InstanceResult};
use contree_core::{Error, ExitStatus, ProcessFailure, Result, RunOutput, validate};
use reqwest::Method;
use tokio::sync::{mpsc, oneshot};

use super::client::Client;
use super::events::{EventFollower, Followed};
use super::process::LineReader;
use super::run::Stdin;
use crate::transport::{self, PipeReader};

crate::flavor::declare! {
    /// An extra process to start in a running instance, described but not started: set
    /// options, then [`spawn`](Self::spawn) it (in async, `.await` alone spawns it). Made by
    /// `exec` on a live process handle.
    #[doc = crate::doc_examples::example!(process_exec)]
    #[derive(Debug, Clone)]
    #[must_use = "a prepared exec does nothing until it is spawned"]
    pub struct PreparedExec {
        client: Client,
        op_id: String,
        command: String,
        args: Vec<String>,
        shell: bool,
        env: std::collections::BTreeMap<String, String>,
        cwd: Option<String>,
        uid: Option<u32>,
        gid: Option<u32>,
        stdin: Stdin,
        truncate_output_at: Option<u64>,
        invalid: Option<(&'static str, String)>,
    }
}

impl PreparedExec {
    pub(crate) fn argv<I, S>(client: Client, op_id: String, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut it = argv.into_iter().map(Into::into);
        let command = it.next().unwrap_or_default();
        let invalid = command.trim().is_empty().then(|| ("argv", "must start with a program".to_owned()));
        PreparedExec::new(client, op_id, command, it.collect(), false, invalid)
    }

    pub(crate) fn shell(client: Client, op_id: String, command: String) -> Self {
        let invalid = command.trim().is_empty().then(|| ("command", "must not be empty".to_owned()));
        PreparedExec::new(client, op_id, command, Vec::new(), true, invalid)
    }

    fn new(
        client: Client,
        op_id: String,
        command: String,
        args: Vec<String>,
        shell: bool,
        invalid: Option<(&'static str, String)>,
    ) -> Self {
        PreparedExec {
            client,
            op_id,
            command,
            args,
            shell,
            env: Default::default(),
            cwd: None,
            uid: None,
            gid: None,
            stdin: Stdin::empty(),
            truncate_output_at: None,
            invalid,
        }
    }

    /// Appends one argument (not for shell commands).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments (not for shell commands).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable. The process gets exactly these (plus a default
    /// `PATH`); a shell command also inherits the image's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The working directory: an absolute path that exists in the sandbox (default `/`).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// The user id to run as (default 0, root of the sandbox).
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// The group id to run as (default 0).
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Its stdin: bytes, a file, a reader, or `Stdin::piped()` for
    /// `write_stdin` (default: empty).
    pub fn stdin(mut self, stdin: impl Into<Stdin>) -> Self {
        self.stdin = stdin.into();
        self
    }

    /// Bytes of each stream the server keeps in the event log (default 1 MiB).
    pub fn truncate_output_at(mut self, bytes: u64) -> Self {
        self.truncate_output_at = Some(bytes);
        self
    }

    fn command_line(&self) -> Vec<String> {
        if self.shell {
            vec!["sh".into(), "-c".into(), self.command.clone()]
        } else {
            std::iter::once(self.command.clone()).chain(self.args.iter().cloned()).collect()
        }
    }

    fn validate(&self) -> Result<()> {
        if let Some((arg, reason)) = &self.invalid {
            return Err(Error::invalid_argument(arg, reason));
        }
        if self.shell && !self.args.is_empty() {
            return Err(Error::invalid_argument("args", "a shell command takes no separate arguments"));
        }
        if self.command.contains('\0') || self.args.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid_argument("argv", "must not contain NUL bytes"));
        }
        for (k, v) in &self.env {
            validate::env_key("env", k)?;
            validate::env_value("env", v)?;
        }
        if let Some(cwd) = &self.cwd {
            validate::absolute_path("cwd", cwd)?;
        }
        Ok(())
    }

    /// Starts the process (`POST /operations/{id}/subprocesses`) and returns its live handle.
    /// Bad arguments fail before any request; a program that does not exist is not an
    /// error but exit code 127, like a shell; a working directory that does not exist is a
    /// BadRequest error, and an instance that has finished (or is not an instance) answers
    /// with a Conflict error (`is_conflict()`).
    #[doc = crate::doc_examples::example!(process_exec)]
    #[crate::maybe]
    pub async fn spawn(self) -> Result<Subprocess> {
        self.validate()?;
        let (stdin, piped) = self.stdin.resolve().await?;
        let mut spec = ExecSpec::new(self.command.clone());
        spec.args = self.args.clone();
        spec.shell = self.shell.then_some(true);
        spec.env = self.env.clone();
        spec.cwd = self.cwd.clone();
        spec.uid = self.uid;
        spec.gid = self.gid;
        spec.truncate_output_at = self.truncate_output_at;
        if piped || !stdin.is_empty() {
            let mut repr = ClosableStreamRepr::from_bytes(&stdin);
            repr.close = Some(!piped);
            spec.stdin = Some(repr);
        }
        let http = self.client.http();
        let call = http.call(Method::POST, &["operations", &self.op_id, "subprocesses"]).json(&spec)?;
        let created: Created = http.json(&call).await.map_err(|e| e.with_operation(&self.op_id))?;
        if created.spid < 2 {
            return Err(Error::decode(
                "the server answered with an invalid spid",
                std::io::Error::other(format!("spid {}", created.spid)),
            )
            .with_operation(&self.op_id));
        }
        tracing::debug!(operation = %self.op_id, spid = created.spid, "subprocess started");
        let command = self.command_line();
        Ok(Subprocess::start(self.client, self.op_id, created.spid, command, piped))
    }
}

/// `201` of `POST …/subprocesses`.
#[derive(serde::Deserialize)]
struct Created {
    spid: u32,
}

/// Feeds a subprocess's live readers from its events (`?spid=N`), on a background task or
/// thread, until its `exit` event.
pub(crate) struct SubprocessDriver {
    client: Client,
    op_id: String,
    spid: u32,
    follower: EventFollower,
    stdout: mpsc::UnboundedSender<Bytes>,
    stderr: mpsc::UnboundedSender<Bytes>,
    done: oneshot::Sender<Result<ExitStatus>>,
    stop: Arc<AtomicBool>,
}

impl SubprocessDriver {
    #[crate::maybe]
    pub(crate) async fn run(mut self) {
        let (mut seen_out, mut seen_err) = (0usize, 0usize);
        let outcome = loop {
            if self.stop.load(Ordering::Relaxed) {
                break Err(Error::operation_failed(&self.op_id, "the subprocess handle was dropped"));
            }
            match self.follower.next().await {
                Err(e) => break Err(e),
                Ok(Some(Followed::Event(ev))) => {
                    if ev.spid != Some(self.spid) {
                        continue;
                    }
                    match ev.payload() {
                        EventPayload::Stdout(s) => match s.to_bytes() {
                            Ok(b) => {
                                seen_out += b.len();
                                let _ = self.stdout.send(Bytes::from(b));
                            }
                            Err(e) => break Err(e),
                        },
                        EventPayload::Stderr(s) => match s.to_bytes() {
                            Ok(b) => {
                                seen_err += b.len();
                                let _ = self.stderr.send(Bytes::from(b));
                            }
                            Err(e) => break Err(e),
                        },
                        EventPayload::Exit(x) => {
                            break Ok(ExitStatus::from_wire(x.code.into(), x.signal.into(), x.timed_out));
                        }
                        _ => {}
                    }
                }
                // The stream ended without the exit (events unavailable, or the instance
                // finished): its folded result says the rest.
                Ok(Some(Followed::Polled(_))) | Ok(None) => {
                    break match fetch_result(&self.client, &self.op_id, self.spid).await {
                        Ok(r) => {
                            let out = r.stdout.to_bytes().unwrap_or_default();
                            let err = r.stderr.to_bytes().unwrap_or_default();
                            if out.len() > seen_out {
                                let _ = self.stdout.send(Bytes::copy_from_slice(&out[seen_out..]));
                            }
                            if err.len() > seen_err {
                                let _ = self.stderr.send(Bytes::copy_from_slice(&err[seen_err..]));
                            }
                            let st = &r.state;
                            if st.exit_code == -1 && st.signal == -1 {
                                Err(Error::operation_failed(&self.op_id, "the subprocess's end was not recorded"))
                            } else {
                                Ok(ExitStatus::from_wire(st.exit_code.into(), st.signal.into(), st.timed_out))
                            }
                        }
                        Err(e) => Err(e),
                    };
                }
            }
        };
        drop(self.stdout);
        drop(self.stderr);
        let _ = self.done.send(outcome);
    }
}

/// `GET /operations/{id}/subprocesses/{spid}`.
#[crate::maybe]
async fn fetch_result(client: &Client, op_id: &str, spid: u32) -> Result<InstanceResult> {
    let http = client.http();
    let spid = spid.to_string();
    let call = http.call(Method::GET, &["operations", op_id, "subprocesses", &spid]);
    http.json(&call).await.map_err(|e| e.with_operation(op_id))
}

crate::flavor::declare! {
    /// A process started inside a running instance by
    /// `exec`: a live handle shaped like the main
    /// process's (live output, stdin writes, `wait`, `kill`), identified by its spid.
    #[doc = crate::doc_examples::example!(process_exec)]
    pub struct Subprocess {
        client: Client,
        op_id: String,
        spid: u32,
        command: Vec<String>,
        stdin_open: bool,
        check: bool,
        stdout: Option<PipeReader>,
        stderr: Option<PipeReader>,
        done: Option<oneshot::Receiver<Result<ExitStatus>>>,
        finished: Option<Result<ExitStatus>>,
        stop: Arc<AtomicBool>,
    }
}

impl std::fmt::Debug for Subprocess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(super::short_type_name::<Self>())
            .field("operation_id", &self.op_id)
            .field("spid", &self.spid)
            .field("command", &self.command)
            .field("finished", &self.finished.is_some())
            .finish_non_exhaustive()
    }
}

impl Subprocess {
    fn start(client: Client, op_id: String, spid: u32, command: Vec<String>, stdin_open: bool) -> Subprocess {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (err_tx, err_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let driver = SubprocessDriver {
            follower: EventFollower::new(client.clone(), op_id.clone()).spid(spid),
            client: client.clone(),
            op_id: op_id.clone(),
            spid,
            stdout: out_tx,
            stderr: err_tx,
            done: done_tx,
            stop: stop.clone(),
        };
        transport::spawn_subprocess_driver(driver);
        Subprocess {
            client,
            op_id,
            spid,
            command,
            stdin_open,
            check: false,
            stdout: Some(PipeReader::new(out_rx)),
            stderr: Some(PipeReader::new(err_rx)),
            done: Some(done_rx),
            finished: None,
            stop,
        }
    }

    /// Makes `wait()` fail with ProcessFailed when the process exits non-zero.
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }

    /// The operation (instance) it runs in.
    pub fn id(&self) -> &str {
        &self.op_id
    }

    /// Its spawn id in the instance (2 or more; the main process is 1).
    pub fn spid(&self) -> u32 {
        self.spid
    }

    /// The live stdout reader (taken once).
    pub fn stdout(&mut self) -> Option<PipeReader> {
        self.stdout.take()
    }

    /// The live stderr reader (taken once).
    pub fn stderr(&mut self) -> Option<PipeReader> {
        self.stderr.take()
    }

    /// Text mode for stdout: lines of UTF-8 text (taken once, like [`stdout`](Self::stdout)).
    pub fn stdout_lines(&mut self) -> Option<LineReader> {
        self.stdout.take().map(LineReader::new)
    }

    /// Text mode for stderr: see [`stdout_lines`](Self::stdout_lines).
    pub fn stderr_lines(&mut self) -> Option<LineReader> {
        self.stderr.take().map(LineReader::new)
    }

    /// Waits for its end and returns the exit status. With `check(true)`, a non-zero exit is
    /// a ProcessFailed error carrying the command, the code and the output.
    #[doc = crate::doc_examples::example!(process_exec)]
    #[crate::maybe]
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let status = self.status().await?;
        if self.check && !status.success() {
            let r = fetch_result(&self.client, &self.op_id, self.spid).await?;
            return Err(Error::process_failed(ProcessFailure {
                command: self.command.clone(),
                exit_code: status.code_or_minus_one(),
                stdout: r.stdout.to_bytes().unwrap_or_default(),
                stderr: r.stderr.to_bytes().unwrap_or_default(),
            })
            .with_operation(&self.op_id));
        }
        Ok(status)
    }

    /// The exit status if it has finished, without waiting.
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
            Some(Ok(s)) => Ok(Some(*s)),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(None),
        }
    }

    /// Waits for its end and returns its whole output (`GET …/subprocesses/{spid}`), capped
    /// at `truncate_output_at` like a run's.
    #[crate::maybe]
    pub async fn wait_with_output(mut self) -> Result<RunOutput> {
        self.wait().await?;
        self.output().await
    }

    /// Writes `input` to stdin (if any), closes it, waits, and returns (stdout, stderr).
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
        let out = self.output().await?;
        Ok((out.stdout, out.stderr))
    }

    /// Writes to its stdin (`POST …/subprocesses/{spid}/stdin`), keeping it open.
    #[crate::maybe]
    pub async fn write_stdin(&self, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        self.send_stdin(&data, false).await
    }

    /// Closes its stdin (EOF).
    #[crate::maybe]
    pub async fn close_stdin(&self) -> Result<()> {
        self.send_stdin(&[], true).await
    }

    #[crate::maybe]
    async fn send_stdin(&self, data: &[u8], close: bool) -> Result<()> {
        send_stdin(&self.client, &self.op_id, self.spid, self.stdin_open, data, close).await
    }

    /// Kills it with SIGKILL; see [`signal`](Self::signal).
    #[crate::maybe]
    pub async fn kill(&self) -> Result<()> {
        self.signal("KILL").await
    }

    /// Sends a signal (`TERM`, `KILL`, `INT`, or a number) to its process group
    /// (`DELETE …/subprocesses/{spid}?signal=`). A process that already ended is left as is.
    #[crate::maybe]
    pub async fn signal(&self, signal: &str) -> Result<()> {
        let valid = !signal.is_empty() && signal.len() <= 16 && signal.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(Error::invalid_argument("signal", format!("`{signal}` is not a signal name or number")));
        }
        let http = self.client.http();
        let spid = self.spid.to_string();
        let call = http.call_with_query(
            Method::DELETE,
            &["operations", &self.op_id, "subprocesses", &spid],
            [("signal", signal.to_string())],
        );
        match http.unit(&call).await {
            Ok(()) => Ok(()),
            // Already ended (404: no live process with that spid; 409/410: the instance ended).
            Err(e) if e.is_not_found() || e.is_conflict() || e.is_gone() => Ok(()),
            Err(e) => Err(e.with_operation(&self.op_id)),
        }
    }

    #[crate::maybe]
    async fn status(&mut self) -> Result<ExitStatus> {
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
            Some(Ok(s)) => Ok(*s),
            Some(Err(e)) => Err(e.clone()),
            None => unreachable!("set above"),
        }
    }

    #[crate::maybe]
    async fn output(&self) -> Result<RunOutput> {
        let r = fetch_result(&self.client, &self.op_id, self.spid).await?;
        let operation_id = self
            .op_id
            .parse()
            .map_err(|e| Error::decode("the operation id is not a UUID", e).with_operation(&self.op_id))?;
        let elapsed = r
            .resources
            .elapsed_time
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(std::time::Duration::from_secs_f64)
            .unwrap_or_default();
        Ok(RunOutput {
            operation_id,
            command: self.command.clone(),
            stdout: Bytes::from(r.stdout.to_bytes().map_err(|e| e.with_operation(&self.op_id))?),
            stderr: Bytes::from(r.stderr.to_bytes().map_err(|e| e.with_operation(&self.op_id))?),
            status: ExitStatus::from_wire(r.state.exit_code.into(), r.state.signal.into(), r.state.timed_out),
            elapsed,
            truncated: r.stdout.truncated.unwrap_or(false) || r.stderr.truncated.unwrap_or(false),
            resources: r.resources,
            result_image: None,
        })
    }
}

impl Drop for Subprocess {
    fn drop(&mut self) {
        // Stop following; the process itself runs on until it ends (at the latest with the
        // instance).
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Writes to (or, with `close`, closes) the stdin of process `spid` of operation `op_id`:
/// `POST …/subprocesses/{spid}/stdin`, the one call behind the main process's and every
/// extra process's stdin.
#[crate::maybe]
pub(super) async fn send_stdin(
    client: &Client,
    op_id: &str,
    spid: u32,
    stdin_open: bool,
    data: &[u8],
    close: bool,
) -> Result<()> {
    if !stdin_open {
        return Err(Error::invalid_argument("stdin", "the process was not started with Stdin::piped()"));
    }
    let mut repr = ClosableStreamRepr::from_bytes(data);
    repr.close = Some(close);
    let http = client.http();
    let spid = spid.to_string();
    let call = http.call(Method::POST, &["operations", op_id, "subprocesses", &spid, "stdin"]).json(&repr)?;
    match http.unit(&call).await {
        Ok(()) => Ok(()),
        // Closing the stdin of a process that already ended (or already saw EOF) is moot.
        Err(e) if close && data.is_empty() && (e.is_gone() || e.is_conflict() || e.is_not_found()) => Ok(()),
        Err(e) => Err(e.with_operation(op_id)),
    }
}
