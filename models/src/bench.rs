//! Training-throughput measurement, shared by `fxtwin bench train` and the README's figures.
//!
//! The workload mirrors the reference PyTorch setup it is compared with
//! (`bench/train_throughput.py`): batches of `batch` items of one second at 48 kHz, ESR loss,
//! AdamW. Recurrent networks train by truncated back-propagation through time: each second is
//! cut into chunks of `tbptt_samples`, the state carried (detached) from chunk to chunk, one
//! optimiser step per chunk. Convolutional networks see the whole second in one step, with their
//! receptive field of extra input in front.

use std::time::Instant;

use candle_core::{Device, Result, Tensor};
use dsp::model::Network;

use crate::losses::esr;
use crate::net::TrainableNet;
use crate::optim::{AdamW, AdamWParams};

/// Settings of one throughput measurement.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub network: Network,
    pub knob_count: usize,
    /// Items per batch.
    pub batch: usize,
    /// Samples per item (one second at 48 kHz by default).
    pub item_samples: usize,
    /// Truncated-BPTT chunk length for recurrent networks.
    pub tbptt_samples: usize,
    /// Timed batches (after one untimed warm-up batch).
    pub batches: usize,
}

/// Result of a measurement.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Training samples (batch items x samples) per second of wall time.
    pub samples_per_s: f64,
    pub optimiser_steps: usize,
    pub seconds: f64,
}

/// Trains on seeded synthetic material (a tanh distortion of a decaying tone mixture) and
/// times it.
pub fn train_throughput(spec: &BenchSpec) -> Result<Throughput> {
    let device = Device::Cpu;
    let net = TrainableNet::init(&spec.network, spec.knob_count, 7, &device)?;
    let mut opt = AdamW::new(net.all_vars(), AdamWParams::default())?;
    let warmup = net.warmup_samples();
    let len = warmup + spec.item_samples;
    let x: Vec<f32> = (0..spec.batch * len)
        .map(|i| {
            let t = (i % len) as f32 / 48_000.0;
            0.6 * (t * 2.0 * std::f32::consts::PI * (110.0 + 30.0 * (i / len) as f32)).sin()
                * (-3.0 * t).exp()
        })
        .collect();
    let y: Vec<f32> = x.iter().map(|v| (3.0 * v).tanh() * 0.5).collect();
    let x = Tensor::from_vec(x, (spec.batch, len), &device)?;
    let y = Tensor::from_vec(y, (spec.batch, len), &device)?;
    let knobs = Tensor::zeros(
        (spec.batch, spec.knob_count),
        candle_core::DType::F32,
        &device,
    )?;
    let recurrent = matches!(spec.network, Network::Recurrent(_));

    let mut steps = 0;
    let run_batch = |opt: &mut AdamW| -> Result<usize> {
        let mut taken = 0;
        if recurrent {
            let mut state = None;
            let mut start = 0;
            while start < spec.item_samples {
                let n = spec.tbptt_samples.min(spec.item_samples - start);
                let (pred, s) = net.forward(&x.narrow(1, start, n)?, &knobs, state.as_ref())?;
                let loss = esr(&pred, &y.narrow(1, start, n)?, None)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                opt.update(&loss.backward()?, 1.0)?;
                state = s.map(|s| s.detach());
                start += n;
                taken += 1;
            }
        } else {
            let (pred, _) = net.forward(&x, &knobs, None)?;
            let target = y.narrow(1, warmup, spec.item_samples)?;
            let loss =
                esr(&pred, &target, None).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            opt.update(&loss.backward()?, 1.0)?;
            taken += 1;
        }
        Ok(taken)
    };

    run_batch(&mut opt)?;
    let started = Instant::now();
    for _ in 0..spec.batches {
        steps += run_batch(&mut opt)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Throughput {
        samples_per_s: (spec.batches * spec.batch * spec.item_samples) as f64 / seconds,
        optimiser_steps: steps,
        seconds,
    })
}
