//! `tf.summary` in Rust: a few training steps traced with `trace_on`, a `loss` scalar per
//! step, then `trace_export`, which writes the call graph of the traced functions (with call
//! counts and compute time per node), a step-time scalar per step and a profile.
//!
//! ```text
//! cargo run --release --example summaries [LOGDIR]     # default: logs/summaries
//! tensorboard --logdir logs/summaries                   # Scalars, Graphs and Profile tabs
//! ```
//!
//! It follows TensorFlow's documented flow:
//!
//! ```python
//! writer = tf.summary.create_file_writer("logs/summaries")
//! tf.summary.trace_on(graph=True, profiler=True)
//! ...  # run the traced code
//! with writer.as_default():
//!     tf.summary.trace_export(name="my_trace", step=0, profiler_outdir="logs/summaries")
//! ```

use std::path::{Path, PathBuf};

use trace_export::summary;
use trace_runtime::{trace, traced};

const STEPS: i64 = 5;
const WIDTH: usize = 256;
const BATCH: usize = 64;
/// Passes per step, so that a step takes long enough to see.
const PASSES: usize = 20;

struct Model {
    weights: Vec<f32>,
}

impl Model {
    #[traced]
    fn forward(&self, inputs: &[f32]) -> Vec<f32> {
        let hidden: Vec<f32> = trace!("matmul", rows = BATCH, {
            inputs
                .chunks(WIDTH)
                .map(|row| row.iter().zip(&self.weights).map(|(x, w)| x * w).sum())
                .collect()
        });
        trace!("activation", { hidden.iter().map(|h| h.tanh()).collect() })
    }

    #[traced]
    fn backward(&mut self, inputs: &[f32], outputs: &[f32], targets: &[f32]) -> f32 {
        let errors: Vec<f32> = outputs.iter().zip(targets).map(|(o, t)| o - t).collect();
        let squares: Vec<f32> = errors.iter().map(|e| e * e).collect();
        // A recursive function: the graph folds its recursion into one node.
        let loss = sum(&squares) / BATCH as f32;
        trace!("apply_gradients", {
            for (row, (e, o)) in inputs.chunks(WIDTH).zip(errors.iter().zip(outputs)) {
                let grad = 2.0 * e * (1.0 - o * o) / BATCH as f32;
                for (w, x) in self.weights.iter_mut().zip(row) {
                    *w -= 0.05 * grad * x;
                }
            }
        });
        loss
    }
}

/// Pairwise sum, recursive on purpose.
#[traced]
fn sum(values: &[f32]) -> f32 {
    if values.len() <= 8 {
        return values.iter().sum();
    }
    let (left, right) = values.split_at(values.len() / 2);
    sum(left) + sum(right)
}

/// One training step: `step_num` makes it a step marker (the overview page's rows, and the
/// `profile/step_time_ms` scalar).
#[traced(step_num = step)]
fn train_step(step: i64, model: &mut Model, inputs: &[f32], targets: &[f32]) -> f32 {
    let mut loss = 0.0;
    for _ in 0..PASSES {
        let outputs = model.forward(inputs);
        loss = model.backward(inputs, &outputs, targets);
    }
    loss
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logdir = PathBuf::from(trace_examples::logdir_arg(
        "logs/summaries",
        "usage: summaries [LOGDIR]   (default: logs/summaries)",
    ));

    let writer = summary::create_file_writer(&logdir)?;
    let _default = writer.as_default();
    summary::trace_on(summary::TraceOptions {
        graph: true,
        profiler: true,
        ..Default::default()
    })?;

    // Inputs spread over [-0.5, 0.5) by a multiplicative hash.
    let inputs: Vec<f32> = (0..(BATCH * WIDTH) as u64)
        .map(|i| (i * 2_654_435_761 % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    // Targets from a hidden weight vector, so that the model can learn them.
    let teacher: Vec<f32> = (0..WIDTH).map(|j| (j as f32 * 0.7).cos() * 0.3).collect();
    let targets: Vec<f32> = inputs
        .chunks(WIDTH)
        .map(|row| {
            row.iter()
                .zip(&teacher)
                .map(|(x, w)| x * w)
                .sum::<f32>()
                .tanh()
        })
        .collect();
    let mut model = Model {
        weights: vec![0.0; WIDTH],
    };
    for step in 0..STEPS {
        let loss = train_step(step, &mut model, &inputs, &targets);
        writer.scalar("loss", loss, step)?;
        println!("step {step}: loss {loss:.4}");
    }

    // Stops the trace; the graph and step times go to the default writer at step 0, the
    // profile to its logdir (no profiler_outdir given).
    summary::trace_export("my_trace", Some(0), None)?;
    writer.flush()?;

    println!("event file: {}", writer.path().display());
    if let Some(run) = newest_profile_run(&logdir) {
        println!("profile:    {}", run.display());
    }
    println!("open it with: tensorboard --logdir {}", logdir.display());
    Ok(())
}

/// The profile run written last under `logdir/plugins/profile`.
fn newest_profile_run(logdir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(logdir.join("plugins").join("profile"))
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let modified = entry.metadata().ok()?.modified().ok()?;
            Some((modified, entry.path()))
        })
        .max()
        .map(|(_, path)| path)
}
