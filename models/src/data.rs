//! Training data: a manifest's pairs loaded, aligned and split into training and validation
//! regions, and seeded random batches drawn from them.

use std::ops::Range;

use candle_core::{Device, Result as CandleResult, Tensor};
use dsp::check::{self, CheckError, PairReport};
use dsp::dataset::Manifest;
use dsp::knob::KnobSpec;
use dsp::model::LevelDetector;
use rand::Rng;

/// One aligned pair with its split.
pub struct Pair {
    pub dry: Vec<f32>,
    pub wet: Vec<f32>,
    /// Normalised knob travel, in the manifest's knob order.
    pub knobs: Vec<f32>,
    /// Samples that training batches are drawn from.
    pub train: Range<usize>,
    /// Held-out tail used for validation.
    pub validation: Range<usize>,
    /// The whole pair is held out (its knob setting is one of the manifest's held-out ones).
    pub holdout_knob: bool,
    pub report: PairReport,
}

/// Segments drawn for one training step.
pub struct Batch {
    /// Input audio `[B, T]`.
    pub dry: Tensor,
    /// Target audio `[B, T]`.
    pub wet: Tensor,
    /// Normalised knob travel `[B, K]`.
    pub knobs: Tensor,
    /// Index (into [`Dataset::pairs`]) of the pair each segment was cut from.
    pub pairs: Vec<usize>,
    /// First sample of each segment in its pair's signals.
    pub starts: Vec<usize>,
}

/// A dataset ready for training.
pub struct Dataset {
    pub name: String,
    pub sample_rate_hz: u32,
    pub knobs: Vec<KnobSpec>,
    pub pairs: Vec<Pair>,
}

impl Dataset {
    /// Loads and aligns every pair of `manifest` (see [`dsp::check::prepare_pair`]).
    pub fn load(manifest: &Manifest) -> Result<Self, CheckError> {
        let fraction = manifest.validation.holdout_fraction;
        let mut pairs = Vec::with_capacity(manifest.pairs.len());
        for (i, spec) in manifest.pairs.iter().enumerate() {
            let prepared = check::prepare_pair(manifest, i)?;
            let values = spec.knob_values(&manifest.knobs);
            let knobs = manifest
                .knobs
                .iter()
                .zip(&values)
                .map(|(k, &v)| k.normalize(v) as f32)
                .collect();
            let holdout_knob = manifest.validation.holdout_knobs.iter().any(|h| {
                manifest
                    .knobs
                    .iter()
                    .zip(&values)
                    .all(|(k, &v)| h.get(&k.name).is_none_or(|&hv| (hv - v).abs() < 1e-9))
            });
            let len = prepared.dry.len();
            let split = len - ((len as f64 * fraction) as usize).min(len);
            let (train, validation) = if holdout_knob {
                (0..0, 0..len)
            } else {
                (0..split, split..len)
            };
            pairs.push(Pair {
                dry: prepared.dry,
                wet: prepared.wet,
                knobs,
                train,
                validation,
                holdout_knob,
                report: prepared.report,
            });
        }
        Ok(Self {
            name: manifest.device.name.clone(),
            sample_rate_hz: manifest.device.sample_rate_hz,
            knobs: manifest.knobs.clone(),
            pairs,
        })
    }

    /// Mean power of each pair's wet recording over its training region (the whole recording
    /// for held-out pairs), pre-emphasised like the ESR: the normalisers of
    /// [`crate::losses::esr_per_recording`].
    pub fn recording_powers(&self, pre_emphasis: Option<f32>) -> Vec<f32> {
        self.pairs
            .iter()
            .map(|p| {
                let region = if p.train.is_empty() {
                    0..p.wet.len()
                } else {
                    p.train.clone()
                };
                crate::losses::recording_power(&p.wet[region], pre_emphasis)
            })
            .collect()
    }

    /// Samples available for training batches.
    pub fn train_samples(&self) -> usize {
        self.pairs.iter().map(|p| p.train.len()).sum()
    }

    /// Draws `batch` random segments of `len` samples from the training regions, each pair
    /// chosen with probability proportional to its training length. `None` when no pair has
    /// `len` training samples.
    pub fn random_batch<R: Rng>(
        &self,
        rng: &mut R,
        batch: usize,
        len: usize,
        device: &Device,
    ) -> CandleResult<Option<Batch>> {
        let usable: Vec<(usize, &Pair)> = self
            .pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.train.len() >= len)
            .collect();
        let total: usize = usable.iter().map(|(_, p)| p.train.len() - len + 1).sum();
        if total == 0 {
            return Ok(None);
        }
        let k = self.knobs.len();
        let mut dry = Vec::with_capacity(batch * len);
        let mut wet = Vec::with_capacity(batch * len);
        let mut knobs = Vec::with_capacity(batch * k);
        let mut items = Vec::with_capacity(batch);
        let mut segment_starts = Vec::with_capacity(batch);
        for _ in 0..batch {
            // One draw over all valid start positions weights pairs by their length.
            let mut pick = rng.random_range(0..total);
            for &(index, p) in &usable {
                let starts = p.train.len() - len + 1;
                if pick < starts {
                    items.push(index);
                    let s = p.train.start + pick;
                    segment_starts.push(s);
                    dry.extend_from_slice(&p.dry[s..s + len]);
                    wet.extend_from_slice(&p.wet[s..s + len]);
                    knobs.extend_from_slice(&p.knobs);
                    break;
                }
                pick -= starts;
            }
        }
        Ok(Some(Batch {
            dry: Tensor::from_vec(dry, (batch, len), device)?,
            wet: Tensor::from_vec(wet, (batch, len), device)?,
            knobs: Tensor::from_vec(knobs, (batch, k), device)?,
            pairs: items,
            starts: segment_starts,
        }))
    }
}

/// Samples between two stored states of a [`LevelHistory`].
const LEVEL_CHECKPOINT_SAMPLES: usize = 4096;

/// The states of a recurrent network's level detectors (see
/// [`dsp::model::RecurrentNet::level_inputs`]) anywhere in a dataset's dry signals, as if they
/// had run from the start of the file, as they do in the real-time engine after a reset.
///
/// The detectors depend on the input alone, so their state at a segment's start needs no
/// burn-in of the network: it is read from states stored every [`LEVEL_CHECKPOINT_SAMPLES`]
/// and brought forward by running the detectors over at most that many samples. The result is
/// bit-identical to a run from the start of the file.
pub struct LevelHistory {
    taus: Vec<f32>,
    /// Per pair, the detector powers before sample `j * LEVEL_CHECKPOINT_SAMPLES`, `[J * D]`.
    checkpoints: Vec<Vec<f32>>,
}

impl LevelHistory {
    /// Runs detectors with time constants `taus` (in samples) over every pair's dry signal.
    pub fn new(data: &Dataset, taus: &[f32]) -> Self {
        let checkpoints = data
            .pairs
            .iter()
            .map(|pair| {
                let mut detectors: Vec<LevelDetector> =
                    taus.iter().map(|&t| LevelDetector::new(t)).collect();
                let mut stored = Vec::new();
                for chunk in pair.dry.chunks(LEVEL_CHECKPOINT_SAMPLES) {
                    stored.extend(detectors.iter().map(LevelDetector::power));
                    for det in &mut detectors {
                        for &x in chunk {
                            det.next(x);
                        }
                    }
                }
                stored
            })
            .collect();
        Self {
            taus: taus.to_vec(),
            checkpoints,
        }
    }

    /// The detectors' powers just before sample `start` of pair `pair`, `[D]` appended to
    /// `out`.
    pub fn state_at(&self, data: &Dataset, pair: usize, start: usize, out: &mut Vec<f32>) {
        let d = self.taus.len();
        let j = start / LEVEL_CHECKPOINT_SAMPLES;
        let from = j * LEVEL_CHECKPOINT_SAMPLES;
        let dry = &data.pairs[pair].dry[from..start];
        for (k, &tau) in self.taus.iter().enumerate() {
            let mut det = LevelDetector::new(tau);
            det.set_power(self.checkpoints[pair][j * d + k]);
            for &x in dry {
                det.next(x);
            }
            out.push(det.power());
        }
    }

    /// The states at the start of every segment of `batch`, `[B * D]` item-major, as
    /// [`crate::net::RecurrentState::level`] takes them.
    pub fn batch_start(&self, data: &Dataset, batch: &Batch) -> Vec<f32> {
        let mut out = Vec::with_capacity(batch.pairs.len() * self.taus.len());
        for (&pair, &start) in batch.pairs.iter().zip(&batch.starts) {
            self.state_at(data, pair, start, &mut out);
        }
        out
    }
}
