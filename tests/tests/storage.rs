//! Storage failures: a logdir that is missing, read-only, a file, or on a full disk, for the
//! profiler (`start` / `stop`) and for summaries (`create_file_writer`, `scalar`, `flush`,
//! `trace_export` with the profiler).
//!
//! Each failure must be an [`Error::Io`] whose message names the path; no file with a name
//! TensorBoard reads (`*.xplane.pb`, `*.trace.json.gz`, `events.out.tfevents.*`) may be left
//! partial, nor any temporary file; and a later export into the same logdir, once it is
//! writable again, must work.
//!
//! A read-only logdir and a full disk are set up in a child process (this test binary run
//! again with [`CHILD_SCENARIO`] set): it can give up root, for which permission bits do not
//! apply, and lower its file-size limit (`RLIMIT_FSIZE`) so that writes past it fail with
//! `EFBIG`, as on a full disk, without disturbing the other tests.

use std::fmt::Debug;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use trace_export::proto::tensorboard::{event, summary::value, Event};
use trace_export::summary::{self, TraceOptions};
use trace_export::tfrecord::read_records;
use trace_export::{profiler, xspace, Error};
use trace_runtime::trace;
use trace_tests::{scratch_dir, session_lock};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Checks that `result` is an [`Error::Io`] about `path` or something under it, and that its
/// message names `path`. Returns the error.
#[track_caller]
fn assert_io_error<T: Debug>(result: Result<T, Error>, path: &Path) -> Error {
    let err = match result {
        Ok(value) => panic!("expected an I/O error about {}: {value:?}", path.display()),
        Err(err) => err,
    };
    let Error::Io { path: named, .. } = &err else {
        panic!("expected Error::Io about {}: {err:?}", path.display());
    };
    assert!(named.starts_with(path), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "the message does not name {}: {err}",
        path.display()
    );
    err
}

/// What [`check_files`] found.
#[derive(Debug, Default)]
struct Files {
    xplanes: Vec<PathBuf>,
    chrome_traces: Vec<PathBuf>,
    event_files: Vec<PathBuf>,
}

/// Walks `dir` and reads every file with a name TensorBoard reads with the project's own
/// readers: each must be whole. Fails on any temporary file left behind.
fn check_files(dir: &Path) -> Files {
    let mut files = Files::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".tmp"),
                "temporary file left: {}",
                path.display()
            );
            if name.ends_with(".xplane.pb") {
                let bytes = fs::read(&path).unwrap();
                if let Err(e) = xspace::decode(&bytes) {
                    panic!("{}: {e}", path.display());
                }
                files.xplanes.push(path);
            } else if name.ends_with(".trace.json.gz") {
                let mut json = String::new();
                flate2::read::GzDecoder::new(fs::File::open(&path).unwrap())
                    .read_to_string(&mut json)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                serde_json::from_str::<serde_json::Value>(&json)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.chrome_traces.push(path);
            } else if name.starts_with("events.out.tfevents.") {
                read_events(&path);
                files.event_files.push(path);
            }
        }
    }
    files
}

/// Every event of an event file, checking both checksums of every record and that the first
/// record is the file version.
fn read_events(path: &Path) -> Vec<Event> {
    let bytes = fs::read(path).unwrap();
    let records = read_records(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let events: Vec<Event> = records
        .into_iter()
        .map(|record| Event::decode(record).unwrap())
        .collect();
    assert_eq!(
        events.first().and_then(|e| e.what.clone()),
        Some(event::What::FileVersion("brain.Event:2".into())),
        "{}",
        path.display()
    );
    events
}

/// The steps of the scalars tagged `tag` in an event file.
fn scalar_steps(path: &Path, tag: &str) -> Vec<i64> {
    read_events(path)
        .iter()
        .filter_map(|e| match &e.what {
            Some(event::What::Summary(s)) => Some((e.step, s)),
            _ => None,
        })
        .filter(|(_, s)| {
            s.value
                .iter()
                .any(|v| v.tag == tag && matches!(v.value, Some(value::Value::Tensor(_))))
        })
        .map(|(step, _)| step)
        .collect()
}

/// Something to record: `n` events, each with a string argument, so that the profile is a
/// few bytes per event.
fn work(n: u64) {
    for i in 0..n {
        trace!("storage_work", i = i, label = "some text", {
            std::hint::black_box(i);
        });
    }
}

/// Profiles `work` into `logdir` and checks what was written.
fn profile_into(logdir: &Path) -> profiler::ProfileReport {
    profiler::start(logdir).unwrap();
    work(10);
    let report = profiler::stop().unwrap();
    assert!(report.xplane.starts_with(logdir));
    assert!(report.events >= 10);
    xspace::decode(&fs::read(&report.xplane).unwrap()).unwrap();
    report
}

/// Traces `work(events)` and exports it with the profile to `profiler_outdir` (or the
/// default writer's logdir).
fn trace_export_with_profile(
    profiler_outdir: Option<&Path>,
    events: u64,
) -> trace_export::Result<()> {
    summary::trace_on(TraceOptions {
        profiler: true,
        ..Default::default()
    })?;
    work(events);
    summary::trace_export("storage", Some(0), profiler_outdir)
}

/// Leaves no trace, step or default writer behind.
fn reset() {
    summary::trace_off();
    summary::clear_step();
    assert!(!trace_runtime::is_recording());
}

// ---------------------------------------------------------------------------------------------
// In this process: missing logdirs, logdirs that are files

#[test]
fn missing_logdirs_are_created() {
    let _l = session_lock();
    reset();
    let base = scratch_dir("storage-missing");

    let logdir = base.join("a").join("b").join("profile");
    let report = profile_into(&logdir);
    assert!(report
        .xplane
        .starts_with(logdir.join("plugins").join("profile")));

    let logdir = base.join("c").join("d").join("summary");
    let writer = summary::create_file_writer(&logdir).unwrap();
    assert!(writer.path().starts_with(&logdir));
    writer.scalar("loss", 0.5, 1).unwrap();
    writer.flush().unwrap();
    {
        let _default = writer.as_default();
        // The profile into a missing profiler_outdir, then into the writer's own logdir.
        let outdir = base.join("e").join("f").join("trace-profile");
        trace_export_with_profile(Some(&outdir), 10).unwrap();
        trace_export_with_profile(None, 10).unwrap();
        assert_eq!(check_files(&outdir).xplanes.len(), 1);
    }
    assert_eq!(scalar_steps(writer.path(), "loss"), [1]);

    let files = check_files(&base);
    assert_eq!(files.xplanes.len(), 3, "{files:?}");
    assert_eq!(files.chrome_traces.len(), 3, "{files:?}");
    assert_eq!(files.event_files.len(), 1, "{files:?}");
    reset();
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_logdir_that_is_a_file_is_a_typed_error_naming_it() {
    let _l = session_lock();
    reset();
    let base = scratch_dir("storage-file");
    let file = base.join("logdir-is-a-file");
    fs::write(&file, b"not a directory").unwrap();
    let writer = summary::create_file_writer(base.join("run")).unwrap();
    let _default = writer.as_default();

    // The file itself, and a path under it: both fail before anything is recorded or written.
    for logdir in [file.clone(), file.join("under")] {
        assert_io_error(profiler::start(&logdir), &file);
        assert!(!profiler::is_active() && !trace_runtime::is_recording());
        assert_io_error(summary::create_file_writer(&logdir), &file);
        assert_io_error(trace_export_with_profile(Some(&logdir), 10), &file);
        assert!(!trace_runtime::is_recording());
    }
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");

    // A logdir replaced by a file while the profiler runs: `stop` reports it, and the session
    // is over.
    let replaced = base.join("replaced");
    profiler::start(&replaced).unwrap();
    work(10);
    fs::remove_dir_all(&replaced).unwrap();
    fs::write(&replaced, b"now a file").unwrap();
    assert_io_error(profiler::stop(), &replaced);
    assert!(!profiler::is_active() && !trace_runtime::is_recording());

    // Once the paths are directories, exports into them work.
    for logdir in [&file, &replaced] {
        fs::remove_file(logdir).unwrap();
        fs::create_dir(logdir).unwrap();
        profile_into(logdir);
        trace_export_with_profile(Some(logdir), 10).unwrap();
        let later = summary::create_file_writer(logdir).unwrap();
        later.scalar("later", 1.0, 7).unwrap();
        later.flush().unwrap();
        assert_eq!(scalar_steps(later.path(), "later"), [7]);
        let files = check_files(logdir);
        assert_eq!(files.xplanes.len(), 2, "{files:?}");
        assert_eq!(files.event_files.len(), 1, "{files:?}");
    }
    check_files(&base);
    drop(_default);
    reset();
    fs::remove_dir_all(&base).unwrap();
}

// ---------------------------------------------------------------------------------------------
// In a child process: read-only logdirs and a full disk

/// Set in the child process: which scenario to run.
const CHILD_SCENARIO: &str = "TRACE_TESTS_STORAGE_SCENARIO";
/// Set in the child process: the directory it works in.
const CHILD_DIR: &str = "TRACE_TESTS_STORAGE_DIR";
/// What the child prints when it cannot set its scenario up, followed by the reason.
const SKIPPED: &str = "storage scenario skipped: ";
/// What the child prints when its scenario ran to the end.
const PASSED: &str = "storage scenario passed";
/// The user and group a child running as root becomes: `nobody` on Linux.
const NOBODY: u32 = 65_534;

/// The entry point of the child process; does nothing in a normal test run.
#[test]
fn storage_child() {
    let Some(scenario) = std::env::var_os(CHILD_SCENARIO) else {
        return;
    };
    let base = PathBuf::from(std::env::var_os(CHILD_DIR).expect(CHILD_DIR));
    let outcome = match scenario.to_str() {
        Some("read-only") => read_only_scenario(&base),
        Some("full-disk") => full_disk_scenario(&base),
        Some("open-at-exit") => open_at_exit_scenario(&base),
        other => panic!("unknown scenario {other:?}"),
    };
    match outcome {
        Ok(()) => println!("{PASSED}"),
        Err(reason) => println!("{SKIPPED}{reason}"),
    }
}

/// Runs `scenario` in a child process working in `base`. Returns `false`, after printing
/// why, when the child could not set the scenario up.
fn run_child(scenario: &str, base: &Path) -> bool {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "storage_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_SCENARIO, scenario)
        .env(CHILD_DIR, base)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {scenario} child failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    if let Some(reason) = stdout.lines().find_map(|l| l.strip_prefix(SKIPPED)) {
        println!("{scenario}: not tested here: {reason}");
        return false;
    }
    assert!(stdout.contains(PASSED), "{stdout}\n{stderr}");
    true
}

/// Checks that `err` names the profile file in `run_dir`, not a temporary name.
fn assert_names_the_profile(err: &Error, run_dir: &Path) {
    let Error::Io { path, .. } = err else {
        panic!("{err:?}");
    };
    let profile = run_dir.join(format!("{}.xplane.pb", trace_export::host_name()));
    assert_eq!(path, &profile, "{err}");
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn read_only_logdirs_are_typed_errors_and_later_exports_work() {
    let base = scratch_dir("storage-read-only");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // The child gives up root; it must own its directory to change its permissions.
        std::os::unix::fs::chown(&base, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    if run_child("read-only", &base) {
        // The child made everything writable again and exported into each logdir.
        let files = check_files(&base);
        assert_eq!(files.xplanes.len(), 5, "{files:?}");
        assert_eq!(files.event_files.len(), 2, "{files:?}");
    }
    fs::remove_dir_all(&base).unwrap();
}

/// Gives up root, if the process has it, so that permission bits apply. `Err` says why the
/// scenario cannot run.
fn drop_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    // SAFETY: plain system calls; `setgroups` with a count of 0 reads no memory. glibc applies
    // the ids to every thread of the process.
    let dropped = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(NOBODY) == 0
            && libc::setuid(NOBODY) == 0
    };
    if dropped {
        Ok(())
    } else {
        Err(format!(
            "cannot give up root: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn read_only_scenario(base: &Path) -> Result<(), String> {
    drop_root()?;
    let read_only = base.join("read-only");
    fs::create_dir(&read_only).unwrap();
    set_mode(&read_only, 0o555);
    let probe = read_only.join("probe");
    if fs::write(&probe, b"").is_ok() {
        let _ = fs::remove_file(&probe);
        return Err("this user can write into a read-only directory".into());
    }
    let writer = summary::create_file_writer(base.join("run")).unwrap();
    let _default = writer.as_default();

    // A read-only logdir: nothing starts, nothing is written.
    assert_io_error(profiler::start(&read_only), &read_only);
    assert_io_error(summary::create_file_writer(&read_only), &read_only);
    assert_io_error(trace_export_with_profile(Some(&read_only), 10), &read_only);
    assert!(!trace_runtime::is_recording());

    // Its profile directory made read-only while the profiler runs: `stop` fails creating the
    // run directory.
    let at_stop = base.join("read-only-at-stop");
    profiler::start(&at_stop).unwrap();
    work(10);
    let profiles = at_stop.join("plugins").join("profile");
    set_mode(&profiles, 0o555);
    assert_io_error(profiler::stop(), &profiles);

    // A run directory that exists but is read-only: `stop` fails writing the profile.
    let run_dir = base.join("read-only-run").join("plugins/profile/run");
    fs::create_dir_all(&run_dir).unwrap();
    set_mode(&run_dir, 0o555);
    let options = profiler::ProfilerOptions {
        run_name: Some("run".into()),
        ..Default::default()
    };
    profiler::start_with(base.join("read-only-run"), options.clone()).unwrap();
    work(10);
    let err = assert_io_error(profiler::stop(), &run_dir);
    assert_names_the_profile(&err, &run_dir);
    assert!(!trace_runtime::is_recording());

    // An event file whose directory turns read-only keeps working: it is open already.
    set_mode(writer.logdir(), 0o555);
    writer.scalar("loss", 0.5, 1).unwrap();
    writer.flush().unwrap();
    set_mode(writer.logdir(), 0o755);

    // Writable again: later exports into the same logdirs work.
    for dir in [&read_only, &profiles, &run_dir] {
        set_mode(dir, 0o755);
    }
    profile_into(&read_only);
    trace_export_with_profile(Some(&read_only), 10).unwrap();
    let later = summary::create_file_writer(&read_only).unwrap();
    later.scalar("later", 1.0, 2).unwrap();
    later.flush().unwrap();
    profile_into(&at_stop);
    profiler::start_with(base.join("read-only-run"), options).unwrap();
    work(10);
    let report = profiler::stop().unwrap();
    assert!(report.xplane.starts_with(&run_dir));
    // trace_export with the default writer's logdir as the destination.
    trace_export_with_profile(None, 10).unwrap();
    assert_eq!(scalar_steps(writer.path(), "loss"), [1]);
    Ok(())
}

#[test]
fn a_full_disk_is_a_typed_error_and_later_exports_work() {
    let base = scratch_dir("storage-full");
    if run_child("full-disk", &base) {
        let files = check_files(&base);
        assert_eq!(files.xplanes.len(), 2, "{files:?}");
        assert_eq!(files.event_files.len(), 1, "{files:?}");
        // The scalars written before the disk filled, and the one after, in order.
        let steps = scalar_steps(&files.event_files[0], "loss");
        assert_eq!(steps.last(), Some(&1_000_000), "{steps:?}");
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    }
    fs::remove_dir_all(&base).unwrap();
}

/// The file-size limit of the full-disk scenario: room for an event file's first records,
/// not for a profile of a few thousand events.
const FILE_SIZE_LIMIT: u64 = 4096;

/// Lowers this process's file-size limit to `limit` bytes (`None`: back to the hard limit).
fn limit_file_size(limit: Option<u64>) -> Result<(), String> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut current) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    let wanted = libc::rlimit {
        rlim_cur: limit.map_or(current.rlim_max, |l| l as libc::rlim_t),
        rlim_max: current.rlim_max,
    };
    if wanted.rlim_cur > wanted.rlim_max {
        return Err(format!("the hard file-size limit is {}", current.rlim_max));
    }
    // SAFETY: `wanted` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &wanted) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Checks that `err` is the file-size limit's `EFBIG`, as the scenario expects.
fn assert_too_big(err: &Error) {
    let Error::Io { source, .. } = err else {
        unreachable!("checked by assert_io_error");
    };
    assert_eq!(source.raw_os_error(), Some(libc::EFBIG), "{err}");
}

fn full_disk_scenario(base: &Path) -> Result<(), String> {
    // Past the limit the kernel sends SIGXFSZ, which kills the process by default; ignored,
    // the write fails with EFBIG instead, as a write to a full disk fails with ENOSPC.
    // SAFETY: SIG_IGN is a valid disposition for SIGXFSZ, and nothing else in this process
    // handles it.
    if unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(format!("signal: {}", std::io::Error::last_os_error()));
    }
    let profile_logdir = base.join("profile");
    let trace_logdir = base.join("trace");
    let options = profiler::ProfilerOptions {
        run_name: Some("run".into()),
        ..Default::default()
    };
    let writer = summary::create_file_writer(base.join("summary")).unwrap();
    writer.scalar("loss", 0.0, 0).unwrap();
    limit_file_size(Some(FILE_SIZE_LIMIT))?;

    // The profiler: the profile does not fit, `stop` says where it could not write.
    profiler::start_with(&profile_logdir, options.clone()).unwrap();
    work(2_000);
    let err = assert_io_error(profiler::stop(), &profile_logdir);
    assert_too_big(&err);
    assert_names_the_profile(&err, &profile_logdir.join("plugins/profile/run"));
    assert!(!trace_runtime::is_recording());

    // A trace exported with its profile: the same.
    let err = assert_io_error(
        trace_export_with_profile(Some(&trace_logdir), 2_000),
        &trace_logdir,
    );
    assert_too_big(&err);

    // Scalars until the event file is full: the failing write names the file, and the file
    // still holds whole records only.
    let mut step = 1;
    let err = loop {
        assert!(step < 10_000, "the file-size limit never applied");
        if let Err(err) = writer.scalar("loss", step as f64, step) {
            break err;
        }
        step += 1;
    };
    assert_io_error(Err::<(), _>(err), writer.path());
    read_events(writer.path());
    // The failed records are not retried behind the caller's back.
    writer.flush().unwrap();
    read_events(writer.path());
    let last_written = scalar_steps(writer.path(), "loss");
    assert_eq!(last_written.last(), Some(&(step - 1)));

    // The graph of a trace does not fit in the event file either.
    {
        let _default = writer.as_default();
        summary::trace_on(TraceOptions::default()).unwrap();
        work(2_000);
        let err = summary::trace_export("graph", Some(0), None);
        assert_too_big(&assert_io_error(err, writer.path()));
    }
    read_events(writer.path());

    // Room again: the same writer and the same logdirs work.
    limit_file_size(None)?;
    writer.scalar("loss", 1.0, 1_000_000).unwrap();
    writer.flush().unwrap();
    profiler::start_with(&profile_logdir, options).unwrap();
    work(2_000);
    profiler::stop().unwrap();
    trace_export_with_profile(Some(&trace_logdir), 2_000).unwrap();
    Ok(())
}

#[test]
fn a_session_still_open_at_exit_leaves_no_partial_file() {
    let base = scratch_dir("storage-open-at-exit");
    assert!(run_child("open-at-exit", &base));
    // The process exited normally (checked by run_child). The open profiler session wrote
    // nothing; the event file holds the records written before, whole.
    let files = check_files(&base);
    assert!(files.xplanes.is_empty(), "{files:?}");
    assert_eq!(files.event_files.len(), 1, "{files:?}");
    assert_eq!(scalar_steps(&files.event_files[0], "loss"), [0, 1, 2]);
    fs::remove_dir_all(&base).unwrap();
}

/// Returns with a profiler session recording, a thread still recording in it and a summary
/// writer open, as a `main` that forgets `stop` would.
fn open_at_exit_scenario(base: &Path) -> Result<(), String> {
    let writer = summary::create_file_writer(base.join("summary")).unwrap();
    writer.set_as_default();
    for step in 0..3 {
        writer
            .scalar("loss", 1.0 / (step + 1) as f64, step)
            .unwrap();
    }
    profiler::start(base.join("profile")).unwrap();
    work(100);
    let (started, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        started.send(()).unwrap();
        loop {
            work(10);
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    });
    ready.recv().unwrap();
    Ok(())
}
