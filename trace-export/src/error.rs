//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while starting, stopping or writing. Each variant names the
/// path or the state involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be created, written or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("create directory", "write", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A recording session is already running.
    #[error("cannot start {requested}: {active} is already active (stop it first)")]
    AlreadyActive {
        /// What was asked for.
        requested: &'static str,
        /// What is running.
        active: &'static str,
    },
    /// The profiler server (feature `server`) is recording a live capture for a remote client.
    #[error(
        "cannot start {requested}: the profiler server is recording a remote capture for \
         {client} (it ends with the capture; the capture is left alone)"
    )]
    RemoteCapture {
        /// What was asked for.
        requested: &'static str,
        /// The address of the client that asked for the capture.
        client: String,
    },
    /// A network operation of the profiler server or the capture client failed.
    #[error("{action} {addr}: {source}")]
    Network {
        /// What was being done ("bind", "resolve", ...).
        action: &'static str,
        /// The address involved.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A live capture (`profiler::client::trace`) got a profile from none of its hosts.
    #[error("capture from {service_addr} failed: {reason}")]
    Capture {
        /// The addresses, as given.
        service_addr: String,
        /// What went wrong with each host.
        reason: String,
    },
    /// Stopping or exporting with nothing running.
    #[error("{0}")]
    NotActive(&'static str),
    /// An option is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `trace_export` found no step: neither its `step` argument nor `summary::set_step`.
    #[error(
        "trace_export(\"{name}\") needs a step: pass one or call summary::set_step (the recorded \
         trace is kept, call trace_export again)"
    )]
    NoStep {
        /// The summary name passed to `trace_export`.
        name: String,
    },
    /// Nowhere to write: no default writer and no explicit directory.
    #[error("{0}")]
    NoDestination(&'static str),
    /// A file that should hold a profile or event records does not.
    #[error("{path}: {reason}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`]: `action` ("write", "read directory", ...) on `path` failed.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
