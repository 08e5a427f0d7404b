//! Helpers shared by the integration tests of `models`: knob declarations, model files built
//! from trainable nets, seeded weight scaling, signal comparisons and temporary directories.
//!
//! Each test file uses a subset of these, so unused items are expected per file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor};
use dsp::knob::{KnobSpec, Taper};
use dsp::model::ModelFile;
use models::net::TrainableNet;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Sample rate of every test model, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 48_000;

/// The first `count` (at most 2) of two test knobs: a linear `drive` in dB and a log-taper
/// `attack` in ms, so that both tapers' normalisation is exercised.
///
/// # Panics
/// If `count > 2`.
pub fn knob_specs(count: usize) -> Vec<KnobSpec> {
    let all = [
        KnobSpec {
            name: "drive".into(),
            unit: "dB".into(),
            min: -12.0,
            max: 24.0,
            default: 6.0,
            taper: Taper::Linear,
        },
        KnobSpec {
            name: "attack".into(),
            unit: "ms".into(),
            min: 0.5,
            max: 50.0,
            default: 5.0,
            taper: Taper::Log,
        },
    ];
    assert!(count <= all.len(), "only {} test knobs exist", all.len());
    all[..count].to_vec()
}

/// A knob setting by physical values, named for messages.
#[derive(Debug, Clone)]
pub struct Setting {
    pub name: &'static str,
    pub values: Vec<f64>,
}

/// Settings at every knob's minimum, default and maximum, and one interior setting that
/// differs from all of those (30 % of travel for the first knob, 80 % for the second).
pub fn settings(knobs: &[KnobSpec]) -> Vec<Setting> {
    let interior_travel = [0.3, 0.8];
    vec![
        Setting {
            name: "min",
            values: knobs.iter().map(|k| k.min).collect(),
        },
        Setting {
            name: "default",
            values: knobs.iter().map(|k| k.default).collect(),
        },
        Setting {
            name: "max",
            values: knobs.iter().map(|k| k.max).collect(),
        },
        Setting {
            name: "interior",
            values: knobs
                .iter()
                .zip(interior_travel)
                .map(|(k, t)| k.denormalize(t))
                .collect(),
        },
    ]
}

/// Normalised travel of `values`, as the network sees it (the same conversion the player and
/// the dataset loader use).
pub fn normalized(knobs: &[KnobSpec], values: &[f64]) -> Vec<f32> {
    knobs
        .iter()
        .zip(values)
        .map(|(k, &v)| k.normalize(v) as f32)
        .collect()
}

/// Makes a freshly initialised net's function more demanding than its initial one: tensors
/// that init leaves at zero (FiLM's output layer, the read-out bias) get seeded uniform values
/// in `±zero_fill`, so knobs modulate conv blocks and the output has an offset; then every
/// weight is multiplied by `gain`, which drives the tanh and sigmoid units into their curved
/// range. The state-space poles and steps (`*.log_*`, `*.a_im`) are parameters of a
/// different kind and are left as init made them.
pub fn exercise_weights(net: &TrainableNet, seed: u64, zero_fill: f32, gain: f64) {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    for (name, var) in &net.vars {
        let leaf = name.rsplit('.').next().unwrap_or(name);
        if leaf.starts_with("log_") || leaf == "a_im" {
            continue;
        }
        let t = var.as_tensor();
        let mut data = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        if zero_fill > 0.0 && data.iter().all(|&v| v == 0.0) {
            for v in &mut data {
                *v = rng.random_range(-zero_fill..zero_fill);
            }
        }
        for v in &mut data {
            *v = (*v as f64 * gain) as f32;
        }
        let new = Tensor::from_vec(data, t.dims(), t.device()).unwrap();
        var.set(&new)
            .unwrap_or_else(|e| panic!("cannot set weight {name:?}: {e}"));
    }
}

/// The net exported into a validated model file with `knobs`.
pub fn model_file(net: &TrainableNet, knobs: &[KnobSpec], name: &str) -> ModelFile {
    let model = ModelFile::new(
        name,
        SAMPLE_RATE_HZ,
        knobs.to_vec(),
        net.network.clone(),
        net.to_weights().expect("weights export"),
    );
    model
        .validate()
        .unwrap_or_else(|e| panic!("{name}: exported model is invalid: {e}"));
    model
}

/// Runs `net` on one clip with constant normalised knobs from zero state, as training does;
/// conv nets get `warmup_samples()` zeros prepended so the output is as long as `input` and
/// sample `t` of it lines up with sample `t` of the input.
pub fn forward_clip(net: &TrainableNet, input: &[f32], knobs: &[f32]) -> Vec<f32> {
    let dev = Device::Cpu;
    let warmup = net.warmup_samples();
    let mut padded = vec![0.0f32; warmup + input.len()];
    padded[warmup..].copy_from_slice(input);
    let x = Tensor::from_vec(padded, (1, warmup + input.len()), &dev).unwrap();
    let k = Tensor::from_slice(knobs, (1, knobs.len()), &dev).unwrap();
    let (y, _) = net.forward(&x, &k, None).expect("forward");
    let y = y.squeeze(0).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(y.len(), input.len(), "forward output length");
    y
}

/// Largest absolute sample difference; panics on a length mismatch.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "signals differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Energy of `a - b` over the energy of `b`, in f64 (error-to-signal ratio of `a` against `b`).
pub fn esr(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "signals differ in length");
    let err: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let sig: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    err / sig.max(1e-30)
}

/// A fresh, empty directory under the system temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("fxtwin-models-{label}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).unwrap();
        }
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
