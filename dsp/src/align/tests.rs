//! Acceptance tests of alignment: exact integer latency and polarity through distortion and
//! filtering, sub-sample accuracy, capture alignment, and the replicate check.

use super::*;
use crate::stimulus::{self, music, SyncPosition};
use std::f64::consts::PI;

const SAMPLE_RATE_HZ: u32 = 48_000;

/// One second of seeded music, normalised so that its loudest sample is at 0.9.
fn dry_music(seed: u64) -> Vec<f32> {
    // Skip the quiet opening bars of the piece: start 6 s in, where the bars are loud.
    let piece = music(SAMPLE_RATE_HZ, 7 * 48_000, seed, -1.0);
    let excerpt = &piece[6 * 48_000..];
    let peak = excerpt.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    excerpt.iter().map(|&x| 0.9 * x / peak).collect()
}

/// `x` delayed by `delay_samples` (zeros in front), same length.
fn delay(x: &[f32], delay_samples: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    out[delay_samples..].copy_from_slice(&x[..x.len() - delay_samples]);
    out
}

/// tanh saturation with `drive_db` of gain before it.
fn tanh_drive(x: &[f32], drive_db: f64) -> Vec<f32> {
    let gain = 10f64.powf(drive_db / 20.0);
    x.iter()
        .map(|&v| (gain * f64::from(v)).tanh() as f32)
        .collect()
}

/// Hard clipping at `ceiling` (linear).
fn hard_clip(x: &[f32], ceiling: f32) -> Vec<f32> {
    x.iter().map(|&v| v.clamp(-ceiling, ceiling)).collect()
}

/// One-pole low-pass at `cutoff_hz` (impulse-invariant pole), unity gain at DC.
fn low_pass(x: &[f32], cutoff_hz: f64) -> Vec<f32> {
    let pole = (-2.0 * PI * cutoff_hz / f64::from(SAMPLE_RATE_HZ)).exp();
    let mut state = 0.0;
    x.iter()
        .map(|&v| {
            state += (1.0 - pole) * (f64::from(v) - state);
            state as f32
        })
        .collect()
}

/// One-pole (RC) high-pass at `cutoff_hz`.
fn high_pass(x: &[f32], cutoff_hz: f64) -> Vec<f32> {
    let pole = (-2.0 * PI * cutoff_hz / f64::from(SAMPLE_RATE_HZ)).exp();
    let (mut previous_in, mut state) = (0.0, 0.0);
    x.iter()
        .map(|&v| {
            let v = f64::from(v);
            state = pole * (state + v - previous_in);
            previous_in = v;
            state as f32
        })
        .collect()
}

/// `x` delayed by a fractional `delay_samples` with a Hann-windowed sinc (21 taps).
fn fractional_delay(x: &[f32], delay_samples: f64) -> Vec<f32> {
    let half_width = 10.5;
    let taps: Vec<f64> = (0..=(delay_samples + half_width).ceil() as usize)
        .map(|k| {
            let t = k as f64 - delay_samples;
            if t.abs() >= half_width {
                return 0.0;
            }
            let sinc = if t == 0.0 {
                1.0
            } else {
                (PI * t).sin() / (PI * t)
            };
            sinc * (0.5 + 0.5 * (PI * t / half_width).cos())
        })
        .collect();
    (0..x.len())
        .map(|n| {
            taps.iter()
                .enumerate()
                .filter(|(k, _)| *k <= n)
                .map(|(k, h)| h * f64::from(x[n - k]))
                .sum::<f64>() as f32
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Device {
    Tanh,
    HardClip,
    Filters,
    TanhThenFilters,
}

fn process(device: Device, x: &[f32]) -> Vec<f32> {
    let filters = |x: &[f32]| high_pass(&low_pass(x, 2_000.0), 100.0);
    match device {
        Device::Tanh => tanh_drive(x, 30.0),
        Device::HardClip => hard_clip(x, 0.1),
        Device::Filters => filters(x),
        Device::TanhThenFilters => filters(&tanh_drive(x, 30.0)),
    }
}

#[test]
fn exact_latency_and_polarity_through_distortion_and_filters() {
    let dry = dry_music(11);
    for device in [
        Device::Tanh,
        Device::HardClip,
        Device::Filters,
        Device::TanhThenFilters,
    ] {
        let processed = process(device, &dry);
        for delay_samples in [0, 1, 33, 220, 4_800] {
            for inverted in [false, true] {
                let sign = if inverted { -1.0 } else { 1.0 };
                let wet: Vec<f32> = delay(&processed, delay_samples)
                    .iter()
                    .map(|&v| sign * v)
                    .collect();
                let alignment =
                    estimate_latency(&dry, &wet, 8_192).expect("signals are not silent");
                let case = format!("{device:?}, {delay_samples} samples, inverted {inverted}");
                assert_eq!(alignment.latency_samples, delay_samples as i64, "{case}");
                assert_eq!(alignment.inverted, inverted, "{case}");
                assert!(
                    alignment.confidence > 0.3,
                    "{case}: confidence {}",
                    alignment.confidence
                );
            }
        }
    }
}

#[test]
fn fractional_delay_is_recovered_within_a_tenth_of_a_sample() {
    let dry = dry_music(12);
    for (delay_samples, whole, fraction) in [(10.3, 10, 0.3), (32.75, 33, -0.25)] {
        let wet = fractional_delay(&dry, delay_samples);
        let alignment = estimate_latency(&dry, &wet, 1_000).expect("signals are not silent");
        assert_eq!(alignment.latency_samples, whole, "delay {delay_samples}");
        assert!(
            (alignment.fractional_samples - fraction).abs() < 0.1,
            "delay {delay_samples}: fraction {}",
            alignment.fractional_samples
        );
        assert!(!alignment.inverted);
    }
}

#[test]
fn estimate_latency_refuses_empty_and_silent_input() {
    let dry = dry_music(13);
    assert_eq!(
        estimate_latency(&dry, &[], 10),
        Err(AlignError::EmptyInput { what: "wet" })
    );
    assert_eq!(
        estimate_latency(&vec![0.0; 1_000], &dry, 10),
        Err(AlignError::SilentInput { what: "dry" })
    );
}

#[test]
fn shift_removes_latency_and_inversion() {
    let wet = [0.0, 0.0, 1.0, 2.0, 3.0];
    assert_eq!(shift(&wet, 2, true), vec![-1.0, -2.0, -3.0, 0.0, 0.0]);
    assert_eq!(shift(&wet, -1, false), vec![0.0, 0.0, 0.0, 1.0, 2.0]);
    assert_eq!(shift(&wet, 9, false), vec![0.0; 5]);
}

/// The stimulus through `device`, optionally inverted, delayed by `delay_samples`, plus seeded
/// noise at about -95 dBFS RMS.
fn capture(
    stimulus: &stimulus::Stimulus,
    device: Device,
    delay_samples: usize,
    inverted: bool,
) -> Vec<f32> {
    let sign = if inverted { -1.0 } else { 1.0 };
    let mut rng = crate::stimulus::test_noise(7);
    let mut recording = vec![0.0f32; delay_samples];
    recording.extend(process(device, &stimulus.samples).iter().map(|&v| sign * v));
    recording.iter_mut().for_each(|v| *v += 3e-5 * rng());
    recording
}

#[test]
fn capture_alignment_finds_latency_and_no_drift_through_distortion() {
    let stimulus = stimulus::generate(SAMPLE_RATE_HZ);
    for (device, inverted) in [(Device::Tanh, false), (Device::TanhThenFilters, true)] {
        let recording = capture(&stimulus, device, 220, inverted);
        let result = align_capture(&stimulus, &recording, SAMPLE_RATE_HZ).expect("sync found");
        let case = format!("{device:?}, inverted {inverted}: {result:?}");
        assert_eq!(result.alignment.latency_samples, 220, "{case}");
        assert_eq!(result.alignment.inverted, inverted, "{case}");
        assert!(
            result.alignment.confidence > MIN_SYNC_CONFIDENCE + 0.1,
            "{case}"
        );
        // 0.5 ppm over the 81 s between the sync blocks is 0.04 samples.
        assert!(result.drift_ppm.abs() < 0.5, "{case}");
    }
}

#[test]
fn capture_alignment_measures_clock_drift() {
    // Resample the stimulus as a recorder running 50 ppm fast would (linear interpolation):
    // recorded sample m holds the stimulus at time m / (1 + 50e-6).
    let stimulus = stimulus::generate(SAMPLE_RATE_HZ);
    let ratio = 1.0 + 50e-6;
    let len = (stimulus.samples.len() as f64 * ratio) as usize - 1;
    let mut recording = vec![0.0f32; 100];
    recording.extend((0..len).map(|m| {
        let position = m as f64 / ratio;
        let index = position as usize;
        let fraction = position - index as f64;
        let next = stimulus.samples.get(index + 1).copied().unwrap_or(0.0);
        ((1.0 - fraction) * f64::from(stimulus.samples[index]) + fraction * f64::from(next)) as f32
    }));
    let result = align_capture(&stimulus, &recording, SAMPLE_RATE_HZ).expect("sync found");
    // The latency grows by 50 ppm of the elapsed time: 4.8 samples by the start of the sync
    // block (2 s in), 1.9 more over the block's 0.75 s. The estimate lands inside that span.
    let measured = result.alignment.latency_samples as f64 + result.alignment.fractional_samples;
    assert!((104.8..=106.7).contains(&measured), "{result:?}");
    assert!((result.drift_ppm - 50.0).abs() < 1.0, "{result:?}");
}

#[test]
fn capture_without_sync_says_what_to_do() {
    let stimulus = stimulus::generate(SAMPLE_RATE_HZ);
    let len = stimulus.samples.len();
    let mut rng = crate::stimulus::test_noise(8);
    let noise: Vec<f32> = (0..len).map(|_| 0.1 * rng()).collect();
    let silence = vec![0.0f32; len];
    let unrelated: Vec<f32> = music(SAMPLE_RATE_HZ, len, 99, -3.0);
    for (name, recording) in [("noise", noise), ("silence", silence), ("music", unrelated)] {
        let error = align_capture(&stimulus, &recording, SAMPLE_RATE_HZ)
            .expect_err("there is no sync block in this recording");
        assert!(
            matches!(
                error,
                AlignError::NoSync {
                    position: SyncPosition::Start,
                    ..
                }
            ),
            "{name}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("raise the return level"),
            "{name}: {message}"
        );
        assert!(
            message.contains("played from its start"),
            "{name}: {message}"
        );
    }
}

#[test]
fn capture_alignment_refuses_wrong_rate_and_short_recordings() {
    let stimulus = stimulus::generate(SAMPLE_RATE_HZ);
    assert!(matches!(
        align_capture(&stimulus, &stimulus.samples, 44_100),
        Err(AlignError::SampleRateMismatch {
            recording_hz: 44_100,
            stimulus_hz: 48_000
        })
    ));
    let half = &stimulus.samples[..stimulus.samples.len() / 2];
    assert!(matches!(
        align_capture(&stimulus, half, SAMPLE_RATE_HZ),
        Err(AlignError::RecordingTooShort {
            what: "end sync block",
            ..
        })
    ));
}

#[test]
fn replicate_check_separates_deterministic_and_noisy_devices() {
    let stimulus = stimulus::generate(SAMPLE_RATE_HZ);

    // A deterministic device repeats itself exactly.
    let deterministic = tanh_drive(&stimulus.samples, 20.0);
    let report = replicate_check(&deterministic, &stimulus).expect("copies present");
    assert!(report.esr < 1e-12, "{report:?}");
    assert!((report.first_rms_dbfs - report.second_rms_dbfs).abs() < 1e-9);

    // Independent noise in each copy: ESR = 2 noise power / (signal + noise power).
    let first = stimulus.validation_copy(0).expect("first copy");
    let signal_power = stimulus.samples[first.range()]
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        / first.len_samples as f64;
    let noise_rms = (signal_power * 10f64.powf(-30.0 / 10.0)).sqrt();
    let mut rng = crate::stimulus::test_noise(9);
    let noisy: Vec<f32> = stimulus
        .samples
        .iter()
        .map(|&x| x + (noise_rms * f64::from(rng()) * 3f64.sqrt()) as f32)
        .collect();
    let report = replicate_check(&noisy, &stimulus).expect("copies present");
    let expected_db = 10.0 * (2.0 * 1e-3 / (1.0f64 + 1e-3)).log10();
    assert!(
        (report.difference_db - expected_db).abs() < 0.3,
        "{report:?}, want {expected_db}"
    );

    // A recording cut short is refused.
    assert!(matches!(
        replicate_check(&noisy[..noisy.len() / 2], &stimulus),
        Err(AlignError::RecordingTooShort { .. })
    ));
}
