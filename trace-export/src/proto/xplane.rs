//! Hand-written prost messages mirroring `tsl/profiler/protobuf/xplane.proto`
//! (package `tensorflow.profiler`, proto3): the XSpace profile format read by xprof.
//!
//! Every field of the upstream messages is declared, with the upstream field numbers. The
//! metadata maps are `BTreeMap`s so that encoding the same space twice gives the same bytes.

use std::collections::BTreeMap;

/// A profile of one host: a set of planes plus the errors and warnings met while profiling.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XSpace {
    /// The planes of this space, one per device or per kind of host activity.
    #[prost(message, repeated, tag = "1")]
    pub planes: Vec<XPlane>,
    /// Errors met while collecting the profile.
    #[prost(string, repeated, tag = "2")]
    pub errors: Vec<String>,
    /// Warnings met while collecting the profile.
    #[prost(string, repeated, tag = "3")]
    pub warnings: Vec<String>,
    /// Names of the hosts that contributed to this space.
    #[prost(string, repeated, tag = "4")]
    pub hostnames: Vec<String>,
}

/// A device or a kind of host activity (`/host:CPU`, `/device:GPU:0`, ...).
#[derive(Clone, PartialEq, prost::Message)]
pub struct XPlane {
    /// Plane id; xprof does not rely on it.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Plane name; host threads must live in a plane named exactly `/host:CPU`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The timelines of this plane, typically one per thread.
    #[prost(message, repeated, tag = "3")]
    pub lines: Vec<XLine>,
    /// Event metadata keyed by id; each key should equal its value's `id`.
    #[prost(btree_map = "int64, message", tag = "4")]
    pub event_metadata: BTreeMap<i64, XEventMetadata>,
    /// Stat metadata keyed by id; each key should equal its value's `id`.
    #[prost(btree_map = "int64, message", tag = "5")]
    pub stat_metadata: BTreeMap<i64, XStatMetadata>,
    /// Plane-level stats.
    #[prost(message, repeated, tag = "6")]
    pub stats: Vec<XStat>,
}

/// One timeline of a plane, typically one thread.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XLine {
    /// Line id; used as the trace viewer thread id when `display_id` is zero.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Id shown instead of `id` when non-zero.
    #[prost(int64, tag = "10")]
    pub display_id: i64,
    /// Line name; used as the thread name when `display_name` is empty.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Name shown instead of `name` when non-empty.
    #[prost(string, tag = "11")]
    pub display_name: String,
    /// Base time of the line in nanoseconds, relative to the profile start.
    #[prost(int64, tag = "3")]
    pub timestamp_ns: i64,
    /// Duration of the line in picoseconds (optional).
    #[prost(int64, tag = "9")]
    pub duration_ps: i64,
    /// Events sorted by offset ascending, the longer event first on ties.
    #[prost(message, repeated, tag = "4")]
    pub events: Vec<XEvent>,
}

/// One occurrence (or an aggregate of occurrences) of an event on a line.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XEvent {
    /// Key of this event's `XEventMetadata` in the plane's `event_metadata`.
    #[prost(int64, tag = "1")]
    pub metadata_id: i64,
    /// Either the start offset or the number of occurrences.
    #[prost(oneof = "x_event::Data", tags = "2, 5")]
    pub data: Option<x_event::Data>,
    /// Duration in picoseconds.
    #[prost(int64, tag = "3")]
    pub duration_ps: i64,
    /// Event-level stats.
    #[prost(message, repeated, tag = "4")]
    pub stats: Vec<XStat>,
}

/// Nested types of [`XEvent`].
pub mod x_event {
    /// The `data` oneof of an [`XEvent`](super::XEvent).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        /// Start of the event in picoseconds after the line's `timestamp_ns`.
        #[prost(int64, tag = "2")]
        OffsetPs(i64),
        /// Number of occurrences, for aggregated events.
        #[prost(int64, tag = "5")]
        NumOccurrences(i64),
    }
}

/// A named value attached to a plane, an event or an event metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XStat {
    /// Key of this stat's `XStatMetadata` in the plane's `stat_metadata`.
    #[prost(int64, tag = "1")]
    pub metadata_id: i64,
    /// The value; a stat with no value is dropped by xprof.
    #[prost(oneof = "x_stat::Value", tags = "2, 3, 4, 5, 6, 7")]
    pub value: Option<x_stat::Value>,
}

/// Nested types of [`XStat`].
pub mod x_stat {
    /// The `value` oneof of an [`XStat`](super::XStat).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A floating-point value.
        #[prost(double, tag = "2")]
        DoubleValue(f64),
        /// An unsigned integer value.
        #[prost(uint64, tag = "3")]
        Uint64Value(u64),
        /// A signed integer value.
        #[prost(int64, tag = "4")]
        Int64Value(i64),
        /// A string value.
        #[prost(string, tag = "5")]
        StrValue(String),
        /// A byte string value.
        #[prost(bytes = "vec", tag = "6")]
        BytesValue(Vec<u8>),
        /// Id of an `XStatMetadata` whose name is the (interned) string value.
        #[prost(uint64, tag = "7")]
        RefValue(u64),
    }
}

/// What is shared by all events with the same `metadata_id`: name and static stats.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XEventMetadata {
    /// Id; equals the key in the plane's `event_metadata` map.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Event name; shown as `args.long_name` in the trace viewer.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Name shown in the trace viewer, if non-empty.
    #[prost(string, tag = "4")]
    pub display_name: String,
    /// Opaque serialized metadata.
    #[prost(bytes = "vec", tag = "3")]
    pub metadata: Vec<u8>,
    /// Stats shared by all events of this kind.
    #[prost(message, repeated, tag = "5")]
    pub stats: Vec<XStat>,
    /// Ids of child event metadata.
    #[prost(int64, repeated, tag = "6")]
    pub child_id: Vec<i64>,
}

/// The name and description of a stat.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XStatMetadata {
    /// Id; equals the key in the plane's `stat_metadata` map.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Stat name, such as `step_num` or `_r`; also the string of a `ref_value`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Free-form description.
    #[prost(string, tag = "3")]
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mirror;
    use crate::proto::wire::fields_of;
    use prost::Message;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{DescriptorProto, FileDescriptorProto};
    use std::collections::BTreeSet;

    fn stat(metadata_id: i64, value: x_stat::Value) -> XStat {
        XStat {
            metadata_id,
            value: Some(value),
        }
    }

    fn small_space() -> XSpace {
        let event_metadata = [(1, "train"), (2, "model/dense:MatMul")]
            .into_iter()
            .map(|(id, name)| {
                let metadata = XEventMetadata {
                    id,
                    name: name.into(),
                    ..Default::default()
                };
                (id, metadata)
            })
            .collect();
        let stat_metadata = [(1, "step_num"), (2, "_r"), (3, "shape"), (4, "bytes")]
            .into_iter()
            .map(|(id, name)| {
                let metadata = XStatMetadata {
                    id,
                    name: name.into(),
                    description: String::new(),
                };
                (id, metadata)
            })
            .collect();
        let train = XEvent {
            metadata_id: 1,
            data: Some(x_event::Data::OffsetPs(0)),
            duration_ps: 9_000_000_000,
            stats: vec![
                stat(1, x_stat::Value::Int64Value(0)),
                stat(2, x_stat::Value::Int64Value(1)),
            ],
        };
        let matmul = XEvent {
            metadata_id: 2,
            data: Some(x_event::Data::OffsetPs(1_000_000)),
            duration_ps: 6_000_000_000,
            stats: vec![
                stat(3, x_stat::Value::StrValue("[32,64]".into())),
                stat(4, x_stat::Value::Uint64Value(u64::MAX)),
            ],
        };
        XSpace {
            planes: vec![XPlane {
                id: 1,
                name: "/host:CPU".into(),
                lines: vec![XLine {
                    id: 7,
                    name: "main".into(),
                    timestamp_ns: 1_000,
                    events: vec![train, matmul],
                    ..Default::default()
                }],
                event_metadata,
                stat_metadata,
                stats: vec![],
            }],
            hostnames: vec!["localhost".into()],
            ..Default::default()
        }
    }

    #[test]
    fn small_space_round_trips() {
        let space = small_space();
        let bytes = space.encode_to_vec();
        let decoded = XSpace::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, space);
        // Zero-valued oneof members are still present after decoding.
        let events = &decoded.planes[0].lines[0].events;
        assert_eq!(events[0].data, Some(x_event::Data::OffsetPs(0)));
        assert_eq!(events[0].stats[0].value, Some(x_stat::Value::Int64Value(0)));
        // BTreeMap keys make the encoding deterministic.
        assert_eq!(decoded.encode_to_vec(), bytes);
    }

    /// `(name, number, type)` of each field of a message.
    type FieldTable = &'static [(&'static str, i32, Type)];

    /// Every field of each message, as `(name, number, type)`; all are singular unless listed
    /// in `REPEATED`.
    const EXPECTED: &[(&str, FieldTable)] = &[
        (
            "XSpace",
            &[
                ("planes", 1, Type::Message),
                ("errors", 2, Type::String),
                ("warnings", 3, Type::String),
                ("hostnames", 4, Type::String),
            ],
        ),
        (
            "XPlane",
            &[
                ("id", 1, Type::Int64),
                ("name", 2, Type::String),
                ("lines", 3, Type::Message),
                ("event_metadata", 4, Type::Message),
                ("stat_metadata", 5, Type::Message),
                ("stats", 6, Type::Message),
            ],
        ),
        (
            "XLine",
            &[
                ("id", 1, Type::Int64),
                ("display_id", 10, Type::Int64),
                ("name", 2, Type::String),
                ("display_name", 11, Type::String),
                ("timestamp_ns", 3, Type::Int64),
                ("duration_ps", 9, Type::Int64),
                ("events", 4, Type::Message),
            ],
        ),
        (
            "XEvent",
            &[
                ("metadata_id", 1, Type::Int64),
                ("offset_ps", 2, Type::Int64),
                ("num_occurrences", 5, Type::Int64),
                ("duration_ps", 3, Type::Int64),
                ("stats", 4, Type::Message),
            ],
        ),
        (
            "XStat",
            &[
                ("metadata_id", 1, Type::Int64),
                ("double_value", 2, Type::Double),
                ("uint64_value", 3, Type::Uint64),
                ("int64_value", 4, Type::Int64),
                ("str_value", 5, Type::String),
                ("bytes_value", 6, Type::Bytes),
                ("ref_value", 7, Type::Uint64),
            ],
        ),
        (
            "XEventMetadata",
            &[
                ("id", 1, Type::Int64),
                ("name", 2, Type::String),
                ("display_name", 4, Type::String),
                ("metadata", 3, Type::Bytes),
                ("stats", 5, Type::Message),
                ("child_id", 6, Type::Int64),
            ],
        ),
        (
            "XStatMetadata",
            &[
                ("id", 1, Type::Int64),
                ("name", 2, Type::String),
                ("description", 3, Type::String),
            ],
        ),
    ];

    /// `(message, field)` pairs declared `repeated` (maps included).
    const REPEATED: &[(&str, &str)] = &[
        ("XSpace", "planes"),
        ("XSpace", "errors"),
        ("XSpace", "warnings"),
        ("XSpace", "hostnames"),
        ("XPlane", "lines"),
        ("XPlane", "event_metadata"),
        ("XPlane", "stat_metadata"),
        ("XPlane", "stats"),
        ("XLine", "events"),
        ("XEvent", "stats"),
        ("XEventMetadata", "stats"),
        ("XEventMetadata", "child_id"),
    ];

    /// `(message, oneof name, members)`.
    const ONEOFS: &[(&str, &str, &[&str])] = &[
        ("XEvent", "data", &["offset_ps", "num_occurrences"]),
        (
            "XStat",
            "value",
            &[
                "double_value",
                "uint64_value",
                "int64_value",
                "str_value",
                "bytes_value",
                "ref_value",
            ],
        ),
    ];

    fn expected(message: &str) -> FieldTable {
        EXPECTED
            .iter()
            .find(|(name, _)| *name == message)
            .map(|(_, fields)| *fields)
            .unwrap()
    }

    fn is_repeated(message: &str, field: &str) -> bool {
        REPEATED.contains(&(message, field))
    }

    /// Wire type of a field in proto3, where repeated scalars are packed.
    fn wire_type(ty: Type, repeated: bool) -> u8 {
        match ty {
            Type::String | Type::Bytes | Type::Message | Type::Group => 2,
            _ if repeated => 2,
            Type::Double | Type::Fixed64 | Type::Sfixed64 => 1,
            Type::Float | Type::Fixed32 | Type::Sfixed32 => 5,
            _ => 0,
        }
    }

    fn expected_wire(message: &str) -> BTreeSet<(u32, u8)> {
        expected(message)
            .iter()
            .map(|&(name, number, ty)| (number as u32, wire_type(ty, is_repeated(message, name))))
            .collect()
    }

    /// The table above matches what the structs put on the wire.
    #[test]
    fn structs_match_field_table() {
        let metadata_stat = stat(1, x_stat::Value::BytesValue(vec![1]));
        let full_stats = [
            x_stat::Value::DoubleValue(1.5),
            x_stat::Value::Uint64Value(1),
            x_stat::Value::Int64Value(-1),
            x_stat::Value::StrValue("s".into()),
            x_stat::Value::BytesValue(vec![0]),
            x_stat::Value::RefValue(3),
        ]
        .map(|value| stat(1, value));
        assert_eq!(fields_of(&full_stats), expected_wire("XStat"));

        let events =
            [x_event::Data::OffsetPs(1), x_event::Data::NumOccurrences(2)].map(|data| XEvent {
                metadata_id: 1,
                data: Some(data),
                duration_ps: 1,
                stats: vec![metadata_stat.clone()],
            });
        assert_eq!(fields_of(&events), expected_wire("XEvent"));

        let line = XLine {
            id: 1,
            display_id: 1,
            name: "n".into(),
            display_name: "d".into(),
            timestamp_ns: 1,
            duration_ps: 1,
            events: events.to_vec(),
        };
        assert_eq!(fields_of([&line]), expected_wire("XLine"));

        let event_metadata = XEventMetadata {
            id: 1,
            name: "n".into(),
            display_name: "d".into(),
            metadata: vec![1],
            stats: vec![metadata_stat.clone()],
            child_id: vec![2, 3],
        };
        assert_eq!(
            fields_of([&event_metadata]),
            expected_wire("XEventMetadata")
        );

        let stat_metadata = XStatMetadata {
            id: 1,
            name: "n".into(),
            description: "d".into(),
        };
        assert_eq!(fields_of([&stat_metadata]), expected_wire("XStatMetadata"));

        let plane = XPlane {
            id: 1,
            name: "/host:CPU".into(),
            lines: vec![line],
            event_metadata: [(1, event_metadata)].into(),
            stat_metadata: [(1, stat_metadata)].into(),
            stats: vec![metadata_stat],
        };
        assert_eq!(fields_of([&plane]), expected_wire("XPlane"));

        let space = XSpace {
            planes: vec![plane],
            errors: vec!["e".into()],
            warnings: vec!["w".into()],
            hostnames: vec!["h".into()],
        };
        assert_eq!(fields_of(&[space]), expected_wire("XSpace"));
    }

    /// The serialized `FileDescriptorProto` of xplane.proto that xprof's converter library was
    /// compiled with, cut out of that library by `proto/extract_descriptors.py`.
    const DESCRIPTOR: &[u8] = include_bytes!("../../tests/data/xplane_descriptor.pb");

    fn message<'a>(file: &'a FileDescriptorProto, name: &str) -> &'a DescriptorProto {
        file.message_type
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("message {name} missing from the descriptor"))
    }

    /// Every message of this file, field by field, matches the schema xprof's converter
    /// was compiled with, as read from the declarations themselves.
    #[test]
    fn messages_match_oracle_descriptor() {
        let set = prost_types::FileDescriptorSet {
            file: vec![FileDescriptorProto::decode(DESCRIPTOR).unwrap()],
        };
        let everything = mirror::Omissions {
            fields: &[],
            partial_enums: &[],
        };
        mirror::check(
            include_str!("xplane.rs"),
            &set,
            "tensorflow.profiler",
            &everything,
        );
    }

    /// The table above matches the schema xprof's converter was compiled with.
    #[test]
    fn field_table_matches_oracle_descriptor() {
        let file = FileDescriptorProto::decode(DESCRIPTOR).unwrap();
        assert_eq!(file.name(), "tsl/profiler/protobuf/xplane.proto");
        assert_eq!(file.package(), "tensorflow.profiler");
        assert_eq!(file.syntax(), "proto3");

        for &(name, fields) in EXPECTED {
            let descriptor = message(&file, name);
            let actual: BTreeSet<(String, i32, Type, Label)> = descriptor
                .field
                .iter()
                .map(|f| (f.name().to_owned(), f.number(), f.r#type(), f.label()))
                .collect();
            let wanted: BTreeSet<(String, i32, Type, Label)> = fields
                .iter()
                .map(|&(field, number, ty)| {
                    let label = if is_repeated(name, field) {
                        Label::Repeated
                    } else {
                        Label::Optional
                    };
                    (field.to_owned(), number, ty, label)
                })
                .collect();
            assert_eq!(actual, wanted, "fields of {name}");

            for field in &descriptor.field {
                let oneof = field
                    .oneof_index
                    .map(|i| descriptor.oneof_decl[i as usize].name());
                let wanted = ONEOFS
                    .iter()
                    .find(|(m, _, members)| *m == name && members.contains(&field.name()))
                    .map(|&(_, oneof, _)| oneof);
                assert_eq!(oneof, wanted, "oneof of {name}.{}", field.name());
                assert!(!field.proto3_optional(), "{name}.{}", field.name());
            }
        }
        assert_eq!(
            file.message_type.len(),
            EXPECTED.len(),
            "the descriptor has messages not mirrored here"
        );

        let plane = message(&file, "XPlane");
        for (field, entry, value) in [
            ("event_metadata", "EventMetadataEntry", "XEventMetadata"),
            ("stat_metadata", "StatMetadataEntry", "XStatMetadata"),
        ] {
            let f = plane.field.iter().find(|f| f.name() == field).unwrap();
            assert_eq!(
                f.type_name(),
                format!(".tensorflow.profiler.XPlane.{entry}")
            );
            let entry = plane
                .nested_type
                .iter()
                .find(|m| m.name() == entry)
                .unwrap();
            assert!(entry.options.as_ref().unwrap().map_entry());
            let key = &entry.field[0];
            assert_eq!(
                (key.name(), key.number(), key.r#type()),
                ("key", 1, Type::Int64)
            );
            let val = &entry.field[1];
            assert_eq!(
                (val.name(), val.number(), val.r#type()),
                ("value", 2, Type::Message)
            );
            assert_eq!(val.type_name(), format!(".tensorflow.profiler.{value}"));
        }
        for (message_name, field, type_name) in [
            ("XSpace", "planes", "XPlane"),
            ("XPlane", "lines", "XLine"),
            ("XPlane", "stats", "XStat"),
            ("XLine", "events", "XEvent"),
            ("XEvent", "stats", "XStat"),
            ("XEventMetadata", "stats", "XStat"),
        ] {
            let f = message(&file, message_name)
                .field
                .iter()
                .find(|f| f.name() == field)
                .unwrap();
            assert_eq!(f.type_name(), format!(".tensorflow.profiler.{type_name}"));
        }
    }
}
