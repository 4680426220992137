//! HTTP execution shared by both flavors: auth headers, timeouts, retries, error mapping and
//! tracing. Everything flavor-specific goes through `crate::transport`.
//!
//! Sharp edges:
//! - Redirects are never followed: `GET /inspect/?tag=` answers 302 and we read `Location`.
//! - Only bodies that can be rebuilt (JSON, bytes, files on disk) are retried; a POST that may
//!   have reached the server is never replayed except on 425/429 (see `contree_core::retry`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use contree_core::config::RESERVED_FOR_REQUESTS;
use contree_core::retry::{Failure, RetryDecision};
use contree_core::{ApiUrl, ContreeConfig, Error, HttpVersion, Progress, Result, RetryPolicy};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::trace;
use crate::transport::{self, HttpClient, HttpClientBuilder, Response};

/// How long one request may take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timeout {
    /// A small request/response: the whole exchange is bounded.
    Unary(Duration),
    /// A streamed body (SSE, downloads, uploads): each read is bounded, not the whole.
    Streaming { idle: Duration },
}

/// A request body that can be rebuilt for every attempt.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    Empty,
    Json(Bytes),
    Bytes(Bytes),
    /// Streamed from disk; reopened on each attempt so retries resend the whole file.
    File(PathBuf),
    /// Streamed from disk by a reader thread of its own (a pipelined upload, which can be
    /// abandoned mid-body); each attempt starts a new thread from the first byte.
    Stream(crate::driver::upload::FileStream),
}

/// One API call, described before it is sent.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    pub payload: Payload,
    pub timeout: Timeout,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether a resend is safe even if the server saw the first one.
    pub idempotent: bool,
    /// The caller's deadline: no attempt, pause or retry goes past it.
    pub deadline: Option<Instant>,
    /// Counts the request body's bytes as they are sent (uploads only; `None` everywhere else).
    pub progress: Option<Progress>,
    /// The route, with its ids as placeholders (`/v1/operations/{operationId}`): what the
    /// request's span names (`url.template`) instead of the URL.
    pub template: Option<&'static str>,
}

impl Call {
    pub fn new(method: Method, url: Url, timeout: Timeout) -> Self {
        let idempotent = contree_core::retry::is_idempotent_method(method.as_str());
        Call {
            method,
            url,
            payload: Payload::Empty,
            timeout,
            headers: Vec::new(),
            idempotent,
            deadline: None,
            progress: None,
            template: None,
        }
    }

    /// Bounds the whole call, retries and their pauses included, by `deadline`.
    pub fn deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The time left before the deadline (`None`: no deadline).
    fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// This call's timeout, shortened so one attempt cannot outlive the deadline.
    fn attempt_timeout(&self) -> Timeout {
        let Some(left) = self.remaining() else {
            return self.timeout;
        };
        let left = left.max(Duration::from_millis(1));
        match self.timeout {
            Timeout::Unary(d) => Timeout::Unary(d.min(left)),
            Timeout::Streaming { idle } => Timeout::Streaming { idle: idle.min(left) },
        }
    }

    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::decode("cannot encode the request body", e))?;
        self.payload = Payload::Json(Bytes::from(bytes));
        Ok(self)
    }

    pub fn payload(mut self, payload: Payload) -> Self {
        self.payload = payload;
        self
    }

    /// Reports the body's bytes to `progress` as they are sent, each attempt counted from its
    /// first byte (a resend counts only past the furthest point reached).
    pub fn progress(mut self, progress: Option<&Progress>) -> Self {
        self.progress = progress.cloned();
        self
    }

    pub fn header(mut self, name: &'static str, value: HeaderValue) -> Self {
        self.headers.push((HeaderName::from_static(name), value));
        self
    }
}

/// The pooled HTTP client of one `Contree`, with its base URL and retry policy.
#[derive(Clone)]
pub(crate) struct Http {
    client: HttpClient,
    api: ApiUrl,
    retry: RetryPolicy,
    unary: Duration,
    body_idle: Duration,
    sse_idle: Duration,
    /// The connection bound (see [`Slots`]).
    slots: Arc<Slots>,
}

/// The bound on connections to a server that speaks HTTP/1.1 (`ContreeConfig::max_connections`).
///
/// Each request in flight holds a connection, so a request waits for one of `requests`
/// before it is sent and keeps it while its response is read. Event streams hold theirs for a
/// run's whole life, so they also need one of `streams`, which has fewer: the difference is
/// always left to short requests, which therefore never wait behind streams, and a follower
/// that finds no stream slot polls instead. Once a response comes back over HTTP/2 (TLS
/// negotiated it, or the client was told), every request shares one connection and the bound
/// is dropped; with prior knowledge, `requests` has one slot until then, so that a burst of
/// first requests shares the first connection instead of each opening one.
#[derive(Debug)]
pub(crate) struct Slots {
    requests: transport::Semaphore,
    /// `None`: streams need no slot of their own (HTTP/2 prior knowledge).
    streams: Option<transport::Semaphore>,
    multiplexed: AtomicBool,
}

/// What [`Http::try_stream_slot`] found.
pub(crate) enum StreamSlot {
    /// No bound applies (HTTP/2).
    Unbounded,
    /// A slot, held for the stream's life.
    Held(transport::Permit),
    /// Every stream slot is taken: follow by polling.
    Full,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The default headers hold the token: never print the client itself.
        f.debug_struct("Http").field("api", &self.api).finish_non_exhaustive()
    }
}

impl Http {
    pub fn new(config: &ContreeConfig) -> Result<Self> {
        let api = config.api_url()?;
        let mut headers = HeaderMap::new();
        for (name, value) in config.auth_headers()? {
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                Error::invalid_argument(
                    if name == "authorization" { "token" } else { "project" },
                    "contains characters that are not allowed in an HTTP header",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), value);
        }
        let mut builder = HttpClientBuilder::new();
        let slots = match config.http_version {
            HttpVersion::Http2PriorKnowledge => {
                builder = builder.http2_prior_knowledge();
                // Until the first answer, one request at a time: a burst of first requests
                // would each open a connection of its own.
                Slots { requests: transport::Semaphore::new(1), streams: None, multiplexed: AtomicBool::new(false) }
            }
            version => {
                if version == HttpVersion::Http1Only {
                    builder = builder.http1_only();
                }
                let max = config.max_connections;
                if max <= RESERVED_FOR_REQUESTS {
                    return Err(Error::invalid_argument(
                        "max_connections",
                        format!(
                            "must be more than {RESERVED_FOR_REQUESTS} (the connections kept for short requests), not {max}"
                        ),
                    ));
                }
                builder = builder.pool_max_idle_per_host(max);
                Slots {
                    requests: transport::Semaphore::new(max),
                    streams: Some(transport::Semaphore::new(max - RESERVED_FOR_REQUESTS)),
                    multiplexed: AtomicBool::new(false),
                }
            }
        };
        let slots = Arc::new(slots);
        let client = builder
            // Uploads over HTTP/2: fewer, larger frames and a window that grows with the link.
            .http2_adaptive_window(true)
            .http2_max_frame_size(256 * 1024)
            .default_headers(headers)
            .user_agent(config.user_agent())
            .gzip(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| Error::config("cannot build the HTTP client").with_source(e))?;
        Ok(Http {
            client,
            api,
            retry: config.retry.clone(),
            unary: config.transport_timeout,
            body_idle: config.body_idle_timeout,
            sse_idle: config.sse_keepalive_timeout,
            slots,
        })
    }

    /// A slot for an event stream: [`StreamSlot::Full`] tells the caller to poll instead.
    pub fn try_stream_slot(&self) -> StreamSlot {
        match &self.slots.streams {
            Some(streams) if !self.slots.multiplexed.load(Ordering::Relaxed) => match streams.try_acquire() {
                Some(permit) => StreamSlot::Held(permit),
                None => StreamSlot::Full,
            },
            _ => StreamSlot::Unbounded,
        }
    }

    /// Waits for a connection slot unless requests are known to share one HTTP/2 connection
    /// (`None`: no bound applies).
    #[crate::maybe]
    async fn request_slot(&self) -> Option<transport::Permit> {
        if self.slots.multiplexed.load(Ordering::Relaxed) {
            return None;
        }
        self.slots.requests.acquire().await
    }

    /// Keeps `permit` for as long as `resp` lives (its body holds the connection), or lets it
    /// go, and the bound with it, when the answer came over HTTP/2.
    fn hold_slot(&self, resp: &mut Response, permit: Option<transport::Permit>) {
        let Some(permit) = permit else { return };
        if resp.version() == reqwest::Version::HTTP_2 {
            if !self.slots.multiplexed.swap(true, Ordering::Relaxed) {
                tracing::debug!("the server speaks HTTP/2: requests share one connection; no connection bound");
            }
            return;
        }
        resp.extensions_mut().insert(Arc::new(permit));
    }

    pub fn api(&self) -> &ApiUrl {
        &self.api
    }

    pub fn unary(&self) -> Timeout {
        Timeout::Unary(self.unary)
    }

    /// A streamed body (download, archive, upload): bounded per read by `body_idle_timeout`.
    pub fn streaming(&self) -> Timeout {
        Timeout::Streaming { idle: self.body_idle }
    }

    /// The time a file body may stay silent between two chunks (`body_idle_timeout`).
    pub fn idle_limit(&self) -> Duration {
        self.body_idle
    }

    /// The time an event stream may stay silent, keep-alives included
    /// (`sse_keepalive_timeout`).
    pub fn sse_idle_limit(&self) -> Duration {
        self.sse_idle
    }

    pub fn call(&self, method: Method, segments: &[&str]) -> Call {
        let mut call = Call::new(method, self.api.endpoint(segments), self.unary());
        call.template = route_template(segments);
        call
    }

    pub fn call_with_query<'a>(
        &self,
        method: Method,
        segments: &[&str],
        query: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Call {
        let mut call = Call::new(method, self.api.endpoint_with_query(segments, query), self.unary());
        call.template = route_template(segments);
        call
    }

    /// Sends `call`, retrying per the policy, and returns the raw response when its status is
    /// 2xx or 3xx. Any other status becomes an `Error` carrying the server's message.
    ///
    /// Each attempt has a span of its own (`contree.http`, the OpenTelemetry convention for
    /// HTTP clients: resends are new spans with `http.request.resend_count`); a retry is an
    /// event in the span of the attempt it repeats.
    #[crate::maybe]
    pub async fn send(&self, call: &Call) -> Result<Response> {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            if call.remaining() == Some(Duration::ZERO) {
                return Err(deadline_error(call, None, None));
            }
            let span = trace::request_span(call, attempts - 1);
            let started = Instant::now();
            let timeout = call.attempt_timeout();
            let outcome = match call.remaining() {
                // Async reqwest puts no bound on a streamed call before its headers arrive:
                // the deadline does.
                Some(left) => match transport::within(left, || {
                    transport::instrumented!(span.clone(), self.send_once(call, timeout))
                })
                .await
                {
                    Some(outcome) => outcome,
                    None => {
                        let err = deadline_error(call, None, None);
                        trace::record_failure(&span, &err, started.elapsed().as_millis() as u64);
                        return Err(err);
                    }
                },
                None => transport::instrumented!(span.clone(), self.send_once(call, timeout)).await,
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (failure, error_response) = match outcome {
                Ok(resp) if resp.status().is_success() || resp.status().is_redirection() => {
                    trace::record_response(&span, resp.status().as_u16(), elapsed_ms);
                    return Ok(resp);
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    trace::record_response(&span, status, elapsed_ms);
                    (Failure::Status { status, retry_after: retry_after(&resp) }, Ok(resp))
                }
                Err(Attempt::Fatal(err)) => {
                    trace::record_failure(&span, &err, elapsed_ms);
                    return Err(err);
                }
                Err(Attempt::Failed(failure, err)) => {
                    trace::record_failure(&span, &err, elapsed_ms);
                    span.in_scope(|| {
                        tracing::debug!(error.type = %trace::ErrorType(&err), error = %trace::redacted(&err), "contree request failed")
                    });
                    if err.is_timeout() && call.remaining() == Some(Duration::ZERO) {
                        return Err(deadline_error(call, None, Some(err)));
                    }
                    (failure, Err(err))
                }
            };
            match self.retry.decide(attempts, call.idempotent, &failure, rand::random::<f64>()) {
                RetryDecision::RetryAfter(delay) => {
                    if let Some(left) = call.remaining()
                        && delay >= left
                    {
                        // Waiting would end past the deadline: stop now with the timeout, and
                        // keep what the server said (its hint and its answer).
                        let last = match error_response {
                            Ok(resp) => self.status_error(call, resp).await,
                            Err(err) => err,
                        };
                        let hint = match failure {
                            Failure::Status { retry_after: Some(hint), .. } => Some(hint),
                            _ => None,
                        };
                        return Err(deadline_error(call, hint, Some(last)));
                    }
                    drop(error_response);
                    span.in_scope(|| {
                        tracing::info!(
                            delay_ms = delay.as_millis() as u64,
                            attempt = attempts,
                            "contree request retried"
                        )
                    });
                    drop(span);
                    transport::sleep(delay).await
                }
                RetryDecision::GiveUp => {
                    return Err(match error_response {
                        Ok(resp) => self.status_error(call, resp).await,
                        Err(err) => err,
                    });
                }
            }
        }
    }

    #[crate::maybe]
    async fn send_once(&self, call: &Call, timeout: Timeout) -> std::result::Result<Response, Attempt> {
        let mut req = self.client.request(call.method.clone(), call.url.clone());
        for (name, value) in &call.headers {
            req = req.header(name.clone(), value.clone());
        }
        req = match &call.payload {
            Payload::Empty => req,
            Payload::Json(bytes) => req.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes.clone()),
            Payload::Bytes(bytes) => {
                let body = match &call.progress {
                    None => bytes.clone().into(),
                    Some(p) => transport::bytes_body(bytes.clone(), p),
                };
                req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(body)
            }
            Payload::File(path) => {
                let body = transport::file_body(path, call.progress.as_ref()).await.map_err(Attempt::Fatal)?;
                req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(body)
            }
            Payload::Stream(stream) => {
                let body = transport::stream_body(stream, call.progress.as_ref()).map_err(Attempt::Fatal)?;
                req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(body)
            }
        };
        req = transport::apply_timeout(req, timeout);
        let permit = self.request_slot().await;
        let mut resp = req.send().await.map_err(|e| {
            let (failure, err) = classify(e);
            Attempt::Failed(failure, err.with_request(call.method.as_str(), redact_url(&call.url)))
        })?;
        self.hold_slot(&mut resp, permit);
        Ok(resp)
    }

    /// Turns a non-2xx response into an `Error`, reading the `{error, status}` body if any.
    #[crate::maybe]
    pub async fn status_error(&self, call: &Call, resp: Response) -> Error {
        let status = resp.status().as_u16();
        let retry_after = retry_after(&resp);
        let body = body_bytes(resp).await.unwrap_or_default();
        let message = error_message(status, &body);
        Error::from_status(status, message, retry_after).with_request(call.method.as_str(), redact_url(&call.url))
    }

    /// Sends and decodes a JSON answer.
    #[crate::maybe]
    pub async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        let resp = self.send(call).await?;
        let body = body_bytes(resp)
            .await
            .map_err(|e| classify(e).1.with_request(call.method.as_str(), redact_url(&call.url)))?;
        decode_json(call, &body)
    }

    /// Sends and ignores the body (any 2xx).
    #[crate::maybe]
    pub async fn unit(&self, call: &Call) -> Result<()> {
        let resp = self.send(call).await?;
        let _ = body_bytes(resp).await;
        Ok(())
    }
}

/// Reads a whole response body, keeping its connection slot (if any) until the last byte:
/// the connection goes back to the pool only then, and a slot freed earlier would let the
/// next request open a connection beside it.
#[crate::maybe]
pub(crate) async fn body_bytes(mut resp: Response) -> reqwest::Result<Bytes> {
    let slot = resp.extensions_mut().remove::<Arc<transport::Permit>>();
    let body = resp.bytes().await;
    drop(slot);
    body
}

/// Why one attempt did not produce a response.
enum Attempt {
    /// Failed in a way the retry policy may want to repeat.
    Failed(Failure, Error),
    /// Failed before anything was sent, for a reason a retry cannot fix (a local file).
    Fatal(Error),
}

/// The call reached its caller's deadline. `hint` is the server's `Retry-After` that did not
/// fit in the time left; `last` is the failure that would otherwise have been retried.
fn deadline_error(call: &Call, hint: Option<Duration>, last: Option<Error>) -> Error {
    let mut what = match hint {
        Some(hint) => format!(
            "the deadline was reached: the server asked to retry after {:.1}s, past the deadline",
            hint.as_secs_f64()
        ),
        None => "the deadline was reached".to_string(),
    };
    if let Some(last) = &last {
        match last.status() {
            Some(status) => what.push_str(&format!("; last answer: HTTP {status}: {}", last.message())),
            None => what.push_str(&format!("; last failure: {last}")),
        }
    }
    let mut err = Error::timeout(what).with_request(call.method.as_str(), redact_url(&call.url));
    if let Some(hint) = hint {
        err = err.with_retry_after(hint);
    }
    err
}

/// The server's `Retry-After`, if it sent a usable one.
pub(crate) fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| contree_core::retry::parse_retry_after(v, SystemTime::now()))
}

/// Decodes a JSON body, naming the endpoint when it does not parse.
pub(crate) fn decode_json<T: DeserializeOwned>(call: &Call, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::decode(format!("unexpected response from {} {}", call.method, call.url.path()), e)
            .with_request(call.method.as_str(), redact_url(&call.url))
    })
}

/// reqwest's error, classified for the retry policy and mapped to ours.
pub(crate) fn classify(e: reqwest::Error) -> (Failure, Error) {
    if e.is_timeout() {
        (Failure::Timeout, Error::timeout(e))
    } else if e.is_connect() {
        (Failure::Connect, Error::transport(false, e))
    } else if e.is_builder() {
        (Failure::Timeout, Error::invalid_argument("url", e))
    } else if e.is_decode() {
        (Failure::Transport, Error::decode("cannot decode the response body", e))
    } else {
        (Failure::Transport, Error::transport(true, e))
    }
}

/// URLs never carry credentials here, but a query may carry a user's path; keep it, it is
/// needed to understand the failure. This is the one place to change if that ever changes.
pub(crate) fn redact_url(url: &Url) -> String {
    url.as_str().to_string()
}

/// The server's `error` text, or the raw body (truncated) when it is not our JSON.
fn error_message(status: u16, body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<contree_core::models::ErrorBody>(body) {
        return parsed.message();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("request failed")
            .to_string()
    } else {
        text.chars().take(512).collect()
    }
}

/// The route template of the path `/v1/<segments>`, with ids as the OpenAPI document names
/// them, or `None` for a path the API does not have. Matched on the segments the driver
/// builds its URLs from, so it costs no parsing and no allocation.
pub(crate) fn route_template(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        ["whoami"] => "/v1/whoami",
        ["instances"] => "/v1/instances",
        ["images"] => "/v1/images",
        ["images", "import"] => "/v1/images/import",
        ["images", _, "tag"] => "/v1/images/{imageUUID}/tag",
        ["files"] => "/v1/files",
        ["files", _] => "/v1/files/{sha256}",
        ["operations"] => "/v1/operations",
        ["operations", _] => "/v1/operations/{operationId}",
        ["operations", _, "events"] => "/v1/operations/{operationId}/events",
        ["operations", _, "subprocesses"] => "/v1/operations/{operationId}/subprocesses",
        ["operations", _, "subprocesses", _] => "/v1/operations/{operationId}/subprocesses/{spid}",
        ["operations", _, "subprocesses", _, "stdin"] => "/v1/operations/{operationId}/subprocesses/{spid}/stdin",
        ["inspect"] => "/v1/inspect",
        ["inspect", ""] => "/v1/inspect/",
        ["inspect", _] => "/v1/inspect/{imageUUID}",
        ["inspect", _, ""] => "/v1/inspect/{image_uuid}/",
        ["inspect", _, "download"] => "/v1/inspect/{image_uuid}/download",
        ["inspect", _, "archive"] => "/v1/inspect/{image_uuid}/archive",
        ["inspect", _, "list"] => "/v1/inspect/{image_uuid}/list",
        ["inspect", _, "grep"] => "/v1/inspect/{image_uuid}/grep",
        _ => return None,
    })
}

#[cfg(test)]
mod route_tests {
    use super::route_template;

    #[test]
    fn templates_hide_ids_and_unknown_paths_have_none() {
        let id = "0b4f7c1e-8f2a-4d8e-9c51-1d2f3a4b5c6d";
        assert_eq!(route_template(&["operations", id]), Some("/v1/operations/{operationId}"));
        assert_eq!(route_template(&["operations", id, "events"]), Some("/v1/operations/{operationId}/events"));
        assert_eq!(route_template(&["inspect", id, ""]), Some("/v1/inspect/{image_uuid}/"));
        assert_eq!(route_template(&["inspect", ""]), Some("/v1/inspect/"));
        assert_eq!(route_template(&["images", "import"]), Some("/v1/images/import"));
        assert_eq!(route_template(&["images", id, "tag"]), Some("/v1/images/{imageUUID}/tag"));
        assert_eq!(route_template(&["nope", id]), None);
        for segments in
            [&["operations", id][..], &["inspect", id, "list"], &["operations", id, "subprocesses", "2", "stdin"]]
        {
            let template = route_template(segments).expect("a known route");
            assert!(!template.contains(id), "{template}");
        }
    }
}
