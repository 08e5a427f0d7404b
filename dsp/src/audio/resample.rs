//! Sample-rate conversion with rubato's synchronous FFT resampler.
//!
//! Choice: [`rubato::Fft`] converts between any two fixed integer rates exactly (no drifting
//! ratio), and its anti-aliasing filter is a linear-phase windowed sinc (Blackman-Harris², as
//! rubato recommends) whose delay is a whole number of output samples, so it can be removed
//! exactly. The FFT block is at least [`MIN_FFT_BLOCK_FRAMES`] frames on both sides, which puts
//! the filter's cutoff at about 0.99 of the lower of the two Nyquist frequencies: between
//! 44.1 kHz and 48 kHz the passband is flat within 0.01 dB up to 21 kHz and a tone above the
//! output's Nyquist frequency is attenuated by more than 100 dB (both checked in the tests
//! below). The price is a latency of half a block (1120 output samples for 44.1 kHz -> 48 kHz),
//! which both [`resample`] and [`StreamingResampler`] compensate: an event at input time `t`
//! lands at output time `t` (within one output sample), and the output holds
//! `round(len_in * to_hz / from_hz)` samples.
//!
//! Rate pairs with a small greatest common divisor need large FFT blocks (44 100 -> 44 101 Hz
//! uses blocks of about 88 000 frames): slower and with a longer delay, but still exact.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use super::AudioError;

/// Smallest FFT block, in frames, on either side of the resampler: sets the cutoff (about
/// 0.99 of the lower Nyquist frequency at 2048 frames) and the delay (half a block).
pub const MIN_FFT_BLOCK_FRAMES: usize = 2048;

/// Converts a whole signal from `from_hz` to `to_hz`.
///
/// Returns `round(samples.len() * to_hz / from_hz)` samples with the resampler's delay removed;
/// a copy of the input when the rates are equal. Same result as feeding the signal to a
/// [`StreamingResampler`] in any block sizes.
///
/// # Errors
/// [`AudioError::Resample`] when a rate is 0 Hz or rubato rejects the rate pair.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, AudioError> {
    let mut resampler = StreamingResampler::new(from_hz, to_hz)?;
    let mut out = Vec::with_capacity(expected_len(samples.len() as u64, from_hz, to_hz) as usize);
    resampler.process(samples, &mut out)?;
    resampler.finish(&mut out)?;
    Ok(out)
}

/// `round(len * to_hz / from_hz)` in exact integer arithmetic.
fn expected_len(len: u64, from_hz: u32, to_hz: u32) -> u64 {
    let numerator = u128::from(len) * u128::from(to_hz);
    let from = u128::from(from_hz);
    ((numerator + from / 2) / from) as u64
}

/// Converts a signal of any length block by block in constant memory, with the resampler's
/// delay removed: feed blocks with [`StreamingResampler::process`], then call
/// [`StreamingResampler::finish`] once. The concatenated output equals [`resample`] of the
/// concatenated input, whatever the block sizes.
pub struct StreamingResampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal: samples pass through unchanged.
    engine: Option<Engine>,
    /// Samples fed since creation or the last `finish`.
    input_len: u64,
    /// Samples handed out since creation or the last `finish`.
    output_len: u64,
}

/// The rubato resampler and its buffers, all sized once in `new`.
struct Engine {
    fft: Fft<f64>,
    /// Input frames per call to rubato (one FFT block).
    chunk_in: usize,
    /// Input collected until a full chunk is there.
    pending: Vec<f64>,
    /// rubato's output for one chunk.
    chunk_out: Vec<f64>,
    /// Output samples of the resampler's delay still to drop.
    delay_left: usize,
}

impl StreamingResampler {
    /// Prepares a conversion from `from_hz` to `to_hz`.
    ///
    /// # Errors
    /// [`AudioError::Resample`] when a rate is 0 Hz or rubato rejects the rate pair.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, AudioError> {
        let fail = |reason: String| AudioError::Resample {
            from_hz,
            to_hz,
            reason,
        };
        if from_hz == 0 || to_hz == 0 {
            return Err(fail("sample rates must be above 0 Hz".to_string()));
        }
        let engine = if from_hz == to_hz {
            None
        } else {
            // Blocks are whole multiples of the smallest block the rate pair allows. The
            // multiple is even, so both block sizes are even and the delay (half a block) is a
            // whole number of samples on both sides.
            let gcd = gcd(from_hz as usize, to_hz as usize);
            let (min_in, min_out) = (from_hz as usize / gcd, to_hz as usize / gcd);
            let multiple = MIN_FFT_BLOCK_FRAMES
                .div_ceil(min_in.min(min_out))
                .next_multiple_of(2);
            let chunk_in = multiple * min_in;
            let fft = Fft::<f64>::new_custom(
                from_hz as usize,
                to_hz as usize,
                chunk_in,
                1,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(|e| fail(e.to_string()))?;
            debug_assert_eq!(fft.input_frames_next(), chunk_in);
            debug_assert_eq!(fft.output_delay() * 2, fft.fft_size_out());
            Some(Engine {
                chunk_in,
                pending: Vec::with_capacity(chunk_in),
                chunk_out: vec![0.0; fft.output_frames_max()],
                delay_left: fft.output_delay(),
                fft,
            })
        };
        Ok(Self {
            from_hz,
            to_hz,
            engine,
            input_len: 0,
            output_len: 0,
        })
    }

    /// Delay of the underlying resampler, in output samples; already compensated in the output,
    /// given for information (0 when the rates are equal).
    pub fn resampler_delay_samples(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.fft.output_delay())
    }

    /// Feeds `input` and appends to `out` every output sample that is complete so far.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        self.input_len += input.len() as u64;
        let Some(engine) = self.engine.as_mut() else {
            out.extend_from_slice(input);
            self.output_len += input.len() as u64;
            return Ok(());
        };
        let mut rest = input;
        while !rest.is_empty() {
            let take = (engine.chunk_in - engine.pending.len()).min(rest.len());
            engine
                .pending
                .extend(rest[..take].iter().map(|&x| f64::from(x)));
            rest = &rest[take..];
            if engine.pending.len() == engine.chunk_in {
                self.output_len += engine.run_chunk(out, u64::MAX, self.from_hz, self.to_hz)?;
            }
        }
        Ok(())
    }

    /// Flushes the resampler: appends the remaining output so that the total handed out since
    /// creation is `round(total_input * to_hz / from_hz)`, then resets for a new signal.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        let total = expected_len(self.input_len, self.from_hz, self.to_hz);
        if let Some(engine) = self.engine.as_mut() {
            // Zeros after the end of the input push its last samples through the filter.
            while self.output_len < total {
                engine.pending.resize(engine.chunk_in, 0.0);
                let room = total - self.output_len;
                self.output_len += engine.run_chunk(out, room, self.from_hz, self.to_hz)?;
            }
            engine.fft.reset();
            engine.pending.clear();
            engine.delay_left = engine.fft.output_delay();
        }
        self.input_len = 0;
        self.output_len = 0;
        Ok(())
    }
}

impl Engine {
    /// Resamples the full `pending` chunk and appends at most `room` samples of the result,
    /// after dropping what is left of the delay. Returns the number appended.
    fn run_chunk(
        &mut self,
        out: &mut Vec<f32>,
        room: u64,
        from_hz: u32,
        to_hz: u32,
    ) -> Result<u64, AudioError> {
        let fail = |reason: String| AudioError::Resample {
            from_hz,
            to_hz,
            reason,
        };
        let frames_out = self.chunk_out.len();
        let input = InterleavedSlice::new(&self.pending, 1, self.chunk_in)
            .map_err(|e| fail(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(&mut self.chunk_out, 1, frames_out)
            .map_err(|e| fail(e.to_string()))?;
        let (_, produced) = self
            .fft
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| fail(e.to_string()))?;
        self.pending.clear();

        let skip = self.delay_left.min(produced);
        self.delay_left -= skip;
        let usable = &self.chunk_out[skip..produced];
        let keep = usable
            .len()
            .min(usize::try_from(room).unwrap_or(usize::MAX));
        out.extend(usable[..keep].iter().map(|&x| x as f32));
        Ok(keep as u64)
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(freq_hz: f64, amplitude: f64, rate_hz: u32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| {
                (amplitude * (2.0 * PI * freq_hz * n as f64 / f64::from(rate_hz)).sin()) as f32
            })
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn sine_keeps_amplitude_frequency_and_phase_44k1_to_48k() {
        let (from_hz, to_hz) = (44_100, 48_000);
        let input = sine(1000.0, 0.5, from_hz, 44_100);
        let output = resample(&input, from_hz, to_hz).unwrap();
        assert_eq!(output.len(), 48_000);

        // Judge the middle, away from the edges where the signal starts and stops abruptly.
        let middle = &output[4800..43_200];
        let gain_db = 20.0 * (rms(middle) / (0.5 / 2f64.sqrt())).log10();
        assert!(gain_db.abs() < 0.05, "gain {gain_db} dB");

        // Sample by sample against the analytic sine at the new rate: frequency and timing.
        let reference = sine(1000.0, 0.5, to_hz, 48_000);
        let worst = middle
            .iter()
            .zip(&reference[4800..43_200])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "worst deviation from the ideal sine: {worst}");
    }

    /// Gain of a sine of `freq_hz` through the resampler, in dB, judged on the middle 60 %.
    fn sine_gain_db(freq_hz: f64, from_hz: u32, to_hz: u32) -> f64 {
        let input = sine(freq_hz, 0.5, from_hz, from_hz as usize / 2);
        let output = resample(&input, from_hz, to_hz).unwrap();
        let middle = &output[output.len() / 5..output.len() * 4 / 5];
        20.0 * (rms(middle) / (0.5 / 2f64.sqrt())).log10()
    }

    #[test]
    fn passband_is_flat_to_21_khz_and_aliases_are_rejected() {
        for (from_hz, to_hz) in [(44_100, 48_000), (48_000, 44_100), (96_000, 48_000)] {
            for freq_hz in [100.0, 10_000.0, 21_000.0] {
                let gain_db = sine_gain_db(freq_hz, from_hz, to_hz);
                assert!(
                    gain_db.abs() < 0.01,
                    "{from_hz}->{to_hz} at {freq_hz} Hz: {gain_db} dB"
                );
            }
        }
        // Above the output's Nyquist frequency: what is left would alias.
        let alias_db = sine_gain_db(23_000.0, 48_000, 44_100);
        assert!(alias_db < -100.0, "48k->44.1k at 23 kHz: {alias_db} dB");
        let alias_db = sine_gain_db(25_000.0, 96_000, 48_000);
        assert!(alias_db < -100.0, "96k->48k at 25 kHz: {alias_db} dB");
    }

    #[test]
    fn click_lands_at_scaled_time() {
        for (from_hz, to_hz) in [
            (44_100, 48_000),
            (48_000, 44_100),
            (96_000, 48_000),
            (48_000, 96_000),
        ] {
            let click_at = 10_007usize;
            let mut input = vec![0.0f32; 30_000];
            input[click_at] = 1.0;
            let output = resample(&input, from_hz, to_hz).unwrap();
            let expected = click_at as f64 * f64::from(to_hz) / f64::from(from_hz);
            let peak_at = output
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap()
                .0;
            assert!(
                (peak_at as f64 - expected).abs() <= 1.0,
                "{from_hz}->{to_hz}: click at {peak_at}, expected {expected}"
            );
            assert_eq!(output.len() as u64, expected_len(30_000, from_hz, to_hz));
        }
    }

    #[test]
    fn streaming_in_random_blocks_matches_offline() {
        // Seeded xorshift for block sizes and a noise signal.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let input: Vec<f32> = (0..50_000)
            .map(|_| (next() % 20_001) as f32 / 10_000.0 - 1.0)
            .collect();
        for (from_hz, to_hz) in [(44_100, 48_000), (48_000, 22_050)] {
            let offline = resample(&input, from_hz, to_hz).unwrap();
            let mut streamer = StreamingResampler::new(from_hz, to_hz).unwrap();
            let mut streamed = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = ((next() % 3000) as usize + 1).min(rest.len());
                streamer.process(&rest[..n], &mut streamed).unwrap();
                rest = &rest[n..];
            }
            streamer.finish(&mut streamed).unwrap();
            assert_eq!(streamed.len(), offline.len());
            let worst = streamed
                .iter()
                .zip(&offline)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-4,
                "{from_hz}->{to_hz}: streaming differs by {worst}"
            );
        }
    }

    #[test]
    fn equal_rates_are_identity_and_zero_rate_is_an_error() {
        let input = sine(440.0, 0.3, 48_000, 1000);
        assert_eq!(resample(&input, 48_000, 48_000).unwrap(), input);
        let err = resample(&input, 0, 48_000).unwrap_err();
        assert!(err.to_string().contains("0 Hz"), "{err}");
    }

    #[test]
    fn short_and_empty_inputs_get_the_rounded_length() {
        assert!(resample(&[], 44_100, 48_000).unwrap().is_empty());
        let out = resample(&[0.5; 3], 44_100, 48_000).unwrap();
        assert_eq!(out.len(), 3);
    }
}
