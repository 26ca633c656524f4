//! `trace-export`: inspect and convert the profiles that `profiler::stop` writes.
//!
//! ```text
//! trace-export report logs                       # newest run under logs/plugins/profile
//! trace-export report run/host.xplane.pb --top 50
//! trace-export report logs --json --top 0           # every call site, for scripts
//! trace-export convert run/host.xplane.pb --chrome trace.json.gz
//! trace-export capture localhost:6009 logs --duration-ms 2000   # feature `server`
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trace_export::proto::xplane::XSpace;
use trace_export::report::Report;
use trace_export::{chrome, Error};

#[derive(Parser)]
#[command(
    name = "trace-export",
    version,
    about = "Inspect and convert TensorBoard profiles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the call sites by self time and the step times of a profile.
    Report {
        /// A logdir (its newest profile run is read), a run directory, or an .xplane.pb file.
        path: PathBuf,
        /// How many call sites to show (0: all).
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Prints the report as JSON: one object per profile, with each call site's ops
        /// (the names xprof's framework_op_stats lists it under) and times in nanoseconds.
        #[arg(long)]
        json: bool,
    },
    /// Converts an .xplane.pb file to Chrome trace JSON (gzip-compressed when the name ends
    /// in .gz), for Perfetto UI and chrome://tracing.
    Convert {
        /// The .xplane.pb file.
        xplane: PathBuf,
        /// Where to write the Chrome trace.
        #[arg(long)]
        chrome: PathBuf,
    },
    /// Profiles running programs that serve the profiler (TensorBoard's "Capture profile"):
    /// writes LOGDIR/plugins/profile/<run>/<host>_<port>.xplane.pb, one per address.
    /// Needs the `server` feature.
    Capture {
        /// host:port of the profiler server; several, comma-separated, are captured at once
        /// into one run.
        service_addr: String,
        /// The logdir to write the run into.
        logdir: PathBuf,
        /// How long to record.
        #[arg(long, default_value_t = 2000)]
        duration_ms: u64,
        /// Records events of level at most this: 1 critical, 2 info, 3 verbose.
        #[arg(long, default_value_t = 2)]
        host_tracer_level: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report { path, top, json } => report(&path, top, json),
        Command::Convert { xplane, chrome } => convert(&xplane, &chrome),
        Command::Capture {
            service_addr,
            logdir,
            duration_ms,
            host_tracer_level,
        } => capture(&service_addr, &logdir, duration_ms, host_tracer_level),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace-export: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(path: &Path, top: usize, json: bool) -> Result<(), Error> {
    let files = xplane_files(path)?;
    let mut reports = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let space = read_xspace(file)?;
        let mut report = Report::from_xspace(&space);
        report.top = top;
        if json {
            reports.push(report_json(file, &report));
            continue;
        }
        if i > 0 {
            println!();
        }
        println!("{}\n{report}", file.display());
    }
    if json {
        println!("{}", serde_json::Value::Array(reports));
    }
    Ok(())
}

/// The report of `file` as JSON, with the rows the text shows.
fn report_json(file: &Path, report: &Report) -> serde_json::Value {
    let shown = if report.top == 0 {
        report.sites.len()
    } else {
        report.top
    };
    let sites: Vec<_> = (report.sites.iter().take(shown))
        .map(|site| {
            serde_json::json!({
                "name": site.name,
                "ops": site.ops,
                "count": site.count,
                "total_ns": site.total_ns,
                "self_ns": site.self_ns,
                "p50_ns": site.p50_ns,
                "p99_ns": site.p99_ns,
                "max_ns": site.max_ns,
            })
        })
        .collect();
    let steps: Vec<_> = (report.steps.iter())
        .map(|step| serde_json::json!({ "name": step.name, "duration_ns": step.duration_ns }))
        .collect();
    serde_json::json!({
        "file": file.to_string_lossy(),
        "events": report.events,
        "threads": report.threads,
        "warnings": report.warnings,
        "steps": steps,
        "sites": sites,
        "more_sites": report.sites.len() - report.sites.len().min(shown),
    })
}

fn convert(xplane: &Path, out: &Path) -> Result<(), Error> {
    let space = read_xspace(xplane)?;
    let io_error = |e| Error::io("write", out, e);
    let file = std::fs::File::create(out).map_err(io_error)?;
    let written = if out.extension().is_some_and(|e| e == "gz") {
        chrome::write_json_gz(&space, file)
    } else {
        chrome::write_json(&space, file)
    };
    if let Err(e) = written {
        // Remove the partial output, but only a regular file: never a device such as
        // `/dev/full` (which root could delete), nor a symbolic link the user made.
        if std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_file()) {
            let _ = std::fs::remove_file(out);
        }
        return Err(io_error(e));
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

#[cfg(feature = "server")]
fn capture(
    service_addr: &str,
    logdir: &Path,
    duration_ms: u64,
    host_tracer_level: u32,
) -> Result<(), Error> {
    use trace_export::profiler::client::{self, CaptureOptions};
    let report = client::trace_with(
        service_addr,
        logdir,
        CaptureOptions {
            duration_ms,
            host_tracer_level,
            ..CaptureOptions::default()
        },
    )?;
    for host in &report.hosts {
        match &host.result {
            Ok(path) => eprintln!("wrote {}", path.display()),
            Err(reason) => eprintln!("trace-export: {}: {reason}", host.address),
        }
    }
    println!("{}", report.run_dir.display());
    Ok(())
}

#[cfg(not(feature = "server"))]
fn capture(_: &str, _: &Path, _: u64, _: u32) -> Result<(), Error> {
    Err(Error::InvalidOption {
        option: "capture",
        reason: "this trace-export was built without the `server` feature (cargo install \
                 trace-export --features server, or cargo run -p trace-export --features \
                 server -- capture ...)"
            .into(),
    })
}

fn read_xspace(path: &Path) -> Result<XSpace, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    trace_export::xspace::decode(&bytes).map_err(|reason| Error::InvalidFile {
        path: path.to_path_buf(),
        reason,
    })
}

/// The profiles `path` names: itself if it is a file, the `.xplane.pb` files of a run
/// directory, or those of the newest run under `<logdir>/plugins/profile`.
fn xplane_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let profile_dir = trace_export::profile_dir(path);
    let run_dir = if profile_dir.is_dir() {
        let mut runs = list(&profile_dir)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect::<Vec<_>>();
        runs.sort();
        runs.pop().ok_or_else(|| Error::InvalidFile {
            path: profile_dir.clone(),
            reason: "holds no profile run".into(),
        })?
    } else {
        path.to_path_buf()
    };
    let mut files: Vec<PathBuf> = list(&run_dir)?
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".xplane.pb") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::InvalidFile {
            path: run_dir,
            reason: "no .xplane.pb file here (expected a logdir, a profile run directory or an .xplane.pb file)".into(),
        });
    }
    Ok(files)
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
}
