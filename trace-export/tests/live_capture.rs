//! The profiler server and the capture client of this crate against each other, in one
//! process: what a capture writes, and every way a capture is refused or cut short. The
//! recorder is process-wide, so the tests take turns.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use trace_export::profiler::client::{self, CaptureOptions};
use trace_export::profiler::server::{self, ServerOptions};
use trace_export::proto::xplane::XSpace;
use trace_export::{profiler, summary, xspace, Error};
use trace_runtime::{session, traced};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

#[traced]
fn work(n: u64) -> u64 {
    (0..2000).fold(n, |acc, i| acc.wrapping_mul(31).wrapping_add(i))
}

#[traced(name = "Train", step_num = step)]
fn train_step(step: i64) -> u64 {
    (0..20).fold(0u64, |acc, i| acc.wrapping_add(work(step as u64 + i)))
}

/// A thread named `worker` that runs traced steps until dropped.
struct Workload {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Workload {
    fn start() -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                let mut step = 0;
                while !stopping.load(Ordering::Relaxed) {
                    std::hint::black_box(train_step(step));
                    step += 1;
                    thread::sleep(Duration::from_micros(200));
                }
            })
            .expect("spawn the worker");
        Workload {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trace-live-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A port of 127.0.0.1 that nothing listens on.
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn options(duration_ms: u64) -> CaptureOptions {
    CaptureOptions {
        duration_ms,
        attempts: 1,
        ..CaptureOptions::default()
    }
}

/// Waits for a condition that the code under test makes true; panics (rather than hang)
/// when it never does.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn read_xspace(path: &Path) -> XSpace {
    xspace::decode(&std::fs::read(path).expect("read the profile")).expect("a valid XSpace")
}

/// Thread names and event names (as recorded: the display names) of the host plane.
fn host_lines(space: &XSpace) -> Vec<(String, Vec<String>)> {
    let plane = space
        .planes
        .iter()
        .find(|p| p.name == xspace::HOST_PLANE)
        .expect("a /host:CPU plane");
    plane
        .lines
        .iter()
        .map(|line| {
            let names = line
                .events
                .iter()
                .map(|e| plane.event_metadata[&e.metadata_id].display_name.clone())
                .collect();
            (line.name.clone(), names)
        })
        .collect()
}

#[test]
fn a_capture_writes_the_running_program_as_one_host_of_a_run() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let addr = server.local_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    let _work = Workload::start();
    let logdir = scratch("one");

    let report = client::trace_with(&addr.to_string(), &logdir, options(300)).expect("capture");
    assert_eq!(report.hosts.len(), 1);
    let path = report.hosts[0].result.clone().expect("a profile");
    assert_eq!(path.parent(), Some(report.run_dir.as_path()));
    assert_eq!(
        report.run_dir.parent(),
        Some(logdir.join("plugins/profile").as_path())
    );
    assert_eq!(
        path.file_name().unwrap().to_string_lossy(),
        format!("127.0.0.1_{}.xplane.pb", addr.port())
    );
    let lines = host_lines(&read_xspace(&path));
    let worker = lines
        .iter()
        .find(|(name, _)| name == "worker")
        .unwrap_or_else(|| panic!("no worker thread in {lines:?}"));
    assert!(worker.1.iter().any(|n| n == "Train"), "no steps recorded");
    assert!(
        worker.1.iter().any(|n| n.ends_with("::work")),
        "no nested work"
    );
    assert!(
        !lines
            .iter()
            .any(|(name, _)| name.starts_with(server::THREAD_NAME_PREFIX)),
        "the server's threads are in the capture: {lines:?}"
    );

    // `trace` is the same capture; a second one gets a run of its own.
    let run = client::trace(&addr.to_string(), &logdir, 100).expect("capture again");
    assert_ne!(run, report.run_dir);
    // The recorder is free again: a local session starts.
    profiler::start(scratch("after")).expect("a local session after captures");
    profiler::stop().expect("stop");
    let _ = std::fs::remove_dir_all(&logdir);
}

#[test]
fn an_unreachable_host_is_reported_while_the_others_are_written() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let _work = Workload::start();
    let (live, dead) = (server.local_addr(), closed_port());
    let logdir = scratch("unreachable");

    let report = client::trace_with(&format!("{live}, grpc://{dead}"), &logdir, options(200))
        .expect("one host answered");
    assert_eq!(report.hosts[0].address, live.to_string());
    assert!(report.hosts[0].result.as_ref().is_ok_and(|p| p.is_file()));
    assert_eq!(report.hosts[1].address, dead.to_string());
    let reason = report.hosts[1].result.clone().expect_err("the dead host");
    assert!(reason.contains("unreachable"), "{reason}");
    let files = std::fs::read_dir(&report.run_dir).unwrap().count();
    assert_eq!(files, 1, "one file: the live host's");

    // No host answers: an error naming the address, and no run directory.
    let nobody = scratch("nobody");
    match client::trace_with(&dead.to_string(), &nobody, options(100)) {
        Err(Error::Capture { reason, .. }) => {
            assert!(reason.contains(&dead.to_string()), "{reason}");
            assert!(reason.contains("unreachable"), "{reason}");
        }
        other => panic!("expected Error::Capture, got {other:?}"),
    }
    assert!(
        !nobody.join("plugins/profile").exists() || {
            std::fs::read_dir(nobody.join("plugins/profile"))
                .unwrap()
                .count()
                == 0
        }
    );
    let _ = std::fs::remove_dir_all(&logdir);
}

#[test]
fn one_capture_at_a_time_and_a_local_start_names_the_remote_capture() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let _work = Workload::start();
    let addr = server.local_addr().to_string();
    let logdir = scratch("busy");

    let first = {
        let (addr, logdir) = (addr.clone(), logdir.clone());
        thread::spawn(move || client::trace_with(&addr, &logdir, options(1500)))
    };
    wait_for("the first capture records", session::is_active);

    // A local session is refused with a typed error that names the capture's client.
    match profiler::start(scratch("local")) {
        Err(Error::RemoteCapture { requested, client }) => {
            assert_eq!(requested, "the profiler");
            assert!(client.starts_with("127.0.0.1:"), "{client}");
        }
        other => panic!("expected Error::RemoteCapture, got {other:?}"),
    }
    match summary::trace_on(summary::TraceOptions::default()) {
        Err(Error::RemoteCapture { .. }) => {}
        other => panic!("expected Error::RemoteCapture from trace_on, got {other:?}"),
    }
    // A second capture is refused; the first goes on.
    match client::trace_with(&addr, scratch("second"), options(100)) {
        Err(Error::Capture { reason, .. }) => {
            assert!(reason.contains("UNAVAILABLE"), "{reason}");
            assert!(reason.contains("one capture at a time"), "{reason}");
        }
        other => panic!("expected a refused capture, got {other:?}"),
    }
    let report = first.join().unwrap().expect("the first capture completes");
    let path = report.hosts[0].result.clone().expect("a profile");
    assert!(host_lines(&read_xspace(&path))
        .iter()
        .any(|(name, events)| name == "worker" && !events.is_empty()));
    let _ = std::fs::remove_dir_all(&logdir);
}

#[test]
fn a_capture_while_a_local_session_records_is_refused_and_the_session_goes_on() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let _work = Workload::start();
    let addr = server.local_addr().to_string();
    let local = scratch("local-session");

    profiler::start(&local).expect("a local session");
    match client::trace_with(&addr, scratch("refused"), options(100)) {
        Err(Error::Capture { reason, .. }) => {
            assert!(reason.contains("FAILED_PRECONDITION"), "{reason}");
            assert!(reason.contains("profiler::start"), "{reason}");
        }
        other => panic!("expected a refused capture, got {other:?}"),
    }
    let report = profiler::stop().expect("the local session is unaffected");
    assert!(report.events > 0);
    assert!(report.xplane.is_file());

    summary::trace_on(summary::TraceOptions::default()).expect("a summary trace");
    match client::trace_with(&addr, scratch("refused-trace"), options(100)) {
        Err(Error::Capture { reason, .. }) => {
            assert!(reason.contains("summary::trace_on"), "{reason}");
        }
        other => panic!("expected a refused capture, got {other:?}"),
    }
    summary::trace_off();
    let _ = std::fs::remove_dir_all(&local);
}

#[test]
fn durations_and_requests_beyond_the_bounds_are_refused() {
    let _turn = turn();
    let server = server::start_with(
        "127.0.0.1:0",
        ServerOptions {
            max_duration_ms: 1000,
            ..ServerOptions::default()
        },
    )
    .expect("start the server");
    let _work = Workload::start();
    let addr = server.local_addr().to_string();
    match client::trace_with(&addr, scratch("long"), options(1001)) {
        Err(Error::Capture { reason, .. }) => {
            assert!(reason.contains("INVALID_ARGUMENT"), "{reason}");
            assert!(reason.contains("max_duration_ms"), "{reason}");
        }
        other => panic!("expected a refused duration, got {other:?}"),
    }
    assert!(matches!(
        client::trace_with(&addr, scratch("zero"), options(0)),
        Err(Error::InvalidOption {
            option: "duration_ms",
            ..
        })
    ));
    assert!(matches!(
        client::trace_with(" , ", scratch("none"), options(10)),
        Err(Error::InvalidOption {
            option: "service_addr",
            ..
        })
    ));
    // Still serving within its bounds.
    client::trace_with(&addr, scratch("ok"), options(100)).expect("a capture within bounds");
    drop(server);

    let tiny = server::start_with(
        "127.0.0.1:0",
        ServerOptions {
            max_request_bytes: 8,
            ..ServerOptions::default()
        },
    )
    .expect("start the server");
    match client::trace_with(&tiny.local_addr().to_string(), scratch("big"), options(100)) {
        Err(Error::Capture { reason, .. }) => {
            assert!(
                reason.contains("OUT_OF_RANGE") || reason.contains("RESOURCE_EXHAUSTED"),
                "{reason}"
            );
        }
        other => panic!("expected a refused request, got {other:?}"),
    }
    assert!(matches!(
        server::start_with(
            "127.0.0.1:0",
            ServerOptions {
                max_connections: 0,
                ..ServerOptions::default()
            }
        ),
        Err(Error::InvalidOption { .. })
    ));
}

#[test]
fn the_server_binds_only_the_address_given_and_bad_addresses_are_typed_errors() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    // Another loopback address of this machine: nothing listens there.
    let elsewhere = SocketAddr::from(([127, 0, 0, 2], server.local_addr().port()));
    if TcpListener::bind((elsewhere.ip(), 0)).is_ok() {
        assert!(
            TcpStream::connect(elsewhere).is_err(),
            "{elsewhere} answered"
        );
    }
    match server::start("no port here") {
        Err(Error::Network { action, addr, .. }) => {
            assert_eq!(action, "resolve");
            assert_eq!(addr, "no port here");
        }
        other => panic!("expected Error::Network, got {other:?}"),
    }
    match server::start(server.local_addr()) {
        Err(Error::Network { action, addr, .. }) => {
            assert_eq!(action, "bind");
            assert!(addr.contains(&server.local_addr().port().to_string()));
        }
        other => panic!("expected Error::Network, got {other:?}"),
    }
}

#[test]
fn bad_bytes_and_http1_leave_the_server_serving() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let _work = Workload::start();
    let addr = server.local_addr();

    let mut http1 = TcpStream::connect(addr).unwrap();
    http1
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    http1.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let mut garbage = TcpStream::connect(addr).unwrap();
    let _ = garbage.write_all(&[0u8, 0xff, 0x13, 0x37].repeat(4096));
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest); // the server closes it
                                            // A preface, then garbage frames.
    let mut frames = TcpStream::connect(addr).unwrap();
    let _ =
        frames.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x09\x00\x00\x00\x00\x01");
    let _ = frames.read_to_end(&mut rest);
    // Held open while a capture runs: more silent clients and half prefaces than the server
    // serves connections.
    let mut held = Vec::new();
    for _ in 0..2 * ServerOptions::default().max_connections {
        held.push(TcpStream::connect(addr).unwrap());
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
        held.push(half);
    }

    client::trace_with(&addr.to_string(), scratch("after-garbage"), options(200))
        .expect("a capture after bad connections");
}

#[test]
fn idle_http2_connections_are_closed_and_the_next_capture_works() {
    let _turn = turn();
    let options_ = ServerOptions {
        max_connections: 4,
        handshake_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let server = server::start_with("127.0.0.1:0", options_).expect("start the server");
    let _work = Workload::start();
    let addr = server.local_addr();
    // Every place taken by a connection that sends the preface and then nothing.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .unwrap();
        idle.push(stream);
    }
    // The server closes them (they sent no request in time)...
    for stream in &mut idle {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    // ...and serves the next capture.
    client::trace_with(&addr.to_string(), scratch("after-idle"), options(100))
        .expect("a capture after idle connections");
}

#[test]
fn stopping_the_server_ends_a_capture_under_way() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let _work = Workload::start();
    let addr = server.local_addr().to_string();
    let capture =
        thread::spawn(move || client::trace_with(&addr, scratch("stopped"), options(60_000)));
    wait_for("the capture records", session::is_active);
    server.stop();
    assert!(
        !session::is_active(),
        "the recorder is free when stop returns"
    );
    assert!(capture.join().unwrap().is_err());
    profiler::start(scratch("after-stop")).expect("a local session after the server stopped");
    profiler::stop().expect("stop");
}

/// A raw gRPC client of the profiler service, for the methods the capture client never
/// calls.
mod raw {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::client::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    struct Http2(http2::SendRequest<tonic::body::Body>);

    impl tower_service::Service<http::Request<tonic::body::Body>> for Http2 {
        type Response = http::Response<hyper::body::Incoming>;
        type Error = hyper::Error;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
            self.0.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            Box::pin(self.0.send_request(request))
        }
    }

    /// Calls `path` with `request` and returns the answer or the status.
    pub(super) async fn call<Req, Resp>(
        addr: SocketAddr,
        path: &'static str,
        request: Req,
    ) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        let origin = format!("http://{addr}").parse().expect("a URI");
        let mut grpc = tonic::client::Grpc::with_origin(Http2(sender), origin);
        grpc.ready().await.expect("ready");
        grpc.unary(
            tonic::Request::new(request),
            http::uri::PathAndQuery::from_static(path),
            tonic_prost::ProstCodec::<Req, Resp>::new(),
        )
        .await
        .map(tonic::Response::into_inner)
    }
}

#[test]
fn terminate_ends_a_capture_early_with_what_was_recorded_and_monitor_is_unimplemented() {
    use trace_export::proto::profiler_service::{
        MonitorRequest, ProfileOptions, ProfileRequest, ProfileResponse, TerminateRequest,
        TerminateResponse, MONITOR_PATH, PROFILE_PATH, TERMINATE_PATH, XPLANE_TOOL,
    };

    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let _work = Workload::start();
    let addr = server.local_addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let profile = tokio::spawn(raw::call::<_, ProfileResponse>(
            addr,
            PROFILE_PATH,
            ProfileRequest {
                duration_ms: 60_000,
                session_id: "ended-early".into(),
                opts: Some(ProfileOptions {
                    host_tracer_level: 2,
                    ..ProfileOptions::default()
                }),
                ..ProfileRequest::default()
            },
        ));
        while !session::is_active() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Another session's id ends nothing.
        let _: TerminateResponse = raw::call(
            addr,
            TERMINATE_PATH,
            TerminateRequest {
                session_id: "another".into(),
            },
        )
        .await
        .expect("terminate answers");
        assert!(session::is_active());
        let _: TerminateResponse = raw::call(
            addr,
            TERMINATE_PATH,
            TerminateRequest {
                session_id: "ended-early".into(),
            },
        )
        .await
        .expect("terminate answers");
        let response = profile
            .await
            .expect("the task")
            .expect("the capture answers");
        assert!(!response.empty_trace);
        assert_eq!(response.tool_data.len(), 1);
        assert_eq!(response.tool_data[0].name, XPLANE_TOOL);
        let space = xspace::decode(&response.tool_data[0].data).expect("an XSpace");
        assert!(host_lines(&space).iter().any(|(name, _)| name == "worker"));

        let monitor =
            raw::call::<_, TerminateResponse>(addr, MONITOR_PATH, MonitorRequest::default())
                .await
                .expect_err("Monitor is not served");
        assert_eq!(monitor.code(), tonic::Code::Unimplemented);
        let unknown = raw::call::<_, TerminateResponse>(
            addr,
            "/some.Service/Method",
            MonitorRequest::default(),
        )
        .await
        .expect_err("an unknown method");
        assert_eq!(unknown.code(), tonic::Code::Unimplemented);
        // Bytes that are not a ProfileRequest.
        let garbage = raw::call::<_, ProfileResponse>(
            addr,
            PROFILE_PATH,
            trace_export::proto::profiler_service::ProfileToolData {
                name: String::new(),
                data: vec![0xff; 64],
            },
        )
        .await;
        assert!(garbage.is_err(), "{garbage:?}");
    });
    assert!(!session::is_active());
}

#[test]
fn the_client_can_be_called_from_an_async_runtime() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let _work = Workload::start();
    let addr = server.local_addr().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let report = runtime
        .block_on(async { client::trace_with(&addr, scratch("async"), options(100)) })
        .expect("a capture from async code");
    assert!(report.hosts[0].result.is_ok());
}
