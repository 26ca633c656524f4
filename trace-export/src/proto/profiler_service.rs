//! Hand-written prost messages of the profiler service, `tensorflow.ProfilerService`
//! (`profiler_service.proto` and `profiler_options.proto`, package `tensorflow`, proto3): what
//! TensorBoard's "Capture profile" button and xprof's capture client send to a running
//! program, and what it answers.
//!
//! Every field of the upstream messages is declared with its upstream field number, except
//! `ProfileResponse.xspace`, declared as bytes (the serialized XSpace; same wire format), so
//! that the client never builds a message tree it does not use.

use std::collections::BTreeMap;

/// The gRPC path of `Profile`.
pub const PROFILE_PATH: &str = "/tensorflow.ProfilerService/Profile";
/// The gRPC path of `Terminate`.
pub const TERMINATE_PATH: &str = "/tensorflow.ProfilerService/Terminate";
/// The gRPC path of `Monitor`.
pub const MONITOR_PATH: &str = "/tensorflow.ProfilerService/Monitor";

/// The tool whose data is the serialized XSpace; its name is the file suffix a capture
/// client writes it under (`<host>.xplane.pb`).
pub const XPLANE_TOOL: &str = "xplane.pb";

/// A request to profile the serving process for a while.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProfileRequest {
    /// How long to record, in milliseconds.
    #[prost(uint64, tag = "1")]
    pub duration_ms: u64,
    /// The most events to record.
    #[prost(uint64, tag = "2")]
    pub max_events: u64,
    /// The tools the client wants data for.
    #[prost(string, repeated, tag = "3")]
    pub tools: Vec<String>,
    /// How to profile.
    #[prost(message, optional, tag = "4")]
    pub opts: Option<ProfileOptions>,
    /// `<logdir>/plugins/profile` on the client's side.
    #[prost(string, tag = "5")]
    pub repository_root: String,
    /// The run directory name the client writes into (`YYYY_MM_DD_HH_MM_SS`).
    #[prost(string, tag = "6")]
    pub session_id: String,
    /// The address the client used for this host, as typed.
    #[prost(string, tag = "7")]
    pub host_name: String,
    /// Options per tool.
    #[prost(btree_map = "string, message", tag = "8")]
    pub tool_options: BTreeMap<String, ToolRequestOptions>,
    /// Asks for the XSpace in `ProfileResponse.xspace`.
    #[prost(bool, tag = "9")]
    pub emit_xspace: bool,
}

/// Options of one tool of a [`ProfileRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct ToolRequestOptions {
    /// Output formats, comma-separated.
    #[prost(string, tag = "2")]
    pub output_formats: String,
    /// Whether the server should save the tool's data in its repository.
    #[prost(bool, tag = "3")]
    pub save_to_repo: bool,
}

/// The data of one tool, written by the client as `<host>.<name>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProfileToolData {
    /// The tool's file suffix, such as [`XPLANE_TOOL`].
    #[prost(string, tag = "1")]
    pub name: String,
    /// The tool's bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// The answer to a [`ProfileRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProfileResponse {
    /// What the client writes; a capture client expects one entry named [`XPLANE_TOOL`].
    #[prost(message, repeated, tag = "6")]
    pub tool_data: Vec<ProfileToolData>,
    /// True when nothing was recorded (the client then counts the host as giving no data).
    #[prost(bool, tag = "7")]
    pub empty_trace: bool,
    /// A serialized `tensorflow.profiler.XSpace`, when `emit_xspace` asked for it.
    #[prost(bytes = "vec", tag = "8")]
    pub xspace: Vec<u8>,
}

/// A request to end a capture under way early; its `Profile` call then answers with what was
/// recorded so far.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TerminateRequest {
    /// The `session_id` of the capture's [`ProfileRequest`].
    #[prost(string, tag = "1")]
    pub session_id: String,
}

/// The answer to a [`TerminateRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct TerminateResponse {}

/// A request for monitoring data (not served here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MonitorRequest {
    /// How long to monitor.
    #[prost(uint64, tag = "1")]
    pub duration_ms: u64,
    /// How much detail.
    #[prost(int32, tag = "2")]
    pub monitoring_level: i32,
    /// Whether to add a timestamp.
    #[prost(bool, tag = "3")]
    pub timestamp: bool,
}

/// The options of a profiling session (`profiler_options.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProfileOptions {
    /// Whether to trace the dataset ops of `tf.data`.
    #[prost(bool, tag = "1")]
    pub include_dataset_ops: bool,
    /// Host events recorded: level at most this (0: the host tracer off in TensorFlow).
    #[prost(uint32, tag = "2")]
    pub host_tracer_level: u32,
    /// Device tracing level.
    #[prost(uint32, tag = "3")]
    pub device_tracer_level: u32,
    /// Python tracing level.
    #[prost(uint32, tag = "4")]
    pub python_tracer_level: u32,
    /// The version of these options.
    #[prost(uint32, tag = "5")]
    pub version: u32,
    /// The kind of device to profile.
    #[prost(enumeration = "profile_options::DeviceType", tag = "6")]
    pub device_type: i32,
    /// Whether to collect HLO protos.
    #[prost(bool, tag = "7")]
    pub enable_hlo_proto: bool,
    /// Wall-clock nanoseconds since the Unix epoch at which to start (0 or past: now).
    #[prost(uint64, tag = "8")]
    pub start_timestamp_ns: u64,
    /// How long to record, in milliseconds.
    #[prost(uint64, tag = "9")]
    pub duration_ms: u64,
    /// Where the server would save the profile.
    #[prost(string, tag = "10")]
    pub repository_path: String,
    /// Trace filtering.
    #[prost(message, optional, tag = "11")]
    pub trace_options: Option<profile_options::TraceOptions>,
    /// Free-form options.
    #[prost(btree_map = "string, message", tag = "12")]
    pub advanced_configuration: BTreeMap<String, profile_options::AdvancedConfigValue>,
    /// Whether a failure to start should be an error.
    #[prost(bool, tag = "13")]
    pub raise_error_on_start_failure: bool,
    /// The session id.
    #[prost(string, tag = "14")]
    pub session_id: String,
    /// A host name to report instead of the machine's.
    #[prost(string, tag = "15")]
    pub override_hostname: String,
    /// Whether to profile in several passes.
    #[prost(bool, tag = "16")]
    pub enable_multipass: bool,
}

/// Nested types of [`ProfileOptions`].
pub mod profile_options {
    /// The kind of device to profile.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DeviceType {
        /// Not given.
        Unspecified = 0,
        /// The host CPU.
        Cpu = 1,
        /// A GPU.
        Gpu = 2,
        /// A TPU.
        Tpu = 3,
        /// A pluggable device.
        PluggableDevice = 4,
    }

    /// Trace filtering options.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TraceOptions {
        /// A mask over TraceMe filter bits.
        #[prost(uint64, tag = "1")]
        pub host_traceme_filter_mask: u64,
    }

    /// One value of `advanced_configuration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdvancedConfigValue {
        /// The value.
        #[prost(oneof = "advanced_config_value::Value", tags = "1, 2, 3")]
        pub value: Option<advanced_config_value::Value>,
    }

    /// Nested types of [`AdvancedConfigValue`].
    pub mod advanced_config_value {
        /// The value of an [`AdvancedConfigValue`](super::AdvancedConfigValue).
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// A string.
            #[prost(string, tag = "1")]
            StringValue(String),
            /// A bool.
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            /// An integer.
            #[prost(int64, tag = "3")]
            Int64Value(i64),
        }
    }
}
