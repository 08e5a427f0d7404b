//! Level analysis of a recording: peak, RMS, DC offset, clipping and silence.
//!
//! Levels are in dBFS relative to a full-scale DC value of 1.0, so a full-scale sine has a
//! peak of 0 dBFS and an RMS of -3.01 dBFS. A signal of all zeros is at `-inf` dBFS.

use serde::{Deserialize, Serialize};

/// A sample at or above this magnitude counts as sitting at full scale (-0.0087 dBFS).
pub const FULL_SCALE_THRESHOLD: f32 = 0.999;

/// This many consecutive samples at full scale count as clipping; shorter runs are taken to be
/// legitimate peaks.
pub const MIN_CLIPPED_RUN_SAMPLES: usize = 3;

/// A recording whose peak lies below this level counts as silent, in dBFS.
pub const SILENCE_THRESHOLD_DBFS: f64 = -80.0;

/// Levels of one mono signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelReport {
    /// Length, in seconds.
    pub duration_s: f64,
    /// Largest magnitude, in dBFS (`-inf` for silence or an empty signal).
    pub peak_dbfs: f64,
    /// Root mean square, in dBFS (`-inf` for silence or an empty signal).
    pub rms_dbfs: f64,
    /// Mean value, in full-scale units (linear, not dB).
    pub dc_offset: f64,
    /// Samples inside clipped runs.
    pub clipped_samples: usize,
    /// Clipped runs: runs of at least [`MIN_CLIPPED_RUN_SAMPLES`] consecutive samples at
    /// or above [`FULL_SCALE_THRESHOLD`] in magnitude, and any run holding a sample beyond
    /// full scale (|x| > 1).
    pub clipped_runs: usize,
}

impl LevelReport {
    /// Whether the peak lies below [`SILENCE_THRESHOLD_DBFS`].
    pub fn is_silent(&self) -> bool {
        self.peak_dbfs < SILENCE_THRESHOLD_DBFS
    }

    /// Whether any clipping was found.
    pub fn is_clipped(&self) -> bool {
        self.clipped_runs > 0
    }
}

/// Measures the levels of `samples` taken at `sample_rate_hz`.
///
/// # Panics
/// When `sample_rate_hz` is 0.
pub fn analyze(samples: &[f32], sample_rate_hz: u32) -> LevelReport {
    assert!(sample_rate_hz > 0, "sample rate must be above 0 Hz");

    // Sums in f64 so that long files keep their precision.
    let (mut peak, mut sum, mut sum_sq) = (0.0f64, 0.0f64, 0.0f64);
    for &x in samples {
        let x = f64::from(x);
        peak = peak.max(x.abs());
        sum += x;
        sum_sq += x * x;
    }
    let len = samples.len().max(1) as f64;

    // Runs of samples at full scale; a run is clipping when long enough or beyond full scale.
    let (mut clipped_samples, mut clipped_runs) = (0, 0);
    let (mut run_len, mut run_over) = (0usize, false);
    let mut close_run = |run_len: usize, run_over: bool| {
        if run_len >= MIN_CLIPPED_RUN_SAMPLES || (run_len > 0 && run_over) {
            clipped_samples += run_len;
            clipped_runs += 1;
        }
    };
    for &x in samples {
        if x.abs() >= FULL_SCALE_THRESHOLD {
            run_len += 1;
            run_over |= x.abs() > 1.0;
        } else {
            close_run(run_len, run_over);
            (run_len, run_over) = (0, false);
        }
    }
    close_run(run_len, run_over);

    LevelReport {
        duration_s: samples.len() as f64 / f64::from(sample_rate_hz),
        peak_dbfs: gain_to_db(peak),
        rms_dbfs: gain_to_db((sum_sq / len).sqrt()),
        dc_offset: sum / len,
        clipped_samples,
        clipped_runs,
    }
}

/// Whether the peak of `samples` lies below [`SILENCE_THRESHOLD_DBFS`] (an empty signal is
/// silent).
pub fn is_silent(samples: &[f32]) -> bool {
    let peak = samples.iter().fold(0.0f32, |p, &x| p.max(x.abs()));
    gain_to_db(f64::from(peak)) < SILENCE_THRESHOLD_DBFS
}

/// Decibels to a linear amplitude gain: `10^(db / 20)`.
pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// A linear amplitude gain to decibels: `20 log10(gain)`; `-inf` for 0, NaN for negative
/// gains.
pub fn gain_to_db(gain: f64) -> f64 {
    20.0 * gain.log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// `cycles` whole periods of a sine, `period_samples` samples each.
    fn sine(amplitude: f64, period_samples: usize, cycles: usize, dc: f64) -> Vec<f32> {
        (0..period_samples * cycles)
            .map(|n| (dc + amplitude * (2.0 * PI * n as f64 / period_samples as f64).sin()) as f32)
            .collect()
    }

    #[test]
    fn full_scale_sine_has_rms_of_minus_3_01_dbfs() {
        // 1 kHz at 48 kHz: 48 samples per period, 1 s.
        let report = analyze(&sine(1.0, 48, 1000, 0.0), 48_000);
        assert!((report.rms_dbfs - (-3.0103)).abs() < 1e-3, "{report:?}");
        assert!(report.peak_dbfs.abs() < 1e-6, "{report:?}");
        assert!(report.dc_offset.abs() < 1e-6);
        assert!((report.duration_s - 1.0).abs() < 1e-12);
        // A sine touches ±1 once per half period: single samples, not clipping.
        assert_eq!(report.clipped_runs, 0);
    }

    #[test]
    fn half_scale_sine_with_dc_reports_both() {
        // RMS of a sine of amplitude a on an offset d: sqrt(d^2 + a^2 / 2).
        let (a, d) = (0.5, 0.1);
        let report = analyze(&sine(a, 100, 200, d), 44_100);
        let expected_rms_db = 20.0 * (d * d + a * a / 2.0).sqrt().log10();
        assert!(
            (report.rms_dbfs - expected_rms_db).abs() < 1e-4,
            "{report:?}"
        );
        assert!((report.peak_dbfs - 20.0 * (a + d).log10()).abs() < 1e-4);
        assert!((report.dc_offset - d).abs() < 1e-6);
    }

    #[test]
    fn clipping_counts_runs_of_three_and_any_overshoot() {
        let mut x = vec![0.0f32; 100];
        // Run of 2 at full scale: a peak, not clipping.
        x[10] = 0.9995;
        x[11] = -1.0;
        // Run of 4: clipping.
        x[20..24].fill(1.0);
        // A single sample beyond full scale: clipping.
        x[50] = -1.2;
        // Run of 3 at the very end: clipping.
        x[97..].fill(-0.9999);
        let report = analyze(&x, 48_000);
        assert_eq!(report.clipped_runs, 3);
        assert_eq!(report.clipped_samples, 4 + 1 + 3);
        assert!(report.is_clipped());
    }

    #[test]
    fn silence_threshold_is_minus_80_dbfs() {
        assert!(is_silent(&[]));
        assert!(is_silent(&vec![0.0; 1000]));
        let quiet = sine(db_to_gain(-81.0), 48, 10, 0.0);
        let audible = sine(db_to_gain(-79.0), 48, 10, 0.0);
        assert!(is_silent(&quiet));
        assert!(!is_silent(&audible));
        assert!(analyze(&quiet, 48_000).is_silent());
        assert!(!analyze(&audible, 48_000).is_silent());
        let empty = analyze(&[], 48_000);
        assert_eq!(empty.peak_dbfs, f64::NEG_INFINITY);
        assert_eq!(empty.duration_s, 0.0);
    }

    #[test]
    fn db_and_gain_are_inverse() {
        assert!((db_to_gain(-6.0206) - 0.5).abs() < 1e-5);
        assert!((gain_to_db(10.0) - 20.0).abs() < 1e-12);
        for db in [-120.0, -3.0, 0.0, 12.5] {
            assert!((gain_to_db(db_to_gain(db)) - db).abs() < 1e-9);
        }
        assert_eq!(gain_to_db(0.0), f64::NEG_INFINITY);
    }
}
