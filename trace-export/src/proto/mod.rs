//! Protocol buffer messages for the files this crate writes.
//!
//! The structs are hand-written `prost` messages that mirror the upstream `.proto` files, so
//! that building the crate needs no `protoc` and no build script. Only the fields this crate
//! writes or reads back are declared; fields left out are skipped when decoding, as protobuf
//! does for unknown fields.
//!
//! * [`xplane`]: `tsl/profiler/protobuf/xplane.proto` (package `tensorflow.profiler`), the
//!   `<host>.xplane.pb` profile that xprof's Profile tab reads.
//! * [`tensorboard`]: `tensorboard/compat/proto/*.proto` (package `tensorboard`), the records
//!   of a TensorBoard event file.
//! * `profiler_service` (feature `server`): `tensorflow.ProfilerService`, the live-capture
//!   protocol of TensorBoard's "Capture profile" button.
//!
//! Tests check every declared field (name, number, type, label, oneof) against the
//! descriptors the reading programs were built with, kept in `tests/data/` and extracted
//! from the installed packages by `proto/extract_descriptors.py`.

#[cfg(feature = "server")]
pub mod profiler_service;
pub mod tensorboard;
pub mod xplane;

#[cfg(test)]
mod mirror;

/// Helpers for tests that look at messages on the wire.
#[cfg(test)]
pub(crate) mod wire {
    use std::collections::BTreeSet;

    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().expect("truncated varint");
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint too long")
    }

    /// Splits an encoded message into `(field number, wire type, payload)` triples; the
    /// payload of a length-delimited field excludes its length prefix.
    pub(crate) fn split(mut bytes: &[u8]) -> Vec<(u32, u8, &[u8])> {
        let mut fields = Vec::new();
        while !bytes.is_empty() {
            let key = varint(&mut bytes);
            let wire_type = (key & 7) as u8;
            let before = bytes;
            let (start, len) = match wire_type {
                0 => {
                    varint(&mut bytes);
                    (0, before.len() - bytes.len())
                }
                1 => (0, 8),
                2 => {
                    let len = varint(&mut bytes) as usize;
                    (before.len() - bytes.len(), len)
                }
                5 => (0, 4),
                other => panic!("unexpected wire type {other}"),
            };
            fields.push(((key >> 3) as u32, wire_type, &before[start..start + len]));
            bytes = &before[start + len..];
        }
        fields
    }

    /// The top-level `(field number, wire type)` pairs found in any of `messages`.
    pub(crate) fn fields_of<'a, M: prost::Message + 'a>(
        messages: impl IntoIterator<Item = &'a M>,
    ) -> BTreeSet<(u32, u8)> {
        messages
            .into_iter()
            .flat_map(|m| {
                split(&m.encode_to_vec())
                    .into_iter()
                    .map(|(number, wire_type, _)| (number, wire_type))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
