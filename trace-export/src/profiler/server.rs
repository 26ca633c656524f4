//! The profiler service, like `tf.profiler.experimental.server.start`: TensorBoard's
//! "Capture profile" button, xprof's capture client or [`super::client::trace`] can profile
//! this running process for a while.
//!
//! ```no_run
//! use trace_export::profiler;
//!
//! # fn main() -> Result<(), trace_export::Error> {
//! let server = profiler::server::start("127.0.0.1:6009")?;
//! println!("profiler listening on {}", server.local_addr());
//! // ... run the instrumented program; TensorBoard: Profile tab, Capture profile,
//! // "localhost:6009" ...
//! server.stop();
//! # Ok(()) }
//! ```
//!
//! It answers `tensorflow.ProfilerService/Profile` over gRPC (HTTP/2 without TLS): it records
//! every thread for the requested duration, at the requested `host_tracer_level`, and answers
//! with the profile as a tool named `xplane.pb`, which the client writes as
//! `<logdir>/plugins/profile/<run>/<host>_<port>.xplane.pb`.
//!
//! It is a network service, and it is built to be left running in a program that matters:
//! * it binds the address it is given and no other (`127.0.0.1` is reachable from this
//!   machine only; binding another interface lets anyone who reaches it profile the program,
//!   that is, read its function names, metadata and timings);
//! * one capture at a time, process-wide: a second one gets `UNAVAILABLE`; a capture while
//!   [`super::start`] or `summary::trace_on` records gets `FAILED_PRECONDITION`, and the local
//!   session goes on;
//! * durations, start delays, events, request and response sizes and connections are bounded
//!   ([`ServerOptions`]); a connection that does not open with the HTTP/2 preface in time
//!   (garbage, HTTP/1, a slow or silent client), or then sends no request in time, is closed;
//!   connections still opening make room for newer ones; a connection lives at most as long
//!   as the longest capture allows;
//! * a client that goes away mid-capture ends the capture: the recording stops and is dropped.
//!
//! The server runs on its own threads (`trace-profiler-server`, and `trace-profiler-capture`
//! while a capture runs); they record nothing themselves, and threads of these names are left
//! out of captures.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use trace_runtime::session::{self, SessionConfig, SessionError};
use trace_runtime::snapshot::Recording;

use crate::error::{Error, Result};
use crate::proto::profiler_service::{
    ProfileRequest, ProfileResponse, ProfileToolData, TerminateRequest, TerminateResponse,
    MONITOR_PATH, PROFILE_PATH, TERMINATE_PATH, XPLANE_TOOL,
};
use crate::{files, xspace};

/// Names of the server's threads start with this; threads so named are left out of captures.
pub const THREAD_NAME_PREFIX: &str = "trace-profiler-";
const SERVER_THREAD: &str = "trace-profiler-server";
const CAPTURE_THREAD: &str = "trace-profiler-capture";

/// The HTTP/2 connection preface every gRPC client sends first.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bounds of a [`ProfilerServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// Captures asking for longer are refused (`INVALID_ARGUMENT`). Default: 5 minutes.
    pub max_duration_ms: u64,
    /// Captures asking to start later than this (`start_timestamp_ns`) are refused. Default:
    /// 60 s.
    pub max_start_delay_ms: u64,
    /// The most events a thread records in a capture; a request's `max_events` is capped to
    /// it. Beyond it, events are dropped and counted in the profile's warnings. Default: 4 Mi.
    pub max_events_per_thread: usize,
    /// Larger requests are refused. Default: 64 KiB (a capture request is a few hundred
    /// bytes).
    pub max_request_bytes: usize,
    /// A profile larger than this is not sent (`RESOURCE_EXHAUSTED`). Default: 1 GiB.
    pub max_response_bytes: usize,
    /// HTTP/2 connections served at once; further ones are closed at once. As many again
    /// may be opening (not yet past the HTTP/2 preface): a new one then closes the oldest
    /// of those, so that silent connections never lock a client out. Default: 16.
    pub max_connections: usize,
    /// Time a new connection has to send the HTTP/2 preface, and then its first request.
    /// Default: 10 s.
    pub handshake_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_duration_ms: 5 * 60 * 1000,
            max_start_delay_ms: 60 * 1000,
            max_events_per_thread: 1 << 22,
            max_request_bytes: 64 << 10,
            max_response_bytes: 1 << 30,
            max_connections: 16,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerOptions {
    fn check(&self) -> Result<()> {
        let positive = [
            ("max_duration_ms", self.max_duration_ms as usize),
            ("max_events_per_thread", self.max_events_per_thread),
            ("max_request_bytes", self.max_request_bytes),
            ("max_response_bytes", self.max_response_bytes),
            ("max_connections", self.max_connections),
        ];
        for (option, value) in positive {
            if value == 0 {
                return Err(Error::InvalidOption {
                    option,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.max_connections > Semaphore::MAX_PERMITS {
            return Err(Error::InvalidOption {
                option: "max_connections",
                reason: format!("{} is too many", self.max_connections),
            });
        }
        Ok(())
    }

    /// The longest a connection is kept: the longest capture with its start delay, plus time
    /// to send the profile.
    fn max_connection_age(&self) -> Duration {
        Duration::from_millis(
            self.max_duration_ms
                .saturating_add(self.max_start_delay_ms)
                .saturating_add(120_000),
        )
    }
}

/// A running profiler service. Dropping it, or [`ProfilerServer::stop`], stops it.
#[derive(Debug)]
pub struct ProfilerServer {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// Starts serving the profiler on `addr` with the default [`ServerOptions`].
///
/// `addr` is bound as given: `"127.0.0.1:6009"` serves this machine only; port 0 picks a
/// free port ([`ProfilerServer::local_addr`] tells which).
pub fn start(addr: impl ToSocketAddrs + fmt::Display) -> Result<ProfilerServer> {
    start_with(addr, ServerOptions::default())
}

/// Starts serving the profiler on `addr` within the bounds of `options`.
///
/// Errors with [`Error::Network`] when `addr` does not resolve or cannot be bound (in use,
/// not an address of this machine), and with [`Error::InvalidOption`] for a zero bound.
pub fn start_with(
    addr: impl ToSocketAddrs + fmt::Display,
    options: ServerOptions,
) -> Result<ProfilerServer> {
    options.check()?;
    let resolve_error = |source| Error::Network {
        action: "resolve",
        addr: addr.to_string(),
        source,
    };
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(resolve_error)?.collect();
    if addrs.is_empty() {
        return Err(resolve_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "resolves to no address",
        )));
    }
    let shown = addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let listener = std::net::TcpListener::bind(&addrs[..]).map_err(|e| Error::Network {
        action: "bind",
        addr: shown.clone(),
        source: e,
    })?;
    let network = |action, source| Error::Network {
        action,
        addr: shown.clone(),
        source,
    };
    let local_addr = listener.local_addr().map_err(|e| network("bind", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| network("listen on", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .thread_name(SERVER_THREAD)
        .build()
        .map_err(|e| network("start the server for", e))?;
    let shared = Arc::new(Shared {
        options,
        capture_thread: Mutex::new(None),
    });
    let (shutdown, stopped) = oneshot::channel();
    let serving = Arc::clone(&shared);
    let thread = thread::Builder::new()
        .name(SERVER_THREAD.into())
        .spawn(move || {
            runtime.block_on(serve(listener, serving, stopped));
            // Dropping the runtime drops every connection and abandons a capture under way.
            drop(runtime);
        })
        .map_err(|e| network("start the server thread for", e))?;
    Ok(ProfilerServer {
        local_addr,
        shutdown: Some(shutdown),
        thread: Some(thread),
        shared,
    })
}

impl ProfilerServer {
    /// The address the server listens on (with the port picked when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving: closes the listener and every connection, ends a capture under way
    /// (its recording is dropped and the recorder is free again when this returns).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let capture = lock(&self.shared.capture_thread).take();
        if let Some(capture) = capture {
            let _ = capture.join();
        }
    }
}

impl Drop for ProfilerServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[derive(Debug)]
struct Shared {
    options: ServerOptions,
    /// The thread of this server's latest capture, joined by the next one and by `stop`.
    capture_thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent, so a panic elsewhere never
    // poisons the server for good.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The capture slot: one capture at a time, process-wide
// ---------------------------------------------------------------------------------------------

/// What a capture under way is told by its client's side.
enum Control {
    /// `Terminate`: stop now and answer with what was recorded.
    Finish,
    /// The client went away (or the server stops): stop now and drop the recording.
    Abandon,
}

struct Capture {
    /// The client's address.
    client: String,
    /// The request's `session_id`, which `Terminate` names.
    session_id: String,
    /// True while the capture holds the recorder.
    recording: bool,
    control: mpsc::Sender<Control>,
}

static CAPTURE: Mutex<Option<Capture>> = Mutex::new(None);

/// The client of the capture that holds the recorder now, if any.
pub(crate) fn remote_capture() -> Option<String> {
    lock(&CAPTURE)
        .as_ref()
        .filter(|capture| capture.recording)
        .map(|capture| capture.client.clone())
}

/// Frees the capture slot when dropped, also if the capture panics.
struct SlotRelease;

impl Drop for SlotRelease {
    fn drop(&mut self) {
        *lock(&CAPTURE) = None;
    }
}

/// Tells the capture its client went away when the request's future is dropped before it
/// completes (connection reset, stream cancelled, server stopped).
struct AbandonOnDrop(Option<mpsc::Sender<Control>>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(control) = self.0.take() {
            let _ = control.send(Control::Abandon);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("trace-export: profiler server: cannot listen: {e}");
            return;
        }
    };
    let connections = Arc::new(Semaphore::new(shared.options.max_connections));
    let opening: Arc<Mutex<VecDeque<Opening>>> = Arc::default();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    next_id += 1;
                    let (close, closed) = oneshot::channel();
                    {
                        let mut opening = lock(&opening);
                        if opening.len() >= shared.options.max_connections {
                            if let Some(oldest) = opening.pop_front() {
                                let _ = oldest.close.send(());
                            }
                        }
                        opening.push_back(Opening { id: next_id, close });
                    }
                    let connection = Connection {
                        id: next_id,
                        peer,
                        shared: Arc::clone(&shared),
                        connections: Arc::clone(&connections),
                        opening: Arc::clone(&opening),
                    };
                    tokio::spawn(connection.serve(stream, closed));
                }
                // Out of file descriptors, or a connection reset before it was accepted:
                // wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
}

/// A connection that has not sent the HTTP/2 preface yet.
struct Opening {
    id: u64,
    /// Closes it to make room for a newer one.
    close: oneshot::Sender<()>,
}

struct Connection {
    id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    opening: Arc<Mutex<VecDeque<Opening>>>,
}

impl Connection {
    async fn serve(self, stream: TcpStream, closed: oneshot::Receiver<()>) {
        let _ = stream.set_nodelay(true);
        let limit = self.shared.options.handshake_timeout;
        let opened = tokio::select! {
            opened = tokio::time::timeout(limit, preface(&stream)) => opened.ok(),
            _ = closed => None,
        };
        lock(&self.opening).retain(|opening| opening.id != self.id);
        match opened {
            Some(Preface::Http2) => {}
            Some(Preface::Other) => return refuse_non_grpc(stream).await,
            Some(Preface::Closed) | None => return,
        }
        // Over the limit of HTTP/2 connections the stream is dropped, which closes it.
        let Ok(_permit) = Arc::clone(&self.connections).try_acquire_owned() else {
            return;
        };
        let (shared, peer) = (self.shared, self.peer);
        let age = shared.options.max_connection_age();
        let requested = Arc::new(AtomicBool::new(false));
        let service = {
            let requested = Arc::clone(&requested);
            hyper::service::service_fn(move |request| {
                requested.store(true, Ordering::Relaxed);
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(route(shared, peer, request).await) }
            })
        };
        let connection = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(4)
            .max_header_list_size(16 << 10)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
            .serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        // A connection that sends no request in time is closed (dropping it closes it), so
        // that idle HTTP/2 connections cannot hold every place either.
        tokio::select! {
            _ = &mut connection => return,
            _ = tokio::time::sleep(limit) => {}
        }
        if requested.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(age.saturating_sub(limit), connection).await;
        }
    }
}

enum Preface {
    Http2,
    Other,
    Closed,
}

/// Waits until the connection has sent the HTTP/2 preface, without consuming it, or has
/// sent something else.
async fn preface(stream: &TcpStream) -> Preface {
    let mut seen = [0u8; PREFACE.len()];
    loop {
        let n = match stream.peek(&mut seen).await {
            Ok(0) | Err(_) => return Preface::Closed,
            Ok(n) => n,
        };
        if seen[..n] != PREFACE[..n] {
            return Preface::Other;
        }
        if n == PREFACE.len() {
            return Preface::Http2;
        }
        // Part of the preface: `peek` would return at once again, so wait for the rest.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Answers a connection that is not HTTP/2 (a browser, curl) with a short HTTP/1 error.
async fn refuse_non_grpc(stream: TcpStream) {
    const BODY: &str = "this port serves the profiler over gRPC (HTTP/2) only\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    // What the client sent is read first (a request fits in a few KiB): closing a socket
    // with unread input resets the connection, and the client would lose the answer.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.writable().await?;
        stream.try_write(answer.as_bytes())
    })
    .await;
}

async fn route(
    shared: Arc<Shared>,
    peer: SocketAddr,
    request: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let options = &shared.options;
    let path = request.uri().path().to_owned();
    match path.as_str() {
        PROFILE_PATH => {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<ProfileResponse, ProfileRequest>::new())
                    .max_decoding_message_size(options.max_request_bytes)
                    .max_encoding_message_size(
                        options
                            .max_response_bytes
                            .saturating_mul(2)
                            .saturating_add(1024),
                    );
            grpc.unary(Unary(Arc::clone(&shared), peer, profile), request)
                .await
        }
        TERMINATE_PATH => {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<TerminateResponse, TerminateRequest>::new())
                    .max_decoding_message_size(options.max_request_bytes);
            grpc.unary(Unary(Arc::clone(&shared), peer, terminate), request)
                .await
        }
        MONITOR_PATH => {
            Status::unimplemented("this profiler server does not serve Monitor").into_http()
        }
        _ => Status::unimplemented(format!(
            "{}: this server serves tensorflow.ProfilerService/Profile and Terminate only",
            truncated(&path, 200)
        ))
        .into_http(),
    }
}

fn truncated(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

type Handler<Req, Resp> =
    fn(Arc<Shared>, SocketAddr, Req) -> Pin<Box<dyn Future<Output = Result<Resp, Status>> + Send>>;

/// One unary method as the service tonic's `Grpc::unary` calls.
struct Unary<Req, Resp>(Arc<Shared>, SocketAddr, Handler<Req, Resp>);

impl<Req, Resp: 'static> tower_service::Service<tonic::Request<Req>> for Unary<Req, Resp> {
    type Response = tonic::Response<Resp>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Resp>, Status>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let answer = (self.2)(Arc::clone(&self.0), self.1, request.into_inner());
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

// ---------------------------------------------------------------------------------------------
// Profile and Terminate
// ---------------------------------------------------------------------------------------------

/// Who a capture's recording belongs to, as a local session that wants to start is told.
const REMOTE_CAPTURE: &str = "a remote capture (the profiler server)";

/// A validated capture request.
struct Plan {
    config: SessionConfig,
    start_delay: Duration,
    duration: Duration,
    emit_xspace: bool,
    max_response_bytes: usize,
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn plan(options: &ServerOptions, request: &ProfileRequest) -> Result<Plan, Status> {
    let opts = request.opts.clone().unwrap_or_default();
    let duration_ms = if request.duration_ms != 0 {
        request.duration_ms
    } else {
        opts.duration_ms
    };
    if duration_ms == 0 {
        return Err(Status::invalid_argument(
            "duration_ms is 0: ask for at least 1 ms",
        ));
    }
    if duration_ms > options.max_duration_ms {
        return Err(Status::invalid_argument(format!(
            "duration_ms {duration_ms} is above this server's limit of {} ms \
             (ServerOptions::max_duration_ms)",
            options.max_duration_ms
        )));
    }
    let start_delay_ns = opts.start_timestamp_ns.saturating_sub(wall_ns());
    if start_delay_ns / 1_000_000 > options.max_start_delay_ms {
        return Err(Status::invalid_argument(format!(
            "start_timestamp_ns lies {} ms ahead, more than this server's limit of {} ms \
             (ServerOptions::max_start_delay_ms)",
            start_delay_ns / 1_000_000,
            options.max_start_delay_ms
        )));
    }
    // 0 is proto3's "not set"; TensorFlow's levels go up to 3 (verbose).
    let level = match opts.host_tracer_level {
        0 => 2,
        level => level.min(3) as u8,
    };
    let wanted_events = match request.max_events {
        0 => u64::MAX,
        n => n,
    };
    let max_events_per_thread = usize::try_from(wanted_events)
        .unwrap_or(usize::MAX)
        .min(options.max_events_per_thread);
    Ok(Plan {
        config: SessionConfig {
            level,
            max_events_per_thread,
            owner: REMOTE_CAPTURE,
            ..SessionConfig::default()
        },
        start_delay: Duration::from_nanos(start_delay_ns),
        duration: Duration::from_millis(duration_ms),
        emit_xspace: request.emit_xspace,
        max_response_bytes: options.max_response_bytes,
    })
}

fn profile(
    shared: Arc<Shared>,
    peer: SocketAddr,
    request: ProfileRequest,
) -> Pin<Box<dyn Future<Output = Result<ProfileResponse, Status>> + Send>> {
    Box::pin(async move {
        let plan = plan(&shared.options, &request)?;
        let (control, controlled) = mpsc::channel();
        {
            let mut slot = lock(&CAPTURE);
            if let Some(capture) = &*slot {
                return Err(Status::unavailable(format!(
                    "a capture for {} is under way; this server records one capture at a \
                     time, try again when it ends",
                    capture.client
                )));
            }
            *slot = Some(Capture {
                client: peer.to_string(),
                session_id: request.session_id.clone(),
                recording: false,
                control: control.clone(),
            });
        }
        let (reply, replied) = oneshot::channel();
        let spawned = thread::Builder::new()
            .name(CAPTURE_THREAD.into())
            .spawn(move || {
                let answer = {
                    // Freed before the answer is sent: a client that asks again as soon as
                    // it has its profile finds the server free.
                    let _release = SlotRelease;
                    capture(&plan, &controlled)
                };
                let _ = reply.send(answer);
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                *lock(&CAPTURE) = None;
                return Err(Status::resource_exhausted(format!(
                    "cannot start the capture thread: {e}"
                )));
            }
        };
        // The previous capture has freed the slot, so its thread has finished or is about
        // to: joining it keeps one handle at a time.
        let previous = lock(&shared.capture_thread).replace(thread);
        if let Some(previous) = previous {
            let _ = previous.join();
        }
        let mut abandon = AbandonOnDrop(Some(control));
        let answer = replied
            .await
            .unwrap_or_else(|_| Err(Status::internal("the capture ended without an answer")));
        abandon.0 = None;
        answer
    })
}

/// Records for the plan's duration on the calling thread and builds the answer.
fn capture(plan: &Plan, control: &mpsc::Receiver<Control>) -> Result<ProfileResponse, Status> {
    let gone = || Status::cancelled("the capture was abandoned: its client went away");
    if !plan.start_delay.is_zero() {
        match control.recv_timeout(plan.start_delay) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Control::Finish) => return Ok(empty_trace()),
            Ok(Control::Abandon) | Err(mpsc::RecvTimeoutError::Disconnected) => return Err(gone()),
        }
    }
    {
        let mut slot = lock(&CAPTURE);
        if let Err(e) = session::start(&plan.config) {
            drop(slot);
            return Err(match e {
                SessionError::AlreadyActive { owner } => {
                    Status::failed_precondition(local_session(owner))
                }
                other => Status::invalid_argument(other.to_string()),
            });
        }
        if let Some(capture) = slot.as_mut() {
            capture.recording = true;
        }
    }
    let outcome = control.recv_timeout(plan.duration);
    let stopped = session::stop();
    if let Some(capture) = lock(&CAPTURE).as_mut() {
        capture.recording = false;
    }
    if let Ok(Control::Abandon) | Err(mpsc::RecvTimeoutError::Disconnected) = outcome {
        return Err(gone());
    }
    let mut snapshot = stopped.map_err(|_| {
        Status::aborted("the program stopped the recording session before the capture ended")
    })?;
    if let Recording::Events(threads) = &mut snapshot.recording {
        threads.retain(|thread| !thread.name.starts_with(THREAD_NAME_PREFIX));
    }
    if snapshot.event_count() == 0 && snapshot.dropped() == 0 {
        return Ok(empty_trace());
    }
    let bytes = xspace::Layout::new(&snapshot, &files::host_name()).encode();
    drop(snapshot);
    let copies = if plan.emit_xspace { 2 } else { 1 };
    if bytes.len().saturating_mul(copies) > plan.max_response_bytes {
        return Err(Status::resource_exhausted(format!(
            "the profile is {} bytes, more than this server sends ({} bytes, \
             ServerOptions::max_response_bytes): capture for less time or at a lower \
             host_tracer_level",
            bytes.len() * copies,
            plan.max_response_bytes
        )));
    }
    Ok(ProfileResponse {
        xspace: if plan.emit_xspace {
            bytes.clone()
        } else {
            Vec::new()
        },
        tool_data: vec![ProfileToolData {
            name: XPLANE_TOOL.into(),
            data: bytes,
        }],
        empty_trace: false,
    })
}

fn empty_trace() -> ProfileResponse {
    ProfileResponse {
        empty_trace: true,
        ..ProfileResponse::default()
    }
}

/// Why the recorder is busy, for a capture that found it so.
/// Why a capture is refused while `owner` records in this process.
fn local_session(owner: &str) -> String {
    format!(
        "this process is already recording {owner}; the capture is refused and the local \
         session goes on: try again when it ends"
    )
}

fn terminate(
    _: Arc<Shared>,
    _: SocketAddr,
    request: TerminateRequest,
) -> Pin<Box<dyn Future<Output = Result<TerminateResponse, Status>> + Send>> {
    Box::pin(async move {
        if let Some(capture) = &*lock(&CAPTURE) {
            if capture.session_id == request.session_id {
                let _ = capture.control.send(Control::Finish);
            }
        }
        Ok(TerminateResponse {})
    })
}

/// The gRPC status code of an error a client got, for tests and tools.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
