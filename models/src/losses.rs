//! Training losses between a model's output and its target, both `[B, T]` batches of audio
//! segments (`B` segments of `T` samples), each returning a differentiable scalar tensor.
//!
//! - [`esr`]: error-to-signal ratio with an optional first-order pre-emphasis filter (Wright and
//!   Välimäki, "Perceptual loss function for neural modelling of audio systems", ICASSP 2020;
//!   Wright, Damskägg, Juvela and Välimäki, "Real-time guitar amplifier emulation with deep
//!   learning", Applied Sciences 10(3), 2020).
//! - [`dc`]: the DC loss of the same papers, per segment.
//! - [`l1`]: mean absolute error.
//! - [`mr_stft`] / [`MrStftLoss`]: multi-resolution STFT loss (Yamamoto, Song and Kim,
//!   "Parallel WaveGAN", ICASSP 2020), in the `stft` submodule.
//!
//! [`Loss`] combines them with the weights of a [`LossConfig`]. Plain-`f64` versions for
//! evaluation reports ([`esr_f64`], [`mr_stft_f64`], [`mr_stft_f64_with`]) need no candle graph.
//!
//! The candle functions accept any float dtype (tests differentiate them in `f64`); training
//! uses `f32`.

mod framed_rfft;
mod stft;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use stft::{mr_stft, mr_stft_f64, mr_stft_f64_with, MrStftLoss, Stft, StftResolution};

/// Pre-emphasis coefficient `a` of `y[n] = x[n] - a x[n-1]` used by Wright et al. (2020) for
/// ESR training: about +4 dB at Nyquist and -16.5 dB at DC relative to a flat response.
pub const DEFAULT_PRE_EMPHASIS: f32 = 0.85;

/// Added to the mean target power in the ESR and DC denominators so silent segments give a
/// finite loss. 1e-8 is a mean power of -80 dBFS: negligible for any real programme material.
pub const POWER_EPS: f64 = 1e-8;

/// Errors from building or evaluating a loss.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// Prediction and target shapes differ, or are not `[B, T]`.
    #[error(
        "{loss} loss: prediction shape {pred:?} and target shape {target:?} must be equal \
         and [B, T]"
    )]
    Shape {
        /// Which loss was evaluated.
        loss: &'static str,
        /// Shape of the prediction.
        pred: Vec<usize>,
        /// Shape of the target.
        target: Vec<usize>,
    },
    /// The segments are too short for the loss.
    #[error(
        "{loss} loss: segments of {len_samples} samples are too short, need at least {min_samples}"
    )]
    TooShort {
        /// Which loss was evaluated.
        loss: &'static str,
        /// Segment length given.
        len_samples: usize,
        /// Shortest segment the loss accepts.
        min_samples: usize,
    },
    /// A field of a [`LossConfig`] is out of range.
    #[error("loss config: `{field}` = {value} is invalid: {reason}")]
    Config {
        /// Field name as written in the config file.
        field: &'static str,
        /// Value given.
        value: f32,
        /// What the value must satisfy.
        reason: &'static str,
    },
    /// An STFT resolution is unusable.
    #[error("STFT resolution {resolution:?} is invalid: {reason}")]
    Resolution {
        /// The resolution given.
        resolution: StftResolution,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Checks that `pred` and `target` are equal `[B, T]` shapes with `T >= min_samples`; returns
/// `(B, T)`.
fn check_pair(
    loss: &'static str,
    pred: &Tensor,
    target: &Tensor,
    min_samples: usize,
) -> Result<(usize, usize), LossError> {
    if pred.dims() != target.dims() || pred.rank() != 2 {
        return Err(LossError::Shape {
            loss,
            pred: pred.dims().to_vec(),
            target: target.dims().to_vec(),
        });
    }
    let (b_sz, len_samples) = pred.dims2()?;
    if len_samples < min_samples {
        return Err(LossError::TooShort {
            loss,
            len_samples,
            min_samples,
        });
    }
    Ok((b_sz, len_samples))
}

/// First-order pre-emphasis `y[n] = x[n] - coeff * x[n-1]` along time of a `[B, T]` batch.
///
/// The first sample has no predecessor and is dropped, so the result is `[B, T - 1]`.
///
/// # Errors
/// [`LossError::TooShort`] when `T < 2`.
pub fn pre_emphasis(x: &Tensor, coeff: f32) -> Result<Tensor, LossError> {
    let (_, len_samples) = x.dims2()?;
    if len_samples < 2 {
        return Err(LossError::TooShort {
            loss: "pre-emphasis",
            len_samples,
            min_samples: 2,
        });
    }
    let current = x.narrow(1, 1, len_samples - 1)?;
    let previous = x.narrow(1, 0, len_samples - 1)?;
    Ok((current - (previous * f64::from(coeff))?)?)
}

/// Error-to-signal ratio `Σ (t - p)² / (Σ t² + ε)`, pooled over the whole batch (the sums run
/// over every sample of every segment, as in NAM and NablAFx), so quiet segments weigh less
/// than loud ones instead of dominating. Computed as the ratio of means with `ε` =
/// [`POWER_EPS`] added to the mean target power.
///
/// With `pre_emphasis = Some(a)` both signals first pass through [`pre_emphasis`]; Wright and
/// Välimäki (2020) use `a` = [`DEFAULT_PRE_EMPHASIS`]. Returns a scalar; 0 is a perfect match,
/// 1 is as bad as predicting silence.
///
/// # Errors
/// [`LossError::Shape`] unless both are the same `[B, T]`; [`LossError::TooShort`] when `T < 2`.
pub fn esr(pred: &Tensor, target: &Tensor, pre_emphasis: Option<f32>) -> Result<Tensor, LossError> {
    check_pair("ESR", pred, target, 2)?;
    let (pred, target) = match pre_emphasis {
        Some(coeff) => (
            self::pre_emphasis(pred, coeff)?,
            self::pre_emphasis(target, coeff)?,
        ),
        None => (pred.clone(), target.clone()),
    };
    let error_power = (&target - &pred)?.sqr()?.mean_all()?;
    let signal_power = (target.sqr()?.mean_all()? + POWER_EPS)?;
    Ok((error_power / signal_power)?)
}

/// ESR with every segment judged against the power of the recording it was cut from:
/// `mean_b(mean_t((t - p)²) / (power_b + ε))`, `power_b` the mean power of segment `b`'s whole
/// recording (pre-emphasised like the signals), `ε` = [`POWER_EPS`].
///
/// The pooled [`esr`] lets loud recordings dominate: a compressor at a low threshold and high
/// ratio, whose output is tens of dB quieter than at gentle settings, barely moves it and is
/// fitted far worse. Normalising by each segment's own power instead would let pauses and
/// decays dominate. The recording's power weighs every knob setting equally and keeps each
/// setting's loud and quiet passages in proportion.
///
/// # Errors
/// As [`esr`], and [`LossError::Shape`] when `power` is not `[B]`.
pub fn esr_per_recording(
    pred: &Tensor,
    target: &Tensor,
    pre_emphasis: Option<f32>,
    power: &Tensor,
) -> Result<Tensor, LossError> {
    check_pair("ESR", pred, target, 2)?;
    let batch = pred.dim(0)?;
    if power.dims() != [batch] {
        return Err(LossError::Shape {
            loss: "ESR (per recording)",
            pred: pred.dims().to_vec(),
            target: power.dims().to_vec(),
        });
    }
    let (pred, target) = match pre_emphasis {
        Some(coeff) => (
            self::pre_emphasis(pred, coeff)?,
            self::pre_emphasis(target, coeff)?,
        ),
        None => (pred.clone(), target.clone()),
    };
    let error_power = (&target - &pred)?.sqr()?.mean(1)?;
    let power = (power.to_dtype(error_power.dtype())? + POWER_EPS)?;
    Ok((error_power / power)?.mean_all()?)
}

/// Mean power of `wet`, pre-emphasised with `pre_emphasis` when given: the normaliser of
/// [`esr_per_recording`] for segments cut from `wet`.
pub fn recording_power(wet: &[f32], pre_emphasis: Option<f32>) -> f32 {
    let sum: f64 = match pre_emphasis {
        Some(a) => wet
            .windows(2)
            .map(|w| ((w[1] - a * w[0]) as f64).powi(2))
            .sum(),
        None => wet.iter().map(|&v| (v as f64).powi(2)).sum(),
    };
    (sum / wet.len().max(1) as f64) as f32
}

/// Mean absolute error over all samples of the batch.
///
/// # Errors
/// [`LossError::Shape`] unless both are the same `[B, T]` with `T >= 1`.
pub fn l1(pred: &Tensor, target: &Tensor) -> Result<Tensor, LossError> {
    check_pair("L1", pred, target, 1)?;
    Ok((target - pred)?.abs()?.mean_all()?)
}

/// DC loss: the squared offset between the segments' means, over the signal power, each pooled
/// over the batch: `mean_b((mean_t(t) - mean_t(p))²) / (mean(t²) + ε)`, `ε` = [`POWER_EPS`].
/// Pooling keeps a quiet segment in the batch from dividing by a near-zero power. Wright et al.
/// (2020) add it to the pre-emphasised ESR, which barely sees DC.
///
/// # Errors
/// [`LossError::Shape`] unless both are the same `[B, T]` with `T >= 1`.
pub fn dc(pred: &Tensor, target: &Tensor) -> Result<Tensor, LossError> {
    check_pair("DC", pred, target, 1)?;
    let offset_power = (target.mean(1)? - pred.mean(1)?)?.sqr()?;
    let signal_power = (target.sqr()?.mean_all()? + POWER_EPS)?;
    Ok(offset_power.mean_all()?.div(&signal_power)?)
}

/// Weights of the training loss terms, as written in a training config (TOML or JSON). Missing
/// fields take their [`Default`] values.
///
/// The default is the loss of Wright et al. (2020): pre-emphasised ESR (`a` = 0.85) plus DC
/// loss, both weight 1; L1 and MR-STFT off. MR-STFT (try weight 1) costs far more time per
/// step than the others together.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of [`esr`]; >= 0. Default 1.
    pub esr: f32,
    /// Pre-emphasis coefficient for the ESR term, in (-1, 1), or `None` for plain ESR.
    /// Default `Some(0.85)`.
    pub esr_pre_emphasis: Option<f32>,
    /// Normalise the ESR of each segment by the power of its recording
    /// ([`esr_per_recording`]) rather than pooling it over the batch ([`esr`]). Default true:
    /// knob-conditioned datasets mix settings whose output levels differ by tens of dB. Needs
    /// the recordings' powers (see [`Loss::compute_with_power`]).
    pub esr_per_recording: bool,
    /// Weight of [`l1`]; >= 0. Default 0.
    pub l1: f32,
    /// Weight of the multi-resolution STFT loss ([`MrStftLoss`], default resolutions);
    /// >= 0. Default 0.
    pub mr_stft: f32,
    /// Weight of [`dc`]; >= 0. Default 1.
    pub dc: f32,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            esr: 1.0,
            esr_pre_emphasis: Some(DEFAULT_PRE_EMPHASIS),
            esr_per_recording: true,
            l1: 0.0,
            mr_stft: 0.0,
            dc: 1.0,
        }
    }
}

impl LossConfig {
    /// Checks every weight is finite and >= 0, at least one is > 0, and the pre-emphasis
    /// coefficient lies in (-1, 1).
    ///
    /// # Errors
    /// [`LossError::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<(), LossError> {
        let weights = [
            ("esr", self.esr),
            ("l1", self.l1),
            ("mr_stft", self.mr_stft),
            ("dc", self.dc),
        ];
        for (field, value) in weights {
            if !value.is_finite() || value < 0.0 {
                return Err(LossError::Config {
                    field,
                    value,
                    reason: "a weight must be finite and >= 0",
                });
            }
        }
        if weights.iter().all(|&(_, w)| w == 0.0) {
            return Err(LossError::Config {
                field: "esr",
                value: self.esr,
                reason: "at least one of esr, l1, mr_stft, dc must be > 0",
            });
        }
        if let Some(coeff) = self.esr_pre_emphasis {
            if !(coeff.is_finite() && coeff.abs() < 1.0) {
                return Err(LossError::Config {
                    field: "esr_pre_emphasis",
                    value: coeff,
                    reason: "the coefficient must lie in (-1, 1)",
                });
            }
        }
        Ok(())
    }
}

/// Unweighted values of each loss term of one [`Loss::compute`], for logging. ESR (with the
/// configured pre-emphasis), L1 and DC are always computed (they are cheap); `mr_stft` is
/// computed only when its weight is > 0 and is 0.0 otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossParts {
    /// [`esr`], with `LossConfig::esr_pre_emphasis`.
    pub esr: f32,
    /// [`l1`].
    pub l1: f32,
    /// [`MrStftLoss::compute`] with the default resolutions, or 0.0 when not weighted.
    pub mr_stft: f32,
    /// [`dc`].
    pub dc: f32,
}

/// The weighted training loss of a [`LossConfig`], with its STFT bases precomputed.
pub struct Loss {
    cfg: LossConfig,
    /// Present when `cfg.mr_stft > 0`.
    mr_stft: Option<MrStftLoss>,
}

impl Loss {
    /// Validates `cfg` and, when MR-STFT is weighted, builds the STFT bases for the default
    /// resolutions ([`StftResolution::DEFAULTS`]) on `device`.
    ///
    /// # Errors
    /// [`LossError::Config`] for a bad config; a candle error if the bases cannot be built.
    pub fn new(cfg: &LossConfig, device: &Device) -> Result<Self, LossError> {
        Self::with_resolutions(cfg, &StftResolution::DEFAULTS, device)
    }

    /// As [`Loss::new`] with the given STFT resolutions.
    ///
    /// # Errors
    /// As [`Loss::new`], plus [`LossError::Resolution`] for a bad resolution.
    pub fn with_resolutions(
        cfg: &LossConfig,
        resolutions: &[StftResolution],
        device: &Device,
    ) -> Result<Self, LossError> {
        cfg.validate()?;
        let mr_stft = if cfg.mr_stft > 0.0 {
            Some(MrStftLoss::new(resolutions, device)?)
        } else {
            None
        };
        Ok(Self { cfg: *cfg, mr_stft })
    }

    /// The configuration this loss was built from.
    pub fn config(&self) -> &LossConfig {
        &self.cfg
    }

    /// Weighted sum of the configured terms between `pred` and `target` (both `[B, T]`), as a
    /// differentiable scalar, with the unweighted value of each term.
    ///
    /// # Errors
    /// [`LossError::Shape`] / [`LossError::TooShort`] for unusable inputs (MR-STFT needs
    /// `T > fft_size / 2` of its largest resolution).
    pub fn compute(
        &self,
        pred: &Tensor,
        target: &Tensor,
    ) -> Result<(Tensor, LossParts), LossError> {
        self.compute_with_power(pred, target, None)
    }

    /// As [`Loss::compute`], with `power` `[B]` the mean power of the recording each segment
    /// was cut from ([`recording_power`]). With `esr_per_recording` set, the ESR term is then
    /// [`esr_per_recording`]; without `power` it falls back to the pooled [`esr`].
    ///
    /// # Errors
    /// As [`Loss::compute`].
    pub fn compute_with_power(
        &self,
        pred: &Tensor,
        target: &Tensor,
        power: Option<&Tensor>,
    ) -> Result<(Tensor, LossParts), LossError> {
        // Evaluate each term.
        let esr_t = match (self.cfg.esr_per_recording, power) {
            (true, Some(power)) => {
                esr_per_recording(pred, target, self.cfg.esr_pre_emphasis, power)?
            }
            _ => esr(pred, target, self.cfg.esr_pre_emphasis)?,
        };
        let l1_t = l1(pred, target)?;
        let dc_t = dc(pred, target)?;
        let mr_t = match &self.mr_stft {
            Some(loss) => Some(loss.compute(pred, target)?),
            None => None,
        };

        // Weighted sum of the terms whose weight is > 0.
        let mut total = Tensor::zeros((), pred.dtype(), pred.device())?;
        let terms = [
            (self.cfg.esr, Some(&esr_t)),
            (self.cfg.l1, Some(&l1_t)),
            (self.cfg.dc, Some(&dc_t)),
            (self.cfg.mr_stft, mr_t.as_ref()),
        ];
        for (weight, term) in terms {
            if let (true, Some(term)) = (weight > 0.0, term) {
                total = (total + (term * f64::from(weight))?)?;
            }
        }

        // Report the unweighted values.
        let value = |t: &Tensor| -> Result<f32, LossError> {
            Ok(t.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?)
        };
        let parts = LossParts {
            esr: value(&esr_t)?,
            l1: value(&l1_t)?,
            mr_stft: mr_t.as_ref().map(value).transpose()?.unwrap_or(0.0),
            dc: value(&dc_t)?,
        };
        Ok((total, parts))
    }
}

/// Error-to-signal ratio `Σ (t - p)² / (Σ t² + ε)` of one signal pair in `f64`, for evaluation
/// reports; no pre-emphasis. `ε` is [`POWER_EPS`] times the length, matching [`esr`].
///
/// # Panics
/// If the slices differ in length.
pub fn esr_f64(pred: &[f32], target: &[f32]) -> f64 {
    assert_eq!(
        pred.len(),
        target.len(),
        "esr_f64: prediction and target lengths differ"
    );
    let (mut error_energy, mut signal_energy) = (0.0f64, 0.0f64);
    for (&p, &t) in pred.iter().zip(target) {
        let (p, t) = (f64::from(p), f64::from(t));
        error_energy += (t - p) * (t - p);
        signal_energy += t * t;
    }
    error_energy / (signal_energy + POWER_EPS * pred.len() as f64)
}

#[cfg(test)]
mod tests;
