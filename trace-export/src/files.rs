//! File-system helpers: atomic writes, run names and host names.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    if !dir.is_dir() {
        return Err(Error::io(
            "create directory",
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        ));
    }
    Ok(())
}

/// A hidden temporary name beside `path`, which TensorBoard never reads.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// A file written completely under a hidden temporary name, waiting for its final name
/// ([`publish`](Self::publish)); removed if it never gets one.
pub(crate) struct Unpublished {
    temporary: PathBuf,
}

impl Unpublished {
    /// Writes a file meant to be `intended` under a temporary name beside it.
    pub(crate) fn write(
        intended: &Path,
        write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
    ) -> Result<Unpublished> {
        let file = Unpublished {
            temporary: temporary_path(intended),
        };
        let written = (|| {
            let mut out = fs::File::create(&file.temporary)?;
            write(&mut out)?;
            out.flush()?;
            out.sync_all()
        })();
        // On an error, dropping `file` removes what was written.
        written.map_err(|e| Error::io("write", intended, e))?;
        Ok(file)
    }

    /// Gives the file its final name, atomically for readers.
    pub(crate) fn publish(self, path: &Path) -> Result<PathBuf> {
        fs::rename(&self.temporary, path).map_err(|e| Error::io("write", path, e))?;
        Ok(path.to_path_buf())
    }
}

impl Drop for Unpublished {
    fn drop(&mut self) {
        // Gone already once published; otherwise it must not be left behind.
        let _ = fs::remove_file(&self.temporary);
    }
}

/// Writes a file with `write` to `dir/<stem><suffix>`, or, when another process of the same
/// host already wrote that name in this run, to `dir/<stem>.<pid><suffix>`. The file is
/// written under a temporary name first; the name is claimed with a hard link, which fails
/// rather than replace an existing file. Returns the path written.
pub(crate) fn write_claiming_name(
    dir: &Path,
    stem: &str,
    suffix: &str,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<(PathBuf, String)> {
    let pid = std::process::id();
    let temporary = dir.join(format!(".{stem}.{pid}{suffix}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()
    };
    // The error names the file the caller asked for, not the hidden temporary name.
    write().map_err(|e| {
        let _ = fs::remove_file(&temporary);
        Error::io("write", dir.join(format!("{stem}{suffix}")), e)
    })?;
    let mut last_error = None;
    for host in [stem.to_owned(), format!("{stem}.{pid}")] {
        let path = dir.join(format!("{host}{suffix}"));
        match fs::hard_link(&temporary, &path) {
            Ok(()) => {
                let _ = fs::remove_file(&temporary);
                return Ok((path, host));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some((path, e)),
            Err(e) => {
                // Some file systems have no hard links: fall back to a rename that could
                // replace a concurrent writer's file, but is still atomic for readers.
                if !path.exists() {
                    let renamed = fs::rename(&temporary, &path);
                    if renamed.is_ok() {
                        return Ok((path, host));
                    }
                }
                last_error = Some((path, e));
            }
        }
    }
    let _ = fs::remove_file(&temporary);
    let (path, e) = last_error.expect("two names were tried");
    Err(Error::io("write", path, e))
}

/// Where TensorBoard's profile plugin looks for runs: `<logdir>/plugins/profile`.
pub fn profile_dir(logdir: &Path) -> PathBuf {
    logdir.join("plugins").join("profile")
}

/// `YYYY_MM_DD_HH_MM_SS` (UTC) for a wall-clock time in nanoseconds since the Unix epoch, the
/// run-directory name TensorFlow uses.
pub fn run_name(wall_ns: u64) -> String {
    let secs = wall_ns / 1_000_000_000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// This machine's host name, reduced to characters that are safe in a file name.
pub fn host_name() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let name = sanitize_file_component(raw.trim());
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Keeps letters, digits, `-`, `_` and `.`; replaces anything else with `_`.
pub(crate) fn sanitize_file_component(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_utc_timestamps() {
        assert_eq!(run_name(0), "1970_01_01_00_00_00");
        assert_eq!(run_name(1_700_000_000_000_000_000), "2023_11_14_22_13_20");
        assert_eq!(run_name(951_782_400_000_000_000), "2000_02_29_00_00_00");
    }

    #[test]
    fn file_components_are_sanitized() {
        assert_eq!(sanitize_file_component("a b/c\"d"), "a_b_c_d");
        assert_eq!(sanitize_file_component("..evil"), "evil");
        assert_eq!(
            sanitize_file_component("host.example.com"),
            "host.example.com"
        );
    }
}
