//! `GET /operations/{id}/events`: the event log as Server-Sent Events, with `follow`,
//! `since` / `Last-Event-Id`, `spid` filtering and keepalive comments.
//!
//! When the client accepts gzip, the stream is gzipped here rather than by the compression
//! layer, with a sync flush after every frame, so each event reaches the client as soon as
//! it is written instead of waiting in the compressor's buffer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use contree_core::models::OperationEvent;
use flate2::Compression;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::error::ApiError;
use super::operations::load;
use super::params::{Query, parse_uuid};
use super::{AppState, blocking};
use crate::ops::{LiveOp, stored_events};

/// Frames buffered towards a slow client before the pump waits.
const FRAME_BUFFER: usize = 64;

/// The gzip member header: deflate, no name or time, unknown OS (as flate2 writes it).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final deflate block (fixed Huffman, end-of-block only): closes the stream.
const DEFLATE_END: [u8; 2] = [0x03, 0x00];
/// Bound on compress calls per frame; each call has room for the whole frame, so one or two
/// are the norm.
const MAX_COMPRESS_CALLS: usize = 64;

thread_local! {
    /// The deflate state of this thread, reset before each frame. A deflate compressor holds
    /// ~300 KB of tables; one per open stream made every follower of a queued run cost that
    /// (300 MB for 1,000 runs in flight), and glibc kept the freed tables afterwards. One per
    /// executor thread bounds it to a few.
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(Compression::fast(), false));
}

/// Turns frames into body chunks, gzipped with a sync flush per frame when asked for.
///
/// Each frame is deflated on its own (the compressor is reset, so no back-reference reaches
/// into an earlier frame) and sync-flushed, which ends it on a byte boundary without
/// marking the stream final: the chunks concatenate into one valid deflate stream inside
/// one gzip member, whose CRC and length are kept here. The stream thus holds no
/// compressor between frames, only 8 bytes of state.
pub(crate) struct FrameEncoder {
    gz: Option<GzState>,
}

struct GzState {
    crc: flate2::Crc,
    header_sent: bool,
}

impl FrameEncoder {
    pub fn new(gzip: bool) -> Self {
        FrameEncoder { gz: gzip.then(|| GzState { crc: flate2::Crc::new(), header_sent: false }) }
    }

    /// One chunk to send for `frame`.
    pub fn encode(&mut self, frame: &[u8]) -> Bytes {
        let Some(gz) = &mut self.gz else { return Bytes::copy_from_slice(frame) };
        let mut out = Vec::with_capacity(frame.len() + GZIP_HEADER.len() + 64);
        if !gz.header_sent {
            out.extend_from_slice(&GZIP_HEADER);
            gz.header_sent = true;
        }
        gz.crc.update(frame);
        DEFLATE.with(|d| deflate_sync(&mut d.borrow_mut(), frame, &mut out));
        Bytes::from(out)
    }

    /// The last chunk (the gzip trailer), if any.
    pub fn finish(self) -> Option<Bytes> {
        let gz = self.gz?;
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + DEFLATE_END.len() + 8);
        if !gz.header_sent {
            out.extend_from_slice(&GZIP_HEADER);
        }
        out.extend_from_slice(&DEFLATE_END);
        out.extend_from_slice(&gz.crc.sum().to_le_bytes());
        out.extend_from_slice(&gz.crc.amount().to_le_bytes());
        Some(Bytes::from(out))
    }
}

/// Deflates `input` from a fresh state into `out`, ending with a sync flush.
fn deflate_sync(d: &mut flate2::Compress, input: &[u8], out: &mut Vec<u8>) {
    d.reset();
    for _ in 0..MAX_COMPRESS_CALLS {
        let consumed = d.total_in() as usize;
        out.reserve(input.len().saturating_sub(consumed) + 64);
        // Compressing into a Vec can only fail on a corrupt state, which a reset clears.
        if d.compress_vec(&input[consumed.min(input.len())..], out, flate2::FlushCompress::Sync).is_err() {
            break;
        }
        // Done once all input is in and the flush did not run out of room.
        if d.total_in() as usize >= input.len() && out.len() < out.capacity() {
            break;
        }
    }
}

/// The SSE frame of one event.
pub(crate) fn frame(e: &OperationEvent) -> Vec<u8> {
    let data = serde_json::to_string(e).unwrap_or_default();
    format!("id: {}\nevent: {}\ndata: {}\n\n", e.id, e.event_type.as_str(), data).into_bytes()
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|part| {
            let mut it = part.split(';');
            let name = it.next().unwrap_or("").trim();
            let q_zero = it.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !q_zero
        })
    })
}

/// Where the events come from.
enum Source {
    /// A running operation: its in-memory log, plus live events when following.
    Live(Arc<LiveOp>),
    /// A finished operation: the stored log.
    Stored(Vec<OperationEvent>),
}

struct Pump {
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    enc: FrameEncoder,
    spid: Option<u32>,
    last: u64,
}

impl Pump {
    /// Sends `e` (if it passes the filter); `false` when the client is gone.
    async fn event(&mut self, e: &OperationEvent) -> bool {
        if e.id <= self.last {
            return true;
        }
        self.last = e.id;
        if self.spid.is_some_and(|s| e.spid != Some(s)) {
            return true;
        }
        let chunk = self.enc.encode(&frame(e));
        self.tx.send(Ok(chunk)).await.is_ok()
    }

    async fn comment(&mut self, text: &str) -> bool {
        let chunk = self.enc.encode(format!(": {text}\n\n").as_bytes());
        self.tx.send(Ok(chunk)).await.is_ok()
    }

    async fn close(self) {
        if let Some(tail) = self.enc.finish() {
            let _ = self.tx.send(Ok(tail)).await;
        }
    }
}

async fn run_pump(source: Source, mut pump: Pump, follow: bool, keepalive: Duration) {
    let live = match source {
        Source::Stored(events) => {
            for e in &events {
                if !pump.event(e).await {
                    return;
                }
            }
            return pump.close().await;
        }
        Source::Live(live) => live,
    };
    let (snapshot, mut rx) = live.subscribe(pump.last);
    let mut done = false;
    for e in &snapshot {
        done |= e.is_completion();
        if !pump.event(e).await {
            return;
        }
    }
    if done || !follow {
        return pump.close().await;
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    loop {
        tokio::select! {
            r = rx.recv() => {
                let batch = match r {
                    Ok(e) => vec![e],
                    // Fell behind the fan-out, or the sender is gone: re-read the log.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => {
                        live.events_after(pump.last)
                    }
                };
                for e in &batch {
                    done |= e.is_completion();
                    if !pump.event(e).await {
                        return;
                    }
                }
                if done {
                    break;
                }
            }
            _ = ticker.tick() => {
                if !pump.comment("keepalive").await {
                    return;
                }
            }
            _ = pump.tx.closed() => return,
        }
    }
    pump.close().await;
}

/// `GET /operations/{id}/events?follow&since&spid` (+ `Last-Event-Id`).
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(op): Path<String>,
    q: Query,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uuid = parse_uuid(&op, "operation")?;
    let follow = q.flag("follow");
    let spid = match q.int("spid")? {
        None => None,
        Some(s) => Some(u32::try_from(s).map_err(|_| ApiError::bad_request("`spid` must be 0 or more"))?),
    };
    // `Last-Event-Id` overrides `since`; a negative `since` (some clients send -1) means "from
    // the start". Ids start at 1, so 0 is the start too.
    let since = match headers.get("last-event-id") {
        Some(v) => {
            let s = v.to_str().unwrap_or("").trim();
            Some(s.parse::<i64>().map_err(|_| ApiError::bad_request("`Last-Event-Id` must be an integer"))?)
        }
        None => q.int("since")?,
    };
    let since = since.unwrap_or(0).max(0) as u64;
    let source = match state.ops.live(uuid) {
        Some(l) => Source::Live(l),
        None => {
            let state = state.clone();
            blocking(move || {
                load(&state, uuid)?;
                Ok(Source::Stored(stored_events(&state.ops.store, uuid, Some(since))?))
            })
            .await?
        }
    };
    let gzip = accepts_gzip(&headers);
    let (tx, rx) = mpsc::channel(FRAME_BUFFER);
    let pump = Pump { tx, enc: FrameEncoder::new(gzip), spid, last: since };
    tokio::spawn(run_pump(source, pump, follow, state.keepalive));
    let mut resp = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzDecoder;
    use std::io::Write;

    #[test]
    fn each_gzip_chunk_decodes_on_its_own() {
        let mut enc = FrameEncoder::new(true);
        let mut dec = GzDecoder::new(Vec::new());
        dec.write_all(&enc.encode(b"id: 1\nevent: init\ndata: {}\n\n")).unwrap();
        dec.flush().unwrap();
        // The first frame is readable before anything else was sent.
        assert_eq!(dec.get_ref().as_slice(), b"id: 1\nevent: init\ndata: {}\n\n");
        dec.write_all(&enc.encode(b": keepalive\n\n")).unwrap();
        dec.write_all(&enc.finish().unwrap()).unwrap();
        let all = dec.finish().unwrap();
        assert!(all.ends_with(b": keepalive\n\n"));
    }

    /// Many frames, some large and repetitive, then the trailer: one gzip member that any
    /// decoder reads back whole, with the CRC and length checked.
    #[test]
    fn frames_concatenate_into_one_valid_gzip_member() {
        use std::io::Read;
        let mut enc = FrameEncoder::new(true);
        let mut wire = Vec::new();
        let mut plain = Vec::new();
        for i in 0..200 {
            let frame = format!("id: {i}\nevent: stdout\ndata: {}\n\n", "xyz".repeat(i * 37)).into_bytes();
            wire.extend_from_slice(&enc.encode(&frame));
            plain.extend_from_slice(&frame);
        }
        wire.extend_from_slice(&enc.finish().unwrap());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(wire.as_slice()).read_to_end(&mut back).unwrap();
        assert_eq!(back, plain);
        assert!(wire.len() < plain.len() / 4, "{} of {}", wire.len(), plain.len());
        // A stream with no frames is still a valid, empty gzip body.
        let empty = FrameEncoder::new(true).finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(empty.as_ref()).read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("deflate, gzip;q=1.0"));
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0"));
        assert!(!accepts_gzip(&h));
    }
}
