//! Prepared runs: a command plus every option of the Python `run()`, executed on demand.
//!
//! A prepared run is a value: executing it never changes the source image, and the same
//! prepared run can be executed several times (each execution is a new operation). That is
//! branching.
//!
//! Sharp edges:
//! - `stdin` from a reader is read once, on the first execution, and the bytes are reused by
//!   later executions of the same prepared run.
//! - Image runs default to `disposable(true)` (as in the Python SDK): the result carries the
//!   output but no image. Call `.disposable(false)` to keep the filesystem as a new image.
//!   Session runs default to `disposable(false)`.
//! - A non-zero exit code is a result, not an error; `check()` makes it one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use contree_core::models::{
    ClosableStreamRepr, FileSpec, ImageSource, InstanceSpawnRequest, InstanceSpawnResponse, OperationResponse,
};
use contree_core::{Error, FileSource, ImageState, Result, RunOutput, UploadFileSpec, validate};
use reqwest::Method;

use super::events::{EventFollower, Followed};
use super::files::UploadSource;
use super::image::Image;
use crate::transport::{self, DynRead, DynWrite};

crate::flavor::declare! {
    /// Where a run's standard input comes from: nothing (the default), text or bytes (`From`
    /// impls), a local file ([`path`](Self::path)), a reader ([`reader`](Self::reader)) or a
    /// pipe kept open for writes after the start ([`piped`](Self::piped)).
    #[doc = crate::doc_examples::example!(stdin)]
    #[derive(Clone, Default)]
    pub struct Stdin {
        source: StdinSource,
    }
}

#[derive(Clone, Default)]
enum StdinSource {
    #[default]
    Empty,
    Bytes(Bytes),
    Path(PathBuf),
    /// Read fully at the first execution; the bytes are reused by later ones.
    Reader(Arc<Mutex<ReaderState>>),
    /// Kept open for writes after the start, optionally with first bytes.
    Piped(Bytes),
}

/// A stdin reader before and after its first read.
enum ReaderState {
    Unread(DynRead),
    Reading,
    Read(Bytes),
}

impl Stdin {
    fn of(source: StdinSource) -> Self {
        Stdin { source }
    }

    /// No input (EOF at once).
    pub fn empty() -> Self {
        Stdin::of(StdinSource::Empty)
    }

    /// These bytes.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        Stdin::of(StdinSource::Bytes(bytes.into()))
    }

    /// Any reader (`AsyncRead` in async, `Read` in blocking), read fully at the first
    /// execution; later executions of the same prepared run reuse the bytes.
    pub fn reader(reader: impl Into<DynRead>) -> Self {
        Stdin::of(StdinSource::Reader(Arc::new(Mutex::new(ReaderState::Unread(reader.into())))))
    }

    /// An open pipe for the process's `write_stdin` (popen).
    pub fn piped() -> Self {
        Stdin::of(StdinSource::Piped(Bytes::new()))
    }

    /// The content of a local file, read at execution.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        Stdin::of(StdinSource::Path(path.into()))
    }

    /// No input configured.
    pub fn is_empty(&self) -> bool {
        matches!(self.source, StdinSource::Empty)
    }

    /// The bytes, when the input is given as text or bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.source {
            StdinSource::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The local file, when the input is read from one.
    pub fn as_path(&self) -> Option<&Path> {
        match &self.source {
            StdinSource::Path(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the input comes from a reader.
    pub fn is_reader(&self) -> bool {
        matches!(self.source, StdinSource::Reader(_))
    }

    /// Whether stdin stays open for writes after the start.
    pub fn is_piped(&self) -> bool {
        matches!(self.source, StdinSource::Piped(_))
    }

    #[crate::maybe]
    pub(crate) async fn resolve(&self) -> Result<(Bytes, bool)> {
        match &self.source {
            StdinSource::Empty => Ok((Bytes::new(), false)),
            StdinSource::Bytes(b) => Ok((b.clone(), false)),
            StdinSource::Piped(b) => Ok((b.clone(), true)),
            StdinSource::Path(p) => {
                super::files::check_local_file(p)
                    .map_err(|_| Error::invalid_argument("stdin", format!("{} is not a readable file", p.display())))?;
                Ok((transport::read_file(p).await?, false))
            }
            StdinSource::Reader(state) => {
                let taken = {
                    let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
                    match std::mem::replace(&mut *guard, ReaderState::Reading) {
                        ReaderState::Read(b) => {
                            *guard = ReaderState::Read(b.clone());
                            return Ok((b, false));
                        }
                        ReaderState::Reading => {
                            return Err(Error::invalid_argument(
                                "stdin",
                                "the stdin reader is being read by another execution of this run",
                            ));
                        }
                        ReaderState::Unread(r) => r,
                    }
                };
                let read = transport::read_all(taken).await;
                let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
                match read {
                    Ok(bytes) => {
                        *guard = ReaderState::Read(bytes.clone());
                        Ok((bytes, false))
                    }
                    Err(e) => {
                        *guard = ReaderState::Read(Bytes::new());
                        Err(Error::io("cannot read stdin", e))
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            StdinSource::Empty => f.write_str("Empty"),
            StdinSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            StdinSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            StdinSource::Reader(_) => f.write_str("Reader(..)"),
            StdinSource::Piped(b) => write!(f, "Piped({} bytes first)", b.len()),
        }
    }
}

impl From<&str> for Stdin {
    /// The text itself (not a path: use `Stdin::path` for files).
    fn from(s: &str) -> Self {
        Stdin::bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}
impl From<String> for Stdin {
    fn from(s: String) -> Self {
        Stdin::bytes(s)
    }
}
impl From<Vec<u8>> for Stdin {
    fn from(b: Vec<u8>) -> Self {
        Stdin::bytes(b)
    }
}
impl From<&[u8]> for Stdin {
    fn from(b: &[u8]) -> Self {
        Stdin::bytes(Bytes::copy_from_slice(b))
    }
}
impl From<Bytes> for Stdin {
    fn from(b: Bytes) -> Self {
        Stdin::bytes(b)
    }
}
impl From<&Path> for Stdin {
    fn from(p: &Path) -> Self {
        Stdin::path(p)
    }
}
impl From<PathBuf> for Stdin {
    fn from(p: PathBuf) -> Self {
        Stdin::path(p)
    }
}

crate::flavor::declare! {
    /// Where a run's stdout or stderr goes once the run finishes (named for where the output
    /// goes; `std::process::Output` is a result, this is a destination). In every case but
    /// [`discard`](Self::discard) the bytes also stay readable on the result image.
    #[doc = crate::doc_examples::example!(output_target)]
    #[derive(Clone, Default)]
    pub struct OutputTarget {
        target: Target,
    }
}

#[derive(Clone, Default)]
enum Target {
    #[default]
    Bytes,
    Text,
    Path(PathBuf),
    Writer(Arc<Mutex<Option<DynWrite>>>),
    Discard,
}

impl OutputTarget {
    /// Keep the bytes on the result (`stdout()`); the default.
    pub fn bytes() -> Self {
        OutputTarget { target: Target::Bytes }
    }

    /// Keep the bytes and require them to be UTF-8 (a Decode error otherwise).
    pub fn text() -> Self {
        OutputTarget { target: Target::Text }
    }

    /// Also write them to this local file (created or truncated).
    pub fn path(path: impl Into<PathBuf>) -> Self {
        OutputTarget { target: Target::Path(path.into()) }
    }

    /// Also write them to this writer (`AsyncWrite` in async, `Write` in blocking).
    pub fn writer(writer: impl Into<DynWrite>) -> Self {
        OutputTarget { target: Target::Writer(Arc::new(Mutex::new(Some(writer.into())))) }
    }

    /// Drop them.
    pub fn discard() -> Self {
        OutputTarget { target: Target::Discard }
    }

    #[crate::maybe]
    async fn deliver(&self, bytes: &Bytes, which: &'static str) -> Result<Bytes> {
        match &self.target {
            Target::Bytes => Ok(bytes.clone()),
            Target::Discard => Ok(Bytes::new()),
            Target::Text => match std::str::from_utf8(bytes) {
                Ok(_) => Ok(bytes.clone()),
                Err(e) => Err(Error::decode(format!("{which} is not UTF-8 text"), e)),
            },
            Target::Path(p) => {
                transport::write_file(p, bytes).await?;
                Ok(bytes.clone())
            }
            Target::Writer(slot) => {
                // Take the writer out so no lock is held across the write.
                let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                let mut w = taken.ok_or_else(|| {
                    Error::invalid_argument(which, "the writer is in use by another execution of this run")
                })?;
                let written = transport::write_all(&mut w, bytes).await;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
                written.map_err(|e| Error::io(format!("cannot write {which}"), e))?;
                Ok(bytes.clone())
            }
        }
    }
}

impl std::fmt::Debug for OutputTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Bytes => f.write_str("Bytes"),
            Target::Text => f.write_str("Text"),
            Target::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Target::Writer(_) => f.write_str("Writer(..)"),
            Target::Discard => f.write_str("Discard"),
        }
    }
}

/// Every option of a run, as recorded by the builder.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunSpec {
    pub command: String,
    pub args: Vec<String>,
    pub shell: bool,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub hostname: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub stdin: Stdin,
    pub stdout: OutputTarget,
    pub stderr: OutputTarget,
    pub tag: Option<String>,
    pub files: Vec<UploadFileSpec>,
    pub timeout: Option<Duration>,
    pub wait_timeout: Option<Duration>,
    pub disposable: bool,
    pub truncate_output_at: Option<u64>,
    pub preserve_env: bool,
    pub preserve_cwd: bool,
    pub networking: Option<bool>,
    /// The first bad argument, reported before any request.
    pub invalid: Option<(&'static str, String)>,
}

impl RunSpec {
    pub(crate) fn program(command: &str, shell: bool, disposable: bool) -> RunSpec {
        let mut spec = RunSpec { command: command.to_string(), shell, disposable, ..RunSpec::default() };
        if command.trim().is_empty() {
            spec.invalid = Some((
                if shell { "shell" } else { "command" },
                "neither a program nor a shell command was given".into(),
            ));
        }
        spec
    }

    pub(crate) fn argv<I, S>(argv: I, disposable: bool) -> RunSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut it = argv.into_iter().map(Into::into);
        match it.next() {
            Some(program) => {
                let mut spec = RunSpec::program(&program, false, disposable);
                spec.args = it.collect();
                spec
            }
            None => {
                let mut spec = RunSpec::program("", false, disposable);
                spec.invalid = Some(("argv", "must not be empty".into()));
                spec
            }
        }
    }

    fn reject(&mut self, arg: &'static str, reason: impl Into<String>) {
        if self.invalid.is_none() {
            self.invalid = Some((arg, reason.into()));
        }
    }

    /// The whole command line, for errors and `check()`.
    pub(crate) fn command_line(&self) -> Vec<String> {
        if self.shell {
            vec!["sh".into(), "-c".into(), self.command.clone()]
        } else {
            std::iter::once(self.command.clone()).chain(self.args.iter().cloned()).collect()
        }
    }

    /// Every check that needs no request.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some((arg, reason)) = &self.invalid {
            return Err(Error::invalid_argument(arg, reason));
        }
        for (k, v) in &self.env {
            validate::env_key("env", k)?;
            validate::env_value("env", v)?;
        }
        if let Some(cwd) = &self.cwd {
            validate::absolute_path("cwd", cwd)?;
        }
        if self.shell && !self.args.is_empty() {
            // Servers ignore them (the spec says so): the run would not be what was written.
            return Err(Error::invalid_argument(
                "args",
                "a shell command takes no separate arguments: put them in the shell expression, or run a program \
                 with .run(program).arg(..)",
            ));
        }
        if self.preserve_env && self.disposable {
            return Err(Error::invalid_argument(
                "preserve_env",
                "a disposable run keeps no image to save the env in; call .disposable(false)",
            ));
        }
        if self.preserve_cwd && self.disposable {
            return Err(Error::invalid_argument(
                "preserve_cwd",
                "a disposable run keeps no image to save the working directory in; call .disposable(false)",
            ));
        }
        if let Some(tag) = &self.tag {
            validate::tag("tag", tag)?;
            if self.disposable {
                return Err(Error::invalid_argument(
                    "tag",
                    "a disposable run keeps no image to tag; call .disposable(false)",
                ));
            }
        }
        if let Some(t) = self.timeout
            && t.is_zero()
        {
            return Err(Error::invalid_argument("timeout", "must be positive"));
        }
        let mut seen = BTreeSet::new();
        for f in &self.files {
            validate::absolute_path("files", &f.path)?;
            if let Some(mode) = f.mode {
                validate::file_mode("files", mode)?;
            }
            if !seen.insert(f.path.as_str()) {
                return Err(Error::invalid_argument("files", format!("duplicate destination {}", f.path)));
            }
            if let FileSource::Local(p) = &f.source {
                super::files::check_local_file(p)
                    .map_err(|_| Error::invalid_argument("files", format!("{} is not a readable file", p.display())))?;
            }
        }
        Ok(())
    }
}

crate::flavor::declare! {
    /// What an image run is bound to: nothing (the source image is left as it is). Session
    /// runs are bound to their session instead.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Detached;
}

crate::flavor::declare! {
    /// A run described but not started. Set options, then execute it; see the crate's table
    /// of terminal verbs (`.await`/`wait()` for the finished result, `spawn()` for a live
    /// process handle, `stream()` for live events). `T` says what the run is bound to: an
    /// image run (the default) or a session run, which advances its session.
    #[doc = crate::doc_examples::example!(prepared_run)]
    #[derive(Debug, Clone)]
    pub struct PreparedRun<T = Detached> {
        pub(crate) image: Image,
        pub(crate) spec: RunSpec,
        pub(crate) target: T,
    }
}

impl<T> PreparedRun<T> {
    /// Appends one argument. Programs only: a shell command (`shell(..)`) with arguments is
    /// an `InvalidArgument` error naming `args` when executed, since servers ignore them.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.spec.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable (a key with `=` or NUL is rejected at execution).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.env.insert(key.into(), value.into());
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.spec.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The working directory (absolute; created if missing).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.spec.cwd = Some(cwd.into());
        self
    }

    /// The sandbox's hostname.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.spec.hostname = Some(hostname.into());
        self
    }

    /// Run as this uid and gid.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.spec.uid = Some(uid);
        self.spec.gid = Some(gid);
        self
    }

    /// Standard input: text, bytes, `path(..)`, `reader(..)` or `piped()` (constructors of
    /// this flavor's stdin type).
    pub fn stdin(mut self, stdin: impl Into<Stdin>) -> Self {
        self.spec.stdin = stdin.into();
        self
    }

    /// Where stdout goes (default: kept as bytes on the result).
    pub fn stdout(mut self, output: OutputTarget) -> Self {
        self.spec.stdout = output;
        self
    }

    /// Where stderr goes (default: kept as bytes on the result).
    pub fn stderr(mut self, output: OutputTarget) -> Self {
        self.spec.stderr = output;
        self
    }

    /// Tags the result image once the run succeeds (needs `disposable(false)`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.spec.tag = Some(tag.into());
        self
    }

    /// Places a local file, bytes or an uploaded file at `dest` (absolute) before the command
    /// starts.
    pub fn file(mut self, dest: impl Into<String>, source: impl Into<FileSource>) -> Self {
        self.spec.files.push(UploadFileSpec::new(dest, source));
        self
    }

    /// Places local files at `/<file name>` each.
    pub fn files<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        for p in paths {
            let p: PathBuf = p.into();
            match UploadFileSpec::from_local_path("files", p.clone()) {
                Ok(spec) => self.spec.files.push(spec),
                Err(_) => self.spec.reject("files", format!("{} has no file name", p.display())),
            }
        }
        self
    }

    /// Places files given as destination → source pairs (a map or any iterator of pairs).
    pub fn files_map<I, D, S>(mut self, files: I) -> Self
    where
        I: IntoIterator<Item = (D, S)>,
        D: Into<String>,
        S: Into<FileSource>,
    {
        for (d, s) in files {
            self.spec.files.push(UploadFileSpec::new(d, s));
        }
        self
    }

    /// Places a file with explicit mode and ownership.
    pub fn file_spec(mut self, spec: UploadFileSpec) -> Self {
        self.spec.files.push(spec);
        self
    }

    /// The server-side limit: the command is killed after this long (whole seconds, rounded
    /// up). Default: the config's run timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout = Some(timeout);
        self
    }

    /// How long the client waits before it cancels the operation and reports
    /// OperationTimedOut. Default: the server-side timeout plus 30 s of grace.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.spec.wait_timeout = Some(timeout);
        self
    }

    /// Whether the run's filesystem changes are discarded (no result image).
    pub fn disposable(mut self, disposable: bool) -> Self {
        self.spec.disposable = disposable;
        self
    }

    /// Cap on captured bytes per stream (server-side). Default: the config's
    /// `default_truncate_output_at`.
    pub fn truncate_output_at(mut self, bytes: u64) -> Self {
        self.spec.truncate_output_at = Some(bytes);
        self
    }

    /// Stores this run's env in the result image, for later shell runs. Needs
    /// `disposable(false)` (else an `InvalidArgument` error naming `preserve_env`).
    pub fn preserve_env(mut self, preserve: bool) -> Self {
        self.spec.preserve_env = preserve;
        self
    }

    /// Saves the run's initial working directory (its `cwd`, else the image's) as the result
    /// image's default, for later runs without a `cwd`. Needs `disposable(false)` (else an
    /// `InvalidArgument` error naming `preserve_cwd`).
    pub fn preserve_cwd(mut self, preserve: bool) -> Self {
        self.spec.preserve_cwd = preserve;
        self
    }

    /// Enables or disables the sandbox's network (server default when unset).
    pub fn networking(mut self, enabled: bool) -> Self {
        self.spec.networking = Some(enabled);
        self
    }

    /// The image this run starts from.
    pub fn source(&self) -> &Image {
        &self.image
    }

    /// The standard input this run was configured with (Python's `stdin` property).
    #[doc = crate::doc_examples::example!(stdin)]
    pub fn stdin_config(&self) -> &Stdin {
        &self.spec.stdin
    }
}

impl PreparedRun<Detached> {
    /// Executes the run and returns the result image (state SUCCEEDED). To execute it again
    /// (each execution is a new branch), clone it first: clones are cheap.
    #[doc = crate::doc_examples::example!(prepared_wait)]
    #[crate::maybe]
    pub async fn wait(self) -> Result<Image> {
        execute(&self.image, &self.spec).await
    }

    /// Starts the run and returns a live process handle at once (popen).
    #[doc = crate::doc_examples::example!(prepared_spawn)]
    #[crate::maybe]
    pub async fn spawn(self) -> Result<super::process::Process> {
        super::process::Process::start(&self.image, &self.spec).await
    }

    /// Events as they happen: stdout and stderr chunks, the exit, then the finished result.
    #[doc = crate::doc_examples::example!(run_events)]
    pub fn events(self) -> super::process::RunEvents {
        super::process::RunEvents::new(self.image, self.spec)
    }
}

/// A started operation: what the spawn answered.
pub(crate) struct Started {
    pub op_id: String,
    pub deadline: Instant,
    pub guard: CancelGuard,
}

/// Uploads, reads stdin and spawns the operation (`POST /instances`).
#[crate::maybe]
pub(crate) async fn start(image: &Image, spec: &RunSpec) -> Result<Started> {
    // The caller's wait starts now: uploads and the spawn count against it.
    let begun = Instant::now();
    if image.state == ImageState::Executing {
        return Err(Error::image_state("run", image.state, &[ImageState::Pulled, ImageState::Succeeded]));
    }
    let source = image.image_source()?;
    spec.validate()?;
    let client = &image.client;
    let config = client.config();

    let mut to_upload: Vec<(usize, UploadSource)> = Vec::new();
    for (i, f) in spec.files.iter().enumerate() {
        match &f.source {
            FileSource::Local(p) => to_upload.push((i, UploadSource::Path(p.clone()))),
            FileSource::Bytes(b) => to_upload.push((i, UploadSource::Bytes(b.clone()))),
            FileSource::Uploaded(_) => {}
        }
    }
    let uploaded = transport::upload_all(&client.files(), to_upload).await?;
    let mut files = BTreeMap::new();
    for (i, f) in spec.files.iter().enumerate() {
        let stored = match &f.source {
            FileSource::Uploaded(u) => u.clone(),
            _ => uploaded
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, u)| u.clone())
                .ok_or_else(|| Error::invalid_argument("files", format!("{} was not uploaded", f.path)))?,
        };
        let mode = match (f.mode, &f.source) {
            (Some(m), _) => m,
            (None, FileSource::Local(p)) => default_mode(p),
            (None, _) => 0o644,
        };
        let file_spec = FileSpec::new(stored.uuid).mode(mode)?.owner(f.uid, f.gid);
        files.insert(f.path.clone(), file_spec);
    }

    let (stdin, keep_open) = spec.stdin.resolve().await?;
    let timeout = spec.timeout.unwrap_or_else(|| config.run_timeout());
    let timeout_secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let mut body = InstanceSpawnRequest::new(spec.command.clone(), ImageSource::parse(&source)?)
        .args(spec.args.clone())
        .shell(spec.shell)
        .disposable(spec.disposable)
        .timeout(timeout_secs.max(1))
        .truncate_output_at(spec.truncate_output_at.unwrap_or(config.default_truncate_output_at));
    body.env = spec.env.clone();
    body.files = files;
    if spec.preserve_env {
        body = body.preserve_env(true);
    }
    if spec.preserve_cwd {
        body = body.preserve_cwd(true);
    }
    if let Some(cwd) = &spec.cwd {
        body = body.cwd(cwd.clone());
    }
    if let Some(h) = &spec.hostname {
        body = body.hostname(h.clone());
    }
    if let Some(uid) = spec.uid {
        body = body.uid(uid);
    }
    if let Some(gid) = spec.gid {
        body = body.gid(gid);
    }
    if let Some(n) = spec.networking {
        body = body.networking(n);
    }
    if !stdin.is_empty() || keep_open {
        let mut repr = ClosableStreamRepr::from_bytes(&stdin);
        if keep_open {
            repr.close = Some(false);
        }
        body = body.stdin(repr);
    }

    let wait = spec.wait_timeout.unwrap_or(timeout + Duration::from_secs(30));
    let deadline = begun + wait;
    let http = client.http();
    let spawn = http.call(Method::POST, &["instances"]).json(&body)?.deadline(Some(deadline));
    let created: InstanceSpawnResponse = http.json(&spawn).await?;
    let op_id = created.uuid.to_string();
    super::trace::record_operation_id(&op_id);
    // The command stays out of logs: it is part of the request body and may hold secrets.
    tracing::debug!(operation = %op_id, "run started");
    Ok(Started { op_id: op_id.clone(), deadline, guard: CancelGuard::new(client.clone(), op_id) })
}

/// A local file's executable bit decides 0755 versus 0644.
fn default_mode(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o111 != 0
        {
            return 0o755;
        }
    }
    let _ = path;
    0o644
}

/// Executes a run to the end, in a `contree.run` span.
#[crate::maybe]
pub(crate) async fn execute(image: &Image, spec: &RunSpec) -> Result<Image> {
    let op = super::trace::OpSpan::run(image);
    let result = transport::instrumented!(op.span().clone(), execute_in_span(image, spec)).await;
    op.end_run(&result);
    result
}

#[crate::maybe]
async fn execute_in_span(image: &Image, spec: &RunSpec) -> Result<Image> {
    let started = start(image, spec).await?;
    let mut follower = EventFollower::new(image.client.clone(), started.op_id.clone()).deadline(Some(started.deadline));
    let mut polled = None;
    loop {
        match follower.next().await {
            Ok(Some(Followed::Polled(op))) => polled = Some(*op),
            Ok(Some(Followed::Event(_))) => {}
            Ok(None) => break,
            Err(e) => {
                // The follower cancels the operation itself when the deadline passes; a
                // second cancel from the guard would only repeat it.
                if e.is_operation_timed_out() {
                    started.guard.disarm();
                }
                return Err(e);
            }
        }
    }
    let result = finish(image, spec, &started.op_id, polled).await;
    started.guard.disarm();
    result
}

/// Reads the final status (unless polling already has it) and builds the result image.
#[crate::maybe]
pub(crate) async fn finish(
    image: &Image,
    spec: &RunSpec,
    op_id: &str,
    polled: Option<OperationResponse>,
) -> Result<Image> {
    let op = match polled {
        Some(op) => op,
        None => {
            let (op, _) = super::operation::get(&image.client, op_id, false).await?;
            if op.status.is_terminal() {
                op
            } else {
                // The event log can run ahead of the status record (the completion event is
                // out before the record is written): poll until the record catches up.
                let bound = image.client.config().operation_poll_max.max(Duration::from_secs(60));
                super::operation::wait(&image.client, op_id, bound).await?
            }
        }
    };
    let op = super::operation::finished(op_id, op)?;
    let mut output = RunOutput::from_operation(&op, spec.command_line())?;
    output.stdout = spec.stdout.deliver(&output.stdout, "stdout").await?;
    output.stderr = spec.stderr.deliver(&output.stderr, "stderr").await?;
    let mut result = Image {
        client: image.client.clone(),
        uuid: output.result_image,
        tag: None,
        created_at: None,
        state: ImageState::Succeeded,
        output: Some(Arc::new(output)),
    };
    if let Some(tag) = &spec.tag {
        if result.uuid.is_none() {
            return Err(
                Error::invalid_argument("tag", "a disposable run has no result image to tag").with_operation(op_id)
            );
        }
        result = result.tag_as(tag).await?;
    }
    Ok(result)
}

/// Cancels the operation on the server if dropped while armed (best effort, never blocking
/// inside `drop`).
pub(crate) struct CancelGuard {
    client: Option<super::client::Client>,
    op_id: String,
}

impl CancelGuard {
    pub(crate) fn new(client: super::client::Client, op_id: String) -> Self {
        CancelGuard { client: Some(client), op_id }
    }

    /// The operation reached its end: nothing to cancel any more.
    pub(crate) fn disarm(mut self) {
        self.client = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            tracing::debug!(operation = %self.op_id, "run dropped in flight; cancelling");
            transport::cancel_in_background(client, std::mem::take(&mut self.op_id));
        }
    }
}
