//! The SDK's `tracing` spans: one per operation (`contree.run`, `contree.import`) and, under
//! it, one per HTTP attempt (`contree.http`). Field names follow OpenTelemetry's semantic
//! conventions (`http.request.method`, `url.template`, `otel.kind`, …), so a
//! `tracing-opentelemetry` layer exports them as they are.
//!
//! Sharp edges:
//! - Nothing here may see a token, a header value, a request body or a query string: fields
//!   are the method, the route template, the host and port, ids and statuses. Error texts go
//!   through [`redacted`], which drops the query of any URL they quote.
//! - With no subscriber (or one that disables these spans) a span is a no-op handle: every
//!   field that costs anything to compute is recorded under `!span.is_disabled()`, or is a
//!   lazy `Display` that is only formatted when a subscriber records it.
//! - The operation's status and id are recorded on `Span::current()` deep in the driver; the
//!   entry points below make sure that is the operation's span.

use std::fmt;
use std::time::Instant;

use contree_core::{Error, Result};
use tracing::Span;
use tracing::field::{Empty, display};

use super::http::Call;
use super::image::Image;

/// The span of one operation, with the time it began (for `contree.duration_ms`).
#[derive(Debug, Clone)]
pub(crate) struct OpSpan {
    span: Span,
    begun: Instant,
}

impl OpSpan {
    /// A run of a command from `image` (`contree.run`).
    pub(crate) fn run(image: &Image) -> OpSpan {
        let span = tracing::info_span!(
            "contree.run",
            contree.image = Empty,
            contree.operation.id = Empty,
            contree.operation.status = Empty,
            process.exit.code = Empty,
            contree.duration_ms = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        if !span.is_disabled() {
            match (&image.uuid, &image.tag) {
                (Some(uuid), _) => span.record("contree.image", display(uuid)),
                (None, Some(tag)) => span.record("contree.image", display(format_args!("tag:{tag}"))),
                (None, None) => span.record("contree.image", ""),
            };
        }
        OpSpan { span, begun: Instant::now() }
    }

    /// An import of a registry image (`contree.import`); `reference` is the image reference
    /// as given (it names an image, never credentials).
    pub(crate) fn import(reference: &str) -> OpSpan {
        let span = tracing::info_span!(
            "contree.import",
            contree.image = reference,
            contree.operation.id = Empty,
            contree.operation.status = Empty,
            contree.duration_ms = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        OpSpan { span, begun: Instant::now() }
    }

    /// The span itself, to enter or to instrument a future with.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records how the operation ended: its duration and, on failure, the error's kind.
    pub(crate) fn end<T>(&self, result: &Result<T>) {
        match result {
            Ok(_) => self.ok(),
            Err(e) => self.failed(e),
        }
    }

    /// [`end`](Self::end) for a run, adding the command's exit code.
    pub(crate) fn end_run(&self, result: &Result<Image>) {
        match result {
            Ok(image) => self.succeeded(image),
            Err(e) => self.failed(e),
        }
    }

    /// The run finished with this result image: its exit code, duration and OK status.
    pub(crate) fn succeeded(&self, image: &Image) {
        if let Some(out) = &image.output
            && !self.span.is_disabled()
        {
            self.span.record("process.exit.code", out.status.code_or_minus_one());
        }
        self.ok();
    }

    fn ok(&self) {
        if self.span.is_disabled() {
            return;
        }
        self.span.record("contree.duration_ms", self.begun.elapsed().as_millis() as u64);
        self.span.record("otel.status_code", "OK");
    }

    /// The operation failed (or could not be followed): its duration and the error's kind.
    pub(crate) fn failed(&self, e: &Error) {
        if self.span.is_disabled() {
            return;
        }
        self.span.record("contree.duration_ms", self.begun.elapsed().as_millis() as u64);
        self.span.record("error.type", display(ErrorType(e)));
        self.span.record("otel.status_code", "ERROR");
        if e.is_operation_timed_out() {
            self.span.record("contree.operation.status", "TIMED_OUT");
        }
        self.span
            .in_scope(|| tracing::debug!(error.type = %ErrorType(e), error = %redacted(e), "contree operation failed"));
    }
}

/// Records the operation id on the current span (the operation's, when called inside it).
pub(crate) fn record_operation_id(id: &str) {
    Span::current().record("contree.operation.id", id);
}

/// Records the operation's terminal status on the current span.
pub(crate) fn record_operation_status(status: &impl fmt::Display) {
    let span = Span::current();
    if !span.is_disabled() {
        span.record("contree.operation.status", display(status));
    }
}

/// The span of one HTTP attempt. `resend_count` is 0 for the first attempt.
pub(crate) fn request_span(call: &Call, resend_count: u32) -> Span {
    let span = tracing::info_span!(
        "contree.http",
        otel.name = Empty,
        otel.kind = "client",
        http.request.method = call.method.as_str(),
        url.template = call.template,
        server.address = Empty,
        server.port = Empty,
        http.request.resend_count = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
        contree.elapsed_ms = Empty,
    );
    if !span.is_disabled() {
        match call.template {
            Some(template) => span.record("otel.name", display(format_args!("{} {template}", call.method))),
            None => span.record("otel.name", call.method.as_str()),
        };
        if let Some(host) = call.url.host_str() {
            span.record("server.address", host);
        }
        if let Some(port) = call.url.port_or_known_default() {
            span.record("server.port", port);
        }
        if resend_count > 0 {
            span.record("http.request.resend_count", resend_count);
        }
    }
    span
}

/// Records an attempt's answer: its status and, for 4xx/5xx, the error status (the OTel HTTP
/// client convention).
pub(crate) fn record_response(span: &Span, status: u16, elapsed_ms: u64) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status);
    span.record("contree.elapsed_ms", elapsed_ms);
    if status >= 400 {
        span.record("error.type", status);
        span.record("otel.status_code", "ERROR");
    }
}

/// Records an attempt that got no answer.
pub(crate) fn record_failure(span: &Span, err: &Error, elapsed_ms: u64) {
    if span.is_disabled() {
        return;
    }
    span.record("contree.elapsed_ms", elapsed_ms);
    span.record("error.type", display(ErrorType(err)));
    span.record("otel.status_code", "ERROR");
}

/// An error's kind as a short, low-cardinality name for `error.type` (`timeout`,
/// `transport`, `operation_failed`, …).
pub(crate) struct ErrorType<'a>(pub &'a Error);

impl fmt::Display for ErrorType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ErrorKind`'s Debug name in snake case: `OperationTimedOut` → `operation_timed_out`.
        let name = format!("{:?}", self.0.kind());
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    f.write_str("_")?;
                }
                fmt::Write::write_char(f, c.to_ascii_lowercase())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// An error's text for logs and span events: its `Display` with the query of every URL it
/// quotes removed (queries carry users' paths and search patterns). Lazy: formatted only
/// when a subscriber records it.
pub(crate) fn redacted(err: &Error) -> Redacted<'_> {
    Redacted(err)
}

/// See [`redacted`].
pub(crate) struct Redacted<'a>(&'a Error);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&strip_url_queries(&self.0.to_string()))
    }
}

/// `text` with the query of every `http://` or `https://` URL in it removed. A query the
/// `url` crate wrote is percent-encoded, so it ends at the first character a query never
/// holds raw (a space, `)`, `]`, `,`, …).
pub(crate) fn strip_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let start = match (rest.find("http://"), rest.find("https://")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let (before, url_on) = rest.split_at(start);
        out.push_str(before);
        let url_end = url_on
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ']' | ',' | '"' | '\'' | '>'))
            .unwrap_or(url_on.len());
        let url = &url_on[..url_end];
        match url.find('?') {
            Some(q) => out.push_str(&url[..q]),
            None => out.push_str(url),
        }
        rest = &url_on[url_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_removed_from_every_url() {
        assert_eq!(
            strip_url_queries("GET http://h:1/v1/inspect/x/list?path=%2Fsecret timed out (https://a/b?c=d)"),
            "GET http://h:1/v1/inspect/x/list timed out (https://a/b)"
        );
        assert_eq!(strip_url_queries("no url here?x=1"), "no url here?x=1");
        assert_eq!(strip_url_queries("http://h/a http://h/b?q=1"), "http://h/a http://h/b");
    }

    #[test]
    fn error_types_are_snake_case_kinds() {
        let e = Error::operation_timed_out("op", std::time::Duration::from_secs(1));
        assert_eq!(ErrorType(&e).to_string(), "operation_timed_out");
        let e = Error::timeout("slow");
        assert_eq!(ErrorType(&e).to_string(), "timeout");
    }
}
