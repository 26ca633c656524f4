//! A training loop instrumented the way the TensorFlow profiler guide instruments one: each
//! step is a `Train` event carrying `step_num`, with forward and backward passes nested in it
//! and a data-loader thread feeding batches. The heap is recorded too (`TracedAllocator`):
//! the Memory Profile shows each forward pass's activations held until its backward pass.
//!
//! ```text
//! cargo run --release --example train            # writes logs/
//! pip install tensorboard tensorboard-plugin-profile
//! tensorboard --logdir logs                      # Profile tab: trace viewer, overview page
//! ```

use std::sync::mpsc;
use std::thread;

use trace_export::profiler;
use trace_runtime::{trace, traced, TracedAllocator};

#[global_allocator]
static HEAP: TracedAllocator<std::alloc::System> = TracedAllocator::new(std::alloc::System);

const STEPS: i64 = 10;
const BATCH: usize = 64;
const WIDTH: usize = 96;
/// The raw bytes a batch is decoded from, kept with it until its step ends.
const RAW_BYTES: usize = 2 << 20;

struct Batch {
    /// Allocated by the loader, freed by the training thread: Memory Profile's breakdown
    /// table lists blocks of over 1 MiB live at the peak, with the scope that allocated them.
    raw: Vec<u8>,
    inputs: Vec<f32>,
    targets: Vec<f32>,
}

struct Model {
    weights: Vec<f32>,
}

/// Makes one batch; runs on the loader thread. Its `Read` and `Preprocessing` scopes are
/// the input ops of Input Pipeline Analysis.
#[traced]
fn load_batch(index: i64) -> Batch {
    let raw: Vec<u8> = trace!("read:Read", batch = index, {
        (0..RAW_BYTES)
            .map(|i| (i as u64 * 31 + index as u64) as u8)
            .collect()
    });
    let seed = f32::from(raw[0]);
    let inputs = (0..BATCH * WIDTH)
        .map(|i| ((i as f32 + seed) * 0.37).sin())
        .collect();
    let targets = (0..BATCH)
        .map(|i| ((i as f32 - seed) * 0.11).cos())
        .collect();
    trace!("augment:Preprocessing", batch = index, {
        std::hint::black_box(&inputs);
    });
    Batch {
        raw,
        inputs,
        targets,
    }
}

/// What a forward pass keeps for the backward pass.
struct Activations {
    /// Each input times its weight (24 KiB): allocated by `matmul`, freed by `backward`.
    products: Vec<f32>,
    outputs: Vec<f32>,
}

impl Model {
    #[traced]
    fn forward(&self, batch: &Batch) -> Activations {
        let products = trace!("matmul", rows = BATCH, {
            let mut products = Vec::with_capacity(BATCH * WIDTH);
            for row in batch.inputs.chunks(WIDTH) {
                products.extend(row.iter().zip(&self.weights).map(|(x, w)| x * w));
            }
            products
        });
        let outputs = trace!("activation", {
            products
                .chunks(WIDTH)
                .map(|row| row.iter().sum::<f32>().tanh())
                .collect()
        });
        Activations { products, outputs }
    }

    #[traced]
    fn backward(&mut self, batch: &Batch, activations: Activations) -> f32 {
        let outputs = &activations.outputs;
        std::hint::black_box(&activations.products);
        let loss = trace!("loss", |tm| {
            let loss = outputs
                .iter()
                .zip(&batch.targets)
                .map(|(o, t)| (o - t).powi(2))
                .sum::<f32>()
                / BATCH as f32;
            tm.set_metadata("loss", loss);
            loss
        });
        trace!("apply_gradients", {
            for (row, (o, t)) in batch
                .inputs
                .chunks(WIDTH)
                .zip(outputs.iter().zip(&batch.targets))
            {
                let grad = 2.0 * (o - t) * (1.0 - o * o) / BATCH as f32;
                for (w, x) in self.weights.iter_mut().zip(row) {
                    *w -= 0.01 * grad * x;
                }
            }
        });
        loss
    }
}

/// One training step: the step marker the overview page counts.
#[traced(name = "Train", step_num = step)]
fn train_step(step: i64, model: &mut Model, batch: &Batch) -> f32 {
    // The raw bytes stay with the batch until its step ends.
    std::hint::black_box(&batch.raw);
    let mut loss = 0.0;
    // A few passes per step, so that a step takes long enough to see.
    for _ in 0..400 {
        let activations = model.forward(batch);
        loss = model.backward(batch, activations);
    }
    loss
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logdir = trace_examples::logdir_arg("logs", "usage: train [LOGDIR]   (default: logs)");
    profiler::start(&logdir)?;

    let (sender, batches) = mpsc::sync_channel(2);
    let loader = thread::Builder::new()
        .name("data-loader".into())
        .spawn(move || {
            for index in 0..STEPS {
                if sender.send(load_batch(index)).is_err() {
                    break;
                }
            }
        })?;

    let mut model = Model {
        weights: vec![0.01; WIDTH],
    };
    let mut loss = f32::NAN;
    for step in 0..STEPS {
        let batch = batches.recv()?;
        loss = train_step(step, &mut model, &batch);
    }
    loader.join().map_err(|_| "the loader thread panicked")?;

    let report = profiler::stop()?;
    println!("final loss {loss:.4}\n{report}");
    println!("open it with: tensorboard --logdir {logdir}   (Profile tab)");
    Ok(())
}
