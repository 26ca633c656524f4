//! The XSpace encoder: a [`Layout`] written as `.xplane.pb` bytes from the recorded events,
//! numbering event and stat metadata as it meets their names. No `XEvent` is ever built.
//!
//! A line or plane is preceded by its length. In memory ([`Layout::encode`]) room is left
//! for the length and the gaps are closed at the end, in one pass. To a file
//! ([`Layout::encode_to`]) a first pass measures every line, so that the bytes go out
//! through a small buffer in order, and the whole file never sits in memory.

use std::io;

use prost::encoding::encoded_len_varint;
use prost::Message;
use trace_runtime::snapshot::Snapshot;

use super::layout::Layout;
use super::read::{EventView, Interner, LineView, StatValue, Visitor};
use super::schema::{HOST_PLANE, TASK_ENVIRONMENT_PLANE};
use crate::proto::xplane::{x_stat, XEventMetadata, XPlane, XSpace, XStat, XStatMetadata};

/// Protobuf wire format of the messages written by hand: `XEvent`, `XStat`, and the fields
/// of `XLine` around its events. Fields are written in field-number order with proto3's
/// rules (scalars equal to zero and empty strings are left out; a oneof member is written
/// even when zero), as prost writes the same messages.
mod wire {
    use super::encoded_len_varint;

    const VARINT: u8 = 0;
    const FIXED64: u8 = 1;
    const LEN: u8 = 2;

    /// The one-byte key of a field numbered below 16.
    const fn key(field: u8, wire_type: u8) -> u8 {
        field << 3 | wire_type
    }

    pub(super) const XSPACE_PLANES: u8 = key(1, LEN);
    pub(super) const XPLANE_LINES: u8 = key(3, LEN);
    pub(super) const XLINE_EVENTS: u8 = key(4, LEN);
    pub(super) const XEVENT_METADATA_ID: u8 = key(1, VARINT);
    pub(super) const XEVENT_OFFSET_PS: u8 = key(2, VARINT);
    pub(super) const XEVENT_DURATION_PS: u8 = key(3, VARINT);
    pub(super) const XEVENT_STATS: u8 = key(4, LEN);
    pub(super) const XSTAT_METADATA_ID: u8 = key(1, VARINT);
    pub(super) const XSTAT_DOUBLE: u8 = key(2, FIXED64);
    pub(super) const XSTAT_UINT64: u8 = key(3, VARINT);
    pub(super) const XSTAT_INT64: u8 = key(4, VARINT);
    pub(super) const XSTAT_STR: u8 = key(5, LEN);
    pub(super) const XSTAT_BYTES: u8 = key(6, LEN);
    pub(super) const XSTAT_REF: u8 = key(7, VARINT);
    pub(super) const XLINE_ID: u8 = key(1, VARINT);
    pub(super) const XLINE_NAME: u8 = key(2, LEN);
    pub(super) const XLINE_TIMESTAMP_NS: u8 = key(3, VARINT);
    pub(super) const XLINE_DURATION_PS: u8 = key(9, VARINT);
    pub(super) const XLINE_DISPLAY_ID: u8 = key(10, VARINT);
    pub(super) const XLINE_DISPLAY_NAME: u8 = key(11, LEN);

    /// Bytes of a varint; an int64 is written as its two's-complement u64.
    #[inline]
    pub(super) fn varint_len(value: u64) -> usize {
        encoded_len_varint(value)
    }

    #[inline]
    pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A few fields assembled on the stack: at most four keys and four varints.
    pub(super) struct Scratch {
        bytes: [u8; 4 * (1 + 10)],
        len: usize,
    }

    impl Scratch {
        #[inline]
        pub(super) fn new() -> Self {
            Scratch {
                bytes: [0; 4 * (1 + 10)],
                len: 0,
            }
        }

        #[inline]
        pub(super) fn push(&mut self, byte: u8) {
            self.bytes[self.len] = byte;
            self.len += 1;
        }

        #[inline]
        pub(super) fn varint(&mut self, mut value: u64) {
            while value >= 0x80 {
                self.push(value as u8 | 0x80);
                value >>= 7;
            }
            self.push(value as u8);
        }

        #[inline]
        pub(super) fn as_slice(&self) -> &[u8] {
            &self.bytes[..self.len]
        }
    }

    /// Bytes of a length-delimited field holding `len` bytes.
    #[inline]
    pub(super) fn framed_len(len: usize) -> usize {
        1 + varint_len(len as u64) + len
    }

    #[inline]
    pub(super) fn put_frame(out: &mut Vec<u8>, key: u8, len: usize) {
        out.push(key);
        put_varint(out, len as u64);
    }

    /// Bytes of an int64 field (none when zero).
    #[inline]
    pub(super) fn int64_len(value: i64) -> usize {
        if value == 0 {
            0
        } else {
            1 + varint_len(value as u64)
        }
    }

    #[inline]
    pub(super) fn put_int64(out: &mut Vec<u8>, key: u8, value: i64) {
        if value != 0 {
            out.push(key);
            put_varint(out, value as u64);
        }
    }

    /// Bytes of a string field (none when empty).
    #[inline]
    pub(super) fn string_len(text: &str) -> usize {
        if text.is_empty() {
            0
        } else {
            framed_len(text.len())
        }
    }

    pub(super) fn put_string(out: &mut Vec<u8>, key: u8, text: &str) {
        if !text.is_empty() {
            put_frame(out, key, text.len());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

impl Layout<'_> {
    /// Encodes the profile: the bytes of its `.xplane.pb` (see the module docs for how).
    pub fn encode(&self) -> Vec<u8> {
        let events = self.snapshot.event_count() as usize;
        let out = Output::with_capacity(events.saturating_mul(16).saturating_add(1 << 16));
        self.write_into(out, Ids::new()).finish()
    }

    /// Writes the bytes of [`encode`](Self::encode) to `out`, through a buffer of a few
    /// hundred KiB rather than all at once: the encoder measures every line first, then
    /// writes each in order.
    pub fn encode_to(&self, out: impl io::Write) -> io::Result<()> {
        let mut measure = Measure {
            ids: Ids::new(),
            lines: Vec::new(),
            line: None,
        };
        self.visit(&mut measure);
        let Measure { ids, lines, .. } = measure;
        let plane_len = plane_head().encoded_len()
            + lines
                .iter()
                .map(|&len| wire::framed_len(len))
                .sum::<usize>()
            + ids.metadata().encoded_len();
        let stream = Stream {
            out,
            bytes: Vec::with_capacity(STREAM_BUFFER + STREAM_BUFFER / 4),
            written: 0,
            lens: [plane_len]
                .into_iter()
                .chain(lines)
                .collect::<Vec<_>>()
                .into_iter(),
            error: None,
        };
        self.write_into(stream, ids).finish()
    }

    /// Writes the profile to `out` in order, numbering metadata after the ids in `ids`.
    fn write_into<'s, O: Frames>(&'s self, mut out: O, ids: Ids<'s>) -> O {
        // The host plane: its id and name, the lines, then the metadata maps (field order).
        let plane = out.open(wire::XSPACE_PLANES);
        put_message(out.bytes(), &plane_head());
        let mut write = Write {
            ids,
            out,
            line: None,
        };
        self.visit(&mut write);
        let Write { ids, mut out, .. } = write;
        put_message(out.bytes(), &ids.metadata());
        out.close(plane);
        // Then the environment plane, the warnings and the host name.
        let rest = XSpace {
            planes: vec![environment_plane(self.snapshot)],
            errors: Vec::new(),
            warnings: self.warnings.clone(),
            hostnames: vec![self.host.clone()],
        };
        put_message(out.bytes(), &rest);
        out
    }
}

/// The host plane's fields before its lines.
fn plane_head() -> XPlane {
    XPlane {
        id: 1,
        name: HOST_PLANE.to_owned(),
        ..Default::default()
    }
}

/// Appends the fields of `message` (without a length prefix).
fn put_message(out: &mut Vec<u8>, message: &impl Message) {
    message
        .encode(out)
        .expect("a Vec grows to hold any message");
}

/// The bytes being written, where a length-delimited field can be opened before its length
/// is known.
///
/// [`open`](Output::open) leaves room for the longest key and length;
/// [`close`](Output::close) writes them at the end of that room, which leaves a gap before
/// them; [`finish`](Output::finish) closes the gaps. Measuring every line first would take
/// a second pass over millions of events; closing the gaps is one move of bytes that are in
/// memory already.
struct Output {
    bytes: Vec<u8>,
    /// Byte ranges to drop, in the order they were made.
    gaps: Vec<std::ops::Range<usize>>,
    /// Their total length.
    gaps_len: usize,
}

/// Where the encoder's bytes go: a length-delimited field is opened, written and closed.
trait Frames {
    /// A field opened and not closed yet.
    type Opened;
    /// Where the next bytes are appended.
    fn bytes(&mut self) -> &mut Vec<u8>;
    /// Opens a length-delimited field whose key is `key`.
    fn open(&mut self, key: u8) -> Self::Opened;
    /// Closes `field`: everything written since it was opened is its content.
    fn close(&mut self, field: Self::Opened);
    /// Called between events: a chance to pass on what is written.
    #[inline]
    fn spill(&mut self) {}
}

/// A field opened in an [`Output`].
struct Opened {
    key: u8,
    /// Where its room for the key and length begins.
    at: usize,
    /// The gaps' total length when it was opened.
    gaps_len: usize,
}

/// The longest key (of a field numbered below 16) and length.
const MAX_FRAME: usize = 1 + 10;

impl Frames for Output {
    type Opened = Opened;

    #[inline]
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    fn open(&mut self, key: u8) -> Opened {
        let at = self.bytes.len();
        self.bytes.resize(at + MAX_FRAME, 0);
        Opened {
            key,
            at,
            gaps_len: self.gaps_len,
        }
    }

    fn close(&mut self, field: Opened) {
        let content = field.at + MAX_FRAME;
        // The gaps left by the fields it holds are not part of it.
        let len = self.bytes.len() - content - (self.gaps_len - field.gaps_len);
        let mut frame = wire::Scratch::new();
        frame.push(field.key);
        frame.varint(len as u64);
        let start = content - frame.as_slice().len();
        self.bytes[start..content].copy_from_slice(frame.as_slice());
        self.gaps.push(field.at..start);
        self.gaps_len += start - field.at;
    }
}

impl Output {
    fn with_capacity(capacity: usize) -> Self {
        Output {
            bytes: Vec::with_capacity(capacity),
            gaps: Vec::new(),
            gaps_len: 0,
        }
    }

    /// The bytes without the gaps.
    fn finish(self) -> Vec<u8> {
        let Output {
            mut bytes,
            mut gaps,
            ..
        } = self;
        // A field's gap is made when it closes, after the gaps of the fields inside it.
        gaps.sort_unstable_by_key(|gap| gap.start);
        // Move each run of bytes between gaps (and the one after the last) to `to`.
        let end = bytes.len();
        let mut to = 0;
        let mut from = 0;
        let runs = gaps
            .iter()
            .map(|gap| (gap.start, gap.end))
            .chain([(end, end)]);
        for (run_end, next_from) in runs {
            if to != from {
                bytes.copy_within(from..run_end, to);
            }
            to += run_end - from;
            from = next_from;
        }
        bytes.truncate(to);
        bytes
    }
}

/// Bytes a [`Stream`] gathers before it writes them out.
const STREAM_BUFFER: usize = 256 << 10;

/// Bytes written out in order to a writer, each field's length measured beforehand.
struct Stream<W> {
    out: W,
    bytes: Vec<u8>,
    /// Bytes written out before `bytes`.
    written: usize,
    /// The lengths of the fields to be opened, in the order they open.
    lens: std::vec::IntoIter<usize>,
    /// The first write error; nothing is written after it.
    error: Option<io::Error>,
}

impl<W: io::Write> Stream<W> {
    fn write_out(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.bytes) {
                self.error = Some(e);
            }
        }
        self.written += self.bytes.len();
        self.bytes.clear();
    }

    /// Bytes written so far.
    fn position(&self) -> usize {
        self.written + self.bytes.len()
    }

    fn finish(mut self) -> io::Result<()> {
        self.write_out();
        match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}

impl<W: io::Write> Frames for Stream<W> {
    /// Where the field's content ends.
    type Opened = usize;

    #[inline]
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    fn open(&mut self, key: u8) -> usize {
        // A field not measured is caught when it closes.
        let len = self.lens.next().unwrap_or(0);
        self.bytes.push(key);
        wire::put_varint(&mut self.bytes, len as u64);
        self.position() + len
    }

    fn close(&mut self, end: usize) {
        // Never the case, but a file whose lengths are wrong must not be written.
        if self.position() != end && self.error.is_none() {
            self.error = Some(io::Error::other(
                "an xplane field's length differs from what was measured",
            ));
        }
    }

    #[inline]
    fn spill(&mut self) {
        if self.bytes.len() >= STREAM_BUFFER {
            self.write_out();
        }
    }
}

/// Measures the lines of [`Layout::encode_to`], numbering the metadata as
/// [`Write`] does.
struct Measure<'s> {
    ids: Ids<'s>,
    /// The lengths of the lines measured.
    lines: Vec<usize>,
    /// The open line: its length so far, and that of its fields after its events.
    line: Option<(usize, usize)>,
}

impl<'s> Visitor<'s> for Measure<'s> {
    fn line(&mut self, line: &LineView<'s>) {
        let head = wire::int64_len(line.id)
            + wire::string_len(line.name)
            + wire::int64_len(line.timestamp_ns);
        let tail = wire::int64_len(line.duration_ps)
            + wire::int64_len(line.display_id)
            + wire::string_len(line.display_name);
        self.line = Some((head, tail));
    }

    #[inline]
    fn event(&mut self, event: &EventView<'s, '_>) {
        let (_, len) = self.ids.event(event);
        if let Some((so_far, _)) = &mut self.line {
            *so_far += wire::framed_len(len);
        }
    }

    fn wants_counters(&self) -> bool {
        true
    }

    fn line_end(&mut self) {
        let (len, tail) = self.line.take().expect("a line is open");
        self.lines.push(len + tail);
    }
}

/// The metadata ids of one plane.
struct Ids<'s> {
    /// Event metadata by the name xprof reads, one per op.
    events: Interner<'s>,
    /// The recorded name of each, by id.
    display_names: Vec<&'s str>,
    stats: Interner<'s>,
}

impl<'s> Ids<'s> {
    fn new() -> Self {
        Ids {
            events: Interner::new(),
            display_names: Vec::new(),
            stats: Interner::new(),
        }
    }

    /// The plane's metadata maps, every id with its names.
    fn metadata(&self) -> XPlane {
        let events = self.events.iter().map(|(id, name)| {
            let metadata = XEventMetadata {
                id,
                name: name.to_owned(),
                display_name: self.display_names[(id - 1) as usize].to_owned(),
                ..Default::default()
            };
            (id, metadata)
        });
        let stats = self.stats.iter().map(|(id, name)| {
            let metadata = XStatMetadata {
                id,
                name: name.to_owned(),
                description: String::new(),
            };
            (id, metadata)
        });
        XPlane {
            event_metadata: events.collect(),
            stat_metadata: stats.collect(),
            ..Default::default()
        }
    }

    /// An event's metadata id and the length of its message.
    // Inlined into both passes, so that the event's fields stay in registers.
    #[inline(always)]
    fn event(&mut self, event: &EventView<'s, '_>) -> (i64, usize) {
        let id = self.events.id(event.op);
        if id as usize > self.display_names.len() {
            self.display_names.push(event.name);
        }
        let mut len = 1
            + wire::varint_len(id as u64)
            + 1
            + wire::varint_len(event.offset_ps as u64)
            + wire::int64_len(event.duration_ps);
        if !event.stats.is_empty() {
            for (name, value) in event.stats.iter() {
                len += wire::framed_len(stat_len(self.stats.id(name), value));
            }
        }
        (id, len)
    }
}

/// The length of an `XStat` message.
fn stat_len(metadata_id: i64, value: StatValue<'_>) -> usize {
    let value_len = match value {
        StatValue::Int(v) => 1 + wire::varint_len(v as u64),
        StatValue::UInt(v) | StatValue::Ref { id: v, .. } => 1 + wire::varint_len(v),
        StatValue::Double(_) => 1 + 8,
        StatValue::Str(s) => wire::framed_len(s.len()),
        StatValue::Bytes(b) => wire::framed_len(b.len()),
        StatValue::Missing => 0,
    };
    wire::int64_len(metadata_id) + value_len
}

fn put_stat(out: &mut Vec<u8>, metadata_id: i64, value: StatValue<'_>) {
    wire::put_int64(out, wire::XSTAT_METADATA_ID, metadata_id);
    match value {
        StatValue::Int(v) => {
            out.push(wire::XSTAT_INT64);
            wire::put_varint(out, v as u64);
        }
        StatValue::UInt(v) => {
            out.push(wire::XSTAT_UINT64);
            wire::put_varint(out, v);
        }
        StatValue::Double(v) => {
            out.push(wire::XSTAT_DOUBLE);
            out.extend_from_slice(&v.to_le_bytes());
        }
        StatValue::Str(s) => {
            wire::put_frame(out, wire::XSTAT_STR, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        StatValue::Bytes(b) => {
            wire::put_frame(out, wire::XSTAT_BYTES, b.len());
            out.extend_from_slice(b);
        }
        StatValue::Ref { id, .. } => {
            out.push(wire::XSTAT_REF);
            wire::put_varint(out, id);
        }
        StatValue::Missing => {}
    }
}

/// Writes the lines of [`Layout::encode`] and [`Layout::encode_to`].
struct Write<'s, O: Frames> {
    ids: Ids<'s>,
    out: O,
    /// The open line, and its fields numbered after its events, written at its end.
    line: Option<(O::Opened, i64, i64, &'s str)>,
}

impl<'s, O: Frames> Visitor<'s> for Write<'s, O> {
    fn line(&mut self, line: &LineView<'s>) {
        let field = self.out.open(wire::XPLANE_LINES);
        let out = self.out.bytes();
        wire::put_int64(out, wire::XLINE_ID, line.id);
        wire::put_string(out, wire::XLINE_NAME, line.name);
        wire::put_int64(out, wire::XLINE_TIMESTAMP_NS, line.timestamp_ns);
        self.line = Some((field, line.duration_ps, line.display_id, line.display_name));
    }

    #[inline]
    fn event(&mut self, event: &EventView<'s, '_>) {
        let (id, len) = self.ids.event(event);
        // Most events are only these fields: put them together on the stack, append once.
        let mut head = wire::Scratch::new();
        head.push(wire::XLINE_EVENTS);
        head.varint(len as u64);
        head.push(wire::XEVENT_METADATA_ID);
        head.varint(id as u64);
        head.push(wire::XEVENT_OFFSET_PS);
        head.varint(event.offset_ps as u64);
        if event.duration_ps != 0 {
            head.push(wire::XEVENT_DURATION_PS);
            head.varint(event.duration_ps as u64);
        }
        let out = self.out.bytes();
        out.extend_from_slice(head.as_slice());
        if !event.stats.is_empty() {
            for (name, value) in event.stats.iter() {
                let stat_id = self.ids.stats.id(name);
                wire::put_frame(out, wire::XEVENT_STATS, stat_len(stat_id, value));
                put_stat(out, stat_id, value);
            }
        }
        self.out.spill();
    }

    fn wants_counters(&self) -> bool {
        true
    }

    fn line_end(&mut self) {
        let (field, duration_ps, display_id, display_name) =
            self.line.take().expect("a line is open");
        let out = self.out.bytes();
        wire::put_int64(out, wire::XLINE_DURATION_PS, duration_ps);
        wire::put_int64(out, wire::XLINE_DISPLAY_ID, display_id);
        wire::put_string(out, wire::XLINE_DISPLAY_NAME, display_name);
        self.out.close(field);
    }
}

/// The `Task Environment` plane: the profile's absolute start and stop times.
fn environment_plane(snapshot: &Snapshot) -> XPlane {
    let times = [
        ("profile_start_time", snapshot.start_wall_ns),
        ("profile_stop_time", snapshot.stop_wall_ns),
    ];
    let mut plane = XPlane {
        id: 2,
        name: TASK_ENVIRONMENT_PLANE.to_owned(),
        ..Default::default()
    };
    for (id, (name, ns)) in (1..).zip(times) {
        let metadata = XStatMetadata {
            id,
            name: name.to_owned(),
            description: String::new(),
        };
        plane.stat_metadata.insert(id, metadata);
        plane.stats.push(XStat {
            metadata_id: id,
            value: Some(x_stat::Value::Uint64Value(ns)),
        });
    }
    plane
}
