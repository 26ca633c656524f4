//! Live capture with xprof's own capture client (the code behind TensorBoard's "Capture
//! profile" button), run from the oracle's venv against `profiled` processes, and the
//! captured logdirs read back with TensorBoard's and xprof's own readers
//! (`../shared/oracle/check`).
//!
//! The venv is the one `../shared/oracle/check` installs on first use (`$TRACE_ORACLE_VENV`,
//! default `~/.cache/trace-oracle/venv`). Without it these tests fail in CI (`CI=true`) and
//! are skipped, with the reason printed, elsewhere.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::Value;
use trace_tests::{oracle_python, run_python, workspace_root};

/// A `profiled` child process serving the profiler on a free port of 127.0.0.1. It exits
/// when its standard input closes, so it never outlives the test.
struct Profiled {
    child: Child,
    _stdin: ChildStdin,
    addr: String,
}

impl Profiled {
    fn spawn() -> Profiled {
        let mut child = Command::new(env!("CARGO_BIN_EXE_profiled"))
            .arg("127.0.0.1:0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the profiled program");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the profiled program's address");
        let addr = line
            .trim()
            .strip_prefix("profiler listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Profiled {
            child,
            _stdin: stdin,
            addr,
        }
    }

    fn port(&self) -> &str {
        self.addr.rsplit(':').next().expect("a port")
    }
}

impl Drop for Profiled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs xprof's capture client, as TensorBoard's Capture button does.
fn xprof_capture(python: &Path, service_addr: &str, logdir: &Path, duration_ms: u64) {
    let program = r#"
import sys
from xprof.convert import _pywrap_profiler_plugin as p
addr, logdir, duration_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
p.trace(addr, logdir, "", True, duration_ms, 2,
        {"host_tracer_level": 2, "device_tracer_level": 1, "python_tracer_level": 0, "delay_ms": 0})
"#;
    let duration_ms = duration_ms.to_string();
    let args = [
        service_addr.as_ref(),
        logdir.as_os_str(),
        duration_ms.as_ref(),
    ];
    run_python(python, "xprof's capture client", program, &args);
}

/// Validates `logdir` with the oracle and returns its `--json` summary.
fn oracle(logdir: &Path) -> Value {
    let json = logdir.with_extension("oracle.json");
    let output = Command::new(workspace_root().join("../shared/oracle/check"))
        .arg(logdir)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run the oracle");
    assert!(
        output.status.success(),
        "the oracle rejected {}:\n{}\n{}",
        logdir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(&json).expect("the oracle's summary"))
        .expect("the oracle's summary is JSON")
}

/// The only run directory of `logdir` and the file names in it.
fn single_run(logdir: &Path) -> (PathBuf, Vec<String>) {
    let profile = logdir.join("plugins/profile");
    let runs: Vec<PathBuf> = std::fs::read_dir(&profile)
        .expect("plugins/profile exists")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(runs.len(), 1, "one run directory: {runs:?}");
    let mut files: Vec<String> = std::fs::read_dir(&runs[0])
        .expect("the run directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    files.sort();
    (runs[0].clone(), files)
}

/// Checks one host's profile in the oracle's summary: steps in the overview page, the
/// loader thread, and none of the server's own threads.
fn assert_host_profile(xplane: &Value) {
    let steps = xplane["tools"]["overview_page"]["steps"]
        .as_array()
        .expect("overview steps");
    assert!(!steps.is_empty(), "no steps in the overview page");
    for step in steps {
        let name = step[0].as_str().expect("step name");
        assert!(name.starts_with("Train "), "step {name}");
        assert!(step[1].as_f64().expect("step time") > 0.0, "step {step}");
    }
    let lines: Vec<(&str, u64)> = xplane["planes"]
        .as_array()
        .expect("planes")
        .iter()
        .filter(|plane| plane["name"] == "/host:CPU")
        .flat_map(|plane| plane["lines"].as_array().expect("lines"))
        .map(|line| {
            (
                line["name"].as_str().expect("line name"),
                line["events"].as_u64().expect("events"),
            )
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|&(name, events)| name == "data-loader" && events > 0),
        "no data-loader events: {lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|(name, _)| name.starts_with("trace-profiler-")),
        "the server's own threads are in the profile: {lines:?}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trace-capture-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn xprof_captures_one_host() {
    let Some(python) = oracle_python() else {
        return;
    };
    let program = Profiled::spawn();
    let logdir = scratch("one");
    xprof_capture(&python, &program.addr, &logdir, 1000);
    let (_, files) = single_run(&logdir);
    assert_eq!(files, [format!("127.0.0.1_{}.xplane.pb", program.port())]);
    let summary = oracle(&logdir);
    let xplanes = summary["xplanes"].as_array().expect("xplanes");
    assert_eq!(xplanes.len(), 1);
    assert_host_profile(&xplanes[0]);
    let _ = std::fs::remove_dir_all(&logdir);
}

#[test]
fn xprof_captures_two_processes_into_one_run() {
    let Some(python) = oracle_python() else {
        return;
    };
    let (a, b) = (Profiled::spawn(), Profiled::spawn());
    let logdir = scratch("two");
    xprof_capture(&python, &format!("{},{}", a.addr, b.addr), &logdir, 1000);
    let (_, files) = single_run(&logdir);
    let mut expected = vec![
        format!("127.0.0.1_{}.xplane.pb", a.port()),
        format!("127.0.0.1_{}.xplane.pb", b.port()),
    ];
    expected.sort();
    assert_eq!(files, expected);
    let summary = oracle(&logdir);
    let xplanes = summary["xplanes"].as_array().expect("xplanes");
    assert_eq!(xplanes.len(), 2, "one profile per process");
    for xplane in xplanes {
        assert_host_profile(xplane);
    }
    let _ = std::fs::remove_dir_all(&logdir);
}

#[test]
fn xprof_captures_after_garbage_http1_and_a_stalled_preface() {
    let Some(python) = oracle_python() else {
        return;
    };
    let program = Profiled::spawn();
    let mut garbage = TcpStream::connect(&program.addr).expect("connect");
    garbage
        .write_all(&[0xff, 0x00, 0x13, 0x37, b'\n', 0x80, 0x7f].repeat(1000))
        .expect("send garbage");
    let mut http1 = TcpStream::connect(&program.addr).expect("connect");
    http1
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send an HTTP/1 request");
    // Half a preface, left open while the capture runs.
    let mut stalled = TcpStream::connect(&program.addr).expect("connect");
    stalled
        .write_all(b"PRI * HTTP/2.0\r\n")
        .expect("send half a preface");
    let silent = TcpStream::connect(&program.addr).expect("connect");

    let logdir = scratch("garbage");
    xprof_capture(&python, &program.addr, &logdir, 1000);
    let summary = oracle(&logdir);
    assert_host_profile(&summary["xplanes"][0]);
    drop((garbage, http1, stalled, silent));
    let _ = std::fs::remove_dir_all(&logdir);
}

#[test]
fn the_rust_client_captures_two_processes_into_one_run() {
    let (a, b) = (Profiled::spawn(), Profiled::spawn());
    let logdir = scratch("rust-two");
    let run_dir =
        trace_export::profiler::client::trace(&format!("{},{}", a.addr, b.addr), &logdir, 500)
            .expect("capture both processes");
    let (only_run, files) = single_run(&logdir);
    assert_eq!(only_run, run_dir);
    let mut expected = vec![
        format!("127.0.0.1_{}.xplane.pb", a.port()),
        format!("127.0.0.1_{}.xplane.pb", b.port()),
    ];
    expected.sort();
    assert_eq!(files, expected);
    for file in &files {
        let bytes = std::fs::read(run_dir.join(file)).expect("read a host's profile");
        let space = trace_export::xspace::decode(&bytes).expect("a valid XSpace");
        let host = space
            .planes
            .iter()
            .find(|p| p.name == trace_export::xspace::HOST_PLANE)
            .expect("a host plane");
        assert!(host
            .lines
            .iter()
            .any(|l| l.name == "data-loader" && !l.events.is_empty()));
    }
    if oracle_python().is_some() {
        let summary = oracle(&logdir);
        for xplane in summary["xplanes"].as_array().expect("xplanes") {
            assert_host_profile(xplane);
        }
    }
    let _ = std::fs::remove_dir_all(&logdir);
}
