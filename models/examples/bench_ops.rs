//! Throughput of the fused LSTM and GRU ops: forward + backward over B x T samples.
//!
//! Run with `cargo run --profile ci -p fxtwin-models --example bench_ops`; set
//! `RAYON_NUM_THREADS` to choose the thread count.

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};
use models::ops::{gru, lstm};

const BATCH: usize = 4;
const STEPS: usize = 48_000;
const INPUT: usize = 2;
const HIDDEN: usize = 32;
const REPEATS: usize = 5;

fn uniform(shape: &[usize], scale: f64) -> Result<Tensor> {
    Tensor::rand(-scale, scale, shape, &Device::Cpu)?.to_dtype(candle_core::DType::F32)
}

/// Times `step` (forward + backward) and prints ms per call and samples per second.
fn report(name: &str, mut step: impl FnMut() -> Result<()>) -> Result<()> {
    step()?; // warm up the allocator and thread pool
    let start = Instant::now();
    for _ in 0..REPEATS {
        step()?;
    }
    let seconds = start.elapsed().as_secs_f64() / REPEATS as f64;
    let samples_per_s = (BATCH * STEPS) as f64 / seconds;
    println!(
        "{name}: B={BATCH} T={STEPS} I={INPUT} H={HIDDEN}: {:.1} ms per forward+backward, \
         {:.0} k samples/s ({} threads)",
        seconds * 1e3,
        samples_per_s / 1e3,
        candle_core::utils::get_num_threads()
    );
    Ok(())
}

fn main() -> Result<()> {
    let scale = 1.0 / (HIDDEN as f64).sqrt();
    let x = uniform(&[BATCH, STEPS, INPUT], 1.0)?;
    let h0 = Tensor::zeros((BATCH, HIDDEN), candle_core::DType::F32, &Device::Cpu)?;
    let target = uniform(&[BATCH, STEPS, HIDDEN], 1.0)?;

    let w_ih = Var::from_tensor(&uniform(&[4 * HIDDEN, INPUT], scale)?)?;
    let w_hh = Var::from_tensor(&uniform(&[4 * HIDDEN, HIDDEN], scale)?)?;
    let b = Var::from_tensor(&uniform(&[4 * HIDDEN], scale)?)?;
    report("lstm", || {
        let (h_seq, _, _) = lstm(&x, &h0, &h0, &w_ih, &w_hh, &b)?;
        let grads = h_seq.mul(&target)?.sum_all()?.backward()?;
        assert!(grads.get(&w_hh).is_some());
        Ok(())
    })?;

    let w_ih = Var::from_tensor(&uniform(&[3 * HIDDEN, INPUT], scale)?)?;
    let w_hh = Var::from_tensor(&uniform(&[3 * HIDDEN, HIDDEN], scale)?)?;
    let b_ih = Var::from_tensor(&uniform(&[3 * HIDDEN], scale)?)?;
    let b_hh = Var::from_tensor(&uniform(&[3 * HIDDEN], scale)?)?;
    report("gru", || {
        let (h_seq, _) = gru(&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh)?;
        let grads = h_seq.mul(&target)?.sum_all()?.backward()?;
        assert!(grads.get(&w_hh).is_some());
        Ok(())
    })
}
