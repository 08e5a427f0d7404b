//! Latency, polarity and clock drift between a dry signal and the device's (wet) output.
//!
//! - [`estimate_latency`] aligns any dry/wet pair by GCC-PHAT cross-correlation (robust to
//!   heavy distortion and filtering) and refines the lag to a fraction of a sample.
//! - [`align_capture`] aligns a recording of the device playing the profiling
//!   [`Stimulus`](crate::stimulus::Stimulus): it correlates only the start and end sync blocks,
//!   so a 90 s capture aligns in a few tens of milliseconds, and gives the clock drift.
//! - [`replicate_check`] compares the two copies of the stimulus' validation passage in an
//!   aligned recording: a deterministic device repeats itself, a noisy or time-varying one
//!   does not.
//! - [`shift`] applies an alignment, so that wet lines up with dry sample for sample.
//!
//! Sign convention everywhere: a latency of `L` samples means `wet[n + L]` corresponds to
//! `dry[n]` (the wet signal is late by `L`).

mod capture;
mod gcc;
#[cfg(test)]
mod tests;

pub use capture::{
    align_capture, replicate_check, CaptureAlignment, ReplicateReport, MAX_CAPTURE_LATENCY_S,
    MAX_DRIFT_PPM, MIN_SYNC_CONFIDENCE,
};

use crate::stimulus::SyncPosition;
use serde::{Deserialize, Serialize};

/// How a wet signal lines up with its dry signal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alignment {
    /// Whole samples by which wet lags dry (>= 0 from [`estimate_latency`]).
    pub latency_samples: i64,
    /// Sub-sample part of the latency, in (-0.5, 0.5]: the full estimate is
    /// `latency_samples as f64 + fractional_samples`. Filters in the device add their group
    /// delay here, so read it as "where the device's response is centred".
    pub fractional_samples: f64,
    /// True if the device inverts polarity (wet is best matched by `-dry`).
    pub inverted: bool,
    /// How clearly the correlation peak stands out, 0..1: `1 - second_peak / peak` of the
    /// whitened correlation. Near 1 for a clean match, near 0 for unrelated signals; values
    /// below about 0.5 deserve a look.
    pub confidence: f64,
}

/// Why an alignment could not be made. Messages name the signal or the segment and say what to
/// do about it.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AlignError {
    /// A signal has no samples.
    #[error("the {what} signal is empty, so there is nothing to align")]
    EmptyInput {
        /// Which signal: "dry", "wet", "recording".
        what: &'static str,
    },
    /// A signal is all zeros, or the two signals share no spectrum at all.
    #[error("the {what} signal is silent (every sample is zero), so there is nothing to align")]
    SilentInput {
        /// Which signal: "dry", "wet", "recording".
        what: &'static str,
    },
    /// A sync block of the stimulus could not be found in the recording.
    #[error(
        "no sync blips found at the {position} of the recording (match confidence \
         {confidence:.2}, needs {min_confidence:.2}): {}",
        sync_advice(*.position)
    )]
    NoSync {
        /// Which sync block was missing.
        position: SyncPosition,
        /// The best confidence found, 0..1.
        confidence: f64,
        /// The confidence required ([`MIN_SYNC_CONFIDENCE`]).
        min_confidence: f64,
    },
    /// The start and end sync blocks disagree on polarity.
    #[error(
        "the sync blocks disagree on polarity (start inverted: {start_inverted}, end inverted: \
         {end_inverted}): the device or the routing changed during the capture; record it again"
    )]
    InconsistentSync {
        /// Polarity found at the start block.
        start_inverted: bool,
        /// Polarity found at the end block.
        end_inverted: bool,
    },
    /// The recording ends before a part of the stimulus that is needed.
    #[error(
        "the recording is {recording_samples} samples long but needs at least {needed_samples} \
         to reach the {what} of the stimulus: keep recording until the stimulus has finished"
    )]
    RecordingTooShort {
        /// Length of the recording.
        recording_samples: usize,
        /// Length it would need.
        needed_samples: usize,
        /// The part of the stimulus that is cut off.
        what: &'static str,
    },
    /// The recording and the stimulus have different sample rates.
    #[error(
        "the recording is at {recording_hz} Hz but the stimulus at {stimulus_hz} Hz: resample \
         the recording (or generate the stimulus at the recording's rate) first"
    )]
    SampleRateMismatch {
        /// Sample rate of the recording.
        recording_hz: u32,
        /// Sample rate of the stimulus.
        stimulus_hz: u32,
    },
    /// The stimulus layout lacks a segment that alignment needs.
    #[error("the stimulus layout has no {what}; was the stimulus made by stimulus::generate?")]
    MissingSegment {
        /// The missing segment, e.g. "start sync block".
        what: &'static str,
    },
}

/// What to tell the user when a sync block is missing.
fn sync_advice(position: SyncPosition) -> &'static str {
    match position {
        SyncPosition::Start => {
            "check that the device's output was recorded, raise the return level, and make \
             sure the stimulus was played from its start"
        }
        SyncPosition::End => {
            "the start was found, so keep recording until the stimulus has finished, and check \
             that the device's output level did not drop during the capture"
        }
    }
}

/// Estimates how many samples `wet` lags `dry`, searching lags `0..=max_lag_samples`, and
/// whether the device inverts polarity.
///
/// Uses GCC-PHAT (whitened cross-correlation), which keeps the exact integer lag through heavy
/// distortion (tanh, hard clipping), filtering and inversion; the fraction comes from the
/// cross-spectrum's phase slope. Works best with music-like or broadband material of at least
/// a few thousand samples. Costs a few FFTs of the next power of two at or above
/// `dry.len() + wet.len()`; for stimulus captures use [`align_capture`], which only looks at the
/// sync blocks.
///
/// A weak match is not an error: check [`Alignment::confidence`].
///
/// # Errors
/// [`AlignError::EmptyInput`] if either signal is empty, [`AlignError::SilentInput`] if either
/// is all zeros.
pub fn estimate_latency(
    dry: &[f32],
    wet: &[f32],
    max_lag_samples: usize,
) -> Result<Alignment, AlignError> {
    // Check the inputs.
    for (what, signal) in [("dry", dry), ("wet", wet)] {
        if signal.is_empty() {
            return Err(AlignError::EmptyInput { what });
        }
        if signal.iter().all(|&x| x == 0.0) {
            return Err(AlignError::SilentInput { what });
        }
    }

    // Search non-negative lags that still leave some overlap.
    let max_lag = max_lag_samples.min(wet.len() - 1) as i64;
    let estimate =
        gcc::search(dry, wet, 0..=max_lag).ok_or(AlignError::SilentInput { what: "wet" })?;
    Ok(Alignment {
        latency_samples: estimate.lag_samples,
        fractional_samples: estimate.fractional_samples,
        inverted: estimate.inverted,
        confidence: estimate.confidence,
    })
}

/// Removes a latency (and an inversion) from `wet`, so that the result lines up with dry.
///
/// Returns a signal of `wet.len()` samples: `out[n] = ±wet[n + latency_samples]`, zero-padded
/// at the end. A negative latency delays instead, zero-padding at the start. Only the integer
/// latency is applied; sub-sample alignment is left to the caller.
pub fn shift(wet: &[f32], latency_samples: i64, inverted: bool) -> Vec<f32> {
    let polarity = if inverted { -1.0 } else { 1.0 };
    let len = wet.len();
    let mut out = vec![0.0f32; len];
    let offset = latency_samples.unsigned_abs().min(len as u64) as usize;
    if latency_samples >= 0 {
        for (slot, &x) in out.iter_mut().zip(&wet[offset..]) {
            *slot = polarity * x;
        }
    } else {
        for (slot, &x) in out[offset..].iter_mut().zip(wet) {
            *slot = polarity * x;
        }
    }
    out
}
