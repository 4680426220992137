//! Waiting for an operation by polling its status, with the Python SDK's curve.
//!
//! The server's `Retry-After` on a status answer is honoured (up to the curve's maximum). A
//! client-side deadline cancels the operation on the server (best effort) and yields
//! OperationTimedOut.

use std::time::{Duration, Instant};

use contree_core::models::{OperationResponse, OperationStatus};
use contree_core::poll::PollCurve;
use contree_core::{Error, Result};
use reqwest::Method;

use super::client::Client;
use crate::transport;

/// Fetches an operation's status once (`GET /operations/{id}`), with the server's suggested
/// delay before the next look.
#[crate::maybe]
pub(crate) async fn get(client: &Client, id: &str, inflight: bool) -> Result<(OperationResponse, Option<Duration>)> {
    get_by(client, id, inflight, None).await
}

/// [`get`], ending by `deadline` (retries and their pauses included) with a Timeout error.
#[crate::maybe]
pub(crate) async fn get_by(
    client: &Client,
    id: &str,
    inflight: bool,
    deadline: Option<Instant>,
) -> Result<(OperationResponse, Option<Duration>)> {
    let http = client.http();
    let query: Vec<(&str, String)> = if inflight { vec![("inflight", "1".into())] } else { Vec::new() };
    let call = http.call_with_query(Method::GET, &["operations", id], query).deadline(deadline);
    let resp = http.send(&call).await?;
    let hint = super::http::retry_after(&resp);
    let body = super::http::body_bytes(resp).await.map_err(|e| super::http::classify(e).1)?;
    let op: OperationResponse = super::http::decode_json(&call, &body)?;
    Ok((op, hint))
}

/// Cancels an operation (`DELETE /operations/{id}`). A 409 (already finished) is not an error.
#[crate::maybe]
pub(crate) async fn cancel(client: &Client, id: &str) -> Result<()> {
    cancel_by(client, id, None).await
}

/// [`cancel`], giving up at `deadline`.
#[crate::maybe]
pub(crate) async fn cancel_by(client: &Client, id: &str, deadline: Option<Instant>) -> Result<()> {
    let http = client.http();
    match http.unit(&http.call(Method::DELETE, &["operations", id]).deadline(deadline)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Polls until the operation is terminal. FAILED and CANCELLED become errors; the deadline
/// cancels the operation and gives OperationTimedOut.
#[crate::maybe]
pub(crate) async fn wait(client: &Client, id: &str, timeout: Duration) -> Result<OperationResponse> {
    let config = client.config();
    let curve = PollCurve {
        min: config.operation_poll_min,
        max: config.operation_poll_max,
        steepness: config.operation_poll_backoff_grow,
    };
    let started = Instant::now();
    let deadline = started + timeout;
    let mut not_found = 0u32;
    loop {
        let spent = started.elapsed();
        if spent >= timeout {
            // Best effort, and briefly: the caller's deadline has passed already.
            let grace = Some(Instant::now() + Duration::from_millis(500));
            if let Err(e) = cancel_by(client, id, grace).await {
                tracing::warn!(operation = id, error = %super::trace::redacted(&e), "could not cancel the timed-out operation");
            }
            return Err(Error::operation_timed_out(id, spent));
        }
        let hint = match get_by(client, id, false, Some(deadline)).await {
            Ok((op, hint)) => {
                if op.status.is_terminal() {
                    return finished(id, op);
                }
                hint
            }
            // A just-created operation can briefly be invisible to a replica.
            Err(e) if e.is_not_found() && not_found < config.operation_poll_not_found_limit => {
                not_found += 1;
                None
            }
            // The deadline cut the status read short: the loop reports the timeout.
            Err(e) if e.is_timeout() && Instant::now() >= deadline => continue,
            Err(e) => return Err(e.with_operation(id)),
        };
        let nap = curve.next_sleep(started.elapsed(), timeout, hint, rand::random::<f64>());
        transport::sleep(nap.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Maps a terminal operation to its outcome.
pub(crate) fn finished(id: &str, op: OperationResponse) -> Result<OperationResponse> {
    super::trace::record_operation_status(&op.status);
    match op.status {
        OperationStatus::Success => Ok(op),
        OperationStatus::Cancelled => Err(Error::operation_cancelled(id)),
        _ => {
            let reason = op.error.clone().unwrap_or_else(|| "the operation failed (no reason given)".into());
            Err(Error::operation_failed(id, reason))
        }
    }
}
