//! One `tracing` span per HTTP request (`http.request`, at DEBUG), with OpenTelemetry's HTTP server
//! field names: `http.request.method`, `http.route` (the route template, from axum's
//! `MatchedPath`), `url.path`, `http.response.status_code`, `otel.kind = "server"`.
//!
//! Never recorded: headers (the bearer token is one), bodies, the query string.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::{Empty, display};

/// Wraps the whole handling of a request (auth and routing included) in its span, and
/// records how it ended. The span ends with the response head; a streamed body (events,
/// downloads) goes on after it.
pub(crate) async fn request_span(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // DEBUG, as tower-http's spans were: under the default `contree_local=info` a request
    // costs no span bookkeeping; operations (INFO) are few next to the sandboxes they start.
    let span = tracing::debug_span!(
        "http.request",
        otel.name = Empty,
        otel.kind = "server",
        http.request.method = %method,
        http.route = Empty,
        url.path = req.uri().path(),
        http.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
        contree.elapsed_ms = Empty,
    );
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    if !span.is_disabled() {
        let status = resp.status().as_u16();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        span.record("http.response.status_code", status);
        span.record("contree.elapsed_ms", elapsed_ms);
        if resp.extensions().get::<RouteMatched>().is_none() {
            // No route (unknown path, or refused before routing): the method alone.
            span.record("otel.name", method.as_str());
        }
        // Server spans: only 5xx are the server's failures (4xx are the client's).
        if status >= 500 {
            span.record("error.type", status);
            span.record("otel.status_code", "ERROR");
        }
        span.in_scope(|| tracing::debug!(status, elapsed_ms, "request finished"));
    }
    resp
}

/// Records the route template of a request that matched a route (it runs after routing,
/// where `MatchedPath` is known; [`request_span`] runs before it).
pub(crate) async fn record_route(matched: MatchedPath, req: Request, next: Next) -> Response {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("http.route", matched.as_str());
        span.record("otel.name", display(format_args!("{} {}", req.method(), matched.as_str())));
    }
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(RouteMatched);
    resp
}

/// Marks a response whose request matched a route (and so has its `otel.name`).
#[derive(Clone, Copy)]
struct RouteMatched;
