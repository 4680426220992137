//! The one error type of the SDK.
//!
//! [`Error`] is opaque on purpose (like `reqwest::Error`): match on [`Error::kind`] or use the
//! `is_*()` predicates, and read the context through accessors. The representation can then
//! grow without breaking users.
//!
//! Sharp edges:
//! - A non-zero exit code is **not** an error; only `check()` turns it into one
//!   ([`ErrorKind::ProcessFailed`]).
//! - [`ErrorKind::Transport`] says through [`Error::request_may_have_been_sent`] whether a
//!   non-idempotent request (a spawn, an upload) may have reached the server. When it may
//!   have, retrying blindly can start a second operation.
//! - No error ever carries a token or a password: API errors record the method, the URL
//!   (which never holds credentials) and the server's message only.

use std::fmt;
use std::time::Duration;

use crate::state::ImageState;

/// A boxed error source, kept for [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A shared error source: errors are `Clone` so a finished process can report its failure to
/// every `wait()` call.
type SharedError = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarse-grained and stable. Use it to decide what to do next.
///
/// ```
/// use contree_core::{Error, ErrorKind};
/// let err = Error::invalid_argument("tag", "must not be empty");
/// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
/// assert!(err.is_invalid_argument());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400: the server rejected the request's parameters.
    BadRequest,
    /// 401: the token is missing or invalid, or the `Project` header is missing.
    Unauthorized,
    /// 403: the token lacks a permission.
    Forbidden,
    /// 404: no such image, file, operation or path.
    NotFound,
    /// 409: the resource is in the wrong state (e.g. cancelling a finished operation).
    Conflict,
    /// 410: gone for now; the server suggests retrying later.
    Gone,
    /// 422: the request was understood but cannot be processed (e.g. not a regular file).
    UnprocessableEntity,
    /// 425: too early; the resource is not ready yet. Never processed, so safe to retry.
    TooEarly,
    /// 429: rate limited. See [`Error::retry_after`].
    RateLimited,
    /// 5xx: the server failed. See [`Error::status`].
    Server,
    /// Any other unexpected HTTP status.
    UnexpectedStatus,
    /// The connection failed. See [`Error::request_may_have_been_sent`].
    Transport,
    /// An HTTP request timed out on the client side.
    Timeout,
    /// A response could not be decoded.
    Decode,
    /// An argument was rejected before any request was sent. See [`Error::argument`].
    InvalidArgument,
    /// A local file could not be read or written.
    Io,
    /// The operation ended in state FAILED.
    OperationFailed,
    /// The operation was cancelled.
    OperationCancelled,
    /// The client stopped waiting for the operation (and cancelled it).
    OperationTimedOut,
    /// A run was attempted on an image with neither uuid nor tag (a disposable result).
    DisposableImageRun,
    /// The image is not in a state that allows the call. See [`Error::image_state`].
    ImageState,
    /// A checked command exited non-zero. See [`Error::exit_code`].
    ProcessFailed,
    /// The configuration could not be resolved (no token, bad URL, unreadable profile).
    Config,
}

/// The error returned by every fallible SDK call.
///
/// ```
/// use contree_core::Error;
/// let err = Error::invalid_argument("uuid", "`abc` is not a UUID");
/// assert_eq!(err.argument(), Some("uuid"));
/// assert!(err.to_string().contains("uuid"));
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    context: Context,
    source: Option<SharedError>,
}

/// Everything an error may know about where it happened. Never holds secrets.
#[derive(Default, Clone)]
struct Context {
    status: Option<u16>,
    method: Option<String>,
    url: Option<String>,
    operation_id: Option<String>,
    retry_after: Option<Duration>,
    maybe_sent: Option<bool>,
    argument: Option<&'static str>,
    image_state: Option<(ImageState, Vec<ImageState>)>,
    process: Option<ProcessFailure>,
}

/// What a checked command left behind when it exited non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFailure {
    /// The command and its arguments, as run.
    pub command: Vec<String>,
    /// The exit code (`-1` when killed by a signal).
    pub exit_code: i32,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { inner: Box::new(Inner { kind, message: message.into(), context: Context::default(), source: None }) }
    }

    /// An argument was rejected before any request was sent.
    pub fn invalid_argument(argument: &'static str, reason: impl fmt::Display) -> Self {
        let mut e = Error::new(ErrorKind::InvalidArgument, format!("invalid argument `{argument}`: {reason}"));
        e.inner.context.argument = Some(argument);
        e
    }

    /// The configuration could not be resolved.
    pub fn config(reason: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, reason)
    }

    /// A local I/O failure, naming what was being done (never file contents).
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, what).with_source(source)
    }

    /// A response body could not be decoded.
    pub fn decode(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::new(ErrorKind::Decode, what).with_source(source)
    }

    /// A connection-level failure. `maybe_sent` says whether the server may have seen the
    /// request (false only when the connection was never established).
    pub fn transport(maybe_sent: bool, source: impl Into<BoxError>) -> Self {
        let mut e = Error::new(ErrorKind::Transport, "transport error");
        e.inner.context.maybe_sent = Some(maybe_sent);
        e.with_source(source)
    }

    /// A client-side HTTP timeout.
    pub fn timeout(source: impl Into<BoxError>) -> Self {
        let mut e = Error::new(ErrorKind::Timeout, "request timed out");
        e.inner.context.maybe_sent = Some(true);
        e.with_source(source)
    }

    /// A non-2xx answer. `message` is the server's `error` text (or the raw body).
    pub fn from_status(status: u16, message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let kind = match status {
            400 => ErrorKind::BadRequest,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            410 => ErrorKind::Gone,
            422 => ErrorKind::UnprocessableEntity,
            425 => ErrorKind::TooEarly,
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::UnexpectedStatus,
        };
        let mut e = Error::new(kind, message);
        e.inner.context.status = Some(status);
        e.inner.context.retry_after = retry_after;
        e
    }

    /// The operation ended FAILED with the server's error text.
    pub fn operation_failed(operation_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::new(ErrorKind::OperationFailed, reason).with_operation(operation_id)
    }

    /// The operation was cancelled.
    pub fn operation_cancelled(operation_id: impl Into<String>) -> Self {
        Error::new(ErrorKind::OperationCancelled, "operation was cancelled").with_operation(operation_id)
    }

    /// The client gave up waiting after `waited` (the operation was cancelled on the server).
    pub fn operation_timed_out(operation_id: impl Into<String>, waited: Duration) -> Self {
        Error::new(
            ErrorKind::OperationTimedOut,
            format!("operation did not finish within {:.1}s and was cancelled", waited.as_secs_f64()),
        )
        .with_operation(operation_id)
    }

    /// A run on an image with neither uuid nor tag.
    pub fn disposable_image_run() -> Self {
        Error::new(
            ErrorKind::DisposableImageRun,
            "this image has neither uuid nor tag (it is the result of a disposable run) and cannot be run or inspected",
        )
    }

    /// A call that the image's state does not allow.
    pub fn image_state(action: &str, state: ImageState, allowed: &[ImageState]) -> Self {
        let allowed_list = allowed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        let mut e = Error::new(
            ErrorKind::ImageState,
            format!("cannot {action} an image in state {state}; allowed states: [{allowed_list}]"),
        );
        e.inner.context.image_state = Some((state, allowed.to_vec()));
        e
    }

    /// A checked command exited non-zero.
    pub fn process_failed(failure: ProcessFailure) -> Self {
        let msg = format!("command {:?} exited with code {}", failure.command.join(" "), failure.exit_code);
        let mut e = Error::new(ErrorKind::ProcessFailed, msg);
        e.inner.context.process = Some(failure);
        e
    }

    /// Records the HTTP method and URL. The URL must not hold credentials (ours never do).
    pub fn with_request(mut self, method: impl Into<String>, url: impl Into<String>) -> Self {
        self.inner.context.method = Some(method.into());
        self.inner.context.url = Some(url.into());
        self
    }

    /// Records the operation this error belongs to.
    pub fn with_operation(mut self, operation_id: impl Into<String>) -> Self {
        self.inner.context.operation_id = Some(operation_id.into());
        self
    }

    /// Records how long the server asked the client to wait before trying again, when the
    /// client gave up first (a `Retry-After` longer than the caller's deadline left).
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.inner.context.retry_after = Some(retry_after);
        self
    }

    /// Records the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(std::sync::Arc::from(source.into()));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The server's message, or a description of the failure.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        self.inner.context.status
    }

    /// The HTTP method of the failed request.
    pub fn method(&self) -> Option<&str> {
        self.inner.context.method.as_deref()
    }

    /// The URL of the failed request.
    pub fn url(&self) -> Option<&str> {
        self.inner.context.url.as_deref()
    }

    /// The operation id, where one is known.
    pub fn operation_id(&self) -> Option<&str> {
        self.inner.context.operation_id.as_deref()
    }

    /// The server's `Retry-After`, for 410/425/429 and some 5xx.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.context.retry_after
    }

    /// For transport failures and timeouts: whether the server may have received the request.
    /// `false` means it certainly did not (connect failure), so any request may be resent.
    pub fn request_may_have_been_sent(&self) -> bool {
        self.inner.context.maybe_sent.unwrap_or(false)
    }

    /// The rejected argument's name, for [`ErrorKind::InvalidArgument`].
    pub fn argument(&self) -> Option<&'static str> {
        self.inner.context.argument
    }

    /// For [`ErrorKind::ImageState`]: the state the image was in and the states the call allows.
    pub fn image_state_info(&self) -> Option<(ImageState, &[ImageState])> {
        self.inner.context.image_state.as_ref().map(|(s, a)| (*s, a.as_slice()))
    }

    /// For [`ErrorKind::ProcessFailed`]: the command, exit code and output.
    pub fn process_failure(&self) -> Option<&ProcessFailure> {
        self.inner.context.process.as_ref()
    }

    /// The exit code of a checked command that failed.
    pub fn exit_code(&self) -> Option<i32> {
        self.process_failure().map(|p| p.exit_code)
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
    /// 401.
    pub fn is_unauthorized(&self) -> bool {
        self.kind() == ErrorKind::Unauthorized
    }
    /// 403.
    pub fn is_forbidden(&self) -> bool {
        self.kind() == ErrorKind::Forbidden
    }
    /// 409.
    pub fn is_conflict(&self) -> bool {
        self.kind() == ErrorKind::Conflict
    }
    /// 410.
    pub fn is_gone(&self) -> bool {
        self.kind() == ErrorKind::Gone
    }
    /// 425.
    pub fn is_too_early(&self) -> bool {
        self.kind() == ErrorKind::TooEarly
    }
    /// 429.
    pub fn is_rate_limited(&self) -> bool {
        self.kind() == ErrorKind::RateLimited
    }
    /// 5xx.
    pub fn is_server(&self) -> bool {
        self.kind() == ErrorKind::Server
    }
    /// Any HTTP status error (4xx/5xx answered by the server).
    pub fn is_status(&self) -> bool {
        self.status().is_some()
    }
    /// A connection failure.
    pub fn is_transport(&self) -> bool {
        self.kind() == ErrorKind::Transport
    }
    /// A client-side HTTP timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }
    /// An undecodable response.
    pub fn is_decode(&self) -> bool {
        self.kind() == ErrorKind::Decode
    }
    /// A rejected argument.
    pub fn is_invalid_argument(&self) -> bool {
        self.kind() == ErrorKind::InvalidArgument
    }
    /// A local file failure.
    pub fn is_io(&self) -> bool {
        self.kind() == ErrorKind::Io
    }
    /// The operation FAILED.
    pub fn is_operation_failed(&self) -> bool {
        self.kind() == ErrorKind::OperationFailed
    }
    /// The operation was cancelled.
    pub fn is_operation_cancelled(&self) -> bool {
        self.kind() == ErrorKind::OperationCancelled
    }
    /// The client stopped waiting for the operation.
    pub fn is_operation_timed_out(&self) -> bool {
        self.kind() == ErrorKind::OperationTimedOut
    }
    /// A run on a disposable result.
    pub fn is_disposable_image_run(&self) -> bool {
        self.kind() == ErrorKind::DisposableImageRun
    }
    /// A call the image's state does not allow.
    pub fn is_image_state(&self) -> bool {
        self.kind() == ErrorKind::ImageState
    }
    /// A checked command exited non-zero.
    pub fn is_process_failed(&self) -> bool {
        self.kind() == ErrorKind::ProcessFailed
    }
    /// The configuration could not be resolved.
    pub fn is_config(&self) -> bool {
        self.kind() == ErrorKind::Config
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.context;
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind).field("message", &self.inner.message);
        if let Some(s) = c.status {
            d.field("status", &s);
        }
        if let Some(m) = &c.method {
            d.field("method", m);
        }
        if let Some(u) = &c.url {
            d.field("url", u);
        }
        if let Some(o) = &c.operation_id {
            d.field("operation_id", o);
        }
        if let Some(r) = &c.retry_after {
            d.field("retry_after", r);
        }
        if let Some(a) = c.argument {
            d.field("argument", &a);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    /// One line: what failed, against which request, and why. A transport failure reads
    /// `cannot connect to http://127.0.0.1:8080/v1/instances: connection refused`: the cause
    /// is the lowest error of the source chain (the wrappers above it repeat the URL).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.context;
        if let (ErrorKind::Transport | ErrorKind::Timeout, Some(method), Some(url)) =
            (self.inner.kind, &c.method, &c.url)
        {
            match (self.inner.kind, c.maybe_sent) {
                (ErrorKind::Timeout, _) => write!(f, "{method} {url} timed out")?,
                (_, Some(false)) => write!(f, "cannot connect to {url}")?,
                _ => write!(f, "connection lost during {method} {url}")?,
            }
            if let Some(cause) = self.root_cause() {
                write!(f, ": {cause}")?;
            }
            if let Some(op) = &c.operation_id {
                write!(f, " [operation {op}]")?;
            }
            return Ok(());
        }
        match c.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.inner.message)?,
            None => f.write_str(&self.inner.message)?,
        }
        if let (Some(m), Some(u)) = (&c.method, &c.url) {
            write!(f, " ({m} {u})")?;
        }
        if let Some(op) = &c.operation_id {
            write!(f, " [operation {op}]")?;
        }
        match (self.inner.kind, self.root_cause()) {
            (ErrorKind::Transport | ErrorKind::Timeout, Some(cause)) => write!(f, ": {cause}")?,
            (_, _) => {
                if let Some(src) = &self.inner.source {
                    write!(f, ": {}", one_line(&src.to_string()))?;
                }
            }
        }
        Ok(())
    }
}

impl Error {
    /// The lowest error of the source chain, said plainly: an I/O error by its kind
    /// (`connection refused`), anything else by its own one-line Display.
    fn root_cause(&self) -> Option<String> {
        let mut err: &(dyn std::error::Error + 'static) = self.inner.source.as_deref()?;
        while let Some(next) = err.source() {
            err = next;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let kind = io.kind();
            // `Other`-like kinds say nothing; the error's own text does.
            if !matches!(kind, std::io::ErrorKind::Other) && !format!("{kind:?}").starts_with("Uncategorized") {
                return Some(kind.to_string());
            }
        }
        Some(one_line(&err.to_string()))
    }
}

/// Keeps a cause on the error's one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl From<std::io::Error> for Error {
    /// A local I/O failure (so `?` works on reads from popen pipes in a function returning
    /// `contree::Result`).
    fn from(e: std::io::Error) -> Self {
        Error::io("I/O error", e)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_ref().map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping_covers_every_documented_code() {
        let cases = [
            (400, ErrorKind::BadRequest),
            (401, ErrorKind::Unauthorized),
            (403, ErrorKind::Forbidden),
            (404, ErrorKind::NotFound),
            (409, ErrorKind::Conflict),
            (410, ErrorKind::Gone),
            (422, ErrorKind::UnprocessableEntity),
            (425, ErrorKind::TooEarly),
            (429, ErrorKind::RateLimited),
            (500, ErrorKind::Server),
            (503, ErrorKind::Server),
            (418, ErrorKind::UnexpectedStatus),
        ];
        for (status, kind) in cases {
            let e = Error::from_status(status, "m", None);
            assert_eq!(e.kind(), kind, "status {status}");
            assert_eq!(e.status(), Some(status));
        }
    }

    #[test]
    fn display_names_request_and_operation() {
        let e = Error::from_status(404, "image not found", None)
            .with_request("GET", "https://h/v1/inspect/x/")
            .with_operation("op-1");
        let s = e.to_string();
        assert!(s.contains("HTTP 404"), "{s}");
        assert!(s.contains("GET https://h/v1/inspect/x/"), "{s}");
        assert!(s.contains("op-1"), "{s}");
    }

    #[derive(Debug)]
    struct Wrapper(&'static str, Box<dyn std::error::Error + Send + Sync>);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.1.as_ref())
        }
    }

    /// A chain shaped like reqwest's: a wrapper naming the URL, a client error, the OS error.
    fn refused_chain() -> Wrapper {
        let os = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let tcp = Wrapper("tcp connect error", Box::new(os));
        Wrapper("error sending request for url (http://127.0.0.1:8080/v1/instances)", Box::new(tcp))
    }

    #[test]
    fn transport_display_is_one_line_naming_url_and_cause() {
        let e = Error::transport(false, refused_chain()).with_request("POST", "http://127.0.0.1:8080/v1/instances");
        assert_eq!(e.to_string(), "cannot connect to http://127.0.0.1:8080/v1/instances: connection refused");

        let e = Error::transport(true, refused_chain()).with_request("GET", "http://h/v1/operations/x/events");
        assert_eq!(e.to_string(), "connection lost during GET http://h/v1/operations/x/events: connection refused");

        let timeout = Wrapper("operation timed out", Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        let e = Error::timeout(timeout).with_request("GET", "http://h/v1/whoami").with_operation("op-9");
        assert_eq!(e.to_string(), "GET http://h/v1/whoami timed out: timed out [operation op-9]");

        let dns = Wrapper("dns error", Box::new(std::io::Error::other("failed to lookup address\ninformation")));
        let e = Error::transport(false, dns).with_request("GET", "http://nowhere.invalid/v1/whoami");
        assert_eq!(
            e.to_string(),
            "cannot connect to http://nowhere.invalid/v1/whoami: failed to lookup address information"
        );
        assert!(!e.to_string().contains('\n'));
        assert!(!e.to_string().contains("Wrapper"), "no Debug output in Display");
    }

    #[test]
    fn io_errors_convert_for_question_mark() {
        fn read() -> Result<()> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
            Ok(())
        }
        let e = read().unwrap_err();
        assert!(e.is_io());
        assert_eq!(e.to_string(), "I/O error: broken pipe");
    }

    #[test]
    fn rate_limit_keeps_retry_after() {
        let e = Error::from_status(429, "slow down", Some(Duration::from_secs(3)));
        assert!(e.is_rate_limited());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn image_state_error_lists_allowed_states() {
        let e = Error::image_state("read the result of", ImageState::Pulled, &[ImageState::Succeeded]);
        assert!(e.is_image_state());
        let (state, allowed) = e.image_state_info().unwrap();
        assert_eq!(state, ImageState::Pulled);
        assert_eq!(allowed, &[ImageState::Succeeded]);
        assert!(e.to_string().contains("SUCCEEDED"));
    }
}
