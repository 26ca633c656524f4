//! TensorBoard event files: `events.out.tfevents.<secs>.<host>.<pid>.<n>.v2`, a TFRecord
//! stream of [`Event`] records whose first record is `file_version: "brain.Event:2"`.
//!
//! A file is only ever appended to. Each call writes whole records and flushes them, so a
//! reader sees complete records, or at worst a truncated last one while a write is in
//! progress, which TensorBoard's readers treat as "more to come" rather than as damage. A
//! write that fails (a full disk) is cut back off the file, so that no partial record stays
//! in it and later records still read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::error::{Error, Result};
use crate::files;
use crate::proto::tensorboard::{event, Event};
use crate::tfrecord::RecordWriter;

/// The `file_version` of the first record; version 2 tells readers not to purge data on
/// decreasing steps.
pub(crate) const FILE_VERSION: &str = "brain.Event:2";

/// The `<n>` of file names: unique within the process, so that two writers opened on one
/// logdir within the same second get different files.
static NEXT_FILE_NUMBER: AtomicU64 = AtomicU64::new(0);

/// Seconds since the Unix epoch, as `Event.wall_time` holds them.
pub(crate) fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An open event file.
#[derive(Debug)]
pub(crate) struct EventFile {
    path: PathBuf,
    /// `None` once closed.
    records: Option<RecordWriter<BufWriter<File>>>,
    /// Bytes of whole records in the file: where a failed write is cut back to.
    len: u64,
}

impl EventFile {
    /// Creates `logdir` (and its parents) and a new event file in it, and writes the
    /// `file_version` record.
    ///
    /// Never replaces an existing file. On error nothing is left behind but the directories
    /// that could be created.
    pub(crate) fn create(logdir: &Path) -> Result<EventFile> {
        files::create_dir(logdir)?;
        let wall = wall_time();
        let host = files::host_name();
        let pid = std::process::id();
        let (path, file) = loop {
            let n = NEXT_FILE_NUMBER.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "events.out.tfevents.{:010}.{host}.{pid}.{n}.v2",
                wall as u64
            );
            let path = logdir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                // Another writer (or an earlier run with the same pid) has this name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create event file", path, e)),
            }
        };
        let mut events = EventFile {
            path,
            records: Some(RecordWriter::new(BufWriter::new(file))),
            len: 0,
        };
        let first = Event {
            wall_time: wall,
            what: Some(event::What::FileVersion(FILE_VERSION.to_owned())),
            ..Default::default()
        };
        if let Err(e) = events.write(&[first]) {
            // Do not leave a file without its first record where TensorBoard looks.
            events.records = None;
            let _ = fs::remove_file(&events.path);
            return Err(e);
        }
        Ok(events)
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `events` as records and flushes them to the file. On error none of them is
    /// in the file.
    pub(crate) fn write(&mut self, events: &[Event]) -> Result<()> {
        let path = &self.path;
        let records = self.records.as_mut().ok_or_else(|| closed(path))?;
        let mut data = Vec::new();
        let mut written = 0;
        let result = events
            .iter()
            .try_for_each(|event| {
                data.clear();
                event
                    .encode(&mut data)
                    .expect("a Vec grows to hold any message");
                written += RECORD_FRAMING + data.len() as u64;
                records.write_record(&data)
            })
            .and_then(|()| records.flush());
        match result {
            Ok(()) => {
                self.len += written;
                Ok(())
            }
            Err(e) => {
                self.cut_back();
                Err(Error::io("write", &self.path, e))
            }
        }
    }

    /// After a failed write, drops what it left: the bytes still buffered, and those that
    /// reached the file after its last whole record. If the file cannot be cut, closes it, so
    /// that later writes fail rather than append records no reader would reach.
    #[cold]
    fn cut_back(&mut self) {
        let Some(records) = self.records.take() else {
            return;
        };
        // `into_parts` hands the file back without flushing the buffer.
        let (mut file, _unwritten) = records.into_inner().into_parts();
        let cut = file
            .set_len(self.len)
            .and_then(|()| file.seek(SeekFrom::Start(self.len)));
        if cut.is_ok() {
            self.records = Some(RecordWriter::new(BufWriter::new(file)));
        }
    }

    /// Flushes buffered records to the file.
    pub(crate) fn flush(&mut self) -> Result<()> {
        match &mut self.records {
            Some(records) => records
                .flush()
                .map_err(|e| Error::io("flush", &self.path, e)),
            None => Ok(()),
        }
    }

    /// Flushes and closes the file; later writes fail. Closing twice is harmless.
    pub(crate) fn close(&mut self) -> Result<()> {
        let Some(records) = self.records.take() else {
            return Ok(());
        };
        let file = records
            .into_inner()
            .into_inner()
            .map_err(|e| Error::io("flush", &self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io("sync", &self.path, e))
    }

    /// True once [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.records.is_none()
    }
}

/// Bytes a TFRecord adds to its data: the length and its checksum before, the data's
/// checksum after.
const RECORD_FRAMING: u64 = 8 + 4 + 4;

// Dropping an open `EventFile` flushes it: `BufWriter` writes out its buffer on drop.

fn closed(path: &Path) -> Error {
    Error::io(
        "write",
        path,
        io::Error::other("the summary writer was closed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfrecord::read_records;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("trace-export-events-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names_and_first_record() {
        let dir = scratch("names");
        let a = EventFile::create(&dir).unwrap();
        let b = EventFile::create(&dir).unwrap();
        assert_ne!(a.path(), b.path());
        for file in [&a, &b] {
            let name = file.path().file_name().unwrap().to_str().unwrap();
            let parts: Vec<&str> = name.split('.').collect();
            assert_eq!(&parts[..3], ["events", "out", "tfevents"], "{name}");
            assert_eq!(parts[3].len(), 10, "{name}");
            assert!(parts[3].bytes().all(|b| b.is_ascii_digit()), "{name}");
            assert!(name.ends_with(".v2"), "{name}");
            assert!(
                name.contains(&format!(".{}.", std::process::id())),
                "{name}"
            );
            let bytes = fs::read(file.path()).unwrap();
            let records = read_records(&bytes).unwrap();
            assert_eq!(records.len(), 1);
            let first = Event::decode(records[0]).unwrap();
            assert_eq!(
                first.what,
                Some(event::What::FileVersion(FILE_VERSION.into()))
            );
            assert!(first.wall_time > 1.6e9);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_after_close_fails_and_names_the_file() {
        let dir = scratch("closed");
        let mut file = EventFile::create(&dir).unwrap();
        file.close().unwrap();
        file.close().unwrap();
        assert!(file.is_closed());
        let err = file.write(&[Event::default()]).unwrap_err();
        assert!(err.to_string().contains(&file.path().display().to_string()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
