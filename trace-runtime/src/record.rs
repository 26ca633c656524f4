//! The record format: how a thread's buffer holds events and metadata, written by the
//! recorder (`local::recorder`) and read back here when a session stops.
//!
//! Records are made of 24-byte slots, three `u64` words each. The low three bits of a
//! record's first word give its kind; call-site pointers are 8-aligned, so a plain event is
//! just the pointer.
//!
//! | kind        | slot words                                                              |
//! |-------------|-------------------------------------------------------------------------|
//! | `EVENT`     | `site ptr`, start ticks, end ticks                                      |
//! | `EVENT` with a number | `site ptr \| tag << 48`, start, `end - start \| number << 32`: a call site's event that carries its first metadata, a 32-bit number (see [`inline_number`]), when it lasted under 2^32 ticks |
//! | `EVENT` with a number, long | `site ptr \| tag << 48 \| 1 << 51`, start, end; then: number, 0, 0 |
//! | `ASYNC`     | `site ptr | 1`, start ticks, end ticks                                  |
//! | `NAMED`     | `2 | name_len << 8`, name ptr, start; then: end ticks, 0, 0             |
//! | `SHORT_NAMED` | `4 | name_len << 3 | name ptr << 16`, start, end (names under 8 KiB at addresses below 2^48, i.e. all of them on today's 64-bit targets) |
//! | `ARG`       | `3 | type << 3 | key_len << 8`, key ptr, owner start (or time); then: payload or string length, owner identity (0: innermost by time), 0; then the string's bytes |
//! | `HEAP`      | `7 | free << 3 | addr << 16`, time, bytes: a heap block allocated or freed (addresses below 2^48) |
//! | `SHORT_ARG` | `6 | type << 3 | starting << 5 | key_len << 6 | key ptr << 16`, owner start (or time), payload: a number or bool under a key shorter than 1 KiB, for the event of this thread that started at that tick (`starting`) or the innermost one open then |
//!
//! A number goes inside its event's record only under the call site's inline key (see
//! `Callsite::with_inline_key`), which is how the decoder knows the key: a `step_num` costs
//! its span no bytes and no second record.
//!
//! Words hold addresses of `'static` data (call sites, names, keys): turning them back into
//! references is only sound for words this module's encoders wrote, which is why the
//! decoder is an `unsafe fn`.

use std::borrow::Cow;

use crate::callsite::Callsite;
use crate::value::Value;

pub(crate) const KIND_EVENT: u64 = 0;
pub(crate) const KIND_ASYNC: u64 = 1;
pub(crate) const KIND_NAMED: u64 = 2;
pub(crate) const KIND_ARG: u64 = 3;
pub(crate) const KIND_SHORT_NAMED: u64 = 4;
/// Not a record: the `info` of a guard recorded into a call tree (see `local::graph`).
pub(crate) const KIND_GRAPH: u64 = 5;
pub(crate) const KIND_SHORT_ARG: u64 = 6;
pub(crate) const KIND_HEAP: u64 = 7;
pub(crate) const KIND_MASK: u64 = 7;
/// Name lengths that fit a `SHORT_NAMED` record.
pub(crate) const SHORT_NAME_LEN: u64 = 1 << 13;

pub(crate) const TYPE_INT: u64 = 0;
pub(crate) const TYPE_UINT: u64 = 1;
pub(crate) const TYPE_FLOAT: u64 = 2;
pub(crate) const TYPE_BOOL: u64 = 3;
pub(crate) const TYPE_STR: u64 = 4;

/// Words per record slot.
pub(crate) const SLOT: usize = 3;

// ---------------------------------------------------------------------------------------------
// Encoding

/// The first word of a `SHORT_NAMED` record for `name`, when the name fits one.
#[inline(always)]
pub(crate) fn short_named_word(name: &'static str) -> Option<u64> {
    let (ptr, len) = (name.as_ptr() as u64, name.len() as u64);
    (ptr >> 48 == 0 && len < SHORT_NAME_LEN).then_some(ptr << 16 | len << 3 | KIND_SHORT_NAMED)
}

/// The two slots of a `NAMED` record: a name of any length.
#[inline(always)]
pub(crate) fn named_record(name: &'static str, start: u64, end: u64) -> [u64; 2 * SLOT] {
    [
        KIND_NAMED | (name.len() as u64) << 8,
        name.as_ptr() as u64,
        start,
        end,
        0,
        0,
    ]
}

/// The two slots of an `ARG` record and the string bytes that follow them. The owner is
/// named by its identity (a call site's or a name's address) and start, or, with identity 0,
/// as the innermost event open at `owner_start`.
#[inline(always)]
pub(crate) fn arg_record<'v>(
    key: &'static str,
    value: &'v Value<'_>,
    owner_start: u64,
    owner_ident: u64,
) -> ([u64; 2 * SLOT], &'v [u8]) {
    let (ty, payload, bytes): (u64, u64, &[u8]) = match value {
        Value::Int(v) => (TYPE_INT, *v as u64, &[]),
        Value::UInt(v) => (TYPE_UINT, *v, &[]),
        Value::Float(v) => (TYPE_FLOAT, v.to_bits(), &[]),
        Value::Bool(v) => (TYPE_BOOL, *v as u64, &[]),
        Value::Str(s) => (TYPE_STR, s.len() as u64, s.as_bytes()),
    };
    let header = [
        KIND_ARG | ty << 3 | (key.len() as u64) << 8,
        key.as_ptr() as u64,
        owner_start,
        payload,
        owner_ident,
        0,
    ];
    (header, bytes)
}

/// String bytes packed into whole slots, as they follow an `ARG` record (for tests that
/// write records by hand).
#[cfg(test)]
pub(crate) fn string_slots(bytes: &[u8]) -> Vec<u64> {
    let mut words: Vec<u64> = bytes
        .chunks(8)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect();
    words.resize(string_words(bytes.len()), 0);
    words
}

/// Key lengths that fit a `SHORT_ARG` record.
const SHORT_KEY_LEN: u64 = 1 << 10;

/// The one slot of a `SHORT_ARG` record, when the value and key fit one: a number or a bool
/// for the event of this thread that started at `owner_start` (`starting`), or for the
/// innermost one open at that time. A third of a two-slot `ARG` record, for the metadata most
/// spans carry (`step_num`).
#[inline(always)]
pub(crate) fn short_arg_record(
    key: &'static str,
    value: &Value<'_>,
    owner_start: u64,
    starting: bool,
) -> Option<[u64; SLOT]> {
    let (ty, payload) = match value {
        Value::Int(v) => (TYPE_INT, *v as u64),
        Value::UInt(v) => (TYPE_UINT, *v),
        Value::Float(v) => (TYPE_FLOAT, v.to_bits()),
        Value::Bool(v) => (TYPE_BOOL, *v as u64),
        Value::Str(_) => return None,
    };
    let (ptr, len) = (key.as_ptr() as u64, key.len() as u64);
    (ptr >> 48 == 0 && len < SHORT_KEY_LEN).then_some([
        KIND_SHORT_ARG | ty << 3 | u64::from(starting) << 5 | len << 6 | ptr << 16,
        owner_start,
        payload,
    ])
}

/// Bit of [`inline_number`]'s word that tells a guard's `info` it carries a number.
pub(crate) const INLINE_NUMBER: u64 = 1 << 3;
/// Tags of an inline number: its value's type plus one (0 is a plain event).
const TAG_SHIFT: u32 = 48;
const TAG_MASK: u64 = 7;
/// Set in the first word of the two-slot form of an event with a number.
const LONG_NUMBERED: u64 = 1 << 51;

/// A number that fits inside its event's record: an int within `i32`, a uint within `u32`, or
/// a bool, as `number << 32 | tag << 4 | INLINE_NUMBER`. Its low three bits are `KIND_EVENT`'s,
/// so that a guard can keep it as its `info`.
#[inline(always)]
pub(crate) fn inline_number(value: &Value<'_>) -> Option<u64> {
    let (ty, payload) = match *value {
        Value::Int(v) => (TYPE_INT, i32::try_from(v).ok()? as u32),
        Value::UInt(v) => (TYPE_UINT, u32::try_from(v).ok()?),
        Value::Bool(v) => (TYPE_BOOL, u32::from(v)),
        Value::Float(_) | Value::Str(_) => return None,
    };
    Some(u64::from(payload) << 32 | (ty + 1) << 4 | INLINE_NUMBER)
}

/// True when a call site's address leaves room for an inline number's tag (all of them on
/// today's 64-bit targets).
#[inline(always)]
pub(crate) fn can_carry_number(site: u64) -> bool {
    site >> TAG_SHIFT == 0
}

/// The first word of the record of a call site's event carrying `number` (from
/// [`inline_number`]); the site's address passed [`can_carry_number`].
#[inline(always)]
pub(crate) fn numbered_event_word(site: u64, number: u64) -> u64 {
    site | (number >> 4 & TAG_MASK) << TAG_SHIFT
}

/// The one slot of an event with a number that lasted under 2^32 ticks; `None` for a longer
/// one (or an end before its start), which takes [`long_numbered_event`].
#[inline(always)]
pub(crate) fn numbered_event(w0: u64, start: u64, end: u64, number: u64) -> Option<[u64; SLOT]> {
    let duration = end.wrapping_sub(start);
    (duration >> 32 == 0).then_some([w0, start, duration | number >> 32 << 32])
}

/// The two slots of an event with a number, for any duration.
pub(crate) fn long_numbered_event(w0: u64, start: u64, end: u64, number: u64) -> [u64; 2 * SLOT] {
    [w0 | LONG_NUMBERED, start, end, number, 0, 0]
}

/// The first word of a `HEAP` record for the block at `addr`, when its address fits.
#[inline(always)]
pub(crate) fn heap_word(addr: u64, free: bool) -> Option<u64> {
    (addr >> 48 == 0).then_some(addr << 16 | u64::from(free) << 3 | KIND_HEAP)
}

/// `RawArg::owner_ident` of metadata for the event of its thread that started at
/// `owner_start` (no address is this).
pub(crate) const OWNER_STARTING: u64 = u64::MAX;

/// Words taken by `len` string bytes after an `ARG` record: whole slots.
pub(crate) fn string_words(len: usize) -> usize {
    len.div_ceil(8).next_multiple_of(SLOT)
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A `&'static str` from the address and length a record holds.
///
/// # Safety
///
/// `ptr` and `len` must be the address and length of a `&'static str`, as the encoders above
/// store them.
pub(crate) unsafe fn static_str(ptr: u64, len: u64) -> &'static str {
    // SAFETY: the caller guarantees a `'static`, UTF-8 string of this address and length.
    unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr as *const u8, len as usize))
    }
}

/// The call site at the address a record holds.
///
/// # Safety
///
/// `ident` must be the address of a `&'static Callsite`, as `EVENT` and `ASYNC` records and
/// guards of call sites store it.
pub(crate) unsafe fn callsite_at(ident: u64) -> &'static Callsite {
    // SAFETY: the caller guarantees the address of a `'static` call site.
    unsafe { &*(ident as *const Callsite) }
}

/// One event record, in ticks.
#[derive(Debug, PartialEq)]
pub(crate) struct RawEvent {
    /// The record's first word, for a call site's event (`EVENT`, `ASYNC`) or a short named
    /// one (`SHORT_NAMED`); 0 for a long named one.
    pub(crate) word: u64,
    /// The name of a long named event (`NAMED`).
    pub(crate) long_name: Option<&'static str>,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// The number the event carries inline, under its call site's inline key.
    pub(crate) number: Option<(&'static str, Value<'static>)>,
}

/// One metadata record.
#[derive(Debug, PartialEq)]
pub(crate) struct RawArg {
    pub(crate) key: &'static str,
    pub(crate) value: Value<'static>,
    /// The owner's identity; 0: the innermost event open at `owner_start`;
    /// [`OWNER_STARTING`]: the event of the thread that started at `owner_start`.
    pub(crate) owner_ident: u64,
    pub(crate) owner_start: u64,
}

/// One heap record, in ticks.
#[derive(Debug, PartialEq)]
pub(crate) struct RawHeap {
    pub(crate) time: u64,
    pub(crate) addr: u64,
    pub(crate) bytes: u64,
    pub(crate) free: bool,
}

/// The value of an inline number: its tag and its 32 bits.
fn inline_value(tag: u64, payload: u64) -> Option<Value<'static>> {
    let payload = payload as u32;
    match tag.checked_sub(1)? {
        TYPE_INT => Some(Value::Int(i64::from(payload as i32))),
        TYPE_UINT => Some(Value::UInt(u64::from(payload))),
        TYPE_BOOL => Some(Value::Bool(payload != 0)),
        _ => None,
    }
}

/// Parses a buffer's published words, calling `on_event`, `on_arg` and `on_heap` in record order. A
/// record cut short at the end (which a published buffer never has) ends the parse.
///
/// # Safety
///
/// `words` must have been written by this module's encoders, record after record, from the
/// start of a buffer: the addresses they hold are then those of `'static` call sites and
/// strings.
pub(crate) unsafe fn decode(
    words: &[u64],
    mut on_event: impl FnMut(RawEvent),
    mut on_arg: impl FnMut(RawArg),
    mut on_heap: impl FnMut(RawHeap),
) {
    let mut at = 0;
    while let Some(slot) = words.get(at..at + SLOT) {
        let w0 = slot[0];
        let kind = w0 & KIND_MASK;
        if kind == KIND_SHORT_ARG {
            let payload = slot[2];
            let value = match (w0 >> 3) & 3 {
                TYPE_INT => Value::Int(payload as i64),
                TYPE_UINT => Value::UInt(payload),
                TYPE_FLOAT => Value::Float(f64::from_bits(payload)),
                _ => Value::Bool(payload != 0),
            };
            on_arg(RawArg {
                // SAFETY: a key's address and length (the caller's contract).
                key: unsafe { static_str(w0 >> 16, (w0 >> 6) & (SHORT_KEY_LEN - 1)) },
                value,
                owner_ident: if w0 & 1 << 5 != 0 { OWNER_STARTING } else { 0 },
                owner_start: slot[1],
            });
            at += SLOT;
            continue;
        }
        if kind == KIND_HEAP {
            on_heap(RawHeap {
                time: slot[1],
                addr: w0 >> 16,
                bytes: slot[2],
                free: w0 & 1 << 3 != 0,
            });
            at += SLOT;
            continue;
        }
        if kind == KIND_EVENT && w0 >> TAG_SHIFT != 0 {
            let site = w0 & ((1 << TAG_SHIFT) - 1);
            let (end, number) = if w0 & LONG_NUMBERED == 0 {
                (slot[1].wrapping_add(slot[2] & u64::from(u32::MAX)), slot[2])
            } else {
                let Some(record) = words.get(at + SLOT..at + 2 * SLOT) else {
                    break;
                };
                at += SLOT;
                (slot[2], record[0])
            };
            // SAFETY: a numbered event's word holds its call site's address.
            let key = unsafe { callsite_at(site) }.inline_key();
            on_event(RawEvent {
                word: site,
                long_name: None,
                start: slot[1],
                end,
                number: key.zip(inline_value(w0 >> TAG_SHIFT & TAG_MASK, number >> 32)),
            });
            at += SLOT;
            continue;
        }
        if kind == KIND_EVENT || kind == KIND_ASYNC || kind == KIND_SHORT_NAMED {
            on_event(RawEvent {
                word: w0,
                long_name: None,
                start: slot[1],
                end: slot[2],
                number: None,
            });
            at += SLOT;
            continue;
        }
        let Some(record) = words.get(at..at + 2 * SLOT) else {
            break;
        };
        at += 2 * SLOT;
        match kind {
            KIND_NAMED => on_event(RawEvent {
                word: 0,
                // SAFETY: a name's address and length (the caller's contract).
                long_name: Some(unsafe { static_str(record[1], w0 >> 8) }),
                start: record[2],
                end: record[3],
                number: None,
            }),
            KIND_ARG => {
                let payload = record[3];
                let value = match (w0 >> 3) & 7 {
                    TYPE_INT => Value::Int(payload as i64),
                    TYPE_UINT => Value::UInt(payload),
                    TYPE_FLOAT => Value::Float(f64::from_bits(payload)),
                    TYPE_BOOL => Value::Bool(payload != 0),
                    TYPE_STR => {
                        let len = payload as usize;
                        let Some(packed) = words.get(at..at + string_words(len)) else {
                            break;
                        };
                        at += packed.len();
                        let bytes: Vec<u8> = packed
                            .iter()
                            .flat_map(|w| w.to_le_bytes())
                            .take(len)
                            .collect();
                        Value::Str(Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()))
                    }
                    _ => break,
                };
                on_arg(RawArg {
                    // SAFETY: a key's address and length (the caller's contract).
                    key: unsafe { static_str(record[1], w0 >> 8) },
                    value,
                    owner_ident: record[4],
                    owner_start: record[2],
                });
            }
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SITE: Callsite = Callsite::new("site", "module", "file.rs", 7, 1);

    /// Every kind of record, encoded one after the other, decodes to what was encoded.
    #[test]
    fn every_record_kind_round_trips() {
        let long: &'static str = Box::leak("n".repeat(SHORT_NAME_LEN as usize).into_boxed_str());
        let site = &SITE as *const Callsite as u64;
        let text = Value::Str("quote\" new\nline 😀, longer than a slot".into());
        let values = [
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(-0.5),
            Value::Bool(true),
            text.clone(),
        ];
        let mut words = vec![site | KIND_EVENT, 10, 20, site | KIND_ASYNC, 11, 30];
        words.extend([short_named_word("short").unwrap(), 12, 13]);
        assert_eq!(short_named_word(long), None);
        words.extend(named_record(long, 14, 15));
        for (i, value) in values.iter().enumerate() {
            let (header, bytes) = arg_record("key", value, 10 + i as u64, site);
            words.extend(header);
            words.extend(string_slots(bytes));
        }
        // The short form: numbers and bools, owned by start or by time; not strings.
        assert_eq!(short_arg_record("key", &text, 1, true), None);
        let short: Vec<(Value<'static>, u64, bool)> = vec![
            (Value::Int(i64::MIN), 20, true),
            (Value::UInt(u64::MAX), 21, false),
            (Value::Float(-0.5), 22, true),
            (Value::Bool(true), 23, false),
        ];
        for (value, start, starting) in &short {
            words.extend(short_arg_record("step_num", value, *start, *starting).unwrap());
        }
        // Heap records: an allocation and a free; no address at or above 2^48.
        assert_eq!(heap_word(1 << 48, false), None);
        let top = (1 << 48) - 8;
        words.extend([heap_word(top, false).unwrap(), 30, u64::MAX]);
        words.extend([heap_word(4096, true).unwrap(), 31, 24]);
        let heap_expected = vec![
            RawHeap {
                time: 30,
                addr: top,
                bytes: u64::MAX,
                free: false,
            },
            RawHeap {
                time: 31,
                addr: 4096,
                bytes: 24,
                free: true,
            },
        ];
        let (args_expected, events_expected) = (
            values
                .iter()
                .enumerate()
                .map(|(i, value)| RawArg {
                    key: "key",
                    value: value.clone().into_owned(),
                    owner_ident: site,
                    owner_start: 10 + i as u64,
                })
                .chain(short.iter().map(|(value, start, starting)| RawArg {
                    key: "step_num",
                    value: value.clone(),
                    owner_ident: if *starting { OWNER_STARTING } else { 0 },
                    owner_start: *start,
                }))
                .collect::<Vec<_>>(),
            vec![
                (site | KIND_EVENT, None, 10, 20),
                (site | KIND_ASYNC, None, 11, 30),
                (short_named_word("short").unwrap(), None, 12, 13),
                (0, Some(long), 14, 15),
            ],
        );
        let parse = |words: &[u64]| {
            let (mut events, mut args, mut heap) = (Vec::new(), Vec::new(), Vec::new());
            // SAFETY: the words were written by this module's encoders.
            unsafe {
                decode(
                    words,
                    |e| {
                        assert_eq!(e.number, None);
                        events.push((e.word, e.long_name, e.start, e.end))
                    },
                    |a| args.push(a),
                    |h| heap.push(h),
                )
            };
            (events, args, heap)
        };
        let (events, args, heap) = parse(&words);
        assert_eq!(events, events_expected);
        assert_eq!(args, args_expected);
        assert_eq!(heap, heap_expected);
        // SAFETY: the call site's address, as the event words hold it.
        assert_eq!(unsafe { callsite_at(site) }.name(), "site");
        // A record cut short ends the parse without reading past the words.
        let (events, args, heap) = parse(&words[..words.len() - 1]);
        assert_eq!((events.len(), args.len(), heap.len()), (4, 9, 1));
    }

    static STEP: Callsite =
        Callsite::new("step", "module", "file.rs", 8, 1).with_inline_key("step_num");

    /// Numbers under a site's inline key travel in its event's record: one slot when the event
    /// lasted under 2^32 ticks, two otherwise (also when it ended before it started); values
    /// that do not fit 32 bits are not inline numbers.
    #[test]
    fn events_with_an_inline_number_round_trip() {
        assert_eq!(inline_number(&Value::Float(1.0)), None);
        assert_eq!(inline_number(&Value::Str("7".into())), None);
        assert_eq!(inline_number(&Value::Int(i64::from(i32::MAX) + 1)), None);
        assert_eq!(inline_number(&Value::UInt(u64::from(u32::MAX) + 1)), None);
        let site = &STEP as *const Callsite as u64;
        assert!(can_carry_number(site));
        let cases = [
            (Value::Int(7), 100, 100 + (1 << 32) - 1),
            (Value::Int(i64::from(i32::MIN)), 100, 100 + (1 << 32)),
            (Value::UInt(u64::from(u32::MAX)), 5, 4),
            (Value::Bool(true), 1, 2),
            (Value::Bool(false), u64::MAX - 1, u64::MAX),
        ];
        let mut words = Vec::new();
        let mut slots = Vec::new();
        for (value, start, end) in &cases {
            let number = inline_number(value).unwrap();
            assert_eq!(number & KIND_MASK, KIND_EVENT);
            let w0 = numbered_event_word(site, number);
            let record = match numbered_event(w0, *start, *end, number) {
                Some(slot) => slot.to_vec(),
                None => long_numbered_event(w0, *start, *end, number).to_vec(),
            };
            slots.push(record.len() / SLOT);
            words.extend(record);
        }
        assert_eq!(slots, [1, 2, 2, 1, 1]);
        let mut events = Vec::new();
        // SAFETY: the words were written by this module's encoders.
        unsafe { decode(&words, |e| events.push(e), |_| panic!(), |_| panic!()) };
        let expected: Vec<RawEvent> = cases
            .into_iter()
            .map(|(value, start, end)| RawEvent {
                word: site,
                long_name: None,
                start,
                end,
                number: Some(("step_num", value)),
            })
            .collect();
        assert_eq!(events, expected);
    }
}
