//! Differentiable STFT magnitudes and the multi-resolution STFT loss of Yamamoto, Song and Kim,
//! "Parallel WaveGAN: a fast waveform generation model based on generative adversarial
//! networks with multi-resolution spectrogram", ICASSP 2020 (their eq. 4–6).
//!
//! For each resolution `(fft_size, hop_samples, win_len_samples)` the STFT matches
//! `torch.stft(x, fft_size, hop, win_len, hann_window(win_len), center=True,
//! pad_mode="reflect")`: the signal is reflect-padded by `fft_size / 2` on both sides, frame
//! `f` starts at padded sample `f * hop`, and the periodic Hann window of `win_len` samples
//! sits centred in the `fft_size` frame (zero-padded around it). Frames number
//! `1 + T / hop`. Bins `k = 0 ..= fft_size / 2`.
//!
//! On the CPU the magnitudes come from a fused custom op with real FFTs (`framed_rfft`).
//! Elsewhere the frames are gathered with `index_select` and multiplied by a precomputed
//! `[win_len, 2 * bins]` basis holding `w[m] cos(2π k (m + l) / N)` and `-w[m] sin(…)`, `l`
//! being the window's offset in the frame; both are plain differentiable candle ops.

use candle_core::{Device, Tensor};
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

use super::framed_rfft::FramedRfftMagnitude;
use super::{check_pair, LossError};

/// Floor added to the power `re² + im²` before the square root, as Parallel WaveGAN clamps
/// it: keeps the magnitude (>= 3.2e-4) and its logarithm and gradient finite in silence.
pub const MAG_POWER_EPS: f64 = 1e-7;

/// One STFT resolution. All sizes in samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StftResolution {
    /// FFT length `N`; even, >= `win_len_samples`.
    pub fft_size: usize,
    /// Hop between frames; >= 1.
    pub hop_samples: usize,
    /// Hann window length; 2 ..= `fft_size`.
    pub win_len_samples: usize,
}

impl StftResolution {
    /// The three resolutions of Parallel WaveGAN: (1024, 120, 600), (2048, 240, 1200),
    /// (512, 50, 240) as (fft, hop, window).
    pub const DEFAULTS: [Self; 3] = [
        Self::new(1024, 120, 600),
        Self::new(2048, 240, 1200),
        Self::new(512, 50, 240),
    ];

    /// A resolution from `(fft_size, hop_samples, win_len_samples)`; see [`Self::validate`].
    pub const fn new(fft_size: usize, hop_samples: usize, win_len_samples: usize) -> Self {
        Self {
            fft_size,
            hop_samples,
            win_len_samples,
        }
    }

    /// Checks the ranges documented on the fields.
    ///
    /// # Errors
    /// [`LossError::Resolution`] saying which condition fails.
    pub fn validate(&self) -> Result<(), LossError> {
        let reason = if self.fft_size < 2 || !self.fft_size.is_multiple_of(2) {
            Some("fft_size must be even and >= 2")
        } else if self.hop_samples == 0 {
            Some("hop_samples must be >= 1")
        } else if self.win_len_samples < 2 || self.win_len_samples > self.fft_size {
            Some("win_len_samples must lie in 2 ..= fft_size")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(LossError::Resolution {
                resolution: *self,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Number of frequency bins, `fft_size / 2 + 1`.
    pub fn num_bins(&self) -> usize {
        self.fft_size / 2 + 1
    }

    /// Number of frames for a signal of `len_samples`, `1 + len_samples / hop_samples`.
    pub fn num_frames(&self, len_samples: usize) -> usize {
        1 + len_samples / self.hop_samples
    }

    /// Shortest signal the reflect padding allows: `fft_size / 2 + 1` samples.
    pub fn min_len_samples(&self) -> usize {
        self.fft_size / 2 + 1
    }

    /// Offset of the window inside the FFT frame, `(fft_size - win_len) / 2`.
    pub(super) fn window_offset(&self) -> usize {
        (self.fft_size - self.win_len_samples) / 2
    }

    /// Periodic Hann window `w[m] = 0.5 - 0.5 cos(2π m / win_len)`.
    pub(super) fn window(&self) -> Vec<f64> {
        let len = self.win_len_samples as f64;
        (0..self.win_len_samples)
            .map(|m| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * m as f64 / len).cos())
            .collect()
    }

    /// For every frame, the signal indices of its `win_len` windowed samples, after reflect
    /// padding; frame-major. Needs `len_samples >= min_len_samples()`.
    pub(super) fn frame_indices(&self, len_samples: usize) -> Vec<u32> {
        let last = len_samples as isize - 1;
        let first_start = self.window_offset() as isize - (self.fft_size / 2) as isize;
        let mut indices = Vec::with_capacity(self.num_frames(len_samples) * self.win_len_samples);
        for frame in 0..self.num_frames(len_samples) {
            let start = first_start + (frame * self.hop_samples) as isize;
            for m in 0..self.win_len_samples as isize {
                // Reflect about the first and last samples (the edge is not repeated).
                let i = start + m;
                let i = if i < 0 {
                    -i
                } else if i > last {
                    2 * last - i
                } else {
                    i
                };
                indices.push(i as u32);
            }
        }
        indices
    }
}

/// Magnitude STFT of one resolution, with its DFT basis precomputed on a device.
pub struct Stft {
    resolution: StftResolution,
    /// `[win_len, 2 * bins]` `f32`: windowed cosines, then negated windowed sines.
    basis: Tensor,
}

impl Stft {
    /// Builds the windowed DFT basis for `resolution` on `device`.
    ///
    /// # Errors
    /// [`LossError::Resolution`] for a bad resolution; a candle error if allocation fails.
    pub fn new(resolution: StftResolution, device: &Device) -> Result<Self, LossError> {
        resolution.validate()?;
        let (win, bins) = (resolution.win_len_samples, resolution.num_bins());
        let window = resolution.window();
        let offset = resolution.window_offset();
        let n = resolution.fft_size as f64;
        let mut basis = vec![0f32; win * 2 * bins];
        for (m, w) in window.iter().enumerate() {
            let row = &mut basis[m * 2 * bins..(m + 1) * 2 * bins];
            for k in 0..bins {
                // Reduce k (m + l) mod N in integers so the phase stays exact for long frames.
                let phase_index = (k * (m + offset)) % resolution.fft_size;
                let phase = 2.0 * std::f64::consts::PI * phase_index as f64 / n;
                row[k] = (w * phase.cos()) as f32;
                row[bins + k] = (-w * phase.sin()) as f32;
            }
        }
        let basis = Tensor::from_vec(basis, (win, 2 * bins), device)?;
        Ok(Self { resolution, basis })
    }

    /// The resolution this STFT computes.
    pub fn resolution(&self) -> StftResolution {
        self.resolution
    }

    /// Magnitude spectrogram `sqrt(re² + im² + MAG_POWER_EPS)` of a `[B, T]` batch, shaped
    /// `[B, frames, bins]` with `frames = 1 + T / hop` and `bins = fft_size / 2 + 1`.
    /// Differentiable w.r.t. `x`; in `x`'s float dtype.
    ///
    /// # Errors
    /// [`LossError::TooShort`] when `T <= fft_size / 2`; a candle error if `x` is not `[B, T]`.
    pub fn magnitude(&self, x: &Tensor) -> Result<Tensor, LossError> {
        // Check sizes.
        let res = &self.resolution;
        let (_, len_samples) = x.dims2()?;
        if len_samples < res.min_len_samples() {
            return Err(LossError::TooShort {
                loss: "STFT",
                len_samples,
                min_samples: res.min_len_samples(),
            });
        }
        // Fused FFT op on the CPU, plain candle ops elsewhere.
        if x.device().is_cpu() {
            self.magnitude_fft(x)
        } else {
            self.magnitude_matmul(x)
        }
    }

    /// [`Self::magnitude`] by real FFTs in a fused custom op; CPU only. Sizes checked by the
    /// caller.
    pub(super) fn magnitude_fft(&self, x: &Tensor) -> Result<Tensor, LossError> {
        let op = FramedRfftMagnitude {
            resolution: self.resolution,
        };
        Ok(x.contiguous()?.apply_op1(op)?)
    }

    /// [`Self::magnitude`] by gathering frames with `index_select` and one matrix product with
    /// the DFT basis: plain candle ops, so it runs (and differentiates) on any device.
    pub(super) fn magnitude_matmul(&self, x: &Tensor) -> Result<Tensor, LossError> {
        let res = &self.resolution;
        let (b_sz, len_samples) = x.dims2()?;
        let (frames, win, bins) = (
            res.num_frames(len_samples),
            res.win_len_samples,
            res.num_bins(),
        );

        // Gather the frames: [B, frames * win] -> [B * frames, win].
        let indices = Tensor::from_vec(res.frame_indices(len_samples), frames * win, x.device())?;
        let framed = x.index_select(&indices, 1)?.reshape((b_sz * frames, win))?;

        // Windowed DFT as one matrix product: [B * frames, 2 * bins].
        let basis = if self.basis.dtype() == x.dtype() {
            self.basis.clone()
        } else {
            self.basis.to_dtype(x.dtype())?
        };
        let spectrum = framed.matmul(&basis)?;

        // Magnitude.
        let re = spectrum.narrow(1, 0, bins)?;
        let im = spectrum.narrow(1, bins, bins)?;
        let magnitude = ((re.sqr()? + im.sqr()?)? + MAG_POWER_EPS)?.sqrt()?;
        Ok(magnitude.reshape((b_sz, frames, bins))?)
    }
}

/// Multi-resolution STFT loss with its bases precomputed for a device (they are large: the
/// default resolutions hold about 3.2 M floats; only the non-CPU path reads them). Build once
/// and reuse every step.
pub struct MrStftLoss {
    stfts: Vec<Stft>,
}

impl MrStftLoss {
    /// Builds one [`Stft`] per resolution on `device`.
    ///
    /// # Errors
    /// [`LossError::Resolution`] for an empty list or a bad resolution.
    pub fn new(resolutions: &[StftResolution], device: &Device) -> Result<Self, LossError> {
        if resolutions.is_empty() {
            return Err(LossError::Resolution {
                resolution: StftResolution::new(0, 0, 0),
                reason: "the multi-resolution STFT loss needs at least one resolution",
            });
        }
        let stfts = resolutions
            .iter()
            .map(|&res| Stft::new(res, device))
            .collect::<Result<_, _>>()?;
        Ok(Self { stfts })
    }

    /// The STFTs, one per resolution.
    pub fn stfts(&self) -> &[Stft] {
        &self.stfts
    }

    /// The loss between `pred` and `target` (both `[B, T]`), a differentiable scalar: for each
    /// resolution, spectral convergence `‖S_t - S_p‖_F / ‖S_t‖_F` (Frobenius norms pooled over
    /// the whole batch) plus log-magnitude distance `mean |log S_t - log S_p|`, averaged over
    /// resolutions. `S` is [`Stft::magnitude`], whose floor keeps the logarithm finite.
    ///
    /// # Errors
    /// [`LossError::Shape`] for mismatched shapes; [`LossError::TooShort`] when `T` is not
    /// above `fft_size / 2` of every resolution.
    ///
    /// TODO: the convergence and log terms below are about half the time of a step (B=4,
    /// T=48000: ~300 ms forward+backward on 2 busy cores); fusing them into the FFT op would
    /// remove a dozen full-size candle passes.
    pub fn compute(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor, LossError> {
        let min_samples = self
            .stfts
            .iter()
            .map(|s| s.resolution.min_len_samples())
            .max()
            .unwrap_or(1);
        check_pair("MR-STFT", pred, target, min_samples)?;
        let mut total = Tensor::zeros((), pred.dtype(), pred.device())?;
        for stft in &self.stfts {
            let mag_p = stft.magnitude(pred)?;
            let mag_t = stft.magnitude(target)?;
            let convergence =
                ((&mag_t - &mag_p)?.sqr()?.sum_all()?.sqrt()? / mag_t.sqr()?.sum_all()?.sqrt()?)?;
            let log_distance = (mag_t.log()? - mag_p.log()?)?.abs()?.mean_all()?;
            total = (total + (convergence + log_distance)?)?;
        }
        Ok((total / self.stfts.len() as f64)?)
    }
}

/// [`MrStftLoss::compute`] with bases built for this one call; prefer a kept [`MrStftLoss`]
/// in a training loop.
///
/// # Errors
/// As [`MrStftLoss::new`] and [`MrStftLoss::compute`].
pub fn mr_stft(
    pred: &Tensor,
    target: &Tensor,
    resolutions: &[StftResolution],
) -> Result<Tensor, LossError> {
    MrStftLoss::new(resolutions, pred.device())?.compute(pred, target)
}

/// The multi-resolution STFT loss of one signal pair in `f64` with the default resolutions
/// ([`StftResolution::DEFAULTS`]), for evaluation reports; see [`mr_stft_f64_with`].
///
/// Returns `f64::NAN` when the signals are too short for the largest resolution (at most
/// 1024 samples): the loss is undefined there.
///
/// # Panics
/// If the slices differ in length.
pub fn mr_stft_f64(pred: &[f32], target: &[f32]) -> f64 {
    assert_eq!(
        pred.len(),
        target.len(),
        "mr_stft_f64: prediction and target lengths differ"
    );
    match mr_stft_f64_with(pred, target, &StftResolution::DEFAULTS) {
        Ok(value) => value,
        Err(LossError::TooShort { .. }) => f64::NAN,
        Err(other) => unreachable!("default resolutions and equal lengths: {other}"),
    }
}

/// The multi-resolution STFT loss of one signal pair in `f64` with real FFTs, for evaluation
/// reports. Same definition as [`MrStftLoss::compute`] on a batch of one.
///
/// # Errors
/// [`LossError::Shape`] when lengths differ; [`LossError::Resolution`] /
/// [`LossError::TooShort`] as for the candle version.
pub fn mr_stft_f64_with(
    pred: &[f32],
    target: &[f32],
    resolutions: &[StftResolution],
) -> Result<f64, LossError> {
    // Check sizes.
    if pred.len() != target.len() {
        return Err(LossError::Shape {
            loss: "MR-STFT",
            pred: vec![1, pred.len()],
            target: vec![1, target.len()],
        });
    }
    if resolutions.is_empty() {
        return Err(LossError::Resolution {
            resolution: StftResolution::new(0, 0, 0),
            reason: "the multi-resolution STFT loss needs at least one resolution",
        });
    }
    let mut planner = RealFftPlanner::<f64>::new();
    let mut total = 0.0;
    for res in resolutions {
        res.validate()?;
        if pred.len() < res.min_len_samples() {
            return Err(LossError::TooShort {
                loss: "MR-STFT",
                len_samples: pred.len(),
                min_samples: res.min_len_samples(),
            });
        }

        // Magnitudes of both signals, frame by frame.
        let fft = planner.plan_fft_forward(res.fft_size);
        let window = res.window();
        let indices = res.frame_indices(pred.len());
        let offset = res.window_offset();
        let mut frame = fft.make_input_vec();
        let mut spectrum = fft.make_output_vec();
        let mut magnitudes = |signal: &[f32]| -> Vec<f64> {
            let mut out = Vec::with_capacity(indices.len() / window.len() * res.num_bins());
            for frame_indices in indices.chunks(window.len()) {
                frame.fill(0.0);
                for (m, (&i, w)) in frame_indices.iter().zip(&window).enumerate() {
                    frame[offset + m] = w * f64::from(signal[i as usize]);
                }
                fft.process(&mut frame, &mut spectrum)
                    .expect("buffers come from the same plan");
                out.extend(
                    spectrum
                        .iter()
                        .map(|c| (c.norm_sqr() + MAG_POWER_EPS).sqrt()),
                );
            }
            out
        };
        let mag_p = magnitudes(pred);
        let mag_t = magnitudes(target);

        // Spectral convergence plus log-magnitude distance.
        let (mut diff_energy, mut target_energy, mut log_distance) = (0.0, 0.0, 0.0);
        for (&p, &t) in mag_p.iter().zip(&mag_t) {
            diff_energy += (t - p) * (t - p);
            target_energy += t * t;
            log_distance += (t.ln() - p.ln()).abs();
        }
        total += (diff_energy / target_energy).sqrt() + log_distance / mag_t.len() as f64;
    }
    Ok(total / resolutions.len() as f64)
}
