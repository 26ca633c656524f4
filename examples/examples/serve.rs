//! A training loop that keeps running and serves the profiler, so that TensorBoard's
//! "Capture profile" button can profile it while it runs, like a TensorFlow program that
//! called `tf.profiler.experimental.server.start(6009)`.
//!
//! ```text
//! cargo run --release --example serve --features server            # serves 127.0.0.1:6009
//! cargo run --release --example serve --features server -- 127.0.0.1:0   # a free port
//! tensorboard --logdir logs      # Profile tab, Capture profile, "localhost:6009"
//! cargo run -p trace-cli --features server -- capture localhost:6009 logs --duration-ms 2000
//! ```
//!
//! Each step is a `Train` event with `step_num`; a `data-loader` thread prepares the batches.
//! Nothing is recorded until a capture asks for it.

use std::io::Write;
use std::sync::mpsc;
use std::thread;

use trace_export::profiler;
use trace_runtime::{trace, traced};

const WIDTH: usize = 256;

/// Makes one batch; runs on the loader thread.
#[traced]
fn load_batch(index: i64) -> Vec<f32> {
    let seed = index as f32;
    trace!("decode", batch = index, {
        (0..WIDTH * WIDTH)
            .map(|i| ((i as f32 + seed) * 0.37).sin())
            .collect()
    })
}

#[traced]
fn forward(weights: &[f32], batch: &[f32]) -> Vec<f32> {
    batch
        .chunks(WIDTH)
        .map(|row| {
            row.iter()
                .zip(weights)
                .map(|(x, w)| x * w)
                .sum::<f32>()
                .tanh()
        })
        .collect()
}

#[traced]
fn backward(weights: &mut [f32], batch: &[f32], outputs: &[f32]) -> f32 {
    let mut loss = 0.0;
    for (row, out) in batch.chunks(WIDTH).zip(outputs) {
        let error = out - 0.5;
        loss += error * error;
        for (w, x) in weights.iter_mut().zip(row) {
            *w -= 1e-4 * error * x;
        }
    }
    trace_runtime::set_metadata("loss", loss);
    loss
}

/// One training step: the step marker the overview page counts.
#[traced(name = "Train", step_num = step)]
fn train_step(step: i64, weights: &mut [f32], batch: &[f32]) -> f32 {
    let mut loss = 0.0;
    for _ in 0..100 {
        let outputs = forward(weights, batch);
        loss = backward(weights, batch, &outputs);
    }
    loss
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = trace_examples::logdir_arg(
        "127.0.0.1:6009",
        "usage: serve [ADDRESS]   (default: 127.0.0.1:6009; port 0 picks a free port)",
    );
    let server = profiler::server::start(addr.as_str())?;
    // Tests and scripts read this line for the port.
    println!("profiler listening on {}", server.local_addr());
    println!(
        "capture it: TensorBoard's Profile tab, Capture profile, \"localhost:{}\"",
        server.local_addr().port()
    );
    std::io::stdout().flush()?;

    let (sender, batches) = mpsc::sync_channel(2);
    thread::Builder::new()
        .name("data-loader".into())
        .spawn(move || {
            for index in 0.. {
                if sender.send(load_batch(index)).is_err() {
                    break;
                }
            }
        })?;

    let mut weights = vec![0.01; WIDTH];
    for step in 0.. {
        let batch = batches.recv()?;
        let loss = train_step(step, &mut weights, &batch);
        if step % 100 == 0 {
            println!("step {step}: loss {loss:.4}");
        }
    }
    Ok(())
}
