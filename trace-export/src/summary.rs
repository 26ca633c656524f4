//! `tf.summary` for Rust: event files with scalars, and traces exported as a call graph with
//! compute time per node (and, on request, a profile).
//!
//! ```no_run
//! use trace_export::summary;
//!
//! # fn train_step(step: i64) -> f32 { 0.0 }
//! # fn main() -> Result<(), trace_export::Error> {
//! // tf.summary.create_file_writer / as_default
//! let writer = summary::create_file_writer("logs/run1")?;
//! let _default = writer.as_default();
//!
//! // tf.summary.trace_on / trace_export
//! summary::trace_on(summary::TraceOptions { graph: true, profiler: true, ..Default::default() })?;
//! for step in 0..5 {
//!     let loss = train_step(step); // #[traced(step_num = step)] inside
//!     writer.scalar("loss", loss, step)?;
//! }
//! summary::trace_export("my_trace", Some(0), None)?;
//! # Ok(()) }
//! ```
//!
//! TensorBoard then shows, for the run `logs/run1`: the `loss` scalars; in the Graphs tab,
//! the call graph of the traced functions (tag `my_trace`, with compute time per node, and
//! as the run's default graph); the scalar `profile/step_time_ms` per step marker; and, with
//! `profiler: true`, the profile in the Profile tab.
//!
//! # Process-wide state
//!
//! The default writer and the step set by [`set_step`] are global to the process, not
//! per thread as in TensorFlow: any thread's [`trace_export`] finds the writer that `main`
//! made the default. A trace, like a profiler session, records every thread, and only one
//! recording (trace or profiler session) runs at a time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::AHashSet;
use prost::Message;
use trace_runtime::session::{self, RecordMode};
use trace_runtime::snapshot::Snapshot;

use crate::analysis::calls::CallGraph;
use crate::error::{Error, Result};
use crate::events::{self, EventFile};
use crate::profiler::{self, ProfilerOptions};
use crate::proto::tensorboard::{
    event, summary, summary_metadata, DataType, Event, Summary, SummaryMetadata, TensorProto,
    TensorShapeProto,
};
use crate::xspace::Layout;

/// The plugin that owns scalar tags.
pub const SCALARS_PLUGIN: &str = "scalars";
/// The plugin of the summary [`trace_export`] writes: run metadata holding both the graph and
/// the step stats (TensorBoard shows it with `profile: true, op_graph: true`).
pub const RUN_METADATA_PLUGIN: &str = "graph_run_metadata";
/// The scalar tag under which [`trace_export`] writes each step marker's duration.
pub const STEP_TIME_TAG: &str = "profile/step_time_ms";

// ---------------------------------------------------------------------------------------------
// Writers

/// A handle on one event file, like the object `tf.summary.create_file_writer` returns.
///
/// Cheap to clone: clones share the file. The file is flushed after every call, on
/// [`flush`](Self::flush) and when the last clone is dropped.
#[derive(Clone)]
pub struct SummaryWriter {
    shared: Arc<Shared>,
}

struct Shared {
    logdir: PathBuf,
    path: PathBuf,
    state: Mutex<WriterState>,
}

struct WriterState {
    file: EventFile,
    /// Tags written so far; plugin metadata goes on a tag's first value only.
    tags: AHashSet<String>,
}

/// One summary to write.
enum Record {
    /// A scalar; `wall_time` is when it happened, in seconds since the Unix epoch (`None`:
    /// when it is written).
    Scalar {
        tag: String,
        value: f32,
        step: i64,
        wall_time: Option<f64>,
    },
    Event(Event),
}

/// Creates `logdir` if needed and a new event file in it,
/// `events.out.tfevents.<secs>.<host>.<pid>.<n>.v2`, like `tf.summary.create_file_writer`.
///
/// Errors with [`Error::Io`], naming the path, when the directory or the file cannot be
/// created (a logdir that is a file, or under one, or not writable); no partial file is left.
///
/// # Examples
///
/// ```no_run
/// let writer = trace_export::summary::create_file_writer("logs/run1")?;
/// writer.scalar("loss", 0.25, 3)?;
/// # Ok::<(), trace_export::Error>(())
/// ```
pub fn create_file_writer(logdir: impl AsRef<Path>) -> Result<SummaryWriter> {
    let logdir = logdir.as_ref().to_path_buf();
    let file = EventFile::create(&logdir)?;
    Ok(SummaryWriter {
        shared: Arc::new(Shared {
            logdir,
            path: file.path().to_path_buf(),
            state: Mutex::new(WriterState {
                file,
                tags: AHashSet::new(),
            }),
        }),
    })
}

impl SummaryWriter {
    /// The directory the writer writes into (a TensorBoard run).
    pub fn logdir(&self) -> &Path {
        &self.shared.logdir
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Writes a scalar, like `tf.summary.scalar(tag, value, step)`: a rank-0 `DT_FLOAT`
    /// tensor (TensorBoard's reader accepts no other type, so the value is rounded to `f32`),
    /// with the `scalars` plugin metadata on the tag's first value.
    ///
    /// Errors when `tag` is empty, when the writer was closed or when the write fails.
    pub fn scalar(&self, tag: &str, value: impl Into<f64>, step: i64) -> Result<()> {
        if tag.is_empty() {
            return Err(Error::InvalidOption {
                option: "tag",
                reason: "a scalar's tag must not be empty".into(),
            });
        }
        self.write(vec![Record::Scalar {
            wall_time: None,
            tag: tag.to_owned(),
            value: value.into() as f32,
            step,
        }])
    }

    /// Makes this writer the default until the returned guard is dropped, which restores
    /// the previous default (`with writer.as_default():` in TensorFlow). Guards should be
    /// dropped in the reverse order of their creation.
    pub fn as_default(&self) -> DefaultGuard {
        let previous = default_slot().replace(self.clone());
        DefaultGuard { previous }
    }

    /// Makes this writer the default for good (until another one is set).
    pub fn set_as_default(&self) {
        *default_slot() = Some(self.clone());
    }

    /// Writes buffered records to the file.
    pub fn flush(&self) -> Result<()> {
        self.state().file.flush()
    }

    /// Flushes and closes the file, for every clone of this writer; later writes fail with
    /// [`Error::Io`]. Closing twice is harmless.
    pub fn close(&self) -> Result<()> {
        self.state().file.close()
    }

    fn state(&self) -> MutexGuard<'_, WriterState> {
        // Every write leaves the state consistent, so a panic elsewhere never poisons it.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `records` as events and flushes them.
    fn write(&self, records: Vec<Record>) -> Result<()> {
        let mut state = self.state();
        let wall_time = events::wall_time();
        let mut new_tags: Vec<String> = Vec::new();
        let events: Vec<Event> = records
            .into_iter()
            .map(|record| match record {
                Record::Scalar {
                    tag,
                    value,
                    step,
                    wall_time: when,
                } => {
                    let first = !state.tags.contains(&tag) && !new_tags.contains(&tag);
                    if first {
                        new_tags.push(tag.clone());
                    }
                    let wall_time = when.unwrap_or(wall_time);
                    summary_event(wall_time, step, scalar_value(tag, value, first))
                }
                Record::Event(event) => event,
            })
            .collect();
        state.file.write(&events)?;
        state.tags.extend(new_tags);
        Ok(())
    }
}

impl fmt::Debug for SummaryWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SummaryWriter")
            .field("logdir", &self.shared.logdir)
            .field("path", &self.shared.path)
            .field("closed", &self.state().file.is_closed())
            .finish()
    }
}

/// Restores the previous default writer when dropped; returned by
/// [`SummaryWriter::as_default`].
#[must_use = "the writer is the default only until the guard is dropped"]
#[derive(Debug)]
pub struct DefaultGuard {
    previous: Option<SummaryWriter>,
}

impl Drop for DefaultGuard {
    fn drop(&mut self) {
        *default_slot() = self.previous.take();
    }
}

static DEFAULT_WRITER: Mutex<Option<SummaryWriter>> = Mutex::new(None);

fn default_slot() -> MutexGuard<'static, Option<SummaryWriter>> {
    DEFAULT_WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The default writer, if one is set (process-wide).
pub fn default_writer() -> Option<SummaryWriter> {
    default_slot().clone()
}

static STEP: Mutex<Option<i64>> = Mutex::new(None);

fn step_slot() -> MutexGuard<'static, Option<i64>> {
    STEP.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets the default step (process-wide), like `tf.summary.experimental.set_step`:
/// [`trace_export`] uses it when given no step.
pub fn set_step(step: i64) {
    *step_slot() = Some(step);
}

/// The default step, if one was set.
pub fn get_step() -> Option<i64> {
    *step_slot()
}

/// Unsets the default step (`tf.summary.experimental.set_step(None)`).
pub fn clear_step() {
    *step_slot() = None;
}

fn summary_event(wall_time: f64, step: i64, value: summary::Value) -> Event {
    Event {
        wall_time,
        step,
        what: Some(event::What::Summary(Summary { value: vec![value] })),
        ..Default::default()
    }
}

fn plugin_metadata(plugin_name: &str, content: &[u8]) -> SummaryMetadata {
    SummaryMetadata {
        plugin_data: Some(summary_metadata::PluginData {
            plugin_name: plugin_name.to_owned(),
            content: content.to_vec(),
        }),
        ..Default::default()
    }
}

fn scalar_value(tag: String, value: f32, with_metadata: bool) -> summary::Value {
    summary::Value {
        tag,
        metadata: with_metadata.then(|| plugin_metadata(SCALARS_PLUGIN, b"")),
        value: Some(summary::value::Value::Tensor(TensorProto {
            dtype: DataType::DtFloat.into(),
            tensor_shape: Some(TensorShapeProto::default()),
            float_val: vec![value],
            ..Default::default()
        })),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Traces

/// What [`trace_on`] records, after `tf.summary.trace_on(graph, profiler)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceOptions {
    /// Collect the call graph of traced functions and blocks, with call counts and compute
    /// time per node. Default: true.
    pub graph: bool,
    /// Also write a profile (`plugins/profile/<run>/<host>.xplane.pb`) for the Profile tab.
    /// Default: false.
    pub profiler: bool,
    /// Records events of level at most this: 1 critical, 2 info (the default), 3 verbose.
    pub level: u8,
    /// Events each thread can hold; beyond it events are dropped, counted and reported.
    pub max_events_per_thread: usize,
}

impl Default for TraceOptions {
    fn default() -> Self {
        let profiler = ProfilerOptions::default();
        TraceOptions {
            graph: true,
            profiler: false,
            level: profiler.host_tracer_level,
            max_events_per_thread: profiler.max_events_per_thread,
        }
    }
}

impl TraceOptions {
    fn profiler_options(&self) -> ProfilerOptions {
        ProfilerOptions {
            host_tracer_level: self.level,
            max_events_per_thread: self.max_events_per_thread,
            ..Default::default()
        }
    }
}

enum TraceState {
    Off,
    Recording(TraceOptions),
    /// `trace_export` stopped the recording but could not export it yet (no step, nowhere to
    /// write): kept for the next `trace_export`.
    Stopped {
        options: TraceOptions,
        snapshot: Snapshot,
    },
}

static TRACE: Mutex<TraceState> = Mutex::new(TraceState::Off);

fn trace_state() -> MutexGuard<'static, TraceState> {
    TRACE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const TRACE_ON: &str = "a summary trace (summary::trace_on)";

/// Starts recording every thread, like `tf.summary.trace_on`; [`trace_export`] stops and
/// writes what was recorded, [`trace_off`] stops and discards it.
///
/// Errors with [`Error::AlreadyActive`] when a trace or a profiler session is active (also a
/// trace that a failed `trace_export` kept), and with [`Error::InvalidOption`] when an
/// option is out of range.
pub fn trace_on(options: TraceOptions) -> Result<()> {
    let mut config = options.profiler_options().session_config()?;
    config.owner = TRACE_ON;
    if options.graph && !options.profiler {
        // Graph only: fold calls into call trees as they happen, in memory that does not
        // grow with the number of calls.
        config.mode = RecordMode::CallGraph;
    }
    let mut trace = trace_state();
    match &*trace {
        TraceState::Off => {}
        TraceState::Recording(_) => {
            return Err(Error::AlreadyActive {
                requested: TRACE_ON,
                active: TRACE_ON,
            })
        }
        TraceState::Stopped { .. } => {
            return Err(Error::AlreadyActive {
                requested: TRACE_ON,
                active: "a summary trace waiting for trace_export (call it with a step, or \
                         call trace_off)",
            })
        }
    }
    profiler::start_recording(&config, TRACE_ON)?;
    *trace = TraceState::Recording(options);
    Ok(())
}

/// Stops the trace and writes it, like `tf.summary.trace_export(name, step, profiler_outdir)`.
///
/// To the default writer, at `step` (or, when `None`, at [`get_step`]):
/// * with `graph: true` and anything recorded, the call graph: as the run's graph
///   (`Event.graph_def`) and as a summary tagged `name` of plugin `graph_run_metadata`
///   holding a `RunMetadata` with the graph and one `NodeExecStats` per node (see
///   [`crate::graph`]);
/// * for every step marker (an event with an integer `step_num`, such as
///   `#[traced(step_num = step)]`), the scalar [`STEP_TIME_TAG`] at that step number, in
///   milliseconds. Step markers are events, which a graph-only trace (`profiler: false`)
///   does not keep: it folds calls into call paths as they run, so that its memory does not
///   grow with the number of calls.
///
/// With `profiler: true`, the profile goes to `profiler_outdir/plugins/profile/<run>/`, else
/// to the default writer's logdir.
///
/// Errors:
/// * [`Error::NotActive`] without a trace to export (no [`trace_on`], or exported already);
/// * [`Error::NoStep`] when a default writer is set and neither `step` nor [`get_step`]
///   gives a step;
/// * [`Error::NoDestination`] when the profile has no directory, or nothing has anywhere to
///   go (no default writer and no profile);
/// * [`Error::InvalidOption`] when `name` is empty.
///
/// On `NoStep` and `NoDestination` the recorded trace is **kept** (recording stops): fix
/// the cause and call `trace_export` again, or call [`trace_off`] to drop it. After other
/// errors the trace is gone.
pub fn trace_export(name: &str, step: Option<i64>, profiler_outdir: Option<&Path>) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidOption {
            option: "name",
            reason: "trace_export needs a non-empty summary name".into(),
        });
    }
    let mut trace = trace_state();
    let (options, snapshot) = match std::mem::replace(&mut *trace, TraceState::Off) {
        TraceState::Off => {
            return Err(Error::NotActive(
                "trace_export called with no trace active: call summary::trace_on first",
            ))
        }
        TraceState::Recording(options) => {
            let snapshot = session::stop().map_err(|_| {
                Error::NotActive("the trace's recording session was stopped elsewhere")
            })?;
            (options, snapshot)
        }
        TraceState::Stopped { options, snapshot } => (options, snapshot),
    };

    let writer = default_writer();
    let step = step.or_else(get_step);
    let destinations = (|| {
        if writer.is_some() && step.is_none() {
            return Err(Error::NoStep {
                name: name.to_owned(),
            });
        }
        let profile_dir = match (options.profiler, profiler_outdir, &writer) {
            (false, _, _) => None,
            (true, Some(dir), _) => Some(dir.to_path_buf()),
            (true, None, Some(writer)) => Some(writer.logdir().to_path_buf()),
            (true, None, None) => {
                return Err(Error::NoDestination(
                    "trace_export: the trace has profiler: true but there is no \
                     profiler_outdir and no default summary writer",
                ))
            }
        };
        if writer.is_none() && profile_dir.is_none() {
            return Err(Error::NoDestination(
                "trace_export has nowhere to write: make a summary writer the default \
                 (SummaryWriter::as_default) or trace with profiler: true and pass a \
                 profiler_outdir",
            ));
        }
        Ok(profile_dir)
    })();
    let profile_dir = match destinations {
        Ok(dir) => dir,
        Err(e) => {
            *trace = TraceState::Stopped { options, snapshot };
            return Err(e);
        }
    };
    drop(trace);

    if let (Some(writer), Some(step)) = (&writer, step) {
        let mut records = Vec::new();
        if options.graph {
            let graph = CallGraph::from_snapshot(&snapshot);
            if !graph.is_empty() {
                // Stamped with the session's stop, on the session's own clock.
                let wall_time = snapshot.stop_wall_ns as f64 / 1e9;
                records.extend(graph_events(name, step, wall_time, &graph).map(Record::Event));
            }
        }
        // The steps of the profile's overview page, planned by the same rules.
        let layout = Layout::new(&snapshot, "");
        records.extend(layout.step_times().map(|step| Record::Scalar {
            tag: STEP_TIME_TAG.to_owned(),
            value: (step.duration_ns as f64 / 1e6) as f32,
            step: step.step,
            // When the step ended, on the session's own clock.
            wall_time: Some(snapshot.start_wall_ns.saturating_add(step.end_ns) as f64 / 1e9),
        }));
        writer.write(records)?;
    }
    if let Some(dir) = profile_dir {
        profiler::write_profile(&snapshot, &dir, &options.profiler_options())?;
    }
    Ok(())
}

/// Stops the trace and discards it, like `tf.summary.trace_off`. Does nothing when no trace
/// is active (a profiler session is left alone).
pub fn trace_off() {
    let mut trace = trace_state();
    if let TraceState::Recording(_) = std::mem::replace(&mut *trace, TraceState::Off) {
        let _ = session::stop();
    }
}

/// The run graph and the `graph_run_metadata` summary, as `tf.summary.trace_export` writes
/// the latter.
fn graph_events(name: &str, step: i64, wall_time: f64, graph: &CallGraph) -> [Event; 2] {
    let graph_def = Event {
        wall_time,
        step,
        what: Some(event::What::GraphDef(graph.graph_def().encode_to_vec())),
        ..Default::default()
    };
    let run_metadata = summary::Value {
        tag: name.to_owned(),
        // TensorBoard's graphs plugin ignores this plugin's tags unless the content is "1".
        metadata: Some(plugin_metadata(RUN_METADATA_PLUGIN, b"1")),
        value: Some(summary::value::Value::Tensor(TensorProto {
            dtype: DataType::DtString.into(),
            tensor_shape: Some(TensorShapeProto::default()),
            string_val: vec![graph.run_metadata().encode_to_vec()],
            ..Default::default()
        })),
        ..Default::default()
    };
    [graph_def, summary_event(wall_time, step, run_metadata)]
}
