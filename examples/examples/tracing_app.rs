//! A program instrumented with `tracing` only, profiled for TensorBoard through
//! `trace_runtime::TraceLayer`: `#[instrument]` functions, a `Train` span with a `step_num`
//! field per step, a data-loader thread, and async work on a multi-thread tokio runtime.
//!
//! ```text
//! cargo run --release --example tracing_app --features tracing    # writes logs/
//! tensorboard --logdir logs                                       # Profile tab
//! ```

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use trace_export::profiler;
use tracing::{debug_span, info_span, instrument, trace_span};
use tracing_subscriber::prelude::*;

const STEPS: i64 = 10;
const SHARDS: usize = 4;
const WIDTH: usize = 256;

/// One batch of inputs; made on the loader thread.
#[instrument]
fn load_batch(index: i64) -> Vec<f32> {
    let seed = index as f32;
    let batch = (0..SHARDS * WIDTH)
        .map(|i| ((i as f32 + seed) * 0.37).sin())
        .collect();
    // A TRACE span: level 3, above the default `host_tracer_level` 2, so not recorded.
    trace_span!("checksum").in_scope(|| std::hint::black_box(&batch));
    batch
}

/// One shard of the forward pass, on a runtime worker: one event per poll.
#[instrument(skip(inputs, weights), fields(rows = inputs.len() / WIDTH))]
async fn forward_shard(shard: usize, inputs: Vec<f32>, weights: Vec<f32>) -> f32 {
    let mut sum = 0.0;
    for round in 0..2 {
        sum += debug_span!("matmul", round).in_scope(|| {
            let mut sum = 0.0f32;
            for _ in 0..200 {
                for row in inputs.chunks(WIDTH) {
                    sum += row.iter().zip(&weights).map(|(x, w)| x * w).sum::<f32>();
                }
            }
            std::hint::black_box(sum)
        });
        // Waits for the "device": the future is parked, and records nothing meanwhile.
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
    sum
}

/// The loss and the weight update, with the loss recorded on the span once known.
#[instrument(skip_all, fields(loss = tracing::field::Empty))]
fn backward(weights: &mut [f32], outputs: &[f32]) -> f32 {
    let loss = outputs.iter().map(|o| (o - 0.5).powi(2)).sum::<f32>() / outputs.len() as f32;
    tracing::Span::current().record("loss", loss);
    for w in weights.iter_mut() {
        *w -= 0.001 * loss;
    }
    loss
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logdir =
        trace_examples::logdir_arg("logs", "usage: tracing_app [LOGDIR]   (default: logs)");
    tracing_subscriber::registry()
        .with(trace_runtime::TraceLayer::default())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("worker")
        .enable_time()
        .build()?;

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

    let mut weights = vec![0.01f32; WIDTH];
    let mut loss = f32::NAN;
    for step in 0..STEPS {
        let batch = batches.recv()?;
        // The step marker: one overview-page row per step.
        let _step = info_span!("Train", step_num = step).entered();
        let outputs = runtime.block_on(async {
            let shards: Vec<_> = batch
                .chunks(WIDTH)
                .enumerate()
                .map(|(shard, rows)| {
                    tokio::spawn(forward_shard(shard, rows.to_vec(), weights.clone()))
                })
                .collect();
            let mut outputs = Vec::with_capacity(shards.len());
            for shard in shards {
                outputs.push(shard.await.unwrap_or(f32::NAN));
            }
            outputs
        });
        loss = backward(&mut weights, &outputs);
    }
    loader.join().map_err(|_| "the loader thread panicked")?;

    let report = profiler::stop()?;
    println!("final loss {loss:.4}\n{report}");
    println!("open it with: tensorboard --logdir {logdir}   (Profile tab)");
    Ok(())
}
