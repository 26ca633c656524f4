//! `trace-export capture` against a profiler server of this test's own process: one run of
//! every reachable host, an unreachable one reported, and a client killed mid-capture that
//! leaves the server free for the next one.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use trace_export::profiler::client::{self, CaptureOptions};
use trace_export::profiler::server;
use trace_export::xspace;
use trace_runtime::{session, traced};

/// One capture at a time in this process: the tests take turns.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

#[traced(name = "Train", step_num = step)]
fn train_step(step: i64) -> u64 {
    (0..20_000u64).fold(step as u64, |acc, i| acc.wrapping_mul(31).wrapping_add(i))
}

/// A thread named `worker` recording steps until the returned flag is set (and joined).
fn worker() -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let thread = std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            let mut step = 0;
            while !flag.load(Ordering::Relaxed) {
                std::hint::black_box(train_step(step));
                step += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
        })
        .expect("spawn the worker");
    (done, thread)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trace-cli-capture-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A port of 127.0.0.1 that nothing listens on.
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn capture_command(addresses: &str, logdir: &std::path::Path, duration_ms: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trace-export"));
    command
        .args(["capture", addresses])
        .arg(logdir)
        .args(["--duration-ms", &duration_ms.to_string()]);
    command
}

#[test]
fn the_command_line_captures_and_reports_unreachable_hosts() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let (done, thread) = worker();
    let logdir = scratch("cli");
    let dead = closed_port();

    let addresses = format!("{},{dead}", server.local_addr());
    let output = capture_command(&addresses, &logdir, 200)
        .args(["--host-tracer-level", "3"])
        .output()
        .expect("run trace-export capture");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let run_dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        stderr.contains(&dead.to_string()) && stderr.contains("unreachable"),
        "{stderr}"
    );
    let file = run_dir.join(format!(
        "127.0.0.1_{}.xplane.pb",
        server.local_addr().port()
    ));
    let space = xspace::decode(&std::fs::read(&file).expect("read the profile")).expect("XSpace");
    let plane = (space.planes.iter())
        .find(|p| p.name == xspace::HOST_PLANE)
        .expect("a host plane");
    assert!(
        plane
            .lines
            .iter()
            .any(|line| line.name == "worker" && !line.events.is_empty()),
        "{:?}",
        plane.lines.iter().map(|l| &l.name).collect::<Vec<_>>()
    );

    let output = capture_command(&dead.to_string(), &logdir, 100)
        .output()
        .expect("run trace-export capture");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&dead.to_string()), "{stderr}");
    done.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    let _ = std::fs::remove_dir_all(&logdir);
}

#[test]
fn a_client_killed_mid_capture_frees_the_recorder_and_the_next_capture_works() {
    let _turn = turn();
    let server = server::start("127.0.0.1:0").expect("start the server");
    let (done, thread) = worker();
    let addr = server.local_addr().to_string();
    let logdir = scratch("killed");

    let mut cli = capture_command(&addr, &logdir, 60_000)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start trace-export capture");
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for("the capture records", &session::is_active);
    cli.kill().expect("kill the client");
    cli.wait().expect("reap the client");
    wait_for("the abandoned capture stops recording", &|| {
        !session::is_active()
    });
    let options = CaptureOptions {
        duration_ms: 100,
        attempts: 1,
        ..CaptureOptions::default()
    };
    let report = client::trace_with(&addr, &logdir, options).expect("the next capture works");
    assert!(report.hosts[0].result.is_ok());
    done.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    let _ = std::fs::remove_dir_all(&logdir);
}
