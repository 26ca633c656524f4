//! A program to capture in tests: a training loop (a `Train` step marker with `step_num` on
//! the main thread, batches from a `data-loader` thread) that serves the profiler on the
//! address given (default `127.0.0.1:0`), prints `profiler listening on ADDR` and runs until
//! its standard input closes, so that it never outlives the test that started it.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;

use trace_export::profiler;
use trace_runtime::{trace, traced};

const WIDTH: usize = 128;

#[traced]
fn load_batch(index: i64) -> Vec<f32> {
    trace!("decode", batch = index, {
        (0..WIDTH * WIDTH)
            .map(|i| ((i as f32 + index as f32) * 0.37).sin())
            .collect()
    })
}

#[traced]
fn forward(weights: &[f32], batch: &[f32]) -> f32 {
    batch
        .chunks(WIDTH)
        .map(|row| {
            row.iter()
                .zip(weights)
                .map(|(x, w)| x * w)
                .sum::<f32>()
                .tanh()
        })
        .sum()
}

#[traced(name = "Train", step_num = step)]
fn train_step(step: i64, weights: &mut [f32], batch: &[f32]) -> f32 {
    let mut total = 0.0;
    for pass in 0..40 {
        total += forward(weights, batch);
        weights[pass % WIDTH] += 1e-6;
    }
    total
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let server = profiler::server::start(addr.as_str())?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "profiler listening on {}", server.local_addr())?;
    stdout.flush()?;

    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
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
        std::hint::black_box(train_step(step, &mut weights, &batch));
    }
    Ok(())
}
