//! Hand-written prost messages mirroring TensorBoard's protos (package `tensorboard`, proto3):
//! `tensorboard/compat/proto/event.proto`, `summary.proto`, `tensor.proto`,
//! `tensor_shape.proto`, `types.proto`, `graph.proto`, `node_def.proto`, `attr_value.proto`,
//! `versions.proto`, `config.proto` (`RunMetadata`) and `step_stats.proto`.
//!
//! Field numbers and types follow the upstream files. Fields this crate never writes (images,
//! histograms, cost graphs, memory statistics, ...) are left out; a decoder skips them.
//! `map` fields are `BTreeMap`s so that encoding is deterministic.

use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// event.proto

/// One record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch; events with a NaN wall time are dropped by rustboard.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Global step of the event.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "event::What", tags = "3, 4, 5, 6, 7, 8, 9")]
    pub what: Option<event::What>,
    /// Information about the writer of the file.
    #[prost(message, optional, tag = "10")]
    pub source_metadata: Option<SourceMetadata>,
}

/// Nested types of [`Event`].
pub mod event {
    /// The `what` oneof of an [`Event`](super::Event).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// File format version; the first record of a file is `"brain.Event:2"`.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// A serialized [`GraphDef`](super::GraphDef).
        #[prost(bytes = "vec", tag = "4")]
        GraphDef(Vec<u8>),
        /// Summary values (scalars, tensors, ...).
        #[prost(message, tag = "5")]
        Summary(super::Summary),
        /// A log line.
        #[prost(message, tag = "6")]
        LogMessage(super::LogMessage),
        /// Session start, stop or checkpoint.
        #[prost(message, tag = "7")]
        SessionLog(super::SessionLog),
        /// Run metadata under a tag, as TF1's `FileWriter.add_run_metadata` writes it.
        #[prost(message, tag = "8")]
        TaggedRunMetadata(super::TaggedRunMetadata),
        /// A serialized `MetaGraphDef`.
        #[prost(bytes = "vec", tag = "9")]
        MetaGraphDef(Vec<u8>),
    }
}

/// Information about the program that wrote an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SourceMetadata {
    /// Name of the writer library.
    #[prost(string, tag = "1")]
    pub writer: String,
}

/// A log line stored in an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogMessage {
    /// Severity, a [`log_message::Level`].
    #[prost(enumeration = "log_message::Level", tag = "1")]
    pub level: i32,
    /// The message text.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Nested types of [`LogMessage`].
pub mod log_message {
    /// Severity of a [`LogMessage`](super::LogMessage).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Level {
        /// Not set.
        Unknown = 0,
        /// Debugging detail.
        Debugging = 10,
        /// Information.
        Info = 20,
        /// Warning.
        Warn = 30,
        /// Error.
        Error = 40,
        /// Fatal error.
        Fatal = 50,
    }
}

/// A session status change.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// The new status, a [`session_log::SessionStatus`].
    #[prost(enumeration = "session_log::SessionStatus", tag = "1")]
    pub status: i32,
    /// Path of the checkpoint, for `CHECKPOINT`.
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    /// Free-form message.
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// Nested types of [`SessionLog`].
pub mod session_log {
    /// Status carried by a [`SessionLog`](super::SessionLog).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum SessionStatus {
        /// Not set.
        StatusUnspecified = 0,
        /// The session (re)started; readers purge data from later steps.
        Start = 1,
        /// The session stopped.
        Stop = 2,
        /// A checkpoint was written.
        Checkpoint = 3,
    }
}

/// Run metadata stored under a tag.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaggedRunMetadata {
    /// Tag under which the graphs plugin lists the run metadata.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A serialized [`RunMetadata`].
    #[prost(bytes = "vec", tag = "2")]
    pub run_metadata: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// summary.proto

/// A set of tagged values written at one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<summary::Value>,
}

/// Nested types of [`Summary`].
pub mod summary {
    /// One tagged value of a [`Summary`](super::Summary).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// Name of the graph node that produced the value (legacy).
        #[prost(string, tag = "7")]
        pub node_name: String,
        /// Tag (series name) of the value.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Plugin metadata; needed only on the first occurrence of a tag in a run.
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<super::SummaryMetadata>,
        /// The value; a `Value` with none set is ignored by readers.
        #[prost(oneof = "value::Value", tags = "2, 3, 8")]
        pub value: Option<value::Value>,
    }

    /// Nested types of [`Value`].
    pub mod value {
        /// The `value` oneof of a [`summary::Value`](super::Value).
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// A legacy scalar.
            #[prost(float, tag = "2")]
            SimpleValue(f32),
            /// A legacy serialized histogram.
            #[prost(bytes = "vec", tag = "3")]
            ObsoleteOldStyleHistogram(Vec<u8>),
            /// A tensor; the TF2 form of every summary.
            #[prost(message, tag = "8")]
            Tensor(super::super::TensorProto),
        }
    }
}

/// Tells TensorBoard which plugin owns a summary tag.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// The owning plugin.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<summary_metadata::PluginData>,
    /// Display name of the tag.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Description of the tag.
    #[prost(string, tag = "3")]
    pub summary_description: String,
    /// Kind of data, a [`DataClass`]; optional, readers infer it from the plugin name.
    #[prost(enumeration = "DataClass", tag = "4")]
    pub data_class: i32,
}

/// Nested types of [`SummaryMetadata`].
pub mod summary_metadata {
    /// Name of a plugin and its private data.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        /// Plugin name, such as `scalars` or `graph_run_metadata`.
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        /// Plugin-specific content.
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }
}

/// How the data of a summary tag is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataClass {
    /// Not set.
    Unknown = 0,
    /// A rank-0 numeric tensor per step.
    Scalar = 1,
    /// A tensor per step.
    Tensor = 2,
    /// A rank-1 string tensor of blobs per step.
    BlobSequence = 3,
}

// ---------------------------------------------------------------------------------------------
// tensor.proto, tensor_shape.proto, types.proto

/// A tensor value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Element type, a [`DataType`].
    #[prost(enumeration = "DataType", tag = "1")]
    pub dtype: i32,
    /// Shape; an empty shape (no dims) is a scalar.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// Version of the serialized form.
    #[prost(int32, tag = "3")]
    pub version_number: i32,
    /// Elements as raw little-endian bytes, instead of a `*_val` field.
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    /// Elements of a `DT_FLOAT` tensor.
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    /// Elements of a `DT_DOUBLE` tensor.
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    /// Elements of an `int32` (or smaller integer) tensor.
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    /// Elements of a `DT_STRING` tensor.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
    /// Elements of a `DT_INT64` tensor.
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
    /// Elements of a `DT_BOOL` tensor.
    #[prost(bool, repeated, tag = "11")]
    pub bool_val: Vec<bool>,
}

/// The shape of a tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions, outermost first; none for a scalar.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<tensor_shape_proto::Dim>,
    /// Whether the rank is unknown.
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One dimension of a tensor shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        /// Size of the dimension, or -1 if unknown.
        #[prost(int64, tag = "1")]
        pub size: i64,
        /// Optional name of the dimension.
        #[prost(string, tag = "2")]
        pub name: String,
    }
}

/// Element types of tensors (the first values of `types.proto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set.
    DtInvalid = 0,
    /// 32-bit float; the only scalar type rustboard accepts.
    DtFloat = 1,
    /// 64-bit float.
    DtDouble = 2,
    /// 32-bit signed integer.
    DtInt32 = 3,
    /// 8-bit unsigned integer.
    DtUint8 = 4,
    /// 16-bit signed integer.
    DtInt16 = 5,
    /// 8-bit signed integer.
    DtInt8 = 6,
    /// Byte string.
    DtString = 7,
    /// Complex number of two 32-bit floats.
    DtComplex64 = 8,
    /// 64-bit signed integer.
    DtInt64 = 9,
    /// Boolean.
    DtBool = 10,
}

// ---------------------------------------------------------------------------------------------
// graph.proto, node_def.proto, attr_value.proto, versions.proto

/// A graph of nodes, shown by the graphs plugin.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphDef {
    /// The nodes; `/` in names builds the hierarchy and `input` lists the edges.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeDef>,
    /// Versions of the graph format.
    #[prost(message, optional, tag = "4")]
    pub versions: Option<VersionDef>,
}

/// One node of a [`GraphDef`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDef {
    /// Unique node name, `/`-separated scopes.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Operation type.
    #[prost(string, tag = "2")]
    pub op: String,
    /// Names of the nodes whose outputs feed this node.
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    /// Device the node was placed on.
    #[prost(string, tag = "4")]
    pub device: String,
    /// Attributes by name.
    #[prost(btree_map = "string, message", tag = "5")]
    pub attr: BTreeMap<String, AttrValue>,
}

/// The value of a node attribute.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrValue {
    /// The value.
    #[prost(oneof = "attr_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub value: Option<attr_value::Value>,
}

/// Nested types of [`AttrValue`].
pub mod attr_value {
    /// The `value` oneof of an [`AttrValue`](super::AttrValue).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A list of values.
        #[prost(message, tag = "1")]
        List(ListValue),
        /// A byte string.
        #[prost(bytes = "vec", tag = "2")]
        S(Vec<u8>),
        /// An integer.
        #[prost(int64, tag = "3")]
        I(i64),
        /// A float.
        #[prost(float, tag = "4")]
        F(f32),
        /// A boolean.
        #[prost(bool, tag = "5")]
        B(bool),
        /// A [`DataType`](super::DataType).
        #[prost(enumeration = "super::DataType", tag = "6")]
        Type(i32),
        /// A tensor shape.
        #[prost(message, tag = "7")]
        Shape(super::TensorShapeProto),
        /// A tensor.
        #[prost(message, tag = "8")]
        Tensor(super::TensorProto),
        /// Name of a function attribute to substitute.
        #[prost(string, tag = "9")]
        Placeholder(String),
        /// A function with its attributes.
        #[prost(message, tag = "10")]
        Func(super::NameAttrList),
    }

    /// A list of attribute values, all of one kind.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListValue {
        /// Byte strings.
        #[prost(bytes = "vec", repeated, tag = "2")]
        pub s: Vec<Vec<u8>>,
        /// Integers.
        #[prost(int64, repeated, tag = "3")]
        pub i: Vec<i64>,
        /// Floats.
        #[prost(float, repeated, tag = "4")]
        pub f: Vec<f32>,
        /// Booleans.
        #[prost(bool, repeated, tag = "5")]
        pub b: Vec<bool>,
        /// [`DataType`](super::DataType)s.
        #[prost(enumeration = "super::DataType", repeated, tag = "6")]
        pub r#type: Vec<i32>,
        /// Tensor shapes.
        #[prost(message, repeated, tag = "7")]
        pub shape: Vec<super::TensorShapeProto>,
        /// Tensors.
        #[prost(message, repeated, tag = "8")]
        pub tensor: Vec<super::TensorProto>,
        /// Functions.
        #[prost(message, repeated, tag = "9")]
        pub func: Vec<super::NameAttrList>,
    }
}

/// A function name with attributes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameAttrList {
    /// Function name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Attributes by name.
    #[prost(btree_map = "string, message", tag = "2")]
    pub attr: BTreeMap<String, AttrValue>,
}

/// Versions of a serialized graph.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionDef {
    /// Version of the producer.
    #[prost(int32, tag = "1")]
    pub producer: i32,
    /// Oldest consumer version that can read this graph.
    #[prost(int32, tag = "2")]
    pub min_consumer: i32,
    /// Consumer versions that must not read this graph.
    #[prost(int32, repeated, tag = "3")]
    pub bad_consumers: Vec<i32>,
}

// ---------------------------------------------------------------------------------------------
// config.proto (RunMetadata), step_stats.proto

/// What one run of a graph or function did.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunMetadata {
    /// Per-device execution statistics.
    #[prost(message, optional, tag = "1")]
    pub step_stats: Option<StepStats>,
    /// Graphs of the partitions that ran.
    #[prost(message, repeated, tag = "3")]
    pub partition_graphs: Vec<GraphDef>,
    /// Graphs of the functions that ran; the op graph merges their `pre_optimization_graph`s.
    #[prost(message, repeated, tag = "4")]
    pub function_graphs: Vec<run_metadata::FunctionGraphs>,
}

/// Nested types of [`RunMetadata`].
pub mod run_metadata {
    /// The graphs of one function that ran.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FunctionGraphs {
        /// Graphs of the partitions of the function.
        #[prost(message, repeated, tag = "1")]
        pub partition_graphs: Vec<super::GraphDef>,
        /// The function graph before optimization.
        #[prost(message, optional, tag = "2")]
        pub pre_optimization_graph: Option<super::GraphDef>,
        /// The function graph after optimization.
        #[prost(message, optional, tag = "3")]
        pub post_optimization_graph: Option<super::GraphDef>,
    }
}

/// Execution statistics of one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StepStats {
    /// Statistics per device.
    #[prost(message, repeated, tag = "1")]
    pub dev_stats: Vec<DeviceStepStats>,
}

/// Execution statistics of one device.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceStepStats {
    /// Device name.
    #[prost(string, tag = "1")]
    pub device: String,
    /// Statistics per executed node.
    #[prost(message, repeated, tag = "2")]
    pub node_stats: Vec<NodeExecStats>,
    /// Thread names by thread id.
    #[prost(btree_map = "uint32, string", tag = "3")]
    pub thread_names: BTreeMap<u32, String>,
}

/// Timing of one node execution; `node_name` should match a `NodeDef.name`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeExecStats {
    /// Name of the executed node.
    #[prost(string, tag = "1")]
    pub node_name: String,
    /// Start time in microseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub all_start_micros: i64,
    /// Op start, in microseconds after `all_start_micros`.
    #[prost(int64, tag = "3")]
    pub op_start_rel_micros: i64,
    /// Op end, in microseconds after `all_start_micros`.
    #[prost(int64, tag = "4")]
    pub op_end_rel_micros: i64,
    /// End of all work, in microseconds after `all_start_micros`.
    #[prost(int64, tag = "5")]
    pub all_end_rel_micros: i64,
    /// Label shown on the timeline.
    #[prost(string, tag = "8")]
    pub timeline_label: String,
    /// Scheduling time in microseconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub scheduled_micros: i64,
    /// Id of the thread that ran the node.
    #[prost(uint32, tag = "10")]
    pub thread_id: u32,
    /// Start time in nanoseconds since the Unix epoch.
    #[prost(int64, tag = "13")]
    pub all_start_nanos: i64,
    /// Op start, in nanoseconds after `all_start_nanos`.
    #[prost(int64, tag = "14")]
    pub op_start_rel_nanos: i64,
    /// Op end, in nanoseconds after `all_start_nanos`.
    #[prost(int64, tag = "15")]
    pub op_end_rel_nanos: i64,
    /// End of all work, in nanoseconds after `all_start_nanos`.
    #[prost(int64, tag = "16")]
    pub all_end_rel_nanos: i64,
    /// Scheduling time in nanoseconds since the Unix epoch.
    #[prost(int64, tag = "17")]
    pub scheduled_nanos: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mirror::{self, Omissions};
    use crate::proto::wire::{fields_of, split};
    use prost::Message;

    /// Checks that `messages` together put on the wire every field of `message` that
    /// TensorBoard's descriptor has and the mirror does not leave out, each with the wire
    /// type the descriptor gives it, and nothing else.
    #[track_caller]
    fn check<'a, M: Message + 'a>(messages: impl IntoIterator<Item = &'a M>, message: &str) {
        let set = mirror::descriptor_set(DESCRIPTORS);
        let expected = mirror::wire_fields(&set, "tensorboard", message, &LEFT_OUT);
        assert_eq!(fields_of(messages), expected, "{message}");
    }

    fn graph() -> GraphDef {
        GraphDef {
            node: vec![NodeDef {
                name: "main/train_step".into(),
                op: "Call".into(),
                input: vec!["main".into()],
                device: "/host:CPU".into(),
                attr: [(
                    "calls".to_owned(),
                    AttrValue {
                        value: Some(attr_value::Value::I(3)),
                    },
                )]
                .into(),
            }],
            versions: Some(VersionDef {
                producer: 1,
                min_consumer: 1,
                bad_consumers: vec![2],
            }),
        }
    }

    fn scalar_tensor(value: f32) -> TensorProto {
        TensorProto {
            dtype: DataType::DtFloat.into(),
            tensor_shape: Some(TensorShapeProto::default()),
            float_val: vec![value],
            ..Default::default()
        }
    }

    #[test]
    fn event_fields() {
        let whats = [
            event::What::FileVersion("brain.Event:2".into()),
            event::What::GraphDef(vec![1]),
            event::What::Summary(Summary::default()),
            event::What::LogMessage(LogMessage::default()),
            event::What::SessionLog(SessionLog::default()),
            event::What::TaggedRunMetadata(TaggedRunMetadata::default()),
            event::What::MetaGraphDef(vec![1]),
        ];
        let events = whats.map(|what| Event {
            wall_time: 1.0,
            step: 1,
            what: Some(what),
            source_metadata: Some(SourceMetadata::default()),
        });
        check(&events, "Event");
        check(
            &[TaggedRunMetadata {
                tag: "t".into(),
                run_metadata: vec![1],
            }],
            "TaggedRunMetadata",
        );
        check(
            &[LogMessage {
                level: log_message::Level::Warn.into(),
                message: "m".into(),
            }],
            "LogMessage",
        );
        check(
            &[SessionLog {
                status: session_log::SessionStatus::Start.into(),
                checkpoint_path: "p".into(),
                msg: "m".into(),
            }],
            "SessionLog",
        );
        check(&[SourceMetadata { writer: "w".into() }], "SourceMetadata");
    }

    #[test]
    fn summary_fields() {
        let values = [
            summary::value::Value::SimpleValue(1.0),
            summary::value::Value::ObsoleteOldStyleHistogram(vec![1]),
            summary::value::Value::Tensor(scalar_tensor(1.0)),
        ]
        .map(|value| summary::Value {
            node_name: "n".into(),
            tag: "t".into(),
            metadata: Some(SummaryMetadata::default()),
            value: Some(value),
        });
        check(&values, "Summary.Value");
        check(
            &[Summary {
                value: values.to_vec(),
            }],
            "Summary",
        );
        check(
            &[SummaryMetadata {
                plugin_data: Some(summary_metadata::PluginData {
                    plugin_name: "scalars".into(),
                    content: vec![1],
                }),
                display_name: "d".into(),
                summary_description: "s".into(),
                data_class: DataClass::Scalar.into(),
            }],
            "SummaryMetadata",
        );
        check(
            &[summary_metadata::PluginData {
                plugin_name: "p".into(),
                content: vec![1],
            }],
            "SummaryMetadata.PluginData",
        );
    }

    #[test]
    fn zero_oneof_members_are_encoded() {
        let value = summary::Value {
            tag: "a".into(),
            value: Some(summary::value::Value::SimpleValue(0.0)),
            ..Default::default()
        };
        assert_eq!(value.encode_to_vec(), [0x0a, 0x01, b'a', 0x15, 0, 0, 0, 0]);
        let attr = AttrValue {
            value: Some(attr_value::Value::I(0)),
        };
        assert_eq!(attr.encode_to_vec(), [0x18, 0]);
    }

    #[test]
    fn tensor_fields() {
        let tensor = TensorProto {
            dtype: DataType::DtString.into(),
            tensor_shape: Some(TensorShapeProto::default()),
            version_number: 1,
            tensor_content: vec![1],
            float_val: vec![1.0],
            double_val: vec![1.0],
            int_val: vec![1],
            string_val: vec![vec![1]],
            int64_val: vec![1],
            bool_val: vec![true],
        };
        check(&[tensor], "TensorProto");
        // float_val is packed: one length-delimited field holding the raw little-endian floats.
        let scalar = scalar_tensor(0.5).encode_to_vec();
        assert_eq!(
            split(&scalar),
            [
                (1, 0, &[1][..]),
                (2, 2, &[][..]),
                (5, 2, &0.5f32.to_le_bytes()[..])
            ]
        );
        let shape = TensorShapeProto {
            dim: vec![tensor_shape_proto::Dim {
                size: 3,
                name: "n".into(),
            }],
            unknown_rank: true,
        };
        check([&shape], "TensorShapeProto");
        check(&shape.dim, "TensorShapeProto.Dim");
        assert_eq!(
            [
                DataType::DtFloat,
                DataType::DtDouble,
                DataType::DtString,
                DataType::DtInt64
            ]
            .map(i32::from),
            [1, 2, 7, 9]
        );
    }

    #[test]
    fn graph_fields() {
        let graph = graph();
        check([&graph], "GraphDef");
        check(&graph.node, "NodeDef");
        check(&[graph.versions.clone().unwrap()], "VersionDef");
        // A map entry is {1: key, 2: value}.
        let node = graph.node[0].encode_to_vec();
        let (_, _, entry) = split(&node).into_iter().find(|f| f.0 == 5).unwrap();
        assert_eq!(
            split(entry),
            [(1, 2, &b"calls"[..]), (2, 2, &[0x18, 3][..])]
        );

        let values = [
            attr_value::Value::List(attr_value::ListValue::default()),
            attr_value::Value::S(vec![1]),
            attr_value::Value::I(1),
            attr_value::Value::F(1.0),
            attr_value::Value::B(true),
            attr_value::Value::Type(DataType::DtFloat.into()),
            attr_value::Value::Shape(TensorShapeProto::default()),
            attr_value::Value::Tensor(scalar_tensor(1.0)),
            attr_value::Value::Placeholder("p".into()),
            attr_value::Value::Func(NameAttrList::default()),
        ]
        .map(|value| AttrValue { value: Some(value) });
        check(&values, "AttrValue");
        let list = attr_value::ListValue {
            s: vec![vec![1]],
            i: vec![1],
            f: vec![1.0],
            b: vec![true],
            r#type: vec![1],
            shape: vec![TensorShapeProto::default()],
            tensor: vec![TensorProto::default()],
            func: vec![NameAttrList::default()],
        };
        check(&[list], "AttrValue.ListValue");
        let func = NameAttrList {
            name: "f".into(),
            attr: graph.node[0].attr.clone(),
        };
        check(&[func], "NameAttrList");
    }

    #[test]
    fn run_metadata_fields() {
        let node_stats = NodeExecStats {
            node_name: "main/train_step".into(),
            all_start_micros: 1,
            op_start_rel_micros: 1,
            op_end_rel_micros: 1,
            all_end_rel_micros: 1,
            timeline_label: "l".into(),
            scheduled_micros: 1,
            thread_id: 1,
            all_start_nanos: 1,
            op_start_rel_nanos: 1,
            op_end_rel_nanos: 1,
            all_end_rel_nanos: 1,
            scheduled_nanos: 1,
        };
        check([&node_stats], "NodeExecStats");
        let device = DeviceStepStats {
            device: "/host:CPU".into(),
            node_stats: vec![node_stats],
            thread_names: [(7, "main".to_owned())].into(),
        };
        check([&device], "DeviceStepStats");
        let encoded = device.encode_to_vec();
        let (_, _, entry) = split(&encoded).into_iter().find(|f| f.0 == 3).unwrap();
        assert_eq!(split(entry), [(1, 0, &[7][..]), (2, 2, &b"main"[..])]);

        let function = run_metadata::FunctionGraphs {
            partition_graphs: vec![graph()],
            pre_optimization_graph: Some(graph()),
            post_optimization_graph: Some(graph()),
        };
        check([&function], "RunMetadata.FunctionGraphs");
        let step_stats = StepStats {
            dev_stats: vec![device],
        };
        check([&step_stats], "StepStats");
        let run = RunMetadata {
            step_stats: Some(step_stats),
            partition_graphs: vec![graph()],
            function_graphs: vec![function],
        };
        check([&run], "RunMetadata");
        assert_eq!(RunMetadata::decode(&*run.encode_to_vec()).unwrap(), run);
    }

    /// TensorBoard's own descriptors of its compat protos, the files above and what they
    /// import, written by `proto/extract_descriptors.py` from the `tensorboard` package.
    const DESCRIPTORS: &[u8] = include_bytes!("../../tests/data/tensorboard_descriptors.pb");

    /// What the mirror leaves out, and why. A decoder skips these fields (and values) as
    /// unknown ones; the check fails when a listed field is mirrored after all.
    const LEFT_OUT: Omissions<'static> = Omissions {
        fields: &[
            ("Summary.Value", "image", "no image summaries are written"),
            ("Summary.Value", "histo", "no histograms are written"),
            ("Summary.Value", "audio", "no audio summaries are written"),
            (
                "TensorProto",
                "half_val",
                "no half-float tensors are written",
            ),
            (
                "TensorProto",
                "scomplex_val",
                "no complex tensors are written",
            ),
            (
                "TensorProto",
                "dcomplex_val",
                "no complex tensors are written",
            ),
            (
                "TensorProto",
                "resource_handle_val",
                "no resource tensors are written",
            ),
            (
                "TensorProto",
                "variant_val",
                "no variant tensors are written",
            ),
            (
                "TensorProto",
                "uint32_val",
                "no unsigned tensors are written",
            ),
            (
                "TensorProto",
                "uint64_val",
                "no unsigned tensors are written",
            ),
            (
                "TensorProto",
                "float8_val",
                "no 8-bit float tensors are written",
            ),
            (
                "GraphDef",
                "library",
                "call graphs hold no function library",
            ),
            (
                "GraphDef",
                "version",
                "deprecated upstream in favour of `versions`",
            ),
            (
                "GraphDef",
                "debug_info",
                "call graphs carry no stack traces",
            ),
            (
                "NodeDef",
                "experimental_debug_info",
                "call graphs carry no stack traces",
            ),
            (
                "NodeDef",
                "experimental_type",
                "call graph nodes have no full type",
            ),
            ("RunMetadata", "cost_graph", "no cost model is written"),
            (
                "RunMetadata",
                "session_metadata",
                "there is no TensorFlow session",
            ),
            (
                "NodeExecStats",
                "memory",
                "no allocator statistics are recorded",
            ),
            ("NodeExecStats", "output", "node outputs are not recorded"),
            (
                "NodeExecStats",
                "referenced_tensor",
                "no tensors are recorded",
            ),
            (
                "NodeExecStats",
                "memory_stats",
                "no memory statistics are recorded",
            ),
        ],
        partial_enums: &[(
            "DataType",
            "the element types up to DT_BOOL; the others are never written",
        )],
    };

    /// Every mirrored message, field by field, and every mirrored enum value, matches
    /// TensorBoard's own descriptors.
    #[test]
    fn messages_match_tensorboard_descriptors() {
        let set = mirror::descriptor_set(DESCRIPTORS);
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        for file in [
            "event",
            "summary",
            "tensor",
            "tensor_shape",
            "types",
            "graph",
            "node_def",
            "attr_value",
            "versions",
            "config",
            "step_stats",
        ] {
            let name = format!("tensorboard/compat/proto/{file}.proto");
            assert!(names.contains(&name.as_str()), "{name} is missing");
        }
        mirror::check(
            include_str!("tensorboard.rs"),
            &set,
            "tensorboard",
            &LEFT_OUT,
        );
    }

    #[test]
    fn scalar_event_round_trips() {
        let event = Event {
            wall_time: 1_700_000_001.5,
            step: 3,
            what: Some(event::What::Summary(Summary {
                value: vec![summary::Value {
                    tag: "loss".into(),
                    metadata: Some(SummaryMetadata {
                        plugin_data: Some(summary_metadata::PluginData {
                            plugin_name: "scalars".into(),
                            content: Vec::new(),
                        }),
                        ..Default::default()
                    }),
                    value: Some(summary::value::Value::Tensor(scalar_tensor(0.25))),
                    ..Default::default()
                }],
            })),
            source_metadata: None,
        };
        assert_eq!(Event::decode(&*event.encode_to_vec()).unwrap(), event);
    }
}
