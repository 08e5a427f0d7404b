//! The profiling stimulus: a deterministic reamp signal that is played through a device while
//! the device's output is recorded. The recording, aligned with [`crate::align`], becomes
//! training and validation data, and its sections give the classic measurements (frequency
//! response, static compression curve, attack and release, noise floor).
//!
//! [`generate`] returns the samples together with their [`Segment`] layout. The layout is
//! serialisable ([`StimulusLayout`]) so it can be written as JSON beside the WAV file. The same
//! sample rate always gives bit-identical samples (all randomness comes from fixed seeds).
//!
//! # Layout
//!
//! Durations are exact in seconds, rounded to whole samples at the chosen rate. Tone and sweep
//! levels are sine peaks in dBFS; noise levels are RMS in dBFS. No sample exceeds
//! [`PEAK_LIMIT_DBFS`] (-0.5 dBFS). Total length: 85.7 s (4 113 600 samples at 48 kHz).
//!
//! | #  | kind                     | seconds     | level (dBFS)          | purpose              |
//! |----|--------------------------|-------------|-----------------------|----------------------|
//! | 1  | `Silence`                | 2.0         | digital silence       | noise floor          |
//! | 2  | `Sync { Start }`         | 0.75        | blips and chirp, -6   | latency and polarity |
//! | 3  | `Validation { copy: 0 }` | 4.0         | music, peak -3        | replicate check, 1st |
//! | 4  | `Gap`                    | 0.5         | silence               | settling             |
//! | 5  | 3 x (`Sweep`, `Gap`)     | 3 x (5+0.5) | -30, -18, -6          | frequency response   |
//! | 6  | `LevelSteps`             | 8 x 1.0     | -40..-4 by 6, then -1 | static level curve   |
//! | 7  | `Gap`                    | 0.5         | silence               | release              |
//! | 8  | 4 x `ToneBursts`         | 1.9 to 3.8  | -30 <-> -6            | attack and release   |
//! | 9  | `Gap`                    | 0.5         | silence               | release              |
//! | 10 | 6 x `Noise`              | 6 x 2.5     | RMS -38, -26, -14     | broadband response   |
//! | 11 | `Gap`                    | 0.5         | silence               | separation           |
//! | 12 | `Music`                  | 20.0        | bars -33 to -1 peak   | training material    |
//! | 13 | `Validation { copy: 1 }` | 4.0         | identical to #3       | replicate check, 2nd |
//! | 14 | `Sync { End }`           | 0.75        | identical to #2       | clock drift          |
//! | 15 | `Silence`                | 2.0         | digital silence       | device tail          |
//!
//! Sweeps run exponentially from 20 Hz to 20 kHz. Level steps are one continuous 1 kHz sine
//! stepping through -40, -34, ..., -4 dBFS and finally -1 dBFS. Each tone-burst segment is a
//! continuous 1 kHz sine: 0.6 s low (-30 dBFS), then twice (burst high at -6 dBFS, 0.6 s low),
//! with bursts of 50, 200, 500 and 1000 ms in the four segments. Noise levels are RMS; white
//! noise comes first, then pink, each at -38, -26 and -14 dBFS. The music is plucked strings
//! (see [`music`]) with bar levels spanning about 32 dB.
//!
//! The sync block holds four Ricker-wavelet blips (peak spectrum at 2 kHz) at irregular
//! spacing (0.05, 0.12, 0.23 and 0.27 s into the block) and an exponential chirp from 100 Hz
//! to 16 kHz (0.35–0.55 s), then silence. Frequencies above 45 % of the sample rate are
//! clamped to it at low sample rates, so nothing aliases.

mod music;
mod synth;

pub use music::music;

use serde::{Deserialize, Serialize};
use std::ops::Range;
use synth::{
    apply_fades, db_to_amplitude, exponential_sweep, peak, pink_noise, ricker_blip, rms,
    seconds_to_samples, sine_with_envelope, white_noise, Pcg32,
};

/// Version of the stimulus design; bump it when [`generate`] changes its output, so that a
/// recording made with an older stimulus is not aligned against a newer one.
pub const STIMULUS_VERSION: u32 = 1;

/// No sample of the stimulus exceeds this level (dBFS, sample peak).
pub const PEAK_LIMIT_DBFS: f64 = -0.5;

/// Seed of the validation segment's music.
const VALIDATION_SEED: u64 = 0x5eed_0001;
/// Seed of the main music segment.
const MUSIC_SEED: u64 = 0x5eed_0002;
/// Seed of the noise segments.
const NOISE_SEED: u64 = 0x5eed_0003;

const EDGE_SILENCE_S: f64 = 2.0;
const GAP_S: f64 = 0.5;
const SYNC_BLOCK_S: f64 = 0.75;
const SYNC_BLIP_TIMES_S: [f64; 4] = [0.05, 0.12, 0.23, 0.27];
const SYNC_BLIP_PEAK_HZ: f64 = 2_000.0;
const SYNC_CHIRP_START_S: f64 = 0.35;
const SYNC_CHIRP_S: f64 = 0.2;
const SYNC_CHIRP_START_HZ: f64 = 100.0;
const SYNC_CHIRP_END_HZ: f64 = 16_000.0;
const SYNC_LEVEL_DBFS: f64 = -6.0;
const VALIDATION_S: f64 = 4.0;
const VALIDATION_PEAK_DBFS: f64 = -3.0;
const SWEEP_S: f64 = 5.0;
const SWEEP_START_HZ: f64 = 20.0;
const SWEEP_END_HZ: f64 = 20_000.0;
const SWEEP_LEVELS_DBFS: [f64; 3] = [-30.0, -18.0, -6.0];
/// Fade length of sweeps, chirps and noise segments.
const FADE_S: f64 = 0.005;
const TONE_HZ: f64 = 1_000.0;
const LEVEL_STEP_S: f64 = 1.0;
const LEVEL_STEPS_DBFS: [f64; 8] = [-40.0, -34.0, -28.0, -22.0, -16.0, -10.0, -4.0, -1.0];
const BURST_LOW_DBFS: f64 = -30.0;
const BURST_HIGH_DBFS: f64 = -6.0;
const BURST_LOW_S: f64 = 0.6;
const BURST_HIGH_S: [f64; 4] = [0.05, 0.2, 0.5, 1.0];
const BURST_CYCLES: u32 = 2;
const NOISE_S: f64 = 2.5;
const NOISE_LEVELS_DBFS: [f64; 3] = [-38.0, -26.0, -14.0];
const MUSIC_S: f64 = 20.0;
const MUSIC_PEAK_DBFS: f64 = -1.0;
/// Highest frequency used, as a fraction of the sample rate.
const MAX_FREQUENCY_FRACTION: f64 = 0.45;

/// Which of the two identical sync blocks a segment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPosition {
    /// Near the start: gives the latency.
    Start,
    /// Near the end: its position relative to the start block gives the clock drift.
    End,
}

impl std::fmt::Display for SyncPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncPosition::Start => f.write_str("start"),
            SyncPosition::End => f.write_str("end"),
        }
    }
}

/// Spectral colour of a noise segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseColor {
    /// Flat spectrum.
    White,
    /// About -3 dB per octave (pink-ish, from a three-pole filter).
    Pink,
}

/// What a segment of the stimulus contains. Levels are in dBFS: sine peak for tones and sweeps,
/// RMS for noise, sample peak for music.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SegmentKind {
    /// Digital silence at the start and end (the noise-floor reference).
    Silence,
    /// Short digital silence between sections, letting the device settle.
    Gap,
    /// A sync block of blips and a chirp; the start and end blocks are identical.
    Sync { position: SyncPosition },
    /// An exponential sine sweep.
    Sweep {
        start_hz: f64,
        end_hz: f64,
        level_dbfs: f64,
    },
    /// A continuous sine whose level steps through `levels_dbfs`, each held `step_len_samples`.
    LevelSteps {
        frequency_hz: f64,
        levels_dbfs: Vec<f64>,
        step_len_samples: usize,
    },
    /// `cycles` repetitions of (low for `low_len_samples`, high for `high_len_samples`), then
    /// low again for `low_len_samples`; one continuous sine.
    ToneBursts {
        frequency_hz: f64,
        low_dbfs: f64,
        high_dbfs: f64,
        low_len_samples: usize,
        high_len_samples: usize,
        cycles: u32,
    },
    /// Noise of a given colour at an RMS level.
    Noise { color: NoiseColor, rms_dbfs: f64 },
    /// Plucked-string music with wide dynamics; `peak_dbfs` is its loudest sample.
    Music { peak_dbfs: f64 },
    /// One of the two identical copies of the validation passage (`copy` is 0 or 1).
    Validation { copy: u32 },
}

/// One section of the stimulus, in samples from the start of the stimulus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// What the section contains.
    pub kind: SegmentKind,
    /// First sample of the section.
    pub start_samples: usize,
    /// Length of the section.
    pub len_samples: usize,
}

impl Segment {
    /// The section's sample indices, `start_samples..start_samples + len_samples`.
    pub fn range(&self) -> Range<usize> {
        self.start_samples..self.start_samples + self.len_samples
    }
}

/// The stimulus samples (mono) and their layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Stimulus {
    /// Mono samples, full scale = 1.0, peaks at or below [`PEAK_LIMIT_DBFS`].
    pub samples: Vec<f32>,
    /// Sample rate the stimulus was generated for.
    pub sample_rate_hz: u32,
    /// Sections in order; they tile `samples` exactly, without gaps or overlaps.
    pub layout: Vec<Segment>,
}

/// The serialisable description of a stimulus, written as JSON beside its WAV file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StimulusLayout {
    /// [`STIMULUS_VERSION`] of the generator that produced the stimulus.
    pub version: u32,
    /// Sample rate of the stimulus.
    pub sample_rate_hz: u32,
    /// Total length of the stimulus.
    pub len_samples: usize,
    /// Sections in order.
    pub segments: Vec<Segment>,
}

impl Stimulus {
    /// The JSON-ready description of this stimulus.
    pub fn describe(&self) -> StimulusLayout {
        StimulusLayout {
            version: STIMULUS_VERSION,
            sample_rate_hz: self.sample_rate_hz,
            len_samples: self.samples.len(),
            segments: self.layout.clone(),
        }
    }

    /// The first segment for which `matches` is true.
    pub fn find(&self, matches: impl Fn(&SegmentKind) -> bool) -> Option<&Segment> {
        self.layout.iter().find(|segment| matches(&segment.kind))
    }

    /// The sync block at `position`, if the layout has one.
    pub fn sync_block(&self, position: SyncPosition) -> Option<&Segment> {
        self.find(|kind| *kind == SegmentKind::Sync { position })
    }

    /// Copy `copy` (0 or 1) of the validation passage, if the layout has it.
    pub fn validation_copy(&self, copy: u32) -> Option<&Segment> {
        self.find(|kind| *kind == SegmentKind::Validation { copy })
    }
}

/// A seeded uniform noise source in [-1, 1), for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_noise(seed: u64) -> impl FnMut() -> f32 {
    let mut rng = Pcg32::new(seed, 0x7e57);
    move || rng.bipolar() as f32
}

/// Appends sections one after another, keeping the layout in step with the samples.
struct Builder {
    samples: Vec<f64>,
    layout: Vec<Segment>,
    sample_rate_hz: u32,
}

impl Builder {
    fn push(&mut self, kind: SegmentKind, section: &[f64]) {
        self.layout.push(Segment {
            kind,
            start_samples: self.samples.len(),
            len_samples: section.len(),
        });
        self.samples.extend_from_slice(section);
    }

    fn push_silence(&mut self, kind: SegmentKind, duration_s: f64) {
        let silence = vec![0.0; seconds_to_samples(duration_s, self.sample_rate_hz)];
        self.push(kind, &silence);
    }
}

/// The sync block: irregularly spaced blips and a short exponential chirp, then silence.
fn sync_block(sample_rate_hz: u32) -> Vec<f64> {
    let mut block = vec![0.0; seconds_to_samples(SYNC_BLOCK_S, sample_rate_hz)];
    let amplitude = db_to_amplitude(SYNC_LEVEL_DBFS);
    let nyquist_guard_hz = MAX_FREQUENCY_FRACTION * f64::from(sample_rate_hz);

    // Blips: a wavelet 2 ms long, centred on each blip time.
    let blip_hz = SYNC_BLIP_PEAK_HZ.min(nyquist_guard_hz / 4.0);
    let blip = ricker_blip(
        blip_hz,
        amplitude,
        seconds_to_samples(0.002, sample_rate_hz),
        sample_rate_hz,
    );
    for time_s in SYNC_BLIP_TIMES_S {
        let start = seconds_to_samples(time_s, sample_rate_hz) - blip.len() / 2;
        for (out, value) in block[start..].iter_mut().zip(&blip) {
            *out += value;
        }
    }

    // Chirp.
    let chirp = exponential_sweep(
        SYNC_CHIRP_START_HZ,
        SYNC_CHIRP_END_HZ.min(nyquist_guard_hz),
        seconds_to_samples(SYNC_CHIRP_S, sample_rate_hz),
        amplitude,
        seconds_to_samples(FADE_S, sample_rate_hz),
        sample_rate_hz,
    );
    let chirp_start = seconds_to_samples(SYNC_CHIRP_START_S, sample_rate_hz);
    block[chirp_start..chirp_start + chirp.len()].copy_from_slice(&chirp);
    block
}

/// Generates the profiling stimulus at `sample_rate_hz` (see the module docs for its layout).
/// Deterministic: the same rate always gives the same samples. Takes about 0.1 s at 48 kHz in
/// an optimised build.
///
/// # Panics
/// Panics if `sample_rate_hz` is below 8 000 Hz (the sync block and sweeps need the bandwidth).
pub fn generate(sample_rate_hz: u32) -> Stimulus {
    assert!(
        sample_rate_hz >= 8_000,
        "stimulus::generate: sample rate {sample_rate_hz} Hz is below 8000 Hz"
    );
    let mut builder = Builder {
        samples: Vec::new(),
        layout: Vec::new(),
        sample_rate_hz,
    };
    let fade_samples = seconds_to_samples(FADE_S, sample_rate_hz);
    let max_frequency_hz = MAX_FREQUENCY_FRACTION * f64::from(sample_rate_hz);

    // Leading silence and the start sync block.
    builder.push_silence(SegmentKind::Silence, EDGE_SILENCE_S);
    let sync = sync_block(sample_rate_hz);
    builder.push(
        SegmentKind::Sync {
            position: SyncPosition::Start,
        },
        &sync,
    );

    // First validation copy.
    let validation_len = seconds_to_samples(VALIDATION_S, sample_rate_hz);
    let validation: Vec<f64> = music(
        sample_rate_hz,
        validation_len,
        VALIDATION_SEED,
        VALIDATION_PEAK_DBFS,
    )
    .into_iter()
    .map(f64::from)
    .collect();
    builder.push(SegmentKind::Validation { copy: 0 }, &validation);
    builder.push_silence(SegmentKind::Gap, GAP_S);

    // Sweeps, each followed by a gap for the device's tail.
    let sweep_end_hz = SWEEP_END_HZ.min(max_frequency_hz);
    for level_dbfs in SWEEP_LEVELS_DBFS {
        let sweep = exponential_sweep(
            SWEEP_START_HZ,
            sweep_end_hz,
            seconds_to_samples(SWEEP_S, sample_rate_hz),
            db_to_amplitude(level_dbfs),
            fade_samples,
            sample_rate_hz,
        );
        let kind = SegmentKind::Sweep {
            start_hz: SWEEP_START_HZ,
            end_hz: sweep_end_hz,
            level_dbfs,
        };
        builder.push(kind, &sweep);
        builder.push_silence(SegmentKind::Gap, GAP_S);
    }

    // Level steps of a 1 kHz tone.
    let step_len_samples = seconds_to_samples(LEVEL_STEP_S, sample_rate_hz);
    let envelope: Vec<f64> = LEVEL_STEPS_DBFS
        .iter()
        .flat_map(|&level_dbfs| std::iter::repeat_n(db_to_amplitude(level_dbfs), step_len_samples))
        .collect();
    let mut steps = sine_with_envelope(TONE_HZ, &envelope, sample_rate_hz);
    apply_fades(&mut steps, fade_samples);
    let kind = SegmentKind::LevelSteps {
        frequency_hz: TONE_HZ,
        levels_dbfs: LEVEL_STEPS_DBFS.to_vec(),
        step_len_samples,
    };
    builder.push(kind, &steps);
    builder.push_silence(SegmentKind::Gap, GAP_S);

    // Tone bursts: low, (high, low) x cycles, for each burst length.
    let low_len_samples = seconds_to_samples(BURST_LOW_S, sample_rate_hz);
    let (low, high) = (
        db_to_amplitude(BURST_LOW_DBFS),
        db_to_amplitude(BURST_HIGH_DBFS),
    );
    for high_s in BURST_HIGH_S {
        let high_len_samples = seconds_to_samples(high_s, sample_rate_hz);
        let mut envelope = vec![low; low_len_samples];
        for _ in 0..BURST_CYCLES {
            envelope.extend(std::iter::repeat_n(high, high_len_samples));
            envelope.extend(std::iter::repeat_n(low, low_len_samples));
        }
        let mut bursts = sine_with_envelope(TONE_HZ, &envelope, sample_rate_hz);
        apply_fades(&mut bursts, fade_samples);
        let kind = SegmentKind::ToneBursts {
            frequency_hz: TONE_HZ,
            low_dbfs: BURST_LOW_DBFS,
            high_dbfs: BURST_HIGH_DBFS,
            low_len_samples,
            high_len_samples,
            cycles: BURST_CYCLES,
        };
        builder.push(kind, &bursts);
    }
    builder.push_silence(SegmentKind::Gap, GAP_S);

    // Noise: white then pink, each at three RMS levels.
    let mut rng = Pcg32::new(NOISE_SEED, 0);
    let noise_len = seconds_to_samples(NOISE_S, sample_rate_hz);
    for color in [NoiseColor::White, NoiseColor::Pink] {
        for target_dbfs in NOISE_LEVELS_DBFS {
            let mut noise = match color {
                NoiseColor::White => white_noise(noise_len, &mut rng),
                NoiseColor::Pink => pink_noise(noise_len, &mut rng),
            };
            apply_fades(&mut noise, fade_samples);
            let gain = db_to_amplitude(target_dbfs) / rms(&noise);
            noise.iter_mut().for_each(|x| *x *= gain);
            // The pink filter's crest factor is not bounded: should a peak pass the limit,
            // scale down and record the level actually produced (rounded to 0.01 dB).
            let limit = db_to_amplitude(PEAK_LIMIT_DBFS - 0.1);
            let noise_peak = peak(&noise);
            let mut rms_dbfs = target_dbfs;
            if noise_peak > limit {
                noise.iter_mut().for_each(|x| *x *= limit / noise_peak);
                rms_dbfs = (100.0 * 20.0 * rms(&noise).log10()).round() / 100.0;
            }
            builder.push(SegmentKind::Noise { color, rms_dbfs }, &noise);
        }
    }
    builder.push_silence(SegmentKind::Gap, GAP_S);

    // Music, the second validation copy, the end sync block and trailing silence.
    let music_samples: Vec<f64> = music(
        sample_rate_hz,
        seconds_to_samples(MUSIC_S, sample_rate_hz),
        MUSIC_SEED,
        MUSIC_PEAK_DBFS,
    )
    .into_iter()
    .map(f64::from)
    .collect();
    builder.push(
        SegmentKind::Music {
            peak_dbfs: MUSIC_PEAK_DBFS,
        },
        &music_samples,
    );
    builder.push(SegmentKind::Validation { copy: 1 }, &validation);
    builder.push(
        SegmentKind::Sync {
            position: SyncPosition::End,
        },
        &sync,
    );
    builder.push_silence(SegmentKind::Silence, EDGE_SILENCE_S);

    // Publish as f32; the peak limit is checked here once for every section.
    debug_assert!(peak(&builder.samples) <= db_to_amplitude(PEAK_LIMIT_DBFS));
    Stimulus {
        samples: builder.samples.iter().map(|&x| x as f32).collect(),
        sample_rate_hz,
        layout: builder.layout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peak_dbfs_of(samples: &[f32]) -> f64 {
        20.0 * f64::from(samples.iter().fold(0.0f32, |m, x| m.max(x.abs()))).log10()
    }

    #[test]
    fn stimulus_is_deterministic_bounded_and_tiled_by_its_layout() {
        let stimulus = generate(48_000);
        assert_eq!(stimulus, generate(48_000));

        // Length 60–90 s and peaks at or below -0.5 dBFS.
        let duration_s = stimulus.samples.len() as f64 / 48_000.0;
        assert!((60.0..=90.0).contains(&duration_s), "{duration_s} s");
        assert!(peak_dbfs_of(&stimulus.samples) <= PEAK_LIMIT_DBFS);

        // Segments tile the samples without gaps or overlaps.
        let mut next_start = 0;
        for segment in &stimulus.layout {
            assert_eq!(segment.start_samples, next_start, "{segment:?}");
            next_start += segment.len_samples;
        }
        assert_eq!(next_start, stimulus.samples.len());

        // Starts and ends in digital silence (the noise-floor references).
        let first = &stimulus.layout[0];
        let last = stimulus.layout.last().expect("layout is not empty");
        assert_eq!(first.kind, SegmentKind::Silence);
        assert_eq!(last.kind, SegmentKind::Silence);
        assert!(stimulus.samples[first.range()].iter().all(|&x| x == 0.0));
        assert!(stimulus.samples[last.range()].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn sync_blocks_and_validation_copies_are_identical_and_ordered() {
        let stimulus = generate(44_100);
        let start = stimulus
            .sync_block(SyncPosition::Start)
            .expect("start sync");
        let end = stimulus.sync_block(SyncPosition::End).expect("end sync");
        assert_eq!(
            stimulus.samples[start.range()],
            stimulus.samples[end.range()]
        );
        assert_eq!(stimulus.layout[1], *start);
        assert_eq!(stimulus.layout[stimulus.layout.len() - 2], *end);

        let first = stimulus.validation_copy(0).expect("first copy");
        let second = stimulus.validation_copy(1).expect("second copy");
        assert_eq!(
            stimulus.samples[first.range()],
            stimulus.samples[second.range()]
        );
        assert!(first.start_samples < stimulus.samples.len() / 4);
        assert!(second.start_samples > stimulus.samples.len() * 3 / 4);
        // The validation passage is not silence.
        assert!(peak_dbfs_of(&stimulus.samples[first.range()]) > -6.0);
    }

    #[test]
    fn sections_have_their_documented_levels() {
        let stimulus = generate(48_000);
        for segment in &stimulus.layout {
            let samples = &stimulus.samples[segment.range()];
            match &segment.kind {
                SegmentKind::Sweep { level_dbfs, .. } => {
                    assert!(
                        (peak_dbfs_of(samples) - level_dbfs).abs() < 0.01,
                        "{segment:?}"
                    );
                }
                SegmentKind::LevelSteps {
                    levels_dbfs,
                    step_len_samples,
                    ..
                } => {
                    // Check the middle of each step, away from the fades.
                    for (index, level) in levels_dbfs.iter().enumerate() {
                        let middle = index * step_len_samples + step_len_samples / 2;
                        let window = &samples[middle - 2_400..middle + 2_400];
                        assert!((peak_dbfs_of(window) - level).abs() < 0.01, "step {index}");
                    }
                }
                SegmentKind::Noise { rms_dbfs, color } => {
                    let power = samples.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>()
                        / samples.len() as f64;
                    let measured_dbfs = 10.0 * power.log10();
                    assert!((measured_dbfs - rms_dbfs).abs() < 0.01, "{color:?}");
                    let target = NOISE_LEVELS_DBFS;
                    assert!(
                        target.iter().any(|t| (t - rms_dbfs).abs() < 1.0),
                        "{rms_dbfs}"
                    );
                }
                SegmentKind::Music { peak_dbfs } => {
                    assert!((peak_dbfs_of(samples) - peak_dbfs).abs() < 0.01);
                }
                _ => {}
            }
        }
        let sweeps = stimulus
            .layout
            .iter()
            .filter(|s| matches!(s.kind, SegmentKind::Sweep { .. }))
            .count();
        assert_eq!(sweeps, 3);
    }

    #[test]
    fn layout_round_trips_through_json() {
        let layout = generate(16_000).describe();
        let json = serde_json::to_string(&layout).expect("layout serialises");
        let back: StimulusLayout = serde_json::from_str(&json).expect("layout parses");
        assert_eq!(back, layout);
        assert!(json.contains("\"type\":\"sync\""), "{json}");
    }
}
