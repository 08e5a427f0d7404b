//! Aligning a recording of the device playing the profiling stimulus, and the replicate check.

use super::{gcc, AlignError, Alignment};
use crate::stimulus::{Segment, Stimulus, SyncPosition};
use serde::{Deserialize, Serialize};

/// Longest latency [`align_capture`] looks for, in seconds: from the start of the recording to
/// the device's output of the start sync block, minus where that block sits in the stimulus.
pub const MAX_CAPTURE_LATENCY_S: f64 = 2.0;

/// Largest clock drift between player and recorder that [`align_capture`] allows for when it
/// looks for the end sync block, in parts per million (sound cards drift by well under 100).
pub const MAX_DRIFT_PPM: f64 = 1_000.0;

/// A sync block counts as found at or above this confidence (0..1). Noise and unrelated audio
/// score below 0.2; a capture through 30 dB of tanh drive, a 2 kHz low-pass and a 100 Hz
/// high-pass about 0.6; one buried 10 dB under noise about 0.45.
pub const MIN_SYNC_CONFIDENCE: f64 = 0.35;

/// Where the end sync block is looked for beyond the drift allowance, in samples either side.
const END_SEARCH_SLACK_SAMPLES: usize = 64;

/// Result of [`align_capture`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptureAlignment {
    /// Latency, polarity and confidence measured at the start sync block. Its confidence is the
    /// lower of the start and end blocks'.
    pub alignment: Alignment,
    /// Latency measured at the end sync block, in samples with fraction (not clamped to half a
    /// sample around an integer, unlike [`Alignment::fractional_samples`]).
    pub end_latency_samples: f64,
    /// Clock drift in parts per million: positive when the recording runs long (the latency
    /// grows over the capture, i.e. the recorder's clock is faster than the player's).
    pub drift_ppm: f64,
}

/// Finds `sync_block` (from the stimulus) in `window`, which starts at `window_start` in the
/// recording; returns the latency relative to `segment`'s position in the stimulus.
fn locate_sync(
    sync_block: &[f32],
    window: &[f32],
    window_start: usize,
    segment: &Segment,
    position: SyncPosition,
) -> Result<(Alignment, f64), AlignError> {
    let max_lag = window.len().saturating_sub(sync_block.len()) as i64;
    let no_sync = |confidence| AlignError::NoSync {
        position,
        confidence,
        min_confidence: MIN_SYNC_CONFIDENCE,
    };
    let estimate = gcc::search(sync_block, window, 0..=max_lag).ok_or(no_sync(0.0))?;
    if estimate.confidence < MIN_SYNC_CONFIDENCE {
        return Err(no_sync(estimate.confidence));
    }
    let latency_samples = window_start as i64 + estimate.lag_samples - segment.start_samples as i64;
    let alignment = Alignment {
        latency_samples,
        fractional_samples: estimate.fractional_samples,
        inverted: estimate.inverted,
        confidence: estimate.confidence,
    };
    let fine_latency_samples =
        latency_samples as f64 + (estimate.fine_lag_samples - estimate.lag_samples as f64);
    Ok((alignment, fine_latency_samples))
}

/// Aligns `recording` (the device's output while the stimulus played) with `stimulus`.
///
/// Looks for the start sync block within [`MAX_CAPTURE_LATENCY_S`] of its place in the
/// stimulus, then for the end sync block where the start's latency puts it, allowing
/// [`MAX_DRIFT_PPM`] of clock drift. Only those windows are correlated, so a 90 s capture at
/// 48 kHz aligns in a few tens of milliseconds.
///
/// # Errors
/// - [`AlignError::SampleRateMismatch`] if `recording_sample_rate_hz` differs from the
///   stimulus rate.
/// - [`AlignError::EmptyInput`] for an empty recording; [`AlignError::RecordingTooShort`] if it
///   ends before a sync block.
/// - [`AlignError::NoSync`] if a sync block is not found with at least
///   [`MIN_SYNC_CONFIDENCE`] (the recording is silent, noise, or unrelated audio); its message
///   tells the user what to check.
/// - [`AlignError::InconsistentSync`] if the two blocks disagree on polarity.
/// - [`AlignError::MissingSegment`] if the stimulus layout has no sync blocks.
pub fn align_capture(
    stimulus: &Stimulus,
    recording: &[f32],
    recording_sample_rate_hz: u32,
) -> Result<CaptureAlignment, AlignError> {
    // Check the inputs and find the sync blocks in the layout.
    if recording_sample_rate_hz != stimulus.sample_rate_hz {
        return Err(AlignError::SampleRateMismatch {
            recording_hz: recording_sample_rate_hz,
            stimulus_hz: stimulus.sample_rate_hz,
        });
    }
    if recording.is_empty() {
        return Err(AlignError::EmptyInput { what: "recording" });
    }
    let start = stimulus
        .sync_block(SyncPosition::Start)
        .ok_or(AlignError::MissingSegment {
            what: "start sync block",
        })?;
    let end = stimulus
        .sync_block(SyncPosition::End)
        .ok_or(AlignError::MissingSegment {
            what: "end sync block",
        })?;
    let block_len = start.len_samples;

    // Start block: from its stimulus position up to the longest latency after it.
    let max_latency_samples =
        (MAX_CAPTURE_LATENCY_S * f64::from(stimulus.sample_rate_hz)).round() as usize;
    let too_short = |needed_samples, what| AlignError::RecordingTooShort {
        recording_samples: recording.len(),
        needed_samples,
        what,
    };
    let window_end = recording.len().min(start.range().end + max_latency_samples);
    if window_end < start.range().end {
        return Err(too_short(start.range().end, "start sync block"));
    }
    let window = &recording[start.start_samples..window_end];
    let (start_alignment, start_latency) = locate_sync(
        &stimulus.samples[start.range()],
        window,
        start.start_samples,
        start,
        SyncPosition::Start,
    )?;

    // End block: where the start latency puts it, give or take the drift allowance.
    let span_samples = end.start_samples - start.start_samples;
    let margin =
        (MAX_DRIFT_PPM * 1e-6 * span_samples as f64).ceil() as usize + END_SEARCH_SLACK_SAMPLES;
    let expected = (end.start_samples as i64 + start_alignment.latency_samples).max(0) as usize;
    let window_start = expected.saturating_sub(margin);
    let window_end = recording.len().min(expected + block_len + margin);
    if window_end < window_start + block_len {
        return Err(too_short(expected + block_len, "end sync block"));
    }
    let (end_alignment, end_latency) = locate_sync(
        &stimulus.samples[end.range()],
        &recording[window_start..window_end],
        window_start,
        end,
        SyncPosition::End,
    )?;

    // Publish: polarity must agree; drift from the change of latency over the span.
    if start_alignment.inverted != end_alignment.inverted {
        return Err(AlignError::InconsistentSync {
            start_inverted: start_alignment.inverted,
            end_inverted: end_alignment.inverted,
        });
    }
    let drift_ppm = (end_latency - start_latency) / span_samples as f64 * 1e6;
    Ok(CaptureAlignment {
        alignment: Alignment {
            confidence: start_alignment.confidence.min(end_alignment.confidence),
            ..start_alignment
        },
        end_latency_samples: end_latency,
        drift_ppm,
    })
}

/// How well the device repeated itself on the two identical validation passages.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicateReport {
    /// Error-to-signal ratio `sum((second - first)^2) / sum(first^2)`: about 0 for a
    /// deterministic device; 0.01 means the copies differ by -20 dB.
    pub esr: f64,
    /// `10 log10(esr)`: level of the difference relative to the first copy, in dB, floored at
    /// -200 dB (bit-identical copies).
    pub difference_db: f64,
    /// RMS level of the first copy in the recording, in dBFS.
    pub first_rms_dbfs: f64,
    /// RMS level of the second copy in the recording, in dBFS.
    pub second_rms_dbfs: f64,
}

/// Lowest reported difference level, for bit-identical copies (ESR of 1e-20).
const DIFFERENCE_FLOOR_DB: f64 = -200.0;

/// Compares the two copies of the validation passage in `recording_aligned` (a capture already
/// passed through [`shift`](super::shift), so that its samples line up with `stimulus`).
///
/// Clock drift is not corrected: at 10 ppm the second copy is off by under 1 sample at
/// 48 kHz, which raises the ESR of bright material measurably.
/// TODO: resample the second copy by the measured drift before comparing, once `dsp` has a
/// fractional-delay resampler for it.
///
/// # Errors
/// [`AlignError::MissingSegment`] if the layout lacks a validation copy,
/// [`AlignError::RecordingTooShort`] if the recording ends before the second copy does, and
/// [`AlignError::SilentInput`] if the first copy is silent in the recording (nothing came back).
pub fn replicate_check(
    recording_aligned: &[f32],
    stimulus: &Stimulus,
) -> Result<ReplicateReport, AlignError> {
    // Find both copies and check the recording covers them.
    let first = stimulus
        .validation_copy(0)
        .ok_or(AlignError::MissingSegment {
            what: "first validation copy",
        })?;
    let second = stimulus
        .validation_copy(1)
        .ok_or(AlignError::MissingSegment {
            what: "second validation copy",
        })?;
    let needed_samples = first.range().end.max(second.range().end);
    if recording_aligned.len() < needed_samples {
        return Err(AlignError::RecordingTooShort {
            recording_samples: recording_aligned.len(),
            needed_samples,
            what: "second validation copy",
        });
    }
    let first_copy = &recording_aligned[first.range()];
    let second_copy = &recording_aligned[second.range()];

    // Energies of the first copy, the second, and their difference.
    let energy = |signal: &[f32]| signal.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    let first_energy = energy(first_copy);
    if first_energy == 0.0 {
        return Err(AlignError::SilentInput {
            what: "recording's first validation copy",
        });
    }
    let difference_energy: f64 = first_copy
        .iter()
        .zip(second_copy)
        .map(|(&a, &b)| (f64::from(b) - f64::from(a)).powi(2))
        .sum();
    let esr = difference_energy / first_energy;
    let rms_dbfs = |energy: f64, len: usize| 10.0 * (energy / len as f64).max(1e-30).log10();
    Ok(ReplicateReport {
        esr,
        difference_db: (10.0 * esr.log10()).max(DIFFERENCE_FLOOR_DB),
        first_rms_dbfs: rms_dbfs(first_energy, first_copy.len()),
        second_rms_dbfs: rms_dbfs(energy(second_copy), second_copy.len()),
    })
}
