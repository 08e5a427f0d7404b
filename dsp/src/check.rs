//! Loading and checking one dry/wet pair of a dataset: the single place where recordings are
//! read, compared, aligned and judged, for `fxtwin dataset check` and for training alike.

use std::path::PathBuf;

use serde::Serialize;

use crate::align::{self, Alignment};
use crate::audio::{self, AudioError};
use crate::dataset::Manifest;
use crate::levels::{self, LevelReport};

/// Longest latency searched for in an ordinary dry/wet pair, in seconds. Captures made with
/// fxtwin's stimulus are aligned on their sync blocks instead and may lag more.
pub const MAX_PAIR_LATENCY_S: f64 = 0.2;
/// Dry and wet lengths may differ by this much (latency, tails) before the pair is refused.
pub const MAX_LENGTH_MISMATCH_S: f64 = 1.0;
/// Below this alignment confidence the check warns that the latency may be wrong.
pub const LOW_CONFIDENCE: f64 = 0.3;

/// A pair loaded at the model rate, wet aligned onto dry, both the same length.
pub struct PreparedPair {
    pub dry: Vec<f32>,
    pub wet: Vec<f32>,
    pub report: PairReport,
}

/// What `fxtwin dataset check` prints for a pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairReport {
    pub dry_path: PathBuf,
    pub wet_path: PathBuf,
    /// Knob values in the manifest's knob order.
    pub knob_values: Vec<f64>,
    pub dry_levels: LevelReport,
    pub wet_levels: LevelReport,
    /// Latency of wet behind dry in samples at the model rate (integer part used to align).
    pub latency_samples: i64,
    /// Sub-sample estimate of the latency, in samples.
    pub latency_fine_samples: f64,
    pub inverted: bool,
    /// 0..1: how sure the alignment is.
    pub confidence: f64,
    /// Whether the latency came from the manifest rather than estimation.
    pub latency_from_manifest: bool,
    /// ESR between the two copies of the stimulus' validation segment (captures only): how
    /// repeatable the device is. Near 0 for a deterministic effect.
    pub replicate_esr: Option<f64>,
    /// Clock drift between playback and recording, in parts per million (captures only).
    pub drift_ppm: Option<f64>,
    /// Plain-language warnings for the user.
    pub warnings: Vec<String>,
}

/// A pair that cannot be used for training.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(
        "{dry} is {dry_hz} Hz but {wet} is {wet_hz} Hz: a dry/wet pair must be recorded at one \
         sample rate"
    )]
    RateMismatch {
        dry: PathBuf,
        dry_hz: u32,
        wet: PathBuf,
        wet_hz: u32,
    },
    #[error(
        "{dry} lasts {dry_s:.2} s but {wet} lasts {wet_s:.2} s: the files of a pair must cover the \
         same take (they may differ by at most {MAX_LENGTH_MISMATCH_S} s)"
    )]
    LengthMismatch {
        dry: PathBuf,
        dry_s: f64,
        wet: PathBuf,
        wet_s: f64,
    },
    #[error("{path} is silent (peak {peak_dbfs:.1} dBFS): nothing to learn from")]
    Silent { path: PathBuf, peak_dbfs: f64 },
    #[error("{wet}: cannot align with {dry}: {source}")]
    Align {
        dry: PathBuf,
        wet: PathBuf,
        source: align::AlignError,
    },
}

/// Loads pair `index` of `manifest` at the manifest's model rate, checks it and aligns it.
pub fn prepare_pair(manifest: &Manifest, index: usize) -> Result<PreparedPair, CheckError> {
    let pair = &manifest.pairs[index];
    let (dry_path, wet_path) = manifest.pair_paths(index);
    let rate = manifest.device.sample_rate_hz;
    let channel = pair.channel;

    // Read both files and compare their formats before resampling.
    let dry_raw = audio::read_audio(&dry_path, channel)?;
    let wet_raw = audio::read_audio(&wet_path, channel)?;
    if dry_raw.sample_rate_hz != wet_raw.sample_rate_hz {
        return Err(CheckError::RateMismatch {
            dry: dry_path,
            dry_hz: dry_raw.sample_rate_hz,
            wet: wet_path,
            wet_hz: wet_raw.sample_rate_hz,
        });
    }
    let (dry_s, wet_s) = (dry_raw.duration_s(), wet_raw.duration_s());
    if (dry_s - wet_s).abs() > MAX_LENGTH_MISMATCH_S {
        return Err(CheckError::LengthMismatch {
            dry: dry_path,
            dry_s,
            wet: wet_path,
            wet_s,
        });
    }
    let dry = audio::resample(&dry_raw.samples, dry_raw.sample_rate_hz, rate)?;
    let wet = audio::resample(&wet_raw.samples, wet_raw.sample_rate_hz, rate)?;

    // Levels; a silent file is useless.
    let dry_levels = levels::analyze(&dry, rate);
    let wet_levels = levels::analyze(&wet, rate);
    for (path, lv) in [(&dry_path, &dry_levels), (&wet_path, &wet_levels)] {
        if lv.is_silent() {
            return Err(CheckError::Silent {
                path: path.clone(),
                peak_dbfs: lv.peak_dbfs,
            });
        }
    }

    // Alignment: from the manifest, from the capture's sync blocks, or by correlation.
    let align_err = |source| CheckError::Align {
        dry: dry_path.clone(),
        wet: wet_path.clone(),
        source,
    };
    let mut warnings = Vec::new();
    let (alignment, replicate_esr, drift_ppm, from_manifest) =
        if let Some(latency) = pair.latency_samples {
            let a = Alignment {
                latency_samples: latency,
                fractional_samples: 0.0,
                inverted: false,
                confidence: 1.0,
            };
            (a, None, None, true)
        } else if pair.capture {
            // The dry file of a capture is fxtwin's stimulus; its layout says where the sync
            // blocks and the repeated validation segment are.
            let stim = crate::stimulus::generate(rate);
            let cap = align::align_capture(&stim, &wet, rate).map_err(align_err)?;
            let aligned = align::shift(&wet, cap.alignment.latency_samples, cap.alignment.inverted);
            let rep = align::replicate_check(&aligned, &stim).map_err(align_err)?;
            (cap.alignment, Some(rep.esr), Some(cap.drift_ppm), false)
        } else {
            let max_lag = (MAX_PAIR_LATENCY_S * rate as f64) as usize;
            let a = align::estimate_latency(&dry, &wet, max_lag).map_err(align_err)?;
            (a, None, None, false)
        };

    // Plain-language warnings.
    if alignment.confidence < LOW_CONFIDENCE {
        warnings.push(format!(
            "alignment confidence is low ({:.2}); if the latency of {} samples looks wrong, \
             set latency_samples for this pair in the manifest",
            alignment.confidence, alignment.latency_samples
        ));
    }
    for (name, lv) in [("dry", &dry_levels), ("wet", &wet_levels)] {
        if lv.clipped_samples > 0 {
            warnings.push(format!(
                "{name} file clips ({} samples at full scale): lower the level and record again",
                lv.clipped_samples
            ));
        }
        if lv.peak_dbfs < -40.0 {
            warnings.push(format!(
                "{name} file is very quiet (peak {:.1} dBFS): raise the level",
                lv.peak_dbfs
            ));
        }
    }
    if alignment.inverted {
        warnings.push(
            "wet is polarity-inverted against dry; the model will learn the inversion".into(),
        );
    }
    if let Some(esr) = replicate_esr {
        if esr > 0.01 {
            warnings.push(format!(
                "the two copies of the validation segment differ (ESR {esr:.4}): the device is \
                 noisy or time-varying, expect a higher validation error"
            ));
        }
    }

    // Apply the alignment and trim to a common length.
    let mut wet = align::shift(&wet, alignment.latency_samples, alignment.inverted);
    let len = dry.len().min(wet.len());
    let mut dry = dry;
    dry.truncate(len);
    wet.truncate(len);

    let report = PairReport {
        dry_path,
        wet_path,
        knob_values: pair.knob_values(&manifest.knobs),
        dry_levels,
        wet_levels,
        latency_samples: alignment.latency_samples,
        latency_fine_samples: alignment.latency_samples as f64 + alignment.fractional_samples,
        inverted: alignment.inverted,
        confidence: alignment.confidence,
        latency_from_manifest: from_manifest,
        replicate_esr,
        drift_ppm,
        warnings,
    };
    Ok(PreparedPair { dry, wet, report })
}
