//! Building blocks of the stimulus: a seeded PRNG and the signal generators (sweeps, tones,
//! noise, blips, plucked strings). All amplitudes are linear peak values (1.0 = 0 dBFS).

use std::f64::consts::PI;

/// Converts a level in dB (relative to full scale) to a linear amplitude.
pub(crate) fn db_to_amplitude(level_db: f64) -> f64 {
    10f64.powf(level_db / 20.0)
}

/// Converts a duration in seconds to a whole number of samples (rounded to nearest).
pub(crate) fn seconds_to_samples(duration_s: f64, sample_rate_hz: u32) -> usize {
    (duration_s * f64::from(sample_rate_hz)).round() as usize
}

/// A tiny permuted congruential generator (PCG32, "XSH RR" output), after M. E. O'Neill,
/// "PCG: A Family of Simple Fast Space-Efficient Statistically Good Algorithms for Random
/// Number Generation" (2014). Deterministic across platforms, which is all the stimulus needs.
#[derive(Clone, Debug)]
pub(crate) struct Pcg32 {
    state: u64,
    increment: u64,
}

impl Pcg32 {
    const MULTIPLIER: u64 = 6_364_136_223_846_793_005;

    /// A generator for `seed` on the independent sequence `stream`.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Self {
            state: 0,
            increment: (stream << 1) | 1,
        };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old
            .wrapping_mul(Self::MULTIPLIER)
            .wrapping_add(self.increment);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rotation = (old >> 59) as u32;
        xorshifted.rotate_right(rotation)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        f64::from(self.next_u32()) / 4_294_967_296.0
    }

    /// Uniform in [-1, 1).
    pub(crate) fn bipolar(&mut self) -> f64 {
        2.0 * self.unit() - 1.0
    }

    /// Uniform in [low, high).
    pub(crate) fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform index in [0, len). `len` must be non-zero.
    pub(crate) fn index(&mut self, len: usize) -> usize {
        (self.unit() * len as f64) as usize % len
    }
}

/// Multiplies the first and last `fade_samples` of `signal` by half-Hann ramps (clamped to half
/// the signal length), so that segments start and end without clicks.
pub(crate) fn apply_fades(signal: &mut [f64], fade_samples: usize) {
    let fade_samples = fade_samples.min(signal.len() / 2);
    let len = signal.len();
    for n in 0..fade_samples {
        let gain = 0.5 - 0.5 * (PI * (n as f64 + 0.5) / fade_samples as f64).cos();
        signal[n] *= gain;
        signal[len - 1 - n] *= gain;
    }
}

/// An exponential ("logarithmic") sine sweep from `start_hz` to `end_hz` over `len_samples`,
/// peak `amplitude`, with `fade_samples` half-Hann fades. Instantaneous frequency rises
/// exponentially, as in A. Farina, "Simultaneous measurement of impulse response and distortion
/// with a swept-sine technique", AES 108th Convention (2000).
pub(crate) fn exponential_sweep(
    start_hz: f64,
    end_hz: f64,
    len_samples: usize,
    amplitude: f64,
    fade_samples: usize,
    sample_rate_hz: u32,
) -> Vec<f64> {
    let duration_s = len_samples as f64 / f64::from(sample_rate_hz);
    let rate_s = duration_s / (end_hz / start_hz).ln();
    let mut sweep: Vec<f64> = (0..len_samples)
        .map(|n| {
            let t_s = n as f64 / f64::from(sample_rate_hz);
            let phase_rad = 2.0 * PI * start_hz * rate_s * ((t_s / rate_s).exp() - 1.0);
            amplitude * phase_rad.sin()
        })
        .collect();
    apply_fades(&mut sweep, fade_samples);
    sweep
}

/// A phase-continuous sine at `frequency_hz` whose peak amplitude follows `amplitudes`
/// (one value per sample; changes are abrupt, as a level step should be).
pub(crate) fn sine_with_envelope(
    frequency_hz: f64,
    amplitudes: &[f64],
    sample_rate_hz: u32,
) -> Vec<f64> {
    let step_rad = 2.0 * PI * frequency_hz / f64::from(sample_rate_hz);
    amplitudes
        .iter()
        .enumerate()
        .map(|(n, amplitude)| amplitude * (step_rad * n as f64).sin())
        .collect()
}

/// Bounded white noise with a near-Gaussian distribution (Irwin–Hall sum of four uniforms),
/// zero mean, unit RMS. Its peak never exceeds sqrt(12) (crest factor <= 10.8 dB).
pub(crate) fn white_noise(len_samples: usize, rng: &mut Pcg32) -> Vec<f64> {
    // The sum of four uniforms in [-1, 1) has variance 4/3.
    let unit_rms_gain = (3.0f64 / 4.0).sqrt();
    (0..len_samples)
        .map(|_| {
            let sum: f64 = (0..4).map(|_| rng.bipolar()).sum();
            sum * unit_rms_gain
        })
        .collect()
}

/// Pink-ish noise: white noise through P. Kellet's three-pole "economy" pinking filter
/// (about -3 dB/octave from roughly 50 Hz to 15 kHz at 44.1–48 kHz), then scaled to unit RMS.
pub(crate) fn pink_noise(len_samples: usize, rng: &mut Pcg32) -> Vec<f64> {
    let white = white_noise(len_samples, rng);
    let (mut b0, mut b1, mut b2) = (0.0, 0.0, 0.0);
    let mut pink: Vec<f64> = white
        .iter()
        .map(|&w| {
            b0 = 0.99765 * b0 + w * 0.099_046;
            b1 = 0.963 * b1 + w * 0.296_516_4;
            b2 = 0.57 * b2 + w * 1.052_691_3;
            b0 + b1 + b2 + w * 0.1848
        })
        .collect();
    let mean = pink.iter().sum::<f64>() / len_samples.max(1) as f64;
    pink.iter_mut().for_each(|x| *x -= mean);
    let rms = rms(&pink);
    if rms > 0.0 {
        pink.iter_mut().for_each(|x| *x /= rms);
    }
    pink
}

/// Root-mean-square value of `signal` (0 for an empty slice).
pub(crate) fn rms(signal: &[f64]) -> f64 {
    if signal.is_empty() {
        return 0.0;
    }
    (signal.iter().map(|x| x * x).sum::<f64>() / signal.len() as f64).sqrt()
}

/// Largest absolute sample of `signal`.
pub(crate) fn peak(signal: &[f64]) -> f64 {
    signal.iter().fold(0.0, |acc: f64, x| acc.max(x.abs()))
}

/// A Ricker ("Mexican hat") wavelet centred in a buffer of `len_samples`: a sharp, zero-mean,
/// broadband click whose spectrum peaks at `peak_hz`, with peak `amplitude`.
pub(crate) fn ricker_blip(
    peak_hz: f64,
    amplitude: f64,
    len_samples: usize,
    sample_rate_hz: u32,
) -> Vec<f64> {
    // The Ricker spectrum peaks at sqrt(2) / (2 pi sigma).
    let sigma_samples = f64::from(sample_rate_hz) * 2f64.sqrt() / (2.0 * PI * peak_hz);
    let centre = (len_samples / 2) as f64;
    (0..len_samples)
        .map(|n| {
            let u = (n as f64 - centre) / sigma_samples;
            amplitude * (1.0 - u * u) * (-0.5 * u * u).exp()
        })
        .collect()
}

/// Settings of one Karplus–Strong plucked note.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pluck {
    /// Fundamental in Hz; the period is rounded to whole samples.
    pub frequency_hz: f64,
    /// Initial peak level of the excitation (linear).
    pub amplitude: f64,
    /// Time for the string to decay by 60 dB, in seconds.
    pub decay_t60_s: f64,
    /// Excitation brightness in (0, 1]: 1 = white burst, smaller = duller pluck.
    pub brightness: f64,
    /// How long the note sounds before it is damped, in samples.
    pub len_samples: usize,
}

/// Adds a Karplus–Strong plucked string (K. Karplus and A. Strong, "Digital Synthesis of
/// Plucked-String and Drum Timbres", Computer Music Journal 7(2), 1983) to `out` from
/// `start_samples` on. A 10 ms release ramp damps the note at its end; samples beyond `out`
/// are dropped.
pub(crate) fn add_pluck(
    out: &mut [f64],
    start_samples: usize,
    pluck: &Pluck,
    sample_rate_hz: u32,
    rng: &mut Pcg32,
) {
    // Read parameters: the delay line is one period long.
    let sample_rate = f64::from(sample_rate_hz);
    let period_samples = ((sample_rate / pluck.frequency_hz).round() as usize).max(2);
    let loss_per_pass =
        10f64.powf(-3.0 * period_samples as f64 / (pluck.decay_t60_s * sample_rate));
    let release_samples = seconds_to_samples(0.010, sample_rate_hz).max(1);

    // Excite the string with a low-passed, zero-mean noise burst.
    let mut line: Vec<f64> = Vec::with_capacity(period_samples);
    let mut smoothed = 0.0;
    for _ in 0..period_samples {
        smoothed += pluck.brightness * (rng.bipolar() - smoothed);
        line.push(smoothed);
    }
    let mean = line.iter().sum::<f64>() / period_samples as f64;
    line.iter_mut().for_each(|x| *x -= mean);
    let excitation_peak = peak(&line);
    if excitation_peak > 0.0 {
        line.iter_mut()
            .for_each(|x| *x *= pluck.amplitude / excitation_peak);
    }

    // Run the loop: averaging neighbours is the string's loss filter.
    let end = out.len().min(start_samples + pluck.len_samples);
    let mut index = 0;
    for (offset, sample) in out[start_samples.min(end)..end].iter_mut().enumerate() {
        let next = (index + 1) % period_samples;
        let value = line[index];
        line[index] = loss_per_pass * 0.5 * (value + line[next]);
        index = next;
        let remaining = pluck.len_samples - offset;
        let release_gain = (remaining as f64 / release_samples as f64).min(1.0);
        *sample += value * release_gain;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcg_is_deterministic_and_roughly_uniform() {
        let mut a = Pcg32::new(42, 7);
        let mut b = Pcg32::new(42, 7);
        let draws: Vec<f64> = (0..10_000).map(|_| a.unit()).collect();
        assert!(draws.iter().all(|&x| x == b.unit()));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        // Standard error of the mean of U(0,1) over 10k draws is 0.0029.
        assert!((mean - 0.5).abs() < 0.015, "mean {mean}");
        assert!(draws.iter().all(|&x| (0.0..1.0).contains(&x)));
    }

    #[test]
    fn sweep_instantaneous_frequency_ends_at_end_hz() {
        let sample_rate_hz = 48_000;
        let sweep = exponential_sweep(20.0, 2_000.0, 48_000, 0.5, 0, sample_rate_hz);
        // The last 480 samples are the last 1/100 of the sweep: the frequency rises by
        // 100^(1/100) = 1.047 to 2 kHz there, about 1977 Hz on average, so a tone would cross
        // zero 2 * 1977 Hz * 10 ms = 39.5 times.
        let tail = &sweep[48_000 - 480..];
        let crossings = tail.windows(2).filter(|w| w[0] * w[1] < 0.0).count();
        assert!((38..=41).contains(&crossings), "{crossings} crossings");
        assert!((peak(&sweep) - 0.5).abs() < 1e-3);
    }

    #[test]
    fn white_noise_has_unit_rms_and_bounded_peak() {
        let noise = white_noise(100_000, &mut Pcg32::new(1, 1));
        assert!((rms(&noise) - 1.0).abs() < 0.02, "rms {}", rms(&noise));
        assert!(peak(&noise) <= 12f64.sqrt());
    }

    #[test]
    fn pluck_decays_by_about_t60() {
        let sample_rate_hz = 48_000;
        let mut out = vec![0.0; 96_000];
        let pluck = Pluck {
            frequency_hz: 220.0,
            amplitude: 1.0,
            decay_t60_s: 1.0,
            brightness: 1.0,
            len_samples: 96_000,
        };
        add_pluck(&mut out, 0, &pluck, sample_rate_hz, &mut Pcg32::new(3, 0));
        // The averaging filter also damps upper partials, so the level one T60 later is at
        // least 60 dB down; compare the RMS of 50 ms windows at 0.1 s and 1.1 s.
        let early = rms(&out[4_800..7_200]);
        let late = rms(&out[52_800..55_200]);
        let drop_db = 20.0 * (early / late).log10();
        assert!((55.0..90.0).contains(&drop_db), "drop {drop_db} dB");
    }
}
