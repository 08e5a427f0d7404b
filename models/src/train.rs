//! The training loop: seeded random batches, truncated back-propagation through time with a
//! burn-in, AdamW with gradient clipping, a plateau learning-rate schedule, early stopping on
//! validation ESR, and checkpoints that let a killed run resume where it was.
//!
//! # Determinism and resuming
//! The batch drawn at global step `s` comes from a generator seeded by `(seed, s)` alone, and
//! the checkpoint holds weights, optimiser moments, schedule and history. A run resumed from a
//! checkpoint therefore takes exactly the steps the uninterrupted run would have taken.
//! Checkpoints are written at every epoch end and when training is stopped (Ctrl-C, wall-clock
//! budget), so a kill loses at most one epoch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use dsp::model::{Metrics, ModelFile, Network, TrainingInfo, WeightTensor};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, LevelHistory};
use crate::losses::{Loss, LossConfig};
use crate::net::TrainableNet;
use crate::optim::{clip_factor, AdamW, AdamWParams};

/// Checkpoint file name inside the output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
const CHECKPOINT_VERSION: u32 = 1;
/// Block size of the engine during validation.
const VALIDATION_BLOCK: usize = 4096;
/// Default burn-in of networks with unbounded memory, in samples.
pub const RECURRENT_BURN_IN_SAMPLES: usize = 1024;

/// Everything that shapes a training run. Serialised into checkpoints: a resume must use the
/// same settings, except for the limits (`max_epochs`, `max_minutes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Architecture preset name (informational; `network` is authoritative).
    pub preset: String,
    pub network: Network,
    pub seed: u64,
    /// Segments per batch.
    pub batch_size: usize,
    /// Samples per segment that the loss sees.
    pub segment_samples: usize,
    /// Samples run before each segment of a recurrent model to settle its state; excluded
    /// from the loss and from back-propagation.
    pub burn_in_samples: usize,
    /// Optimiser steps per epoch; `None`: one pass over the training samples in expectation
    /// (clamped to 10..=500).
    pub steps_per_epoch: Option<usize>,
    pub max_epochs: usize,
    /// Wall-clock budget; training ends cleanly with the best model when it runs out.
    pub max_minutes: Option<f64>,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Global gradient-norm limit.
    pub grad_clip: f64,
    /// Stop after this many epochs without a better validation ESR.
    pub early_stop_patience: usize,
    /// Halve the learning rate after this many epochs without improvement.
    pub lr_patience: usize,
    pub loss: LossConfig,
}

impl TrainConfig {
    /// Sensible settings for `network`.
    ///
    /// Networks with unbounded memory (recurrent, state-space) get a burn-in of
    /// [`RECURRENT_BURN_IN_SAMPLES`], a multiple of every time-varying FiLM block so the
    /// controller's state carries over exactly. Learning rates: 1e-2 for LSTM/GRU, 5e-3 for
    /// state-space networks, 4e-3 for WaveNets (NAM's default), 2e-3 otherwise.
    pub fn new(preset: &str, network: Network) -> Self {
        let recurrent = network.receptive_field_samples().is_none();
        let learning_rate = match &network {
            Network::Recurrent(_) => 1e-2,
            Network::Ssm(_) => 5e-3,
            Network::TimeVarying(tv) if matches!(*tv.inner, Network::Ssm(_)) => 5e-3,
            Network::WaveNet(_) => 4e-3,
            _ => 2e-3,
        };
        Self {
            preset: preset.to_string(),
            network,
            seed: 0,
            batch_size: 8,
            segment_samples: 4096,
            burn_in_samples: if recurrent {
                RECURRENT_BURN_IN_SAMPLES
            } else {
                0
            },
            steps_per_epoch: None,
            max_epochs: 200,
            max_minutes: None,
            learning_rate,
            weight_decay: 1e-4,
            grad_clip: 1.0,
            early_stop_patience: 12,
            lr_patience: 4,
            loss: LossConfig::default(),
        }
    }

    /// The settings a resumed run must share with the original.
    fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.max_epochs = 0;
        c.max_minutes = None;
        serde_json::to_string(&c).expect("config serialises")
    }
}

/// Progress reports from the loop.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    Step {
        epoch: usize,
        step: usize,
        steps_per_epoch: usize,
        loss: f32,
        elapsed_s: f64,
    },
    Epoch(EpochRecord),
    Resumed {
        epoch: usize,
        step: usize,
    },
}

/// One finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_esr: f64,
    pub holdout_knob_esr: Option<f64>,
    pub learning_rate: f64,
    pub elapsed_s: f64,
    pub best: bool,
}

/// Why training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopReason {
    MaxEpochs,
    EarlyStopping,
    TimeBudget,
    Interrupted,
}

/// The result of a training run.
pub struct TrainOutcome {
    /// The best model by validation ESR, ready to save.
    pub model: ModelFile,
    pub history: Vec<EpochRecord>,
    pub stop_reason: StopReason,
}

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training failed in candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Loss(#[from] crate::losses::LossError),
    #[error("validation could not run the model: {0}")]
    Validation(String),
    #[error("{path}: cannot write checkpoint: {source}")]
    CheckpointWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read checkpoint: {reason}")]
    CheckpointRead { path: PathBuf, reason: String },
    #[error(
        "{path}: this checkpoint was made with other training settings; resume with the same \
         manifest, --arch, --seed and options, or start afresh without --resume"
    )]
    CheckpointMismatch { path: PathBuf },
    #[error(
        "dataset {name:?} has no pair with {needed} training samples (segment plus warm-up); \
         add longer recordings or lower the holdout fraction"
    )]
    TooLittleData { name: String, needed: usize },
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    fingerprint: String,
    /// Epoch in progress and the next step within it.
    epoch: usize,
    step_in_epoch: usize,
    global_step: u64,
    learning_rate: f64,
    best_validation_esr: Option<f64>,
    best_holdout_knob_esr: Option<f64>,
    epochs_since_best: usize,
    epochs_since_lr_change: usize,
    elapsed_s: f64,
    /// Sum and count of training losses in the epoch in progress.
    epoch_loss_sum: f64,
    epoch_loss_count: usize,
    history: Vec<EpochRecord>,
    weights: BTreeMap<String, WeightTensor>,
    best_weights: Option<BTreeMap<String, WeightTensor>>,
    adam_step: u64,
    adam_m: Vec<WeightTensor>,
    adam_v: Vec<WeightTensor>,
}

/// Options that are not part of the model's recipe.
pub struct RunOptions<'a> {
    /// Directory for the checkpoint.
    pub out_dir: &'a Path,
    /// Continue from the checkpoint in `out_dir` if there is one.
    pub resume: bool,
    /// Set from another thread (e.g. a Ctrl-C handler) to stop after the current step.
    pub stop: Option<&'a AtomicBool>,
}

fn step_rng(seed: u64, global_step: u64) -> Pcg64Mcg {
    // SplitMix64-style mixing so neighbouring steps get unrelated streams.
    let mut z = seed ^ global_step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Pcg64Mcg::seed_from_u64(z ^ (z >> 31))
}

fn to_wt(t: &Tensor) -> candle_core::Result<WeightTensor> {
    Ok(WeightTensor::new(
        t.dims().to_vec(),
        t.flatten_all()?.to_vec1::<f32>()?,
    ))
}

fn from_wt(w: &WeightTensor, device: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(w.data.clone(), w.shape.as_slice(), device)
}

/// Pooled ESR over groups of (prediction, target) slices.
fn pooled_esr(err_sq: f64, sig_sq: f64) -> f64 {
    err_sq / sig_sq.max(1e-12)
}

/// The model file for `weights` trained on `data` (metadata is filled in at the end of a run).
fn model_file(
    data: &Dataset,
    cfg: &TrainConfig,
    weights: BTreeMap<String, WeightTensor>,
) -> ModelFile {
    ModelFile::new(
        &data.name,
        data.sample_rate_hz,
        data.knobs.clone(),
        cfg.network.clone(),
        weights,
    )
}

/// Validation ESR on held-out time segments and, separately, on held-out knob settings.
///
/// Runs the real-time engine (`dsp::engine::Player`), which computes the same function as the
/// candle forward (parity is tested) in constant memory and is exactly what a user will hear.
/// Each pair plays from the start of its file up to the end of its held-out region, so the
/// model's state at the region is the one it has in use; pairs run on parallel threads.
fn validate(
    net: &TrainableNet,
    data: &Dataset,
    cfg: &TrainConfig,
) -> Result<(f64, Option<f64>), TrainError> {
    let model = model_file(data, cfg, net.to_weights()?);
    let player = dsp::engine::Player::new(&model, VALIDATION_BLOCK)
        .map_err(|e| TrainError::Validation(e.to_string()))?;
    let pairs: Vec<&crate::data::Pair> = data
        .pairs
        .iter()
        .filter(|p| !p.validation.is_empty())
        .collect();

    // (error energy, signal energy, held-out knob?) per pair.
    let threads = candle_core::utils::get_num_threads().clamp(1, pairs.len().max(1));
    let per_thread = pairs.len().div_ceil(threads).max(1);
    let sums: Vec<(f64, f64, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .chunks(per_thread)
            .map(|group| {
                let mut player = player.clone();
                scope.spawn(move || {
                    group
                        .iter()
                        .map(|pair| {
                            player.set_knobs_normalized(&pair.knobs);
                            player.reset();
                            let end = pair.validation.end;
                            let mut out = vec![0.0f32; end];
                            player.process(&pair.dry[..end], &mut out);
                            let pred = &out[pair.validation.clone()];
                            let target = &pair.wet[pair.validation.clone()];
                            let e: f64 = pred
                                .iter()
                                .zip(target)
                                .map(|(p, t)| ((p - t) as f64).powi(2))
                                .sum();
                            let s: f64 = target.iter().map(|t| (*t as f64).powi(2)).sum();
                            (e, s, pair.holdout_knob)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("validation thread panicked"))
            .collect()
    });

    let (mut time_err, mut time_sig, mut knob_err, mut knob_sig) = (0.0, 0.0, 0.0, 0.0);
    let mut any_knob = false;
    for (e, s, knob) in sums {
        if knob {
            any_knob = true;
            knob_err += e;
            knob_sig += s;
        } else {
            time_err += e;
            time_sig += s;
        }
    }
    let knob = any_knob.then(|| pooled_esr(knob_err, knob_sig));
    let time = if time_sig > 0.0 {
        pooled_esr(time_err, time_sig)
    } else {
        knob.unwrap_or(f64::NAN)
    };
    Ok((time, knob))
}

/// Trains a model on `data`. See the module docs for the loop and its guarantees.
pub fn train(
    data: &Dataset,
    cfg: &TrainConfig,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<TrainOutcome, TrainError> {
    let device = Device::Cpu;
    let knob_count = data.knobs.len();
    let mut net = TrainableNet::init(&cfg.network, knob_count, cfg.seed, &device)?;
    let warmup = net.warmup_samples();
    let batch_len = warmup + cfg.burn_in_samples + cfg.segment_samples;
    if !data.pairs.iter().any(|p| p.train.len() >= batch_len) {
        return Err(TrainError::TooLittleData {
            name: data.name.clone(),
            needed: batch_len,
        });
    }
    let steps_per_epoch = cfg.steps_per_epoch.unwrap_or_else(|| {
        (data.train_samples() / (cfg.batch_size * cfg.segment_samples)).clamp(10, 500)
    });
    let loss_fn = Loss::new(&cfg.loss, &device)?;
    let levels = match &cfg.network {
        Network::Recurrent(r) if !r.level_inputs.is_empty() => {
            Some(LevelHistory::new(data, &r.level_inputs))
        }
        _ => None,
    };
    let powers = data.recording_powers(cfg.loss.esr_pre_emphasis);
    let mut opt = AdamW::new(
        net.all_vars(),
        AdamWParams {
            learning_rate: cfg.learning_rate,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;

    // Fresh state, or the checkpoint's.
    let ckpt_path = opts.out_dir.join(CHECKPOINT_FILE);
    let mut st = Checkpoint {
        version: CHECKPOINT_VERSION,
        fingerprint: cfg.fingerprint(),
        epoch: 0,
        step_in_epoch: 0,
        global_step: 0,
        learning_rate: cfg.learning_rate,
        best_validation_esr: None,
        best_holdout_knob_esr: None,
        epochs_since_best: 0,
        epochs_since_lr_change: 0,
        elapsed_s: 0.0,
        epoch_loss_sum: 0.0,
        epoch_loss_count: 0,
        history: Vec::new(),
        weights: BTreeMap::new(),
        best_weights: None,
        adam_step: 0,
        adam_m: Vec::new(),
        adam_v: Vec::new(),
    };
    if opts.resume && ckpt_path.exists() {
        st = load_checkpoint(&ckpt_path)?;
        if st.fingerprint != cfg.fingerprint() {
            return Err(TrainError::CheckpointMismatch { path: ckpt_path });
        }
        net = TrainableNet::from_weights(&cfg.network, knob_count, &st.weights, &device)?;
        opt = AdamW::new(net.all_vars(), opt.params)?;
        opt.params.learning_rate = st.learning_rate;
        opt.step = st.adam_step;
        opt.m = st
            .adam_m
            .iter()
            .map(|w| from_wt(w, &device))
            .collect::<Result<_, _>>()?;
        opt.v = st
            .adam_v
            .iter()
            .map(|w| from_wt(w, &device))
            .collect::<Result<_, _>>()?;
        on_event(&TrainEvent::Resumed {
            epoch: st.epoch,
            step: st.step_in_epoch,
        });
    }

    // Wall-clock time of this run plus that of the runs it resumes.
    let started = Instant::now();
    let resumed_elapsed = st.elapsed_s;
    let elapsed = || resumed_elapsed + started.elapsed().as_secs_f64();
    let save = |st: &mut Checkpoint, net: &TrainableNet, opt: &AdamW| -> Result<(), TrainError> {
        st.elapsed_s = elapsed();
        st.weights = net.to_weights()?;
        st.adam_step = opt.step;
        st.learning_rate = opt.params.learning_rate;
        st.adam_m = opt.m.iter().map(to_wt).collect::<Result<_, _>>()?;
        st.adam_v = opt.v.iter().map(to_wt).collect::<Result<_, _>>()?;
        let text = serde_json::to_string(st).expect("checkpoint serialises");
        dsp::fsutil::write_atomic(&ckpt_path, text.as_bytes()).map_err(|source| {
            TrainError::CheckpointWrite {
                path: ckpt_path.clone(),
                source,
            }
        })
    };
    let stop_reason = 'training: loop {
        if st.epoch >= cfg.max_epochs {
            break StopReason::MaxEpochs;
        }
        while st.step_in_epoch < steps_per_epoch {
            // Stop requests and the time budget are honoured between steps.
            let interrupted = opts.stop.is_some_and(|s| s.load(Ordering::Relaxed));
            let out_of_time = cfg.max_minutes.is_some_and(|m| elapsed() >= m * 60.0);
            if interrupted || out_of_time {
                save(&mut st, &net, &opt)?;
                break 'training if interrupted {
                    StopReason::Interrupted
                } else {
                    StopReason::TimeBudget
                };
            }

            let mut rng = step_rng(cfg.seed, st.global_step);
            let batch = data
                .random_batch(&mut rng, cfg.batch_size, batch_len, &device)?
                .expect("checked above that a pair is long enough");
            let (x, y, k) = (&batch.dry, &batch.wet, &batch.knobs);
            let item_power: Vec<f32> = batch.pairs.iter().map(|&i| powers[i]).collect();
            let item_power = Tensor::from_vec(item_power, batch.pairs.len(), &device)?;
            // Level detectors start where a run from the start of the file has them.
            let initial = match &levels {
                Some(history) => net.zero_state(cfg.batch_size)?.map(|mut s| {
                    s.level = Some(history.batch_start(data, &batch));
                    s
                }),
                None => None,
            };
            // Burn-in: settle the recurrent state without gradients.
            let state = if cfg.burn_in_samples > 0 {
                let xb = x.narrow(1, 0, cfg.burn_in_samples)?;
                let (_, s) = net.forward(&xb, k, initial.as_ref())?;
                s.map(|s| s.detach())
            } else {
                initial
            };
            let xs = x.narrow(1, cfg.burn_in_samples, batch_len - cfg.burn_in_samples)?;
            let (pred, _) = net.forward(&xs, k, state.as_ref())?;
            let target = y.narrow(1, batch_len - cfg.segment_samples, cfg.segment_samples)?;
            let (loss, _parts) = loss_fn.compute_with_power(&pred, &target, Some(&item_power))?;
            let loss_value = loss.to_scalar::<f32>()?;
            let grads = loss.backward()?;
            let (_norm, scale) = clip_factor(&grads, &net.all_vars(), cfg.grad_clip)?;
            if loss_value.is_finite() {
                opt.update(&grads, scale)?;
                st.epoch_loss_sum += loss_value as f64;
                st.epoch_loss_count += 1;
            }
            st.step_in_epoch += 1;
            st.global_step += 1;
            on_event(&TrainEvent::Step {
                epoch: st.epoch,
                step: st.step_in_epoch,
                steps_per_epoch,
                loss: loss_value,
                elapsed_s: elapsed(),
            });
        }

        // End of epoch: validate, keep the best, adapt the learning rate, checkpoint.
        let (val, knob_val) = validate(&net, data, cfg)?;
        let improved = val.is_finite() && st.best_validation_esr.is_none_or(|b| val < b);
        if improved {
            st.best_validation_esr = Some(val);
            st.best_holdout_knob_esr = knob_val;
            st.best_weights = Some(net.to_weights()?);
            st.epochs_since_best = 0;
            st.epochs_since_lr_change = 0;
        } else {
            st.epochs_since_best += 1;
            st.epochs_since_lr_change += 1;
            if st.epochs_since_lr_change >= cfg.lr_patience {
                opt.params.learning_rate *= 0.5;
                st.epochs_since_lr_change = 0;
            }
        }
        let record = EpochRecord {
            epoch: st.epoch,
            train_loss: st.epoch_loss_sum / st.epoch_loss_count.max(1) as f64,
            validation_esr: val,
            holdout_knob_esr: knob_val,
            learning_rate: opt.params.learning_rate,
            elapsed_s: elapsed(),
            best: improved,
        };
        st.history.push(record.clone());
        st.epoch += 1;
        st.step_in_epoch = 0;
        st.epoch_loss_sum = 0.0;
        st.epoch_loss_count = 0;
        save(&mut st, &net, &opt)?;
        on_event(&TrainEvent::Epoch(record));
        if st.epochs_since_best >= cfg.early_stop_patience {
            break StopReason::EarlyStopping;
        }
    };

    // The best weights seen, or the current ones if no epoch finished.
    let (weights, val, knob_val) = match &st.best_weights {
        Some(w) => (
            w.clone(),
            st.best_validation_esr.unwrap_or(f64::NAN),
            st.best_holdout_knob_esr,
        ),
        None => {
            let (v, k) = validate(&net, data, cfg)?;
            (net.to_weights()?, v, k)
        }
    };
    let mut model = model_file(data, cfg, weights);
    model.training = Some(TrainingInfo {
        preset: cfg.preset.clone(),
        dataset: data.name.clone(),
        seed: cfg.seed,
        epochs: st.epoch,
        steps: st.global_step as usize,
        train_seconds: elapsed(),
        parameters: cfg.network.parameter_count(knob_count),
    });
    model.metrics = Some(Metrics {
        validation_esr: val,
        holdout_knob_esr: knob_val,
    });
    Ok(TrainOutcome {
        model,
        history: st.history,
        stop_reason,
    })
}

fn load_checkpoint(path: &Path) -> Result<Checkpoint, TrainError> {
    let err = |reason: String| TrainError::CheckpointRead {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let ckpt: Checkpoint = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    if ckpt.version != CHECKPOINT_VERSION {
        return Err(err(format!(
            "checkpoint version {} is not {CHECKPOINT_VERSION}",
            ckpt.version
        )));
    }
    Ok(ckpt)
}
