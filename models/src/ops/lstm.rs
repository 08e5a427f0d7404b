//! A fused, trainable LSTM layer: the whole recurrence over a sequence is one candle op.
//!
//! candle-nn's LSTM builds a graph of several ops per time step; over thousands of audio
//! samples the per-op overhead dominates training. Here the whole layer, input projection
//! included, is a single [`CustomOp3`] whose forward scans time in plain Rust and whose
//! backward is back-propagation through time as a reverse scan that also accumulates the
//! weight gradients. Batch items run on separate threads; the inner loops are compiled for
//! AVX2 where the CPU has it.
//!
//! Weight layout (PyTorch's, read as is by the real-time engine): for input size `I` and hidden
//! size `H`, `w_ih: [4H, I]`, `w_hh: [4H, H]` and one combined bias `b: [4H]` (PyTorch's
//! `b_ih + b_hh`). Rows are grouped by gate in the order input `i`, forget `f`, cell `g`,
//! output `o`:
//!
//! ```text
//! i = σ(W_ii x + W_hi h + b_i)    f = σ(W_if x + W_hf h + b_f)
//! g = tanh(W_ig x + W_hg h + b_g) o = σ(W_io x + W_ho h + b_o)
//! c' = f c + i g                  h' = o tanh(c')
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
use dsp::fastmath::{sigmoid_in_place, tanh_in_place};

/// Name of the fused op in candle errors.
const OP_NAME: &str = "fxtwin-lstm-scan";
/// Gates per LSTM cell (i, f, g, o).
const GATES: usize = 4;
/// Floats saved per time step for the backward pass: the four gate activations and `c'`.
const SAVED_PER_HIDDEN: usize = GATES + 1;
/// The backward pass sums weight gradients over this many steps before adding them to the
/// total, which keeps f32 rounding from growing with the sequence length.
const GRAD_BLOCK_STEPS: usize = 256;

/// Runs an LSTM layer over a batch of sequences with one fused op.
///
/// Batch-major shapes, all f32 on the CPU, with batch size `B`, sequence length `T >= 1`,
/// input size `I` and hidden size `H`:
/// - `x: [B, T, I]`, `h0: [B, H]`, `c0: [B, H]`;
/// - `w_ih: [4H, I]`, `w_hh: [4H, H]`, `b: [4H]` in PyTorch's layout and gate order
///   (see the module docs).
///
/// Returns `(h_seq, h_last, c_last)`: the hidden state after every step `h_seq: [B, T, H]`
/// (contiguous) and the final states `h_last: [B, H]` (equal to `h_seq[:, T-1]`) and
/// `c_last: [B, H]`. All three are differentiable with respect to `x`, `h0`, `c0` and the
/// weights. For truncated back-propagation through time, pass `h_last.detach()` and
/// `c_last.detach()` as the next segment's `h0` and `c0`.
///
/// # Errors
/// When a shape disagrees with the others, a tensor is not f32, `T == 0`, or the tensors are
/// not on the CPU.
pub fn lstm(
    x: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b: &Tensor,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    // Check shapes against x and w_hh.
    let (batch, steps, input) = x.dims3()?;
    let (gate_rows, hidden) = w_hh.dims2()?;
    if gate_rows != GATES * hidden || hidden == 0 {
        bail!(
            "lstm: w_hh must be [4H, H] with H >= 1, got {:?}",
            w_hh.shape()
        );
    }
    if steps == 0 {
        bail!(
            "lstm: x must hold at least one time step, got {:?}",
            x.shape()
        );
    }
    if w_ih.dims() != [gate_rows, input] {
        bail!(
            "lstm: w_ih must be [{gate_rows}, {input}], got {:?}",
            w_ih.shape()
        );
    }
    if b.dims() != [gate_rows] {
        bail!("lstm: b must be [{gate_rows}], got {:?}", b.shape());
    }
    for (name, state) in [("h0", h0), ("c0", c0)] {
        if state.dims() != [batch, hidden] {
            bail!(
                "lstm: {name} must be [{batch}, {hidden}], got {:?}",
                state.shape()
            );
        }
    }

    // Pack the op's arguments: weights [4H, H + I + 1] = [w_hh | w_ih | b], state [B, 2H].
    let weights = Tensor::cat(&[w_hh, w_ih, &b.unsqueeze(1)?], 1)?;
    let state0 = Tensor::cat(&[h0, c0], 1)?;
    let op = LstmScan::new(hidden, input);
    let out = x.contiguous()?.apply_op3(&state0, &weights, op)?;

    // Unpack the flat output: h_seq for all items, then c_T for all items.
    let h_len = batch * steps * hidden;
    let h_seq = out.narrow(0, 0, h_len)?.reshape((batch, steps, hidden))?;
    let c_last = out
        .narrow(0, h_len, batch * hidden)?
        .reshape((batch, hidden))?;
    let h_last = h_seq.narrow(1, steps - 1, 1)?.squeeze(1)?;
    Ok((h_seq, h_last, c_last))
}

/// The LSTM layer as one candle op.
///
/// Arguments: `x: [B, T, I]`, the initial state `[B, 2H]` (`h0` then `c0`) and the packed
/// weights `[4H, H + I + 1]` (`w_hh | w_ih | b`). Output: a flat `[B T H + B H]` holding
/// `h_seq` (`[B, T, H]`) and then `c_T` (`[B, H]`), so that both reshape without a copy.
struct LstmScan {
    hidden: usize,
    input: usize,
    /// Gate activations and cell states of the forward pass, `[B, T, 5H]`, written once by
    /// `cpu_fwd` and read by `bwd` (like PyTorch's `ctx.save_for_backward`).
    saved: OnceLock<Vec<f32>>,
}

impl LstmScan {
    fn new(hidden: usize, input: usize) -> Self {
        Self {
            hidden,
            input,
            saved: OnceLock::new(),
        }
    }

    /// Length of `[h, x, 1]`, the vector the packed weights multiply.
    fn packed_len(&self) -> usize {
        self.hidden + self.input + 1
    }
}

impl Drop for LstmScan {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            recycle_buffer(saved);
        }
    }
}

impl CustomOp3 for LstmScan {
    fn name(&self) -> &'static str {
        OP_NAME
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        state_storage: &CpuStorage,
        state_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        // Read and check the arguments.
        let (hidden, input, packed) = (self.hidden, self.input, self.packed_len());
        let gate_rows = GATES * hidden;
        let (batch, steps, x_input) = x_layout.shape().dims3()?;
        if x_input != input
            || state_layout.shape().dims() != [batch, 2 * hidden]
            || w_layout.shape().dims() != [gate_rows, packed]
        {
            bail!(
                "{OP_NAME}: shapes x {:?}, state {:?}, weights {:?} do not fit H = {hidden}, \
                 I = {input}",
                x_layout.shape(),
                state_layout.shape(),
                w_layout.shape()
            );
        }
        let x = f32_slice(x_storage, x_layout, OP_NAME, "x")?;
        let state0 = f32_slice(state_storage, state_layout, OP_NAME, "initial state")?;
        let weights = f32_slice(w_storage, w_layout, OP_NAME, "weights")?;

        // Transpose the weights to [H + I + 1, 4H]: the gate pre-activations are then a sum
        // of rows scaled by [h, x, 1].
        let w_t = transpose(weights, gate_rows, packed);

        // Scan every batch item.
        let mut out = vec![0.0f32; batch * (steps + 1) * hidden];
        let mut saved = pooled_buffer(batch * steps * SAVED_PER_HIDDEN * hidden);
        let (h_all, c_all) = out.split_at_mut(batch * steps * hidden);
        let jobs: Vec<_> = x
            .chunks_exact(steps * input)
            .zip(state0.chunks_exact(2 * hidden))
            .zip(h_all.chunks_exact_mut(steps * hidden))
            .zip(c_all.chunks_exact_mut(hidden))
            .zip(saved.chunks_exact_mut(steps * SAVED_PER_HIDDEN * hidden))
            .map(|((((x, state0), h_out), c_out), saved)| ForwardJob {
                hidden,
                input,
                x,
                state0,
                h_out,
                c_out,
                saved,
            })
            .collect();
        run_jobs(jobs, steps, |job| scan_forward(&w_t, job));

        // Keep the activations for the backward pass.
        if self.saved.set(saved).is_err() {
            bail!("{OP_NAME}: forward ran twice on one op instance");
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        state0: &Tensor,
        weights: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Read the forward's inputs and saved activations.
        let (hidden, input, packed) = (self.hidden, self.input, self.packed_len());
        let gate_rows = GATES * hidden;
        let (batch, steps, _) = x.dims3()?;
        let Some(saved) = self.saved.get() else {
            bail!("{OP_NAME}: backward called before forward");
        };
        let x_data = to_f32_vec(x, OP_NAME, "x")?;
        let state0_data = to_f32_vec(state0, OP_NAME, "initial state")?;
        let w_t = transpose(&to_f32_vec(weights, OP_NAME, "weights")?, gate_rows, packed);

        // Reverse scan of every batch item, each with its own weight-gradient accumulator.
        let h_len = batch * steps * hidden;
        let mut grad_x = vec![0.0f32; x_data.len()];
        let mut grad_state0 = vec![0.0f32; batch * 2 * hidden];
        let mut grad_w_t = vec![vec![0.0f32; packed * gate_rows]; batch];
        with_f32(res, OP_NAME, "output", |out| {
            with_f32(grad_res, OP_NAME, "output gradient", |grad_out| {
                let (grad_h, grad_c) = grad_out.split_at(h_len);
                let jobs: Vec<_> = x_data
                    .chunks_exact(steps * input)
                    .zip(state0_data.chunks_exact(2 * hidden))
                    .zip(out[..h_len].chunks_exact(steps * hidden))
                    .zip(grad_h.chunks_exact(steps * hidden))
                    .zip(grad_c.chunks_exact(hidden))
                    .zip(saved.chunks_exact(steps * SAVED_PER_HIDDEN * hidden))
                    .zip(grad_x.chunks_exact_mut(steps * input))
                    .zip(grad_state0.chunks_exact_mut(2 * hidden))
                    .zip(grad_w_t.iter_mut())
                    .map(
                        |((((((((x, s0), h), gh), gc), sv), gx), gs0), gw)| BackwardJob {
                            hidden,
                            input,
                            x,
                            state0: s0,
                            h_seq: h,
                            grad_h: gh,
                            grad_c_last: gc,
                            saved: sv,
                            grad_x: gx,
                            grad_state0: gs0,
                            grad_w_t: gw,
                        },
                    )
                    .collect();
                run_jobs(jobs, steps, |job| scan_backward(&w_t, job));
                Ok(())
            })
        })?;

        // Sum the weight gradients over the batch and restore the [4H, H + I + 1] layout.
        let mut grad_w_t_sum = vec![0.0f32; packed * gate_rows];
        for item in &mut grad_w_t {
            drain_into(&mut grad_w_t_sum, item);
        }
        let grad_w = transpose(&grad_w_t_sum, packed, gate_rows);

        let device = x.device();
        Ok((
            Some(Tensor::from_vec(grad_x, (batch, steps, input), device)?),
            Some(Tensor::from_vec(grad_state0, (batch, 2 * hidden), device)?),
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
    /// `[2H]`: h0 then c0.
    state0: &'a [f32],
    /// Written: h_1..h_T, `[T, H]`.
    h_out: &'a mut [f32],
    /// Written: c_T, `[H]`.
    c_out: &'a mut [f32],
    /// Written: i, f, g, o and c_t per step, `[T, 5H]`.
    saved: &'a mut [f32],
}

dispatch_avx2! {
    /// Forward scan of one sequence; `w_t: [H + I + 1, 4H]` (packed weights transposed).
    fn scan_forward = forward_body(w_t: &[f32], job: ForwardJob<'_>)
}

#[inline(always)]
fn forward_body(w_t: &[f32], job: ForwardJob<'_>) {
    let ForwardJob {
        hidden,
        input,
        x,
        state0,
        h_out,
        c_out,
        saved,
    } = job;
    let gate_rows = GATES * hidden;
    // v = [h_{t-1}, x_t, 1], the vector the packed weights multiply.
    let mut v = vec![0.0f32; hidden + input + 1];
    v[..hidden].copy_from_slice(&state0[..hidden]);
    v[hidden + input] = 1.0;
    let mut c = state0[hidden..2 * hidden].to_vec();
    let mut z = vec![0.0f32; gate_rows];
    let mut tanh_c = vec![0.0f32; hidden];

    for ((x_t, h_t), saved_t) in x
        .chunks_exact(input)
        .zip(h_out.chunks_exact_mut(hidden))
        .zip(saved.chunks_exact_mut(SAVED_PER_HIDDEN * hidden))
    {
        // Gate pre-activations z = W_hh h + W_ih x + b.
        v[hidden..hidden + input].copy_from_slice(x_t);
        z.fill(0.0);
        add_rows_scaled(&mut z, w_t, &v);

        // Gate activations.
        sigmoid_in_place(&mut z[..2 * hidden]);
        tanh_in_place(&mut z[2 * hidden..3 * hidden]);
        sigmoid_in_place(&mut z[3 * hidden..]);
        let (i, rest) = z.split_at(hidden);
        let (f, rest) = rest.split_at(hidden);
        let (g, o) = rest.split_at(hidden);

        // c' = f c + i g; h' = o tanh(c').
        for (((c, &f), &i), &g) in c.iter_mut().zip(f).zip(i).zip(g) {
            *c = f * *c + i * g;
        }
        tanh_c.copy_from_slice(&c);
        tanh_in_place(&mut tanh_c);
        for ((h, &o), &tc) in h_t.iter_mut().zip(o).zip(&tanh_c) {
            *h = o * tc;
        }
        v[..hidden].copy_from_slice(h_t);

        // Save what the backward pass needs.
        saved_t[..gate_rows].copy_from_slice(&z);
        saved_t[gate_rows..].copy_from_slice(&c);
    }
    c_out.copy_from_slice(&c);
}

/// One batch item's slices for [`scan_backward`].
struct BackwardJob<'a> {
    hidden: usize,
    input: usize,
    /// `[T, I]`.
    x: &'a [f32],
    /// `[2H]`: h0 then c0.
    state0: &'a [f32],
    /// Forward output h_1..h_T, `[T, H]`.
    h_seq: &'a [f32],
    /// Gradient of h_1..h_T, `[T, H]`.
    grad_h: &'a [f32],
    /// Gradient of c_T, `[H]`.
    grad_c_last: &'a [f32],
    /// From [`scan_forward`], `[T, 5H]`.
    saved: &'a [f32],
    /// Written: gradient of x, `[T, I]`.
    grad_x: &'a mut [f32],
    /// Written: gradient of h0 then c0, `[2H]`.
    grad_state0: &'a mut [f32],
    /// Accumulated (must start at zero): gradient of the transposed packed weights,
    /// `[H + I + 1, 4H]`.
    grad_w_t: &'a mut [f32],
}

dispatch_avx2! {
    /// Reverse scan (back-propagation through time) of one sequence;
    /// `w_t: [H + I + 1, 4H]` (packed weights transposed).
    fn scan_backward = backward_body(w_t: &[f32], job: BackwardJob<'_>)
}

#[inline(always)]
fn backward_body(w_t: &[f32], job: BackwardJob<'_>) {
    let BackwardJob {
        hidden,
        input,
        x,
        state0,
        h_seq,
        grad_h,
        grad_c_last,
        saved,
        grad_x,
        grad_state0,
        grad_w_t,
    } = job;
    let gate_rows = GATES * hidden;
    let saved_len = SAVED_PER_HIDDEN * hidden;
    let steps = saved.len() / saved_len;
    let (w_t_h, rest) = w_t.split_at(hidden * gate_rows);
    let w_t_x = &rest[..input * gate_rows];
    // Gradient reaching h_t through step t + 1, and reaching c_t.
    let mut dh_next = vec![0.0f32; hidden];
    let mut dc = grad_c_last.to_vec();
    let mut tanh_c = vec![0.0f32; hidden];
    let mut dz = vec![0.0f32; gate_rows];
    let mut v = vec![0.0f32; hidden + input + 1];
    v[hidden + input] = 1.0;
    // Weight gradients of the last few steps, added to grad_w_t every GRAD_BLOCK_STEPS.
    let mut grad_w_block = vec![0.0f32; grad_w_t.len()];

    for t in (0..steps).rev() {
        // This step's saved activations and the previous state.
        let saved_t = &saved[t * saved_len..(t + 1) * saved_len];
        let (i, rest) = saved_t.split_at(hidden);
        let (f, rest) = rest.split_at(hidden);
        let (g, rest) = rest.split_at(hidden);
        let (o, c_t) = rest.split_at(hidden);
        let (h_prev, c_prev) = if t == 0 {
            state0.split_at(hidden)
        } else {
            (
                &h_seq[(t - 1) * hidden..t * hidden],
                &saved[(t - 1) * saved_len + gate_rows..t * saved_len],
            )
        };
        tanh_c.copy_from_slice(c_t);
        tanh_in_place(&mut tanh_c);

        // Through h' = o tanh(c') and c' = f c + i g to the gate pre-activations dz.
        let (dz_i, rest) = dz.split_at_mut(hidden);
        let (dz_f, rest) = rest.split_at_mut(hidden);
        let (dz_g, dz_o) = rest.split_at_mut(hidden);
        let dh_out = &grad_h[t * hidden..(t + 1) * hidden];
        for j in 0..hidden {
            let dh = dh_out[j] + dh_next[j];
            let tc = tanh_c[j];
            let dct = dc[j] + dh * o[j] * (1.0 - tc * tc);
            dz_o[j] = dh * tc * o[j] * (1.0 - o[j]);
            dz_i[j] = dct * g[j] * i[j] * (1.0 - i[j]);
            dz_g[j] = dct * i[j] * (1.0 - g[j] * g[j]);
            dz_f[j] = dct * c_prev[j] * f[j] * (1.0 - f[j]);
            dc[j] = dct * f[j];
        }

        // Weight gradient += [h_{t-1}, x_t, 1] dzᵀ.
        v[..hidden].copy_from_slice(h_prev);
        v[hidden..hidden + input].copy_from_slice(&x[t * input..(t + 1) * input]);
        add_outer(&mut grad_w_block, &v, &dz);
        if t % GRAD_BLOCK_STEPS == 0 {
            drain_into(grad_w_t, &mut grad_w_block);
        }

        // Into h_{t-1} and x_t: W_hhᵀ dz and W_ihᵀ dz.
        dot_rows(&mut dh_next, w_t_h, &dz);
        dot_rows(&mut grad_x[t * input..(t + 1) * input], w_t_x, &dz);
    }
    grad_state0[..hidden].copy_from_slice(&dh_next);
    grad_state0[hidden..].copy_from_slice(&dc);
}

#[cfg(test)]
mod tests;
