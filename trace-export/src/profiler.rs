//! `tf.profiler.experimental.start / stop` for Rust: record every thread, then write a
//! profile that TensorBoard's Profile tab opens.
//!
//! ```no_run
//! use trace_export::profiler;
//!
//! # fn main() -> Result<(), trace_export::Error> {
//! profiler::start("logs")?;
//! // ... run the instrumented code ...
//! let report = profiler::stop()?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! Files: `<logdir>/plugins/profile/<run>/<host>.xplane.pb` and, beside it,
//! `<host>.trace.json.gz` for Perfetto UI.
//!
//! With the cargo feature `server`, `profiler::server` lets TensorBoard's "Capture profile"
//! button profile the running program, and `profiler::client` captures such programs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use trace_runtime::session::{self, SessionConfig, SessionError};
use trace_runtime::snapshot::Snapshot;

use crate::error::{Error, Result};
use crate::files;
use crate::gzip::Pieces;
use crate::report::Report;
use crate::{chrome, xspace};

#[cfg(feature = "server")]
pub mod client;
#[cfg(feature = "server")]
pub mod server;

/// Options of a profiling session, after TensorFlow's `ProfilerOptions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfilerOptions {
    /// Records events of level at most this: 1 critical, 2 info (the default), 3 verbose.
    pub host_tracer_level: u8,
    /// Events each thread can hold; beyond it events are dropped, counted and reported.
    pub max_events_per_thread: usize,
    /// The run directory under `plugins/profile/`; default: the start time as
    /// `YYYY_MM_DD_HH_MM_SS` (UTC). Processes that profile one run together pass the same name.
    pub run_name: Option<String>,
    /// The host file's name; default: this machine's host name (with `.<pid>` added when
    /// another process of this host already wrote the run).
    pub host_name: Option<String>,
    /// Also write `<host>.trace.json.gz` (Chrome trace format). Default: true.
    pub chrome_trace: bool,
}

impl Default for ProfilerOptions {
    fn default() -> Self {
        ProfilerOptions {
            host_tracer_level: 2,
            max_events_per_thread: 1 << 22,
            run_name: None,
            host_name: None,
            chrome_trace: true,
        }
    }
}

impl ProfilerOptions {
    pub(crate) fn session_config(&self) -> Result<SessionConfig> {
        if !(1..=3).contains(&self.host_tracer_level) {
            return Err(Error::InvalidOption {
                option: "host_tracer_level",
                reason: format!(
                    "{} is not 1 (critical), 2 (info) or 3 (verbose)",
                    self.host_tracer_level
                ),
            });
        }
        if self.max_events_per_thread == 0 {
            return Err(Error::InvalidOption {
                option: "max_events_per_thread",
                reason: "must be at least 1".into(),
            });
        }
        for (option, value) in [("run_name", &self.run_name), ("host_name", &self.host_name)] {
            if let Some(value) = value {
                if value.is_empty() || files::sanitize_file_component(value) != *value {
                    return Err(Error::InvalidOption {
                        option,
                        reason: format!(
                            "{value:?} must be non-empty and use only letters, digits, '-', '_' and '.'"
                        ),
                    });
                }
            }
        }
        Ok(SessionConfig {
            level: self.host_tracer_level,
            max_events_per_thread: self.max_events_per_thread,
            owner: PROFILER,
            ..SessionConfig::default()
        })
    }
}

struct Active {
    logdir: PathBuf,
    options: ProfilerOptions,
}

static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);

fn active() -> MutexGuard<'static, Option<Active>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts profiling with the default options. See [`start_with`].
pub fn start(logdir: impl AsRef<Path>) -> Result<()> {
    start_with(logdir, ProfilerOptions::default())
}

/// Starts profiling every thread; [`stop`] writes the profile under `logdir`.
///
/// Errors when a profiler session or a summary trace is already active, when an option is
/// out of range, or when `logdir/plugins/profile` cannot be created.
pub fn start_with(logdir: impl AsRef<Path>, options: ProfilerOptions) -> Result<()> {
    let logdir = logdir.as_ref().to_path_buf();
    let config = options.session_config()?;
    let mut active = active();
    if active.is_some() {
        return Err(Error::AlreadyActive {
            requested: "the profiler",
            active: PROFILER,
        });
    }
    files::create_dir(&files::profile_dir(&logdir))?;
    start_recording(&config, "the profiler")?;
    *active = Some(Active { logdir, options });
    Ok(())
}

/// Who a profiler session's recording belongs to, as a second `start` is told.
const PROFILER: &str = "a profiler session (profiler::start)";

/// Starts the recorder for `config.owner`; a busy recorder is an error that names who
/// records. Must not be called with the profiler lock held.
pub(crate) fn start_recording(config: &SessionConfig, requested: &'static str) -> Result<()> {
    session::start(config).map_err(|error| match error {
        SessionError::AlreadyActive { owner } => {
            // The recorder may be held by a live capture of the profiler server.
            #[cfg(feature = "server")]
            if let Some(client) = server::remote_capture() {
                return Error::RemoteCapture { requested, client };
            }
            Error::AlreadyActive {
                requested,
                active: owner,
            }
        }
        other => Error::InvalidOption {
            option: "level",
            reason: other.to_string(),
        },
    })
}

/// True while a profiler session started by [`start`] records.
pub fn is_active() -> bool {
    active().is_some()
}

/// Stops profiling and writes the profile. Returns where it went and what it holds;
/// `Display` prints the text report.
pub fn stop() -> Result<ProfileReport> {
    let Active { logdir, options } = active().take().ok_or(Error::NotActive(
        "profiler::stop called with no profiler session active",
    ))?;
    let snapshot = session::stop()
        .map_err(|_| Error::NotActive("the recording session was stopped elsewhere"))?;
    write_profile(&snapshot, &logdir, &options)
}

/// Writes `snapshot` as a profile run under `logdir/plugins/profile/`.
pub(crate) fn write_profile(
    snapshot: &Snapshot,
    logdir: &Path,
    options: &ProfilerOptions,
) -> Result<ProfileReport> {
    let profile_dir = files::profile_dir(logdir);
    let run_dir = match &options.run_name {
        Some(name) => profile_dir.join(name),
        None => fresh_run_dir(&profile_dir, &files::run_name(snapshot.start_wall_ns)),
    };
    files::create_dir(&run_dir)?;
    let host = options.host_name.clone().unwrap_or_else(files::host_name);
    // The bytes are written straight from the recorded events, and the Chrome trace and the
    // report read the same layout: no XSpace message is built (see `xspace`). The Chrome
    // trace, the slowest file (JSON, compressed), is written on a second thread meanwhile,
    // under a temporary name until the xplane has claimed the host's name; once the xplane
    // and the report are done, this thread helps compress it.
    let layout = xspace::Layout::new(snapshot, &host);
    let chrome_path = |host: &str| run_dir.join(format!("{host}.trace.json.gz"));
    let pieces = Pieces::default();
    let write_chrome = |layout: &xspace::Layout<'_>| {
        // However the writer ends, the helper returns.
        let _closer = pieces.closer();
        files::Unpublished::write(&chrome_path(&host), |file| {
            chrome::write_json_gz_helped(layout, std::io::BufWriter::new(file), &pieces)
        })
    };
    let (xplane, host, report, chrome) = std::thread::scope(|scope| {
        let chrome = options.chrome_trace.then(|| {
            std::thread::Builder::new()
                .name("trace-export chrome".into())
                .spawn_scoped(scope, || write_chrome(&layout))
        });
        // Streamed to the file: the xplane (131 MiB for 10 M events) is never whole in memory.
        let claimed = files::write_claiming_name(&run_dir, &host, ".xplane.pb", |file| {
            layout.encode_to(file)
        });
        let report = Report::from_profile(&layout);
        if let Some(Ok(_)) = &chrome {
            pieces.help();
        }
        let chrome = chrome.map(|spawned| match spawned {
            Ok(thread) => thread.join().unwrap_or_else(|_| {
                let panicked = std::io::Error::other("the Chrome trace writer panicked");
                Err(Error::io("write", chrome_path(&host), panicked))
            }),
            // No second thread to be had: write it here.
            Err(_) => write_chrome(&layout),
        });
        claimed.map(|(xplane, host)| (xplane, host, report, chrome))
    })?;
    let trace_json = match chrome {
        Some(written) => Some(written?.publish(&chrome_path(&host))?),
        None => None,
    };
    let dropped = snapshot.dropped();
    if dropped > 0 {
        eprintln!(
            "trace-export: {dropped} events were dropped because thread buffers were full \
             (raise ProfilerOptions::max_events_per_thread); see the profile's warnings"
        );
    }
    Ok(ProfileReport {
        xplane,
        trace_json,
        run_dir,
        host,
        events: snapshot.event_count(),
        dropped,
        report,
    })
}

/// `base`, or `base_2`, `base_3`, ... when a run of that name exists already (two profiles
/// started within one second).
fn fresh_run_dir(profile_dir: &Path, base: &str) -> PathBuf {
    let mut candidate = profile_dir.join(base);
    let mut n = 2;
    while candidate.exists() {
        candidate = profile_dir.join(format!("{base}_{n}"));
        n += 1;
    }
    candidate
}

/// What [`stop`] wrote, and the text report of it.
#[derive(Clone, Debug)]
pub struct ProfileReport {
    /// `<logdir>/plugins/profile/<run>/<host>.xplane.pb`.
    pub xplane: PathBuf,
    /// The Chrome trace beside it, when written.
    pub trace_json: Option<PathBuf>,
    /// The run directory.
    pub run_dir: PathBuf,
    /// The host name the profile was written under.
    pub host: String,
    /// Events recorded.
    pub events: u64,
    /// Events dropped because a thread's buffer was full.
    pub dropped: u64,
    /// Call sites by self time, and step times.
    pub report: Report,
}

impl fmt::Display for ProfileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "profile: {}", self.xplane.display())?;
        if let Some(json) = &self.trace_json {
            writeln!(f, "chrome trace: {}", json.display())?;
        }
        if self.dropped > 0 {
            writeln!(f, "dropped: {} events (buffers full)", self.dropped)?;
        }
        write!(f, "{}", self.report)
    }
}
