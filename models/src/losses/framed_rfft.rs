//! The STFT magnitude of [`super::stft`] as a fused candle custom op on the CPU: frames are
//! gathered, windowed, transformed with real FFTs (O(N log N) per frame instead of the O(N·win)
//! of a DFT matrix product) and reduced to magnitudes in one pass. The backward pass recomputes
//! each frame's spectrum, scales it by `g / |X|`, applies the adjoint transform and scatter-adds
//! the frame back onto the signal.
//!
//! With frame `f[j]` (window applied, zero outside the window) the op returns
//! `re[k] = Σ_j f[j] cos(2πkj/N)` and `im[k] = -Σ_j f[j] sin(2πkj/N)` for `k = 0 ..= N/2`.
//! Its adjoint is `∂L/∂f[j] = Re Σ_k (g_re[k] + i g_im[k]) e^{2πikj/N}`, which an unnormalised
//! complex-to-real inverse FFT computes once the middle bins are halved (it counts each of them
//! twice, through the Hermitian mirror) and the imaginary parts of bins 0 and N/2 are zeroed
//! (they contribute nothing: `Re(i g) = 0` at those real-valued exponentials).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Error, Layout, Result, Shape, Tensor};
use realfft::RealFftPlanner;

use super::stft::{StftResolution, MAG_POWER_EPS};

/// Custom op: `[B, T]` signal to `[B, frames, bins]` magnitudes `sqrt(re² + im² + ε)`, `ε` =
/// [`MAG_POWER_EPS`], for `f32` or `f64` on the CPU. Computes in `f64`. The backward pass
/// recomputes each frame's spectrum rather than storing it.
pub(super) struct FramedRfftMagnitude {
    pub(super) resolution: StftResolution,
}

impl FramedRfftMagnitude {
    /// Magnitudes of `b_sz` signals of `len` samples laid out back to back.
    fn forward(&self, x: &[f64], b_sz: usize, len: usize) -> Vec<f64> {
        let res = &self.resolution;
        let (frames, bins) = (res.num_frames(len), res.num_bins());
        let (window, indices, offset) = (res.window(), res.frame_indices(len), res.window_offset());
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(res.fft_size);
        let mut out = vec![0f64; b_sz * frames * bins];
        run_items(
            out.chunks_mut(frames * bins).zip(x.chunks(len)),
            |(out, signal)| {
                let mut frame = fft.make_input_vec();
                let mut spectrum = fft.make_output_vec();
                let mut scratch = fft.make_scratch_vec();
                for (row, frame_indices) in out.chunks_mut(bins).zip(indices.chunks(window.len())) {
                    frame.fill(0.0);
                    for (m, (&i, w)) in frame_indices.iter().zip(&window).enumerate() {
                        frame[offset + m] = w * signal[i as usize];
                    }
                    fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                        .expect("buffers come from the same plan");
                    for (mag, c) in row.iter_mut().zip(&spectrum) {
                        *mag = (c.norm_sqr() + MAG_POWER_EPS).sqrt();
                    }
                }
            },
        );
        out
    }

    /// Gradient w.r.t. the signals `x` given the gradient `grad` w.r.t. the magnitudes:
    /// `∂L/∂X[k] = g[k] X[k] / |X[k]|`, then the adjoint transform and scatter-add.
    fn backward(&self, x: &[f64], grad: &[f64], b_sz: usize, len: usize) -> Vec<f64> {
        let res = &self.resolution;
        let (frames, bins) = (res.num_frames(len), res.num_bins());
        let (window, indices, offset) = (res.window(), res.frame_indices(len), res.window_offset());
        let mut planner = RealFftPlanner::<f64>::new();
        let fft = planner.plan_fft_forward(res.fft_size);
        let ifft = planner.plan_fft_inverse(res.fft_size);
        let mut out = vec![0f64; b_sz * len];
        let items = out
            .chunks_mut(len)
            .zip(x.chunks(len))
            .zip(grad.chunks(frames * bins));
        run_items(items, |((grad_x, signal), grad)| {
            let mut frame = fft.make_input_vec();
            let mut spectrum = fft.make_output_vec();
            let mut scratch = fft.make_scratch_vec();
            let mut inv_scratch = ifft.make_scratch_vec();
            for (row, frame_indices) in grad.chunks(bins).zip(indices.chunks(window.len())) {
                // Recompute the frame's spectrum.
                frame.fill(0.0);
                for (m, (&i, w)) in frame_indices.iter().zip(&window).enumerate() {
                    frame[offset + m] = w * signal[i as usize];
                }
                fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                    .expect("buffers come from the same plan");

                // Gradient w.r.t. the spectrum; halve the bins the inverse transform counts
                // twice and zero the imaginary parts it ignores.
                for (k, (c, g)) in spectrum.iter_mut().zip(row).enumerate() {
                    let scale = if k == 0 || k == bins - 1 { 1.0 } else { 0.5 };
                    *c *= scale * g / (c.norm_sqr() + MAG_POWER_EPS).sqrt();
                }
                spectrum[0].im = 0.0;
                spectrum[bins - 1].im = 0.0;
                ifft.process_with_scratch(&mut spectrum, &mut frame, &mut inv_scratch)
                    .expect("buffers come from the same plan, edge bins are real");

                // Undo the window and scatter-add onto the (reflected) signal indices.
                for (m, (&i, w)) in frame_indices.iter().zip(&window).enumerate() {
                    grad_x[i as usize] += w * frame[offset + m];
                }
            }
        });
        out
    }
}

/// Runs `work` on each item, spread over candle's CPU thread count with scoped threads.
fn run_items<I, F>(items: I, work: F)
where
    I: Iterator,
    I::Item: Send,
    F: Fn(I::Item) + Sync,
{
    let mut items: Vec<_> = items.collect();
    let threads = candle_core::utils::get_num_threads().max(1);
    let per_thread = items.len().div_ceil(threads).max(1);
    let work = &work;
    std::thread::scope(|scope| {
        while !items.is_empty() {
            let rest = items.split_off(per_thread.min(items.len()));
            let chunk = std::mem::replace(&mut items, rest);
            scope.spawn(move || chunk.into_iter().for_each(work));
        }
    });
}

/// The data of a contiguous `f32`/`f64` CPU storage, widened to `f64`.
fn to_f64(storage: &CpuStorage, layout: &Layout) -> Result<Vec<f64>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::RequiresContiguous { op: "framed_rfft" }.bt())?;
    match storage {
        CpuStorage::F32(data) => Ok(data[start..end].iter().map(|&x| f64::from(x)).collect()),
        CpuStorage::F64(data) => Ok(data[start..end].to_vec()),
        other => Err(Error::UnsupportedDTypeForOp(other.dtype(), "framed_rfft").bt()),
    }
}

/// `f64` results narrowed back to `dtype` (`f32` or `f64`).
fn from_f64(data: Vec<f64>, dtype: DType) -> Result<CpuStorage> {
    match dtype {
        DType::F32 => Ok(CpuStorage::F32(
            data.into_iter().map(|x| x as f32).collect(),
        )),
        DType::F64 => Ok(CpuStorage::F64(data)),
        other => Err(Error::UnsupportedDTypeForOp(other, "framed_rfft").bt()),
    }
}

impl CustomOp1 for FramedRfftMagnitude {
    fn name(&self) -> &'static str {
        "framed_rfft_magnitude"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b_sz, len) = layout.shape().dims2()?;
        let x = to_f64(storage, layout)?;
        let out = self.forward(&x, b_sz, len);
        let res = &self.resolution;
        let shape = Shape::from((b_sz, res.num_frames(len), res.num_bins()));
        Ok((from_f64(out, storage.dtype())?, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (b_sz, len) = arg.dims2()?;
        let host =
            |t: &Tensor| -> Result<Vec<f64>> { t.to_dtype(DType::F64)?.flatten_all()?.to_vec1() };
        let grad_x = self.backward(&host(arg)?, &host(grad_res)?, b_sz, len);
        let grad_x = Tensor::from_vec(grad_x, (b_sz, len), arg.device())?;
        Ok(Some(grad_x.to_dtype(arg.dtype())?))
    }
}
