//! A fused, trainable dilated 1-D convolution: one candle op with a hand-written backward.
//!
//! candle's CPU `conv1d` with dilation, and its backward through `conv_transpose1d`, run two
//! orders of magnitude slower than a GEMM-based convolution on the shapes of audio models
//! (few channels, tens of thousands of samples). Here the convolution is written as shifted
//! matrix products with no im2col copy. For a kernel `w: [C_out, C_in, K]` with taps
//! `W_j = w[:, :, j]` and dilation `d`, per batch item:
//!
//! ```text
//! forward   Y[:, t]          = b + Σ_j W_j · X[:, t + j d]
//! backward  dW_j            += dY · X[:, j d ..]ᵀ       db = Σ_t dY[:, t]
//!           dX[:, j d ..]   += W_jᵀ · dY
//! ```
//!
//! Each product runs through the `gemm` crate (the kernels candle itself uses) on strided views
//! of the tensors, over tiles of time short enough for a tile of `Y` to stay in cache across
//! all taps. When `C_in < K` (a first layer fed with mono audio), the products are grouped by
//! input channel instead of by tap, so that their inner dimension is `K` rather than `C_in`.
//! Batch items, and blocks of channels when there are fewer items than threads, run on
//! separate threads.
//!
//! TODO: with 16 channels the products are thin (inner dimension 16, or `K`), and gemm's
//! packing and `Y` round trips per tap hold it to roughly 20-30 GFLOP/s on two cores; a
//! register-blocked kernel summing all `C_in x K` terms per output tile in one pass could
//! about double that. Not done yet: the convolution is no longer the largest cost of a TCN
//! training step (candle's element-wise ops and page faults of fresh buffers are).
//!
//! CPU and f32 only. TODO: no CUDA kernel yet; on a GPU device the op fails with candle's
//! "no cuda implementation" error (use candle's `conv1d` there).

mod strided;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::cpu::{f32_slice, run_jobs, with_f32};
use strided::{gemm_acc, View};

/// Name of the fused op in candle errors.
const OP_NAME: &str = "fxtwin-dilated-conv1d";
/// Output samples per tile: a `[16, TILE]` block of the output (64 KiB) stays in the L2 cache
/// while all taps add into it.
const TILE_SAMPLES: usize = 1024;

/// Dilated 1-D convolution without padding ("valid"), exactly as candle's and PyTorch's
/// `conv1d` with stride 1 and one group:
/// `y[b, o, t] = bias[o] + Σ_{c, j} w[o, c, j] x[b, c, t + j dilation]`.
///
/// Shapes, all f32 on the CPU: `x: [B, C_in, T]`, `w: [C_out, C_in, K]`, `b: [C_out]` (zero
/// when `None`); the result is `[B, C_out, T - (K - 1) dilation]`, contiguous. Differentiable
/// with respect to `x`, `w` and `b`. `dilation` is in samples (>= 1).
///
/// # Errors
/// When `x` or `w` is not 3-D, their channel counts differ, `b` is not `[C_out]`, `K` or
/// `dilation` is 0, `T` is shorter than the kernel's span `(K - 1) dilation + 1`, a tensor is
/// not f32, or the tensors are not on the CPU. Messages name the offending tensor.
pub fn dilated_conv1d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    dilation: usize,
) -> candle_core::Result<Tensor> {
    // Check the shapes.
    let Ok((_, c_in, t_in)) = x.dims3() else {
        bail!(
            "dilated_conv1d: x must be [B, C_in, T], got {:?}",
            x.shape()
        );
    };
    let Ok((c_out, w_c_in, taps)) = w.dims3() else {
        bail!(
            "dilated_conv1d: w must be [C_out, C_in, K], got {:?}",
            w.shape()
        );
    };
    if w_c_in != c_in || taps == 0 || c_out == 0 {
        bail!(
            "dilated_conv1d: w must be [C_out, {c_in}, K] with C_out, K >= 1 to match x {:?}, \
             got {:?}",
            x.shape(),
            w.shape()
        );
    }
    if dilation == 0 {
        bail!("dilated_conv1d: dilation must be at least 1 sample, got 0");
    }
    let span = (taps - 1) * dilation + 1;
    if t_in < span {
        bail!(
            "dilated_conv1d: x {:?} holds {t_in} samples, fewer than the kernel's span of \
             {span} (K = {taps}, dilation = {dilation})",
            x.shape()
        );
    }
    let zero_bias;
    let b = match b {
        Some(b) => {
            if b.dims() != [c_out] {
                bail!("dilated_conv1d: b must be [{c_out}], got {:?}", b.shape());
            }
            b
        }
        None => {
            zero_bias = Tensor::zeros(c_out, x.dtype(), x.device())?;
            &zero_bias
        }
    };

    // Run the op on contiguous arguments.
    let op = DilatedConv { dilation };
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

/// The convolution as one candle op: arguments `x: [B, C_in, T]`, `w: [C_out, C_in, K]`,
/// `b: [C_out]`; output `[B, C_out, T_out]`.
struct DilatedConv {
    dilation: usize,
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    c_in: usize,
    c_out: usize,
    taps: usize,
    dilation: usize,
    t_in: usize,
    t_out: usize,
}

impl Dims {
    fn new(x: &[usize], w: &[usize], dilation: usize) -> candle_core::Result<Self> {
        let ([batch, c_in, t_in], [c_out, w_c_in, taps]) = (x, w) else {
            bail!("{OP_NAME}: x {x:?} and w {w:?} must both be 3-D");
        };
        let span = taps.saturating_sub(1) * dilation + 1;
        if c_in != w_c_in || *taps == 0 || dilation == 0 || *t_in < span {
            bail!("{OP_NAME}: x {x:?} does not fit w {w:?} with dilation {dilation}");
        }
        Ok(Self {
            batch: *batch,
            c_in: *c_in,
            c_out: *c_out,
            taps: *taps,
            dilation,
            t_in: *t_in,
            t_out: t_in - span + 1,
        })
    }

    /// Whether products are grouped by tap (inner dimension `C_in`) rather than by input
    /// channel (inner dimension `K`): whichever makes the inner dimension longer.
    fn by_tap(&self) -> bool {
        self.c_in >= self.taps
    }

    /// Channel blocks per batch item so that every thread has work, at most `rows`.
    fn blocks_per_item(&self, rows: usize) -> usize {
        let threads = candle_core::utils::get_num_threads().max(1);
        threads.div_ceil(self.batch.max(1)).clamp(1, rows.max(1))
    }
}

/// Rows `[start, end)` of block `q` when `rows` rows are dealt into `blocks` nearly equal blocks.
fn block_rows(rows: usize, blocks: usize, q: usize) -> (usize, usize) {
    (q * rows / blocks, (q + 1) * rows / blocks)
}

/// Splits `data` (whole rows of `row_len`) into `blocks` consecutive blocks of rows as dealt by
/// [`block_rows`].
fn split_rows(data: &mut [f32], row_len: usize, rows: usize, blocks: usize) -> Vec<&mut [f32]> {
    let mut out = Vec::with_capacity(blocks);
    let mut rest = data;
    for q in 0..blocks {
        let (start, end) = block_rows(rows, blocks, q);
        let (head, tail) = rest.split_at_mut((end - start) * row_len);
        out.push(head);
        rest = tail;
    }
    out
}

impl CustomOp3 for DilatedConv {
    fn name(&self) -> &'static str {
        OP_NAME
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        b_storage: &CpuStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        // Read and check the arguments.
        let dims = Dims::new(x_layout.dims(), w_layout.dims(), self.dilation)?;
        if b_layout.dims() != [dims.c_out] {
            bail!(
                "{OP_NAME}: b {:?} must be [{}]",
                b_layout.dims(),
                dims.c_out
            );
        }
        let x = f32_slice(x_storage, x_layout, OP_NAME, "x")?;
        let w = f32_slice(w_storage, w_layout, OP_NAME, "w")?;
        let bias = f32_slice(b_storage, b_layout, OP_NAME, "b")?;

        // Convolve every batch item, in blocks of output channels.
        let Dims {
            batch,
            c_in,
            c_out,
            t_in,
            t_out,
            ..
        } = dims;
        let blocks = dims.blocks_per_item(c_out);
        let mut y = vec![0.0f32; batch * c_out * t_out];
        let jobs: Vec<_> = x
            .chunks_exact(c_in * t_in)
            .zip(y.chunks_exact_mut(c_out * t_out))
            .flat_map(|(x_item, y_item)| {
                split_rows(y_item, t_out, c_out, blocks)
                    .into_iter()
                    .enumerate()
                    .map(move |(q, y_block)| (x_item, block_rows(c_out, blocks, q).0, y_block))
            })
            .collect();
        run_jobs(jobs, t_out, |(x_item, o_start, y_block)| {
            forward_block(&dims, w, bias, x_item, o_start, y_block)
        });

        Ok((CpuStorage::F32(y), Shape::from((batch, c_out, t_out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = Dims::new(x.dims(), w.dims(), self.dilation)?;
        if grad_res.dims() != [dims.batch, dims.c_out, dims.t_out] {
            bail!(
                "{OP_NAME}: output gradient {:?} must be [{}, {}, {}]",
                grad_res.shape(),
                dims.batch,
                dims.c_out,
                dims.t_out
            );
        }
        let Dims {
            batch,
            c_in,
            c_out,
            taps,
            t_in,
            t_out,
            ..
        } = dims;

        // Per item and block: the input gradient of a block of input channels, and partial
        // weight and bias gradients of a block of output channels.
        let blocks = dims.blocks_per_item(c_in.min(c_out));
        let mut grad_x = vec![0.0f32; batch * c_in * t_in];
        let mut grad_w_parts = vec![Vec::new(); batch * blocks];
        let mut grad_b_parts = vec![Vec::new(); batch * blocks];
        with_f32(x, OP_NAME, "x", |x| {
            with_f32(w, OP_NAME, "w", |w| {
                with_f32(grad_res, OP_NAME, "output gradient", |grad_y| {
                    let jobs: Vec<_> = x
                        .chunks_exact(c_in * t_in)
                        .zip(grad_y.chunks_exact(c_out * t_out))
                        .zip(grad_x.chunks_exact_mut(c_in * t_in))
                        .flat_map(|((x_item, gy_item), gx_item)| {
                            split_rows(gx_item, t_in, c_in, blocks)
                                .into_iter()
                                .enumerate()
                                .map(move |(q, gx_block)| BackwardJob {
                                    x: x_item,
                                    grad_y: gy_item,
                                    c_rows: block_rows(c_in, blocks, q),
                                    o_rows: block_rows(c_out, blocks, q),
                                    grad_x: gx_block,
                                })
                        })
                        .zip(grad_w_parts.iter_mut().zip(grad_b_parts.iter_mut()))
                        .collect();
                    run_jobs(jobs, t_out, |(job, (gw, gb))| {
                        (*gw, *gb) = backward_block(&dims, w, job);
                    });
                    Ok(())
                })
            })
        })?;

        // Sum the weight and bias gradients over the batch, in item order.
        let mut grad_w = vec![0.0f32; c_out * c_in * taps];
        let mut grad_b = vec![0.0f32; c_out];
        for (part, (gw, gb)) in grad_w_parts.iter().zip(&grad_b_parts).enumerate() {
            let o_start = block_rows(c_out, blocks, part % blocks).0;
            let w_start = o_start * c_in * taps;
            for (total, value) in grad_w[w_start..w_start + gw.len()].iter_mut().zip(gw) {
                *total += value;
            }
            for (total, value) in grad_b[o_start..o_start + gb.len()].iter_mut().zip(gb) {
                *total += value;
            }
        }

        let device = x.device();
        Ok((
            Some(Tensor::from_vec(grad_x, (batch, c_in, t_in), device)?),
            Some(Tensor::from_vec(grad_w, (c_out, c_in, taps), device)?),
            Some(Tensor::from_vec(grad_b, b.shape(), device)?),
        ))
    }
}

/// The products `W_j[rows] · X` of one tile for output rows `o_start..o_start + rows`, in the
/// grouping [`Dims::by_tap`] picks, added into `y` at `dst`.
fn add_tile_products(
    dims: &Dims,
    w: &[f32],
    x: &[f32],
    o_start: usize,
    (t_start, len): (usize, usize),
    y: &mut [f32],
    dst: View,
) {
    let Dims {
        c_in,
        taps,
        dilation,
        t_in,
        ..
    } = *dims;
    let w_row = c_in * taps;
    let rows = dst.rows;
    if dims.by_tap() {
        // Y += W_j · X[:, t + j d], inner dimension C_in.
        for j in 0..taps {
            let lhs = View {
                offset: o_start * w_row + j,
                rows,
                cols: c_in,
                row_stride: w_row,
                col_stride: taps,
            };
            let rhs = View::row_major(j * dilation + t_start, c_in, len, t_in);
            gemm_acc(y, dst, w, lhs, x, rhs);
        }
    } else {
        // Y += w[:, c, :] · [X[c, t + j d]]_j, inner dimension K.
        for c in 0..c_in {
            let lhs = View::row_major(o_start * w_row + c * taps, rows, taps, w_row);
            let rhs = View::row_major(c * t_in + t_start, taps, len, dilation);
            gemm_acc(y, dst, w, lhs, x, rhs);
        }
    }
}

/// Forward pass of one batch item's output rows `o_start..`: `x_item: [C_in, T_in]`,
/// `y_block: [rows, T_out]`, overwritten.
fn forward_block(
    dims: &Dims,
    w: &[f32],
    bias: &[f32],
    x_item: &[f32],
    o_start: usize,
    y_block: &mut [f32],
) {
    let t_out = dims.t_out;
    let rows = y_block.len() / t_out;

    // Start from the bias, then add every tap's product tile by tile.
    for (row, &b) in y_block.chunks_exact_mut(t_out).zip(&bias[o_start..]) {
        row.fill(b);
    }
    for t_start in (0..t_out).step_by(TILE_SAMPLES) {
        let len = TILE_SAMPLES.min(t_out - t_start);
        let dst = View::row_major(t_start, rows, len, t_out);
        add_tile_products(dims, w, x_item, o_start, (t_start, len), y_block, dst);
    }
}

/// One batch item and block of channels for [`backward_block`].
struct BackwardJob<'a> {
    /// `[C_in, T_in]`.
    x: &'a [f32],
    /// `[C_out, T_out]`.
    grad_y: &'a [f32],
    /// Input channels whose gradient this job writes.
    c_rows: (usize, usize),
    /// Output channels whose weight and bias gradients this job sums.
    o_rows: (usize, usize),
    /// Written: gradient of input rows `c_rows`, `[c_rows, T_in]`.
    grad_x: &'a mut [f32],
}

/// Backward pass of one batch item and block: writes the input gradient of the job's input
/// channels and returns this item's weight gradient `[o_rows, C_in, K]` and bias gradient
/// `[o_rows]` for its output channels.
fn backward_block(dims: &Dims, w: &[f32], job: BackwardJob<'_>) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        c_in,
        c_out,
        taps,
        dilation,
        t_in,
        t_out,
        ..
    } = *dims;
    let BackwardJob {
        x,
        grad_y,
        c_rows: (c_start, c_end),
        o_rows: (o_start, o_end),
        grad_x,
    } = job;
    let w_row = c_in * taps;
    let o_len = o_end - o_start;
    let mut grad_w = vec![0.0f32; o_len * w_row];

    for t_start in (0..t_out).step_by(TILE_SAMPLES) {
        let len = TILE_SAMPLES.min(t_out - t_start);

        // dX[c, t + j d] += Σ_o w[o, c, j] dY[o, t] for this job's input channels.
        let dy = View::row_major(t_start, c_out, len, t_out);
        for j in 0..taps {
            let dst = View::row_major(j * dilation + t_start, c_end - c_start, len, t_in);
            let w_t = View {
                offset: c_start * taps + j,
                rows: c_end - c_start,
                cols: c_out,
                row_stride: taps,
                col_stride: w_row,
            };
            gemm_acc(grad_x, dst, w, w_t, grad_y, dy);
        }

        // dw[o, c, j] += Σ_t dY[o, t] X[c, t + j d] for this job's output channels.
        let dy = View::row_major(o_start * t_out + t_start, o_len, len, t_out);
        if dims.by_tap() {
            for j in 0..taps {
                let dst = View {
                    offset: j,
                    rows: o_len,
                    cols: c_in,
                    row_stride: w_row,
                    col_stride: taps,
                };
                let x_t = View::row_major(j * dilation + t_start, c_in, len, t_in).t();
                gemm_acc(&mut grad_w, dst, grad_y, dy, x, x_t);
            }
        } else {
            for c in 0..c_in {
                let dst = View::row_major(c * taps, o_len, taps, w_row);
                let x_t = View::row_major(c * t_in + t_start, taps, len, dilation).t();
                gemm_acc(&mut grad_w, dst, grad_y, dy, x, x_t);
            }
        }
    }

    // db[o] = Σ_t dY[o, t], summed in f64 so that long items lose no precision.
    let grad_b = grad_y[o_start * t_out..o_end * t_out]
        .chunks_exact(t_out)
        .map(|row| row.iter().map(|&v| f64::from(v)).sum::<f64>() as f32)
        .collect();
    (grad_w, grad_b)
}

#[cfg(test)]
mod tests;
