//! The correlation core: GCC-PHAT lag search, polarity and sub-sample refinement.
//!
//! Generalised cross-correlation with the phase transform (C. Knapp and G. Carter, "The
//! generalized correlation method for estimation of time delay", IEEE Trans. ASSP 24(4), 1976)
//! divides the cross-spectrum by its magnitude, so every frequency votes equally for the lag.
//! That keeps the correlation peak one sample wide even when the device distorts or filters,
//! where the plain correlation of music smears into a broad, biased hump.

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use std::ops::RangeInclusive;

/// Bins whose cross-spectrum magnitude is below this fraction of the mean magnitude are
/// attenuated rather than whitened (they carry numerical noise, not phase).
const PHAT_REGULARISATION: f64 = 1e-3;

/// Lags within this many samples of the peak count as the peak itself when looking for the
/// second-highest peak (filters and distortion widen the peak by a few samples).
const PEAK_GUARD_SAMPLES: i64 = 32;

/// The best lag of a correlation search.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LagEstimate {
    /// Lag at which `wet[n + lag]` best matches `dry[n]`.
    pub lag_samples: i64,
    /// `1 - second_peak / peak` of the |GCC-PHAT| correlation, in 0..1.
    pub confidence: f64,
    /// True if the wet signal is polarity-inverted relative to dry.
    pub inverted: bool,
    /// Sub-sample correction to `lag_samples`, in (-0.5, 0.5].
    pub fractional_samples: f64,
    /// `lag_samples` plus the unclamped sub-sample correction (filters in the device can
    /// centre their response more than half a sample away from the integer peak). Use this
    /// when comparing two estimates, as the drift measurement does.
    pub fine_lag_samples: f64,
}

/// Forward real FFT of `signal`, zero-padded to `fft_len`.
fn spectrum(
    planner: &mut RealFftPlanner<f64>,
    signal: &[f32],
    fft_len: usize,
) -> Vec<Complex<f64>> {
    let fft = planner.plan_fft_forward(fft_len);
    let mut input = fft.make_input_vec();
    for (slot, &x) in input.iter_mut().zip(signal) {
        *slot = f64::from(x);
    }
    let mut output = fft.make_output_vec();
    fft.process(&mut input, &mut output)
        .expect("buffers were made by the same plan");
    output
}

/// Index of `lag` in a circular correlation of length `fft_len`.
fn lag_index(lag: i64, fft_len: usize) -> usize {
    lag.rem_euclid(fft_len as i64) as usize
}

/// Plain (unweighted) correlation `sum dry[n] * wet[n + lag]` at one lag.
fn correlation_at(dry: &[f32], wet: &[f32], lag: i64) -> f64 {
    let (dry_start, wet_start) = if lag >= 0 {
        (0, lag as usize)
    } else {
        ((-lag) as usize, 0)
    };
    if dry_start >= dry.len() || wet_start >= wet.len() {
        return 0.0;
    }
    dry[dry_start..]
        .iter()
        .zip(&wet[wet_start..])
        .map(|(&d, &w)| f64::from(d) * f64::from(w))
        .sum()
}

/// Searches `lags` for the GCC-PHAT peak between `dry` and `wet`, where a positive lag means
/// wet is late. Returns `None` when either signal is empty or the cross-spectrum is zero
/// (nothing to correlate). Cost: three FFTs of the next power of two at or above
/// `dry.len() + wet.len()`, plus the refinement's FFTs over the overlap.
pub(crate) fn search(dry: &[f32], wet: &[f32], lags: RangeInclusive<i64>) -> Option<LagEstimate> {
    // Check sizes: a linear (not circular) correlation needs room for both signals.
    if dry.is_empty() || wet.is_empty() || lags.is_empty() {
        return None;
    }
    let fft_len = (dry.len() + wet.len()).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();

    // Cross-spectrum conj(D) W, whitened by its magnitude (the phase transform).
    let dry_spectrum = spectrum(&mut planner, dry, fft_len);
    let wet_spectrum = spectrum(&mut planner, wet, fft_len);
    let mut cross: Vec<Complex<f64>> = dry_spectrum
        .iter()
        .zip(&wet_spectrum)
        .map(|(d, w)| d.conj() * w)
        .collect();
    let mean_magnitude = cross.iter().map(|c| c.norm()).sum::<f64>() / cross.len() as f64;
    if mean_magnitude <= 0.0 || !mean_magnitude.is_finite() {
        return None;
    }
    let floor = PHAT_REGULARISATION * mean_magnitude;
    for bin in cross.iter_mut() {
        *bin /= bin.norm() + floor;
    }
    // The inverse real FFT needs purely real DC and Nyquist bins.
    let last = cross.len() - 1;
    cross[0].im = 0.0;
    cross[last].im = 0.0;

    // Back to lags; scale so a perfect match peaks at about 1.
    let ifft = planner.plan_fft_inverse(fft_len);
    let mut correlation = ifft.make_output_vec();
    ifft.process(&mut cross, &mut correlation)
        .expect("buffers were made by the same plan");
    let scale = 1.0 / fft_len as f64;

    // The peak inside the searched range.
    let (best_lag, best_value) = lags
        .clone()
        .map(|lag| (lag, correlation[lag_index(lag, fft_len)] * scale))
        .fold((*lags.start(), 0.0f64), |best, candidate| {
            if candidate.1.abs() > best.1.abs() {
                candidate
            } else {
                best
            }
        });
    if best_value == 0.0 {
        return None;
    }

    // The second peak: the largest value anywhere outside the guard band around the peak.
    let peak_index = lag_index(best_lag, fft_len) as i64;
    let fft_len_i = fft_len as i64;
    let second = correlation
        .iter()
        .enumerate()
        .filter(|(index, _)| {
            let distance = (*index as i64 - peak_index).rem_euclid(fft_len_i);
            distance.min(fft_len_i - distance) > PEAK_GUARD_SAMPLES
        })
        .map(|(_, value)| (value * scale).abs())
        .fold(0.0f64, f64::max);
    let confidence = (1.0 - second / best_value.abs()).clamp(0.0, 1.0);

    // Polarity from the plain correlation at the peak (the PHAT sign as a tie-break).
    let plain = correlation_at(dry, wet, best_lag);
    let inverted = if plain != 0.0 {
        plain < 0.0
    } else {
        best_value < 0.0
    };

    let fraction = refine(&mut planner, dry, wet, best_lag, inverted);
    Some(LagEstimate {
        lag_samples: best_lag,
        confidence,
        inverted,
        fractional_samples: clamp_fraction(fraction),
        fine_lag_samples: best_lag as f64 + fraction,
    })
}

/// Clamps a sub-sample correction into the documented half-open range (-0.5, 0.5].
fn clamp_fraction(fraction: f64) -> f64 {
    if fraction <= -0.5 {
        -0.5 + f64::EPSILON
    } else {
        fraction.min(0.5)
    }
}

/// Sub-sample delay of `wet` behind `dry` beyond the integer `lag` (unclamped; about +-1 at
/// most in practice).
///
/// Fits a line through the origin to the phase of the cross-spectrum of the overlapping,
/// integer-aligned parts, weighted by the cross-spectrum magnitude: a delay of `d` samples is a
/// phase of `-omega * d` radians. Unlike parabolic interpolation of the peak, this is unbiased
/// for band-limited (sinc-shaped) peaks. Filters in the device add their group delay.
fn refine(
    planner: &mut RealFftPlanner<f64>,
    dry: &[f32],
    wet: &[f32],
    lag: i64,
    inverted: bool,
) -> f64 {
    // The overlapping parts once the integer lag is removed.
    let (dry_start, wet_start) = if lag >= 0 {
        (0, lag as usize)
    } else {
        ((-lag) as usize, 0)
    };
    let overlap = dry
        .len()
        .saturating_sub(dry_start)
        .min(wet.len().saturating_sub(wet_start));
    if overlap < 2 {
        return 0.0;
    }
    let dry_part = &dry[dry_start..dry_start + overlap];
    let wet_part = &wet[wet_start..wet_start + overlap];

    // Weighted least squares of phase against angular frequency.
    let fft_len = (2 * overlap).next_power_of_two();
    let dry_spectrum = spectrum(planner, dry_part, fft_len);
    let wet_spectrum = spectrum(planner, wet_part, fft_len);
    let polarity = if inverted { -1.0 } else { 1.0 };
    let (mut numerator, mut denominator) = (0.0, 0.0);
    for (bin, (d, w)) in dry_spectrum.iter().zip(&wet_spectrum).enumerate().skip(1) {
        let cross = d.conj() * w * polarity;
        let omega = 2.0 * std::f64::consts::PI * bin as f64 / fft_len as f64;
        let weight = cross.norm();
        numerator += weight * omega * cross.arg();
        denominator += weight * omega * omega;
    }
    if denominator <= 0.0 {
        return 0.0;
    }
    -numerator / denominator
}
