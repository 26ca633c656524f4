//! Chrome trace event format (`<host>.trace.json.gz`), for Perfetto UI and chrome://tracing.
//!
//! The shape mirrors the trace xprof itself serves for a profile: `M` metadata events naming
//! the process and each thread, then one complete (`X`) event per recorded event with its
//! metadata as `args`; allocations and frees become samples of a "heap in use" counter
//! (`C`). Times are microseconds; strings go through a JSON encoder, so quotes,
//! control characters and emoji in names and values stay valid JSON.
//!
//! A trace has millions of events and few distinct names, so each event and stat name is
//! escaped once and reused, and numbers are formatted by hand into one buffer.

use std::io::{self, Write};

use crate::gzip::{GzWriter, Pieces};

use crate::xspace::{
    is_heap_event, is_thread_line, EventView, Interner, LineView, Profile, StatValue, Visitor,
};

/// Writes the host planes of a profile as Chrome trace JSON.
///
/// `profile` is a [`Layout`](crate::xspace::Layout) planned from a recording, or an
/// [`XSpace`](crate::proto::xplane::XSpace) read from a file.
pub fn write_json<'a, W: Write>(profile: impl Into<Profile<'a>>, out: W) -> io::Result<()> {
    let profile = profile.into();
    let mut json = JsonWriter {
        out,
        error: None,
        buf: Vec::with_capacity(CHUNK + (CHUNK >> 2)),
        host: profile.host(),
        pid: 0,
        line_index: 0,
        base_ps: 0,
        tid: 0,
        event_prefix: Vec::new(),
        event_names: Interner::new(),
        escaped_event_names: Vec::new(),
        stat_names: Interner::new(),
        escaped_stat_names: Vec::new(),
    };
    json.buf
        .extend_from_slice(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[");
    profile.visit(&mut json);
    json.buf.extend_from_slice(b"]}\n");
    json.finish()
}

/// Writes the JSON gzip-compressed.
pub fn write_json_gz<'a, W: Write>(profile: impl Into<Profile<'a>>, out: W) -> io::Result<()> {
    write_json_gz_helped(profile, out, &Pieces::default())
}

/// Writes the JSON gzip-compressed, with other threads that call [`Pieces::help`] on `pieces`
/// taking part in the compression meanwhile. One gzip member, as [`write_json_gz`] writes.
pub(crate) fn write_json_gz_helped<'a, W: Write>(
    profile: impl Into<Profile<'a>>,
    out: W,
    pieces: &Pieces,
) -> io::Result<()> {
    let mut writer = GzWriter::new(out, pieces)?;
    write_json(profile, &mut writer)?;
    writer.finish()?.flush()
}

/// Bytes gathered before they are handed to the writer.
const CHUNK: usize = 1 << 16;

struct JsonWriter<'a, W> {
    out: W,
    /// The first write error; nothing is written after it.
    error: Option<io::Error>,
    buf: Vec<u8>,
    host: &'a str,
    /// The current plane's process id (1, 2, ...).
    pid: usize,
    /// The next line's index in its plane.
    line_index: usize,
    /// The current line's base time.
    base_ps: i64,
    /// The current line's thread id.
    tid: i64,
    /// What every event of the current line starts with, up to its time.
    event_prefix: Vec<u8>,
    /// Names as JSON strings, by interned id.
    event_names: Interner<'a>,
    escaped_event_names: Vec<Vec<u8>>,
    stat_names: Interner<'a>,
    escaped_stat_names: Vec<Vec<u8>>,
}

impl<W: Write> JsonWriter<'_, W> {
    /// Hands the gathered bytes to the writer once there are enough of them.
    #[inline]
    fn spill(&mut self) {
        if self.buf.len() >= CHUNK {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    fn finish(mut self) -> io::Result<()> {
        self.write_out();
        match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}

impl<'a, W: Write> JsonWriter<'a, W> {
    /// An allocation or free as a sample of the process's "heap in use" counter track: the
    /// memory profile's own events are instants of no use in a timeline.
    #[cold]
    fn heap_counter(&mut self, event: &EventView<'a, '_>) {
        let Some(StatValue::Int(in_use)) = event.stats.get("bytes_allocated") else {
            return;
        };
        let buf = &mut self.buf;
        buf.extend_from_slice(b",\n{\"ph\":\"C\",\"name\":\"heap in use\",\"pid\":");
        put_u64(buf, self.pid as u64);
        buf.extend_from_slice(b",\"tid\":");
        put_i64(buf, self.tid);
        buf.extend_from_slice(b",\"ts\":");
        put_micros(buf, self.base_ps.saturating_add(event.offset_ps));
        buf.extend_from_slice(b",\"args\":{\"bytes\":");
        put_i64(buf, in_use);
        buf.extend_from_slice(b"}}");
        self.spill();
    }
}

impl<'a, W: Write> Visitor<'a> for JsonWriter<'a, W> {
    fn plane(&mut self, name: &'a str) {
        self.pid += 1;
        self.line_index = 0;
        if self.pid > 1 {
            self.buf.extend_from_slice(b",\n");
        }
        self.buf
            .extend_from_slice(b"{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":");
        put_u64(&mut self.buf, self.pid as u64);
        self.buf.extend_from_slice(b",\"args\":{\"name\":");
        json_string(&mut self.buf, &format!("{} {name}", self.host));
        self.buf.extend_from_slice(b"}}");
    }

    fn line(&mut self, line: &LineView<'a>) {
        let tid = if line.display_id != 0 {
            line.display_id
        } else {
            line.id
        };
        if !is_thread_line(line.id, line.name) {
            // The heap line: its events become the process's counter, under no thread.
            self.base_ps = line.timestamp_ns.saturating_mul(1000);
            self.tid = tid;
            return;
        }
        let name = if line.display_name.is_empty() {
            line.name
        } else {
            line.display_name
        };
        // `pid` and `tid`, as every event of the line has them.
        let mut ids = Vec::new();
        ids.extend_from_slice(b"\"pid\":");
        put_u64(&mut ids, self.pid as u64);
        ids.extend_from_slice(b",\"tid\":");
        put_i64(&mut ids, tid);

        let buf = &mut self.buf;
        buf.extend_from_slice(b",\n{\"ph\":\"M\",\"name\":\"thread_name\",");
        buf.extend_from_slice(&ids);
        buf.extend_from_slice(b",\"args\":{\"name\":");
        json_string(buf, name);
        buf.extend_from_slice(b"}},\n{\"ph\":\"M\",\"name\":\"thread_sort_index\",");
        buf.extend_from_slice(&ids);
        buf.extend_from_slice(b",\"args\":{\"sort_index\":");
        put_u64(buf, self.line_index as u64);
        buf.extend_from_slice(b"}}");
        self.line_index += 1;

        self.base_ps = line.timestamp_ns.saturating_mul(1000);
        self.tid = tid;
        self.event_prefix.clear();
        self.event_prefix.extend_from_slice(b",\n{\"ph\":\"X\",");
        self.event_prefix.extend_from_slice(&ids);
        self.event_prefix.extend_from_slice(b",\"ts\":");
        self.spill();
    }

    #[inline]
    fn event(&mut self, event: &EventView<'a, '_>) {
        if is_heap_event(event.op, event.duration_ps) {
            return self.heap_counter(event);
        }
        // The recorded name, as xprof's trace viewer shows it (not the op name).
        let name = event.shown();
        let id = self.event_names.id(name) as usize;
        if id > self.escaped_event_names.len() {
            let mut escaped = Vec::new();
            json_string(&mut escaped, name);
            self.escaped_event_names.push(escaped);
        }
        let buf = &mut self.buf;
        buf.extend_from_slice(&self.event_prefix);
        put_micros(buf, self.base_ps.saturating_add(event.offset_ps));
        buf.extend_from_slice(b",\"dur\":");
        put_micros(buf, event.duration_ps.max(0));
        buf.extend_from_slice(b",\"name\":");
        buf.extend_from_slice(&self.escaped_event_names[id - 1]);
        if !event.stats.is_empty() {
            buf.extend_from_slice(b",\"args\":{");
            for (i, (name, value)) in event.stats.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                let id = self.stat_names.id(name) as usize;
                if id > self.escaped_stat_names.len() {
                    let mut escaped = Vec::new();
                    json_string(&mut escaped, name);
                    self.escaped_stat_names.push(escaped);
                }
                buf.extend_from_slice(&self.escaped_stat_names[id - 1]);
                buf.push(b':');
                match value {
                    StatValue::Int(v) => put_i64(buf, v),
                    StatValue::UInt(v) => put_u64(buf, v),
                    StatValue::Double(v) if v.is_finite() => {
                        write!(buf, "{v:?}").expect("a Vec takes any write")
                    }
                    other => json_string(buf, &other.text()),
                }
            }
            buf.push(b'}');
        }
        buf.push(b'}');
        self.spill();
    }
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("a string always serializes to a Vec");
}

fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    put_u64(out, value.unsigned_abs());
}

/// Picoseconds as microseconds with nanosecond precision (`-1.234`), to the nearest
/// nanosecond (halves away from zero): the XSpace writer ends an event a few picoseconds
/// early when it ends with the event it lies in.
fn put_micros(out: &mut Vec<u8>, ps: i64) {
    // Neither division overflows, whatever `ps`.
    let ns = ps / 1000 + ps % 1000 / 500;
    if ns < 0 {
        out.push(b'-');
    }
    let ns = ns.unsigned_abs();
    put_u64(out, ns / 1000);
    let fraction = (ns % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(ps: i64) -> String {
        let mut out = Vec::new();
        put_micros(&mut out, ps);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn micros_keep_nanoseconds_rounded_to_the_nearest() {
        assert_eq!(micros(0), "0.000");
        assert_eq!(micros(499), "0.000");
        assert_eq!(micros(500), "0.001");
        assert_eq!(micros(999), "0.001");
        assert_eq!(micros(1_000), "0.001");
        assert_eq!(micros(1_234_499), "1.234");
        assert_eq!(micros(1_234_567), "1.235");
        assert_eq!(micros(99_999), "0.100");
        assert_eq!(micros(-499), "0.000");
        assert_eq!(micros(-500), "-0.001");
        assert_eq!(micros(-1_234_567), "-1.235");
        assert_eq!(micros(i64::MAX), "9223372036854.776");
        assert_eq!(micros(i64::MIN), "-9223372036854.776");
    }

    #[test]
    fn integers_as_text() {
        for v in [0, 7, -7, 10, 1_000_000, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_i64(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
        let mut out = Vec::new();
        put_u64(&mut out, u64::MAX);
        assert_eq!(String::from_utf8(out).unwrap(), u64::MAX.to_string());
    }
}
