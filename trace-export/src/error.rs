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
