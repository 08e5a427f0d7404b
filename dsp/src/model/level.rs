//! The level detector that feeds a recurrent network the input's level (see
//! [`RecurrentNet::level_input_samples`](super::RecurrentNet::level_input_samples)).
//!
//! Training and the real-time engine both run this code, sample by sample in order and in
//! `f32`, so the feature is bit-identical between them.

use super::tvfilm::{level_from_power, LEVEL_FLOOR_POWER};

/// Below this power the detector's state snaps to zero: a thousandth of the feature's floor,
/// so the feature is unchanged, and the state never decays into subnormal numbers.
const SNAP_POWER: f32 = LEVEL_FLOOR_POWER * 1e-3;

/// Mean-square level of a signal, smoothed by a one-pole low-pass, as a feature in `0..=1`
/// ([`level_from_power`]: 0 at -100 dBFS RMS and below, 1 at 0 dBFS).
///
/// `p[n] = p[n-1] + a (x[n]^2 - p[n-1])` with `a = 1 - exp(-1 / tau)`, `tau` the time
/// constant in samples, and the feature `level_from_power(p[n])`.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelDetector {
    coeff: f32,
    power: f32,
}

impl LevelDetector {
    /// A detector with a time constant of `tau_samples` (at least 1), starting from silence.
    pub fn new(tau_samples: f32) -> Self {
        let tau = f64::from(tau_samples).max(1.0);
        Self {
            coeff: (1.0 - (-1.0 / tau).exp()) as f32,
            power: 0.0,
        }
    }

    /// Takes sample `x` and returns the level feature after it.
    #[inline]
    pub fn next(&mut self, x: f32) -> f32 {
        self.power += self.coeff * (x * x - self.power);
        if self.power < SNAP_POWER {
            self.power = 0.0;
        }
        level_from_power(self.power, 1)
    }

    /// The smoothed mean-square level (the detector's state).
    pub fn power(&self) -> f32 {
        self.power
    }

    /// Sets the state, e.g. to carry it from one training segment to the next.
    pub fn set_power(&mut self, power: f32) {
        self.power = if power.is_finite() {
            power.max(0.0)
        } else {
            0.0
        };
    }

    /// Back to silence.
    pub fn reset(&mut self) {
        self.power = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_sine_reads_its_rms_level() {
        // A sine's RMS is 3.01 dB below its peak. With a time constant of 96 samples (2 ms at
        // 48 kHz) the 1 kHz ripple of x^2 is about 1 / (2 pi 2 ms 2 kHz) = 4 % of the
        // mean, i.e. +-0.17 dB, after a settling of many time constants.
        let fs = 48_000;
        let mut det = LevelDetector::new(96.0);
        let amplitude = 10f32.powf(-12.0 / 20.0);
        let mut levels = Vec::new();
        for n in 0..fs as usize / 2 {
            let x = amplitude * (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / fs as f32).sin();
            levels.push(det.next(x));
        }
        let tail = &levels[levels.len() - 480..];
        let expected = 1.0 + (-12.0 - 3.0103) / 100.0;
        for &lv in tail {
            assert!((lv - expected).abs() < 0.25 / 100.0, "{lv} vs {expected}");
        }
    }

    #[test]
    fn time_constant_sets_the_step_response() {
        // After one time constant a step of power 1 has risen to 1 - 1/e of it.
        let mut det = LevelDetector::new(480.0);
        for _ in 0..480 {
            det.next(1.0);
        }
        let expected = 1.0 - (-1.0f32).exp();
        assert!((det.power() - expected).abs() < 2e-3, "{}", det.power());
    }

    #[test]
    fn silence_decays_to_exact_zero_without_subnormals() {
        let mut det = LevelDetector::new(48.0);
        det.next(1.0);
        for _ in 0..48_000 {
            let lv = det.next(0.0);
            assert!(det.power() == 0.0 || det.power().is_normal());
            assert!(lv >= 0.0);
        }
        assert_eq!(det.power(), 0.0);
        assert_eq!(det.next(0.0), 0.0);
    }
}
