//! A fault-injecting HTTP proxy for the fault suites: it sits between the SDK and a real
//! server (contree-local) and misbehaves the way networks and proxies do, as each test
//! scripts it.
//!
//! It speaks HTTP/1.1 on both sides (hyper in front, reqwest behind) and runs on a runtime of
//! its own, so blocking tests can drive it from plain threads. Every request is logged with
//! whether it reached the server, which is how the suites count spawns server-side.
//!
//! Faults are [`Rule`]s: a method, a path pattern, how many requests they hit, and a
//! [`Fault`]. The first rule with hits left that matches a request applies to it. The proxy
//! asks the server for identity encoding (it drops `Accept-Encoding`) so it can read event
//! streams frame by frame.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// What to do to a request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After`, if given) without asking the server.
    Status { status: u16, retry_after: Option<&'static str> },
    /// Close the connection as soon as the request arrives: the server never sees it.
    DropBeforeForward,
    /// Forward the request, wait for the server's answer, then close the connection without
    /// passing the answer on: the server did the work, the client never hears of it.
    DropAfterForward,
    /// Wait this long before forwarding (a slow server or a congested link).
    Delay(Duration),
    /// Forward, and cut the event stream of the answer as [`Cut`] says.
    CutEvents(Cut),
    /// Forward, pass `after` bytes of the answer's body, then send nothing for `pause`.
    StallBody { after: usize, pause: Duration },
}

/// Where and how an event stream is cut.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// Right after the first event of this type: cleanly (the body ends) or not (the
    /// connection breaks).
    After { event: &'static str, clean: bool },
    /// In the middle of the first event of this type: half its bytes, then a broken
    /// connection.
    Inside { event: &'static str },
    /// Cleanly, just before the first event of this type (it is never delivered).
    Before { event: &'static str },
}

/// Which requests a rule applies to, and how often.
#[derive(Debug, Clone)]
pub struct Rule {
    method: &'static str,
    path: PathMatch,
    hits_left: Option<usize>,
    fault: Fault,
}

#[derive(Debug, Clone)]
enum PathMatch {
    Exact(String),
    EndsWith(String),
    Contains(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::EndsWith(p) => path.ends_with(p.as_str()),
            PathMatch::Contains(p) => path.contains(p.as_str()),
        }
    }
}

impl Rule {
    /// Requests with this method and exactly this path.
    pub fn exact(method: &'static str, path: impl Into<String>, fault: Fault) -> Rule {
        Rule { method, path: PathMatch::Exact(path.into()), hits_left: None, fault }
    }

    /// Requests with this method whose path ends with `suffix` (`/events`, `/download`).
    pub fn ends_with(method: &'static str, suffix: impl Into<String>, fault: Fault) -> Rule {
        Rule { method, path: PathMatch::EndsWith(suffix.into()), hits_left: None, fault }
    }

    /// Requests with this method whose path contains `part`.
    pub fn contains(method: &'static str, part: impl Into<String>, fault: Fault) -> Rule {
        Rule { method, path: PathMatch::Contains(part.into()), hits_left: None, fault }
    }

    /// Applies to the next `n` matching requests only (default: all of them).
    pub fn times(mut self, n: usize) -> Rule {
        self.hits_left = Some(n);
        self
    }

    fn applies(&mut self, method: &str, path: &str) -> Option<Fault> {
        if self.hits_left == Some(0) || !self.method.eq_ignore_ascii_case(method) || !self.path.matches(path) {
            return None;
        }
        if let Some(n) = &mut self.hits_left {
            *n -= 1;
        }
        Some(self.fault.clone())
    }
}

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub last_event_id: Option<String>,
    /// Whether the request was passed on to the server.
    pub forwarded: bool,
    /// The fault applied to it, if any.
    pub fault: Option<String>,
}

struct State {
    upstream: Mutex<String>,
    /// The server is "down": new requests get 502, open bodies break.
    down: tokio::sync::watch::Sender<bool>,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Seen>>,
    http: reqwest::Client,
}

/// A running proxy. Dropping it stops accepting connections.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn proxy_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("fault-proxy")
            .build()
            .expect("proxy runtime")
    })
}

impl FaultProxy {
    /// A proxy to `upstream` (a base URL such as `http://127.0.0.1:41234`), listening on a
    /// fresh loopback port. Callable from any thread, inside or outside a runtime.
    pub fn start(upstream: &str) -> FaultProxy {
        let http = reqwest::Client::builder()
            .no_gzip()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy client");
        let state = Arc::new(State {
            upstream: Mutex::new(upstream.trim_end_matches('/').to_string()),
            down: tokio::sync::watch::Sender::new(false),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            http,
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let serving = state.clone();
        proxy_runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            tokio::select! {
                _ = accept_loop(listener, serving) => {}
                _ = stopped => {}
            }
        });
        FaultProxy { addr, state, stop: Some(stop) }
    }

    /// The proxy's base URL, to give the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule (after the ones already there).
    pub fn add(&self, rule: Rule) -> &Self {
        self.state.rules.lock().unwrap().push(rule);
        self
    }

    /// Removes every rule: from now on the proxy passes everything through.
    pub fn heal(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// Points the proxy at another server (a restarted one).
    pub fn set_upstream(&self, upstream: &str) {
        *self.state.upstream.lock().unwrap() = upstream.trim_end_matches('/').to_string();
    }

    /// Starts or ends an outage, as a reverse proxy sees a server that went away: while it
    /// lasts, every request is answered 502 without reaching the server, and the bodies
    /// being passed on when it starts break.
    pub fn set_down(&self, down: bool) {
        self.state.down.send_replace(down);
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests with this method whose path matches exactly.
    pub fn seen_to(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.method == method && s.path == path).collect()
    }

    /// How many spawns (`POST /v1/instances`) reached the server.
    pub fn spawns_forwarded(&self) -> usize {
        self.seen_to("POST", "/v1/instances").iter().filter(|s| s.forwarded).count()
    }

    /// How many event stream connects were made.
    pub fn event_connects(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.method == "GET" && s.path.ends_with("/events")).collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            // A fault that drops the connection fires this; dropping the hyper connection
            // closes the socket with no answer.
            let (drop_tx, mut drop_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            let service = hyper::service::service_fn(move |req| handle(state.clone(), drop_tx.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = drop_rx.recv() => {}
            }
        });
    }
}

fn log(state: &State, req: &Request<Incoming>, fault: Option<&Fault>) -> usize {
    let mut log = state.log.lock().unwrap();
    log.push(Seen {
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        last_event_id: req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string),
        forwarded: false,
        fault: fault.map(|f| format!("{f:?}")),
    });
    log.len() - 1
}

fn mark_forwarded(state: &State, index: usize) {
    if let Some(seen) = state.log.lock().unwrap().get_mut(index) {
        seen.forwarded = true;
    }
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut resp = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed_unsync());
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    resp
}

async fn handle(
    state: Arc<State>,
    drop_conn: tokio::sync::mpsc::UnboundedSender<()>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let fault = {
        let mut rules = state.rules.lock().unwrap();
        rules.iter_mut().find_map(|r| r.applies(req.method().as_str(), req.uri().path()))
    };
    if *state.down.borrow() {
        log(&state, &req, Some(&Fault::Status { status: 502, retry_after: None }));
        return Ok(full(502, "{\"error\":\"bad gateway: the server is down\",\"status\":502}"));
    }
    let index = log(&state, &req, fault.as_ref());
    match fault {
        Some(Fault::Status { status, retry_after }) => {
            let body = format!("{{\"error\":\"injected by the fault proxy: HTTP {status}\",\"status\":{status}}}");
            let mut resp = full(status, body);
            resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
            if let Some(ra) = retry_after {
                resp.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            Ok(resp)
        }
        Some(Fault::DropBeforeForward) => {
            let _ = drop_conn.send(());
            std::future::pending().await
        }
        Some(Fault::DropAfterForward) => {
            let _ = forward(&state, req).await;
            mark_forwarded(&state, index);
            let _ = drop_conn.send(());
            std::future::pending().await
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            let resp = forward(&state, req).await;
            mark_forwarded(&state, index);
            Ok(answer(&state, resp, None))
        }
        Some(fault @ (Fault::CutEvents(_) | Fault::StallBody { .. })) => {
            let resp = forward(&state, req).await;
            mark_forwarded(&state, index);
            Ok(answer(&state, resp, Some(fault)))
        }
        None => {
            let resp = forward(&state, req).await;
            mark_forwarded(&state, index);
            Ok(answer(&state, resp, None))
        }
    }
}

/// Sends the request on to the server; `Err` when the server cannot be reached.
async fn forward(state: &State, req: Request<Incoming>) -> Result<reqwest::Response, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let upstream = state.upstream.lock().unwrap().clone();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = state.http.request(parts.method.clone(), format!("{upstream}{path_and_query}"));
    for (name, value) in &parts.headers {
        if matches!(name.as_str(), "host" | "accept-encoding" | "connection" | "content-length" | "transfer-encoding") {
            continue;
        }
        out = out.header(name, value);
    }
    out.body(body).send().await
}

/// The server's answer as the client will see it, with `fault` applied to the body.
fn answer(state: &State, resp: Result<reqwest::Response, reqwest::Error>, fault: Option<Fault>) -> Response<ProxyBody> {
    let resp = match resp {
        Ok(resp) => resp,
        // What a real reverse proxy says when the server is down.
        Err(e) => return full(502, format!("{{\"error\":\"bad gateway: {e}\",\"status\":502}}")),
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    for (name, value) in resp.headers() {
        if matches!(name.as_str(), "connection" | "transfer-encoding") {
            continue;
        }
        if matches!(fault, Some(Fault::CutEvents(_))) && name.as_str() == "content-length" {
            continue;
        }
        out = out.header(name, value);
    }
    let upstream = resp.bytes_stream().map(|r| r.map_err(|e| Box::new(e) as BoxError)).boxed();
    let body: futures_util::stream::BoxStream<'static, Result<Bytes, BoxError>> = match fault {
        Some(Fault::CutEvents(cut)) => cut_events(upstream, cut),
        Some(Fault::StallBody { after, pause }) => stall(upstream, after, pause),
        _ => upstream,
    };
    let body = breaks_on_outage(body, state.down.subscribe());
    let body = StreamBody::new(body.map(|r| r.map(Frame::data)));
    out.body(BodyExt::boxed_unsync(body)).unwrap_or_else(|_| full(502, "cannot build the answer"))
}

/// Passes `body` on until an outage starts, then breaks it.
fn breaks_on_outage(
    body: futures_util::stream::BoxStream<'static, Result<Bytes, BoxError>>,
    down: tokio::sync::watch::Receiver<bool>,
) -> futures_util::stream::BoxStream<'static, Result<Bytes, BoxError>> {
    futures_util::stream::unfold((body, down, false), |(mut body, mut down, broken)| async move {
        if broken {
            return None;
        }
        let next = tokio::select! {
            item = body.next() => Some(item),
            _ = down.wait_for(|d| *d) => None,
        };
        match next {
            Some(item) => item.map(|item| (item, (body, down, false))),
            None => Some((Err("the server went away".into()), (body, down, true))),
        }
    })
    .boxed()
}

/// The SSE frame type (`event:` field), if the frame has one.
fn frame_event(frame: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(frame);
    text.lines().find_map(|l| l.strip_prefix("event:")).map(|v| v.trim().to_string())
}

/// Passes the event stream on frame by frame until the cut.
fn cut_events(
    upstream: futures_util::stream::BoxStream<'static, Result<Bytes, BoxError>>,
    cut: Cut,
) -> futures_util::stream::BoxStream<'static, Result<Bytes, BoxError>> {
    struct St {
        upstream: futures_util::stream::BoxStream<'static, Result<Bytes, BoxError>>,
        buf: BytesMut,
        out: std::collections::VecDeque<Result<Bytes, BoxError>>,
        done: bool,
    }
    let st = St { upstream, buf: BytesMut::new(), out: Default::default(), done: false };
    futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(item) = st.out.pop_front() {
                if item.is_err() {
                    // Let the frames before the break reach the client first: hyper drops
                    // what it has not flushed when a body fails.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            match st.upstream.next().await {
                None => return None,
                Some(Err(e)) => return Some((Err(e), st)),
                Some(Ok(chunk)) => st.buf.extend_from_slice(&chunk),
            }
            while let Some(end) = st.buf.windows(2).position(|w| w == b"\n\n") {
                let frame = st.buf.split_to(end + 2).freeze();
                let kind = frame_event(&frame);
                let hit = |want: &str| kind.as_deref() == Some(want);
                match cut {
                    Cut::Before { event } if hit(event) => {
                        st.done = true;
                        break;
                    }
                    Cut::After { event, clean } if hit(event) => {
                        st.out.push_back(Ok(frame));
                        if !clean {
                            st.out.push_back(Err("the fault proxy broke the event stream".into()));
                        }
                        st.done = true;
                        break;
                    }
                    Cut::Inside { event } if hit(event) => {
                        st.out.push_back(Ok(frame.slice(..frame.len() / 2)));
                        st.out.push_back(Err("the fault proxy broke the event stream mid-event".into()));
                        st.done = true;
                        break;
                    }
                    _ => st.out.push_back(Ok(frame)),
                }
            }
        }
    })
    .boxed()
}

/// Passes `after` bytes, then goes silent for `pause`, then passes the rest.
fn stall(
    upstream: futures_util::stream::BoxStream<'static, Result<Bytes, BoxError>>,
    after: usize,
    pause: Duration,
) -> futures_util::stream::BoxStream<'static, Result<Bytes, BoxError>> {
    futures_util::stream::unfold((upstream, after, false), move |(mut upstream, left, stalled)| async move {
        if left == 0 && !stalled {
            tokio::time::sleep(pause).await;
            return Some((Ok(Bytes::new()), (upstream, 0, true)));
        }
        match upstream.next().await {
            None => None,
            Some(Err(e)) => Some((Err(e), (upstream, left, stalled))),
            Some(Ok(mut chunk)) if !stalled && chunk.len() > left => {
                // Split the chunk at the stall point; the rest waits in a one-item stream.
                let head = chunk.split_to(left);
                let rest = futures_util::stream::once(async move { Ok(chunk) }).chain(upstream).boxed();
                Some((Ok(head), (rest, 0, false)))
            }
            Some(Ok(chunk)) => {
                let left = if stalled { 0 } else { left - chunk.len() };
                Some((Ok(chunk), (upstream, left, stalled)))
            }
        }
    })
    .boxed()
}
