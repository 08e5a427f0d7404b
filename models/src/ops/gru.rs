//! A fused, trainable GRU layer: the whole recurrence over a sequence is one candle op.
//!
//! Same scheme as [`super::lstm`]: the whole layer, input projection included, is a single
//! [`CustomOp3`] with a forward scan and a reverse-scan backward in plain Rust that also
//! accumulates the weight gradients.
//!
//! Weight layout (PyTorch's, read as is by the real-time engine): for input size `I` and hidden
//! size `H`, `w_ih: [3H, I]`, `w_hh: [3H, H]`, `b_ih: [3H]`, `b_hh: [3H]`, rows grouped by gate
//! in the order reset `r`, update `z`, new `n`:
//!
//! ```text
//! r = σ(W_ir x + b_ir + W_hr h + b_hr)
//! z = σ(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r (W_hn h + b_hn))
//! h' = (1 - z) n + z h
//! ```
//!
//! CPU and f32 only. TODO: no CUDA kernel yet; on a GPU device the op fails with candle's
//! "no cuda implementation" error.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::cpu::{
    add_outer, add_rows_scaled, dispatch_avx2, dot_rows, drain_into, f32_slice, pooled_buffer,
    recycle_buffer, run_jobs, to_f32_vec, transpose, with_f32,
};
use dsp::fastmath::{sigmoid_in_place, tanh};

/// Name of the fused op in candle errors.
const OP_NAME: &str = "fxtwin-gru-scan";
/// Gates per GRU cell (r, z, n).
const GATES: usize = 3;
/// Floats saved per time step for the backward pass: r, z, n and `W_hn h + b_hn`.
const SAVED_PER_HIDDEN: usize = GATES + 1;
/// The backward pass sums weight gradients over this many steps before adding them to the
/// total, which keeps f32 rounding from growing with the sequence length.
const GRAD_BLOCK_STEPS: usize = 256;

/// Runs a GRU layer over a batch of sequences with one fused op.
///
/// Batch-major shapes, all f32 on the CPU, with batch size `B`, sequence length `T >= 1`,
/// input size `I` and hidden size `H`:
/// - `x: [B, T, I]`, `h0: [B, H]`;
/// - `w_ih: [3H, I]`, `w_hh: [3H, H]`, `b_ih: [3H]`, `b_hh: [3H]` in PyTorch's layout and gate
///   order (see the module docs).
///
/// Returns `(h_seq, h_last)`: the hidden state after every step `h_seq: [B, T, H]`
/// (contiguous) and the final state `h_last: [B, H]` (equal to `h_seq[:, T-1]`). Both are
/// differentiable with respect to `x`, `h0` and the weights. For truncated back-propagation
/// through time, pass `h_last.detach()` as the next segment's `h0`.
///
/// # Errors
/// When a shape disagrees with the others, a tensor is not f32, `T == 0`, or the tensors are
/// not on the CPU.
pub fn gru(
    x: &Tensor,
    h0: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b_ih: &Tensor,
    b_hh: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    // Check shapes against x and w_hh.
    let (batch, steps, input) = x.dims3()?;
    let (gate_rows, hidden) = w_hh.dims2()?;
    if gate_rows != GATES * hidden || hidden == 0 {
        bail!(
            "gru: w_hh must be [3H, H] with H >= 1, got {:?}",
            w_hh.shape()
        );
    }
    if steps == 0 {
        bail!(
            "gru: x must hold at least one time step, got {:?}",
            x.shape()
        );
    }
    if w_ih.dims() != [gate_rows, input] {
        bail!(
            "gru: w_ih must be [{gate_rows}, {input}], got {:?}",
            w_ih.shape()
        );
    }
    for (name, bias) in [("b_ih", b_ih), ("b_hh", b_hh)] {
        if bias.dims() != [gate_rows] {
            bail!("gru: {name} must be [{gate_rows}], got {:?}", bias.shape());
        }
    }
    if h0.dims() != [batch, hidden] {
        bail!("gru: h0 must be [{batch}, {hidden}], got {:?}", h0.shape());
    }

    // Pack the weights as [3H, H + 1 + I + 1] = [w_hh | b_hh | w_ih | b_ih] and run the op.
    let weights = Tensor::cat(&[w_hh, &b_hh.unsqueeze(1)?, w_ih, &b_ih.unsqueeze(1)?], 1)?;
    let op = GruScan::new(hidden, input);
    let h_seq = x.contiguous()?.apply_op3(&h0.contiguous()?, &weights, op)?;
    let h_last = h_seq.narrow(1, steps - 1, 1)?.squeeze(1)?;
    Ok((h_seq, h_last))
}

/// The GRU layer as one candle op.
///
/// Arguments: `x: [B, T, I]`, `h0: [B, H]` and the packed weights `[3H, H + 1 + I + 1]`
/// (`w_hh | b_hh | w_ih | b_ih`). Output `h_seq: [B, T, H]`.
struct GruScan {
    hidden: usize,
    input: usize,
    /// r, z, n and `W_hn h + b_hn` of the forward pass, `[B, T, 4H]`, written once by `cpu_fwd`
    /// and read by `bwd`.
    saved: OnceLock<Vec<f32>>,
}

impl GruScan {
    fn new(hidden: usize, input: usize) -> Self {
        Self {
            hidden,
            input,
            saved: OnceLock::new(),
        }
    }

    /// Length of `[h, 1, x, 1]`, the vector the packed weights multiply.
    fn packed_len(&self) -> usize {
        self.hidden + self.input + 2
    }
}

impl Drop for GruScan {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            recycle_buffer(saved);
        }
    }
}

impl CustomOp3 for GruScan {
    fn name(&self) -> &'static str {
        OP_NAME
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        h0_storage: &CpuStorage,
        h0_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        // Read and check the arguments.
        let (hidden, input, packed) = (self.hidden, self.input, self.packed_len());
        let gate_rows = GATES * hidden;
        let (batch, steps, x_input) = x_layout.shape().dims3()?;
        if x_input != input
            || h0_layout.shape().dims() != [batch, hidden]
            || w_layout.shape().dims() != [gate_rows, packed]
        {
            bail!(
                "{OP_NAME}: shapes x {:?}, h0 {:?}, weights {:?} do not fit H = {hidden}, \
                 I = {input}",
                x_layout.shape(),
                h0_layout.shape(),
                w_layout.shape()
            );
        }
        let x = f32_slice(x_storage, x_layout, OP_NAME, "x")?;
        let h0 = f32_slice(h0_storage, h0_layout, OP_NAME, "h0")?;
        let weights = f32_slice(w_storage, w_layout, OP_NAME, "weights")?;

        // Transpose the weights to [H + 1 + I + 1, 3H]: the recurrent and input projections
        // are then sums of rows scaled by [h, 1] and [x, 1].
        let w_t = transpose(weights, gate_rows, packed);

        // Scan every batch item.
        let mut out = vec![0.0f32; batch * steps * hidden];
        let mut saved = pooled_buffer(batch * steps * SAVED_PER_HIDDEN * hidden);
        let jobs: Vec<_> = x
            .chunks_exact(steps * input)
            .zip(h0.chunks_exact(hidden))
            .zip(out.chunks_exact_mut(steps * hidden))
            .zip(saved.chunks_exact_mut(steps * SAVED_PER_HIDDEN * hidden))
            .map(|(((x, h0), h_out), saved)| ForwardJob {
                hidden,
                input,
                x,
                h0,
                h_out,
                saved,
            })
            .collect();
        run_jobs(jobs, steps, |job| scan_forward(&w_t, job));

        // Keep the activations for the backward pass.
        if self.saved.set(saved).is_err() {
            bail!("{OP_NAME}: forward ran twice on one op instance");
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, steps, hidden))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        h0: &Tensor,
        weights: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Read the forward's inputs, outputs and saved activations.
        let (hidden, input, packed) = (self.hidden, self.input, self.packed_len());
        let gate_rows = GATES * hidden;
        let (batch, steps, _) = x.dims3()?;
        let Some(saved) = self.saved.get() else {
            bail!("{OP_NAME}: backward called before forward");
        };
        let x_data = to_f32_vec(x, OP_NAME, "x")?;
        let h0_data = to_f32_vec(h0, OP_NAME, "h0")?;
        let w_t = transpose(&to_f32_vec(weights, OP_NAME, "weights")?, gate_rows, packed);

        // Reverse scan of every batch item, each with its own weight-gradient accumulator.
        let mut grad_x = vec![0.0f32; x_data.len()];
        let mut grad_h0 = vec![0.0f32; batch * hidden];
        let mut grad_w_t = vec![vec![0.0f32; packed * gate_rows]; batch];
        with_f32(res, OP_NAME, "h_seq", |h_seq| {
            with_f32(grad_res, OP_NAME, "output gradient", |grad_h| {
                let jobs: Vec<_> = x_data
                    .chunks_exact(steps * input)
                    .zip(h0_data.chunks_exact(hidden))
                    .zip(h_seq.chunks_exact(steps * hidden))
                    .zip(grad_h.chunks_exact(steps * hidden))
                    .zip(saved.chunks_exact(steps * SAVED_PER_HIDDEN * hidden))
                    .zip(grad_x.chunks_exact_mut(steps * input))
                    .zip(grad_h0.chunks_exact_mut(hidden))
                    .zip(grad_w_t.iter_mut())
                    .map(|(((((((x, h0), h), gh), sv), gx), gh0), gw)| BackwardJob {
                        hidden,
                        input,
                        x,
                        h0,
                        h_seq: h,
                        grad_h: gh,
                        saved: sv,
                        grad_x: gx,
                        grad_h0: gh0,
                        grad_w_t: gw,
                    })
                    .collect();
                run_jobs(jobs, steps, |job| scan_backward(&w_t, job));
                Ok(())
            })
        })?;

        // Sum the weight gradients over the batch and restore the [3H, H + 1 + I + 1] layout.
        let mut grad_w_t_sum = vec![0.0f32; packed * gate_rows];
        for item in &mut grad_w_t {
            drain_into(&mut grad_w_t_sum, item);
        }
        let grad_w = transpose(&grad_w_t_sum, packed, gate_rows);

        let device = x.device();
        Ok((
            Some(Tensor::from_vec(grad_x, (batch, steps, input), device)?),
            Some(Tensor::from_vec(grad_h0, (batch, hidden), device)?),
            Some(Tensor::from_vec(grad_w, (gate_rows, packed), device)?),
        ))
    }
}

/// One batch item's slices for [`scan_forward`].
struct ForwardJob<'a> {
    hidden: usize,
    input: usize,
    /// `[T, I]`.
    x: &'a [f32],
    /// `[H]`.
    h0: &'a [f32],
    /// Written: h_1..h_T, `[T, H]`.
    h_out: &'a mut [f32],
    /// Written: r, z, n and `W_hn h + b_hn` per step, `[T, 4H]`.
    saved: &'a mut [f32],
}

dispatch_avx2! {
    /// Forward scan of one sequence; `w_t: [H + 1 + I + 1, 3H]` (packed weights transposed).
    fn scan_forward = forward_body(w_t: &[f32], job: ForwardJob<'_>)
}

#[inline(always)]
fn forward_body(w_t: &[f32], job: ForwardJob<'_>) {
    let ForwardJob {
        hidden,
        input,
        x,
        h0,
        h_out,
        saved,
    } = job;
    let gate_rows = GATES * hidden;
    let (w_t_h, w_t_x) = w_t.split_at((hidden + 1) * gate_rows);
    // v_h = [h_{t-1}, 1] and v_x = [x_t, 1], the vectors the packed weights multiply.
    let mut v_h = vec![1.0f32; hidden + 1];
    v_h[..hidden].copy_from_slice(h0);
    let mut v_x = vec![1.0f32; input + 1];
    let mut gh = vec![0.0f32; gate_rows];
    let mut gx = vec![0.0f32; gate_rows];

    for ((x_t, h_t), saved_t) in x
        .chunks_exact(input)
        .zip(h_out.chunks_exact_mut(hidden))
        .zip(saved.chunks_exact_mut(SAVED_PER_HIDDEN * hidden))
    {
        // Recurrent and input pre-activations gh = W_hh h + b_hh, gx = W_ih x + b_ih.
        v_x[..input].copy_from_slice(x_t);
        gh.fill(0.0);
        add_rows_scaled(&mut gh, w_t_h, &v_h);
        gx.fill(0.0);
        add_rows_scaled(&mut gx, w_t_x, &v_x);

        // r and z from the sum of both projections.
        let (rz, rest) = saved_t.split_at_mut(2 * hidden);
        let (n, gh_n_saved) = rest.split_at_mut(hidden);
        for ((s, &a), &b) in rz.iter_mut().zip(&gx[..2 * hidden]).zip(&gh[..2 * hidden]) {
            *s = a + b;
        }
        sigmoid_in_place(rz);
        let (r, z) = rz.split_at(hidden);

        // n = tanh(gx_n + r gh_n); h' = n + z (h - n).
        let (gx_n, gh_n) = (&gx[2 * hidden..], &gh[2 * hidden..]);
        let h_prev = &v_h[..hidden];
        for j in 0..hidden {
            let n_j = tanh(gx_n[j] + r[j] * gh_n[j]);
            n[j] = n_j;
            h_t[j] = n_j + z[j] * (h_prev[j] - n_j);
        }
        gh_n_saved.copy_from_slice(gh_n);
        v_h[..hidden].copy_from_slice(h_t);
    }
}

/// One batch item's slices for [`scan_backward`].
struct BackwardJob<'a> {
    hidden: usize,
    input: usize,
    /// `[T, I]`.
    x: &'a [f32],
    /// `[H]`.
    h0: &'a [f32],
    /// Forward output h_1..h_T, `[T, H]`.
    h_seq: &'a [f32],
    /// Gradient of h_1..h_T, `[T, H]`.
    grad_h: &'a [f32],
    /// From [`scan_forward`], `[T, 4H]`.
    saved: &'a [f32],
    /// Written: gradient of x, `[T, I]`.
    grad_x: &'a mut [f32],
    /// Written: gradient of h0, `[H]`.
    grad_h0: &'a mut [f32],
    /// Accumulated (must start at zero): gradient of the transposed packed weights,
    /// `[H + 1 + I + 1, 3H]`.
    grad_w_t: &'a mut [f32],
}

dispatch_avx2! {
    /// Reverse scan (back-propagation through time) of one sequence;
    /// `w_t: [H + 1 + I + 1, 3H]` (packed weights transposed).
    fn scan_backward = backward_body(w_t: &[f32], job: BackwardJob<'_>)
}

#[inline(always)]
fn backward_body(w_t: &[f32], job: BackwardJob<'_>) {
    let BackwardJob {
        hidden,
        input,
        x,
        h0,
        h_seq,
        grad_h,
        saved,
        grad_x,
        grad_h0,
        grad_w_t,
    } = job;
    let gate_rows = GATES * hidden;
    let saved_len = SAVED_PER_HIDDEN * hidden;
    let steps = saved.len() / saved_len;
    let (w_t_h, w_t_x) = w_t.split_at((hidden + 1) * gate_rows);
    let (w_t_h, w_t_x) = (&w_t_h[..hidden * gate_rows], &w_t_x[..input * gate_rows]);
    // Gradient reaching h_t through step t + 1, and its direct part (through h' = ... + z h).
    let mut dh_next = vec![0.0f32; hidden];
    let mut dh_direct = vec![0.0f32; hidden];
    let mut dgx = vec![0.0f32; gate_rows];
    let mut dgh = vec![0.0f32; gate_rows];
    let mut v_h = vec![1.0f32; hidden + 1];
    let mut v_x = vec![1.0f32; input + 1];
    // Weight gradients of the last few steps, added to grad_w_t every GRAD_BLOCK_STEPS.
    let mut grad_w_block = vec![0.0f32; grad_w_t.len()];

    for t in (0..steps).rev() {
        // This step's saved activations and the previous state.
        let saved_t = &saved[t * saved_len..(t + 1) * saved_len];
        let (r, rest) = saved_t.split_at(hidden);
        let (z, rest) = rest.split_at(hidden);
        let (n, gh_n) = rest.split_at(hidden);
        let h_prev = if t == 0 {
            h0
        } else {
            &h_seq[(t - 1) * hidden..t * hidden]
        };
        let dh_out = &grad_h[t * hidden..(t + 1) * hidden];

        // Through h' = n + z (h - n), n = tanh(a_n), a_n = gx_n + r gh_n, r and z sigmoids.
        let (dgx_r, rest) = dgx.split_at_mut(hidden);
        let (dgx_z, dgx_n) = rest.split_at_mut(hidden);
        let (dgh_r, rest) = dgh.split_at_mut(hidden);
        let (dgh_z, dgh_n) = rest.split_at_mut(hidden);
        for j in 0..hidden {
            let dh = dh_out[j] + dh_next[j];
            let da_n = dh * (1.0 - z[j]) * (1.0 - n[j] * n[j]);
            let da_r = da_n * gh_n[j] * r[j] * (1.0 - r[j]);
            let da_z = dh * (h_prev[j] - n[j]) * z[j] * (1.0 - z[j]);
            dgx_r[j] = da_r;
            dgx_z[j] = da_z;
            dgx_n[j] = da_n;
            dgh_r[j] = da_r;
            dgh_z[j] = da_z;
            dgh_n[j] = da_n * r[j];
            dh_direct[j] = dh * z[j];
        }

        // Weight gradients += [h_{t-1}, 1] dghᵀ and [x_t, 1] dgxᵀ.
        v_h[..hidden].copy_from_slice(h_prev);
        v_x[..input].copy_from_slice(&x[t * input..(t + 1) * input]);
        let (block_h, block_x) = grad_w_block.split_at_mut((hidden + 1) * gate_rows);
        add_outer(block_h, &v_h, &dgh);
        add_outer(block_x, &v_x, &dgx);
        if t % GRAD_BLOCK_STEPS == 0 {
            drain_into(grad_w_t, &mut grad_w_block);
        }

        // Into h_{t-1}: the direct path plus W_hhᵀ dgh; into x_t: W_ihᵀ dgx.
        dot_rows(&mut dh_next, w_t_h, &dgh);
        for (d, &direct) in dh_next.iter_mut().zip(&dh_direct) {
            *d += direct;
        }
        dot_rows(&mut grad_x[t * input..(t + 1) * input], w_t_x, &dgx);
    }
    grad_h0.copy_from_slice(&dh_next);
}

#[cfg(test)]
mod tests;
