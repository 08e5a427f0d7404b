//! Kernel for single-layer LSTM and GRU models (see [`RecurrentNet`] for the weights).
//!
//! Two implementations of the same cell:
//! - the scalar path ([`Isa::Scalar`]) computes each gate row as a dot product in index order,
//!   as the formulas read; it is the reference the others are tested against;
//! - the vector path ([`Isa::Baseline`], [`Isa::Avx2Fma`]) keeps the recurrent weights
//!   column-blocked (for each block of [`ROWS`] gate rows, each hidden unit's column of
//!   `ROWS` weights in turn), so the matrix-vector product is a sequence of broadcast
//!   multiply-adds into `ROWS` accumulators that stay in vector registers. The code is
//!   written for the compiler's vectoriser and compiled twice: for the target's baseline
//!   (SSE2 on x86-64, NEON on aarch64) and, on x86-64, with AVX2 and FMA enabled, chosen at
//!   run time when the processor has them.
//!
//! Both use the activations of [`crate::fastmath`] (absolute error below 3e-7), the same the
//! training crate uses. The paths differ only in summation order and fused rounding: well
//! below 1e-6 on the output.

use super::simd::Isa;
use super::Kernel;
use crate::fastmath::{sigmoid, sigmoid_in_place, tanh, tanh_in_place};
use crate::model::{Cell, LevelDetector, ModelFile, RecurrentNet, GAIN_HEAD_SCALE};

/// Gate rows per register block of the vector path: 32 f32 are four AVX registers or eight
/// SSE/NEON ones, leaving registers free for the broadcast and the loads.
const ROWS: usize = 32;

#[derive(Clone)]
pub(super) struct RecurrentKernel {
    cell: Cell,
    hidden: usize,
    skip: bool,
    /// The implementation that runs [`Kernel::process`].
    isa: Isa,
    /// Gate rows rounded up to a multiple of [`ROWS`]; the vector path's buffers have this
    /// length, padded with zero weights.
    rows_padded: usize,
    /// Vector path: `w_hh` blocked as `[rows_padded / ROWS][H][ROWS]`.
    w_hh_blocked: Vec<f32>,
    /// Vector path: `w_x` padded to `rows_padded`.
    w_x_padded: Vec<f32>,
    /// Vector path: the level weights column by column, `[D][rows_padded]`.
    w_level_columns: Vec<f32>,
    /// Vector path, GRU: `b_hh` padded to `rows_padded`.
    b_hh_padded: Vec<f32>,
    /// Column 0 of `w_ih`: the weight of the audio input per gate row, `[G*H]`.
    w_x: Vec<f32>,
    /// Columns `1..=K` of `w_ih`, row-major `[G*H, K]`.
    w_k: Vec<f32>,
    /// Columns `K+1..` of `w_ih`, the weights of the level inputs, row-major `[G*H, D]`.
    w_level: Vec<f32>,
    /// One detector per level input.
    levels: Vec<LevelDetector>,
    /// The level inputs' readings for the current sample, `[D]`.
    level_values: Vec<f32>,
    /// `[G*H, H]` row-major.
    w_hh: Vec<f32>,
    /// LSTM: summed bias; GRU: input bias `b_ih`. `[G*H]`.
    b_in: Vec<f32>,
    /// GRU only: recurrent bias `b_hh`, `[3H]`.
    b_hh: Vec<f32>,
    head_w: Vec<f32>,
    head_b: f32,
    /// Gain head `gain.w`, `gain.b` (see [`RecurrentNet::gain_head`]); `None` without.
    gain: Option<(Vec<f32>, f32)>,
    knob_count: usize,
    /// `b_in + w_k · knobs`, refreshed when knobs change; `[rows_padded]`, zero past `G*H`.
    cond: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
    /// Input-side gate pre-activations for one sample, `[rows_padded]` (the scalar path uses
    /// the first `G*H`).
    gates: Vec<f32>,
    /// GRU: recurrent-side pre-activations, `[rows_padded]`.
    gates_h: Vec<f32>,
}

impl RecurrentKernel {
    /// A kernel on the fastest implementation this processor runs.
    pub(super) fn new(model: &ModelFile, net: &RecurrentNet) -> Self {
        Self::with_isa(model, net, Isa::detect())
    }

    /// A kernel on implementation `isa`, which must be one of [`Isa::available`].
    pub(super) fn with_isa(model: &ModelFile, net: &RecurrentNet, isa: Isa) -> Self {
        assert!(
            Isa::available().contains(&isa),
            "{isa:?} does not run on this processor"
        );
        let hidden = net.hidden_size;
        let gh = net.cell.gates() * hidden;
        let knob_count = model.knobs.len();
        let w_ih = &model.weight("rnn.w_ih").data;
        let cols = net.input_size(knob_count);
        let w_x: Vec<f32> = (0..gh).map(|r| w_ih[r * cols]).collect();
        let w_k = (0..gh)
            .flat_map(|r| {
                w_ih[r * cols + 1..r * cols + 1 + knob_count]
                    .iter()
                    .copied()
            })
            .collect();
        let levels: Vec<LevelDetector> = net
            .level_inputs
            .iter()
            .copied()
            .map(LevelDetector::new)
            .collect();
        let w_level: Vec<f32> = (0..gh)
            .flat_map(|r| {
                w_ih[r * cols + 1 + knob_count..(r + 1) * cols]
                    .iter()
                    .copied()
            })
            .collect();
        let (b_in, b_hh) = match net.cell {
            Cell::Lstm => (model.weight("rnn.b").data.clone(), Vec::new()),
            Cell::Gru => (
                model.weight("rnn.b_ih").data.clone(),
                model.weight("rnn.b_hh").data.clone(),
            ),
        };
        let w_hh = model.weight("rnn.w_hh").data.clone();

        // The vector path's layouts, zero-padded to whole register blocks.
        let rows_padded = gh.div_ceil(ROWS) * ROWS;
        let pad = |v: &[f32]| {
            let mut padded = v.to_vec();
            padded.resize(rows_padded, 0.0);
            padded
        };
        let mut w_hh_blocked = vec![0.0; rows_padded * hidden];
        for r in 0..gh {
            let (block, lane) = (r / ROWS, r % ROWS);
            for j in 0..hidden {
                w_hh_blocked[(block * hidden + j) * ROWS + lane] = w_hh[r * hidden + j];
            }
        }
        let d = levels.len();
        let mut w_level_columns = vec![0.0; d * rows_padded];
        for r in 0..gh {
            for k in 0..d {
                w_level_columns[k * rows_padded + r] = w_level[r * d + k];
            }
        }

        Self {
            cell: net.cell,
            hidden,
            skip: net.skip,
            isa,
            rows_padded,
            w_hh_blocked,
            w_x_padded: pad(&w_x),
            w_level_columns,
            b_hh_padded: pad(&b_hh),
            w_x,
            w_k,
            w_level,
            level_values: vec![0.0; d],
            levels,
            w_hh,
            cond: pad(&b_in),
            b_in,
            b_hh,
            head_w: model.weight("head.w").data.clone(),
            head_b: model.weight("head.b").data[0],
            gain: net.gain_head.then(|| {
                (
                    model.weight("gain.w").data.clone(),
                    model.weight("gain.b").data[0],
                )
            }),
            knob_count,
            h: vec![0.0; hidden],
            c: vec![0.0; hidden],
            gates: vec![0.0; rows_padded],
            gates_h: vec![0.0; rows_padded],
        }
    }

    /// The implementation this kernel runs.
    #[cfg(test)]
    pub(super) fn isa(&self) -> Isa {
        self.isa
    }

    /// Input-side pre-activation of gate row `r` for sample `x`, with the level inputs'
    /// current readings.
    #[inline]
    fn input_term(&self, r: usize, x: f32) -> f32 {
        let d = self.level_values.len();
        let t = self.cond[r] + self.w_x[r] * x;
        if d == 0 {
            t
        } else {
            t + dot(&self.w_level[r * d..(r + 1) * d], &self.level_values)
        }
    }

    fn step_lstm(&mut self, x: f32) {
        let hdim = self.hidden;
        for r in 0..4 * hdim {
            let row = &self.w_hh[r * hdim..(r + 1) * hdim];
            self.gates[r] = self.input_term(r, x) + dot(row, &self.h);
        }
        let (i, rest) = self.gates.split_at(hdim);
        let (f, rest) = rest.split_at(hdim);
        let (g, o) = rest.split_at(hdim);
        for j in 0..hdim {
            let c = sigmoid(f[j]) * self.c[j] + sigmoid(i[j]) * tanh(g[j]);
            self.c[j] = c;
            self.h[j] = sigmoid(o[j]) * tanh(c);
        }
    }

    fn step_gru(&mut self, x: f32) {
        let hdim = self.hidden;
        for r in 0..3 * hdim {
            let row = &self.w_hh[r * hdim..(r + 1) * hdim];
            self.gates[r] = self.input_term(r, x);
            self.gates_h[r] = self.b_hh[r] + dot(row, &self.h);
        }
        for j in 0..hdim {
            let r = sigmoid(self.gates[j] + self.gates_h[j]);
            let z = sigmoid(self.gates[hdim + j] + self.gates_h[hdim + j]);
            let n = tanh(self.gates[2 * hdim + j] + r * self.gates_h[2 * hdim + j]);
            self.h[j] = (1.0 - z) * n + z * self.h[j];
        }
    }
}

impl RecurrentKernel {
    fn process_scalar(&mut self, input: &[f32], output: &mut [f32]) {
        for (&x, y) in input.iter().zip(output.iter_mut()) {
            for (value, det) in self.level_values.iter_mut().zip(&mut self.levels) {
                *value = det.next(x);
            }
            match self.cell {
                Cell::Lstm => self.step_lstm(x),
                Cell::Gru => self.step_gru(x),
            }
            let mut out = self.head_b + dot(&self.head_w, &self.h);
            match &self.gain {
                Some((w, b)) => out += (GAIN_HEAD_SCALE * (b + dot(w, &self.h))).exp() * x,
                None if self.skip => out += x,
                None => {}
            }
            *y = out;
        }
    }

    /// The vector path compiled with AVX2 and FMA.
    ///
    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn process_avx2_fma(&mut self, input: &[f32], output: &mut [f32]) {
        self.process_vector::<true>(input, output);
    }

    /// The vector path; `FUSED` uses fused multiply-adds (only where the target has them in
    /// hardware: elsewhere `mul_add` is a slow library call).
    #[inline(always)]
    fn process_vector<const FUSED: bool>(&mut self, input: &[f32], output: &mut [f32]) {
        let hdim = self.hidden;
        for (&x, y) in input.iter().zip(output.iter_mut()) {
            for (value, det) in self.level_values.iter_mut().zip(&mut self.levels) {
                *value = det.next(x);
            }
            // Input side: conditioning, audio input and level inputs.
            for ((g, &c), &w) in self.gates.iter_mut().zip(&self.cond).zip(&self.w_x_padded) {
                *g = madd::<FUSED>(w, x, c);
            }
            for (column, &level) in self
                .w_level_columns
                .chunks_exact(self.rows_padded)
                .zip(&self.level_values)
            {
                for (g, &w) in self.gates.iter_mut().zip(column) {
                    *g = madd::<FUSED>(w, level, *g);
                }
            }
            match self.cell {
                Cell::Lstm => {
                    recurrent_product::<FUSED, FUSED>(&self.w_hh_blocked, &self.h, &mut self.gates);
                    let (ifg, rest) = self.gates.split_at_mut(3 * hdim);
                    let o = &mut rest[..hdim];
                    sigmoid_in_place(&mut ifg[..2 * hdim]);
                    tanh_in_place(&mut ifg[2 * hdim..]);
                    sigmoid_in_place(o);
                    // Each step a whole-slice loop, so that every one vectorises.
                    let (i, rest) = ifg.split_at_mut(hdim);
                    let (f, g) = rest.split_at_mut(hdim);
                    for (((c, &f), &i), g) in self.c.iter_mut().zip(&*f).zip(&*i).zip(g.iter_mut())
                    {
                        *c = madd::<FUSED>(f, *c, i * *g);
                        *g = *c;
                    }
                    tanh_in_place(g);
                    for ((h, &o), &tc) in self.h.iter_mut().zip(&*o).zip(&*g) {
                        *h = o * tc;
                    }
                }
                Cell::Gru => {
                    self.gates_h.copy_from_slice(&self.b_hh_padded);
                    recurrent_product::<FUSED, FUSED>(
                        &self.w_hh_blocked,
                        &self.h,
                        &mut self.gates_h,
                    );
                    let (rz, n) = self.gates.split_at_mut(2 * hdim);
                    let n = &mut n[..hdim];
                    for (g, &gh) in rz.iter_mut().zip(&self.gates_h[..2 * hdim]) {
                        *g += gh;
                    }
                    sigmoid_in_place(rz);
                    let (r, z) = rz.split_at(hdim);
                    for ((n, &r), &gh) in n.iter_mut().zip(r).zip(&self.gates_h[2 * hdim..3 * hdim])
                    {
                        *n = madd::<FUSED>(r, gh, *n);
                    }
                    tanh_in_place(n);
                    for ((h, &z), &n) in self.h.iter_mut().zip(z).zip(&*n) {
                        *h = madd::<FUSED>(z, *h - n, n);
                    }
                }
            }
            let mut out = self.head_b + dot_lanes::<FUSED>(&self.head_w, &self.h);
            match &self.gain {
                Some((w, b)) => {
                    let gain = (GAIN_HEAD_SCALE * (b + dot_lanes::<FUSED>(w, &self.h))).exp();
                    out = madd::<FUSED>(gain, x, out);
                }
                None if self.skip => out += x,
                None => {}
            }
            *y = out;
        }
    }
}

/// `a * b + c`, fused into one rounding when `FUSED`.
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `acc += W h` for `W` blocked as `[acc.len() / ROWS][h.len()][ROWS]`: each block of
/// [`ROWS`] rows is accumulated in a local array the compiler keeps in vector registers.
///
/// A block's multiply-adds over `h` form dependency chains as long as `h`, so one block at a
/// time waits on the adder's latency. With `PAIRS`, two blocks are interleaved, which doubles
/// the independent chains; that needs twice the registers (16 AVX ones are enough, 16 SSE ones
/// are not).
#[inline(always)]
fn recurrent_product<const FUSED: bool, const PAIRS: bool>(
    blocked: &[f32],
    h: &[f32],
    acc: &mut [f32],
) {
    let hdim = h.len();
    let block_len = hdim * ROWS;
    let mut rest_acc = acc;
    let mut rest_w = blocked;
    if PAIRS {
        while rest_acc.len() >= 2 * ROWS {
            let (pair, tail) = rest_acc.split_at_mut(2 * ROWS);
            let (weights, w_tail) = rest_w.split_at(2 * block_len);
            let (rows_a, rows_b) = pair.split_at_mut(ROWS);
            let rows_a: &mut [f32; ROWS] = rows_a.try_into().expect("a whole block");
            let rows_b: &mut [f32; ROWS] = rows_b.try_into().expect("a whole block");
            let (weights_a, weights_b) = weights.split_at(block_len);
            let (mut sum_a, mut sum_b) = (*rows_a, *rows_b);
            for ((&hj, column_a), column_b) in h
                .iter()
                .zip(weights_a.chunks_exact(ROWS))
                .zip(weights_b.chunks_exact(ROWS))
            {
                let column_a: &[f32; ROWS] = column_a.try_into().expect("a whole column");
                let column_b: &[f32; ROWS] = column_b.try_into().expect("a whole column");
                for lane in 0..ROWS {
                    sum_a[lane] = madd::<FUSED>(column_a[lane], hj, sum_a[lane]);
                    sum_b[lane] = madd::<FUSED>(column_b[lane], hj, sum_b[lane]);
                }
            }
            (*rows_a, *rows_b) = (sum_a, sum_b);
            rest_acc = tail;
            rest_w = w_tail;
        }
    }
    for (rows, weights) in rest_acc
        .chunks_exact_mut(ROWS)
        .zip(rest_w.chunks_exact(block_len))
    {
        let rows: &mut [f32; ROWS] = rows.try_into().expect("a whole block");
        let mut sum = *rows;
        for (&hj, column) in h.iter().zip(weights.chunks_exact(ROWS)) {
            let column: &[f32; ROWS] = column.try_into().expect("a whole column");
            for lane in 0..ROWS {
                sum[lane] = madd::<FUSED>(column[lane], hj, sum[lane]);
            }
        }
        *rows = sum;
    }
}

/// Dot product with eight interleaved partial sums, so the compiler can keep them in one
/// vector register.
#[inline(always)]
fn dot_lanes<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sum = [0.0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (x, y) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for lane in 0..LANES {
            sum[lane] = madd::<FUSED>(x[lane], y[lane], sum[lane]);
        }
    }
    let mut total =
        ((sum[0] + sum[4]) + (sum[1] + sum[5])) + ((sum[2] + sum[6]) + (sum[3] + sum[7]));
    for (x, y) in a_tail.iter().zip(b_tail) {
        total = madd::<FUSED>(*x, *y, total);
    }
    total
}

impl Kernel for RecurrentKernel {
    fn set_knobs(&mut self, knobs: &[f32]) {
        let k = self.knob_count;
        // Rows past `G*H` are padding and stay zero.
        for (r, cond) in self.cond.iter_mut().take(self.b_in.len()).enumerate() {
            *cond = self.b_in[r] + dot(&self.w_k[r * k..(r + 1) * k], knobs);
        }
    }

    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        match self.isa {
            Isa::Scalar => self.process_scalar(input, output),
            Isa::Baseline => self.process_vector::<false>(input, output),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `with_isa` accepts `Avx2Fma` only when `Isa::available` lists it, that
            // is when the running processor reports AVX2 and FMA.
            Isa::Avx2Fma => unsafe { self.process_avx2_fma(input, output) },
        }
    }

    fn reset(&mut self) {
        self.h.fill(0.0);
        self.c.fill(0.0);
        for det in &mut self.levels {
            det.reset();
        }
    }

    fn state_is_finite(&self) -> bool {
        let level = self.levels.iter().all(|d| d.power().is_finite());
        level && self.h.iter().chain(&self.c).all(|v| v.is_finite())
    }
}

/// Dot product of two equal-length slices.
#[inline]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
