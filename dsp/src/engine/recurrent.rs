//! Scalar kernel for single-layer LSTM and GRU models (see [`RecurrentNet`] for the weights).

use super::{sigmoid, Kernel};
use crate::model::{Cell, LevelDetector, ModelFile, RecurrentNet, GAIN_HEAD_SCALE};

#[derive(Clone)]
pub(super) struct RecurrentKernel {
    cell: Cell,
    hidden: usize,
    skip: bool,
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
    /// `b_in + w_k · knobs`, refreshed when knobs change. `[G*H]`.
    cond: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
    /// Input-side gate pre-activations for one sample, `[G*H]`.
    gates: Vec<f32>,
    /// GRU: recurrent-side pre-activations, `[3H]`.
    gates_h: Vec<f32>,
}

impl RecurrentKernel {
    pub(super) fn new(model: &ModelFile, net: &RecurrentNet) -> Self {
        let hidden = net.hidden_size;
        let gh = net.cell.gates() * hidden;
        let knob_count = model.knobs.len();
        let w_ih = &model.weight("rnn.w_ih").data;
        let cols = net.input_size(knob_count);
        let w_x = (0..gh).map(|r| w_ih[r * cols]).collect();
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
        let w_level = (0..gh)
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
        Self {
            cell: net.cell,
            hidden,
            skip: net.skip,
            w_x,
            w_k,
            w_level,
            level_values: vec![0.0; levels.len()],
            levels,
            w_hh: model.weight("rnn.w_hh").data.clone(),
            cond: b_in.clone(),
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
            gates: vec![0.0; gh],
            gates_h: vec![0.0; gh],
        }
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
        for r in 0..self.gates.len() {
            let row = &self.w_hh[r * hdim..(r + 1) * hdim];
            self.gates[r] = self.input_term(r, x) + dot(row, &self.h);
        }
        let (i, rest) = self.gates.split_at(hdim);
        let (f, rest) = rest.split_at(hdim);
        let (g, o) = rest.split_at(hdim);
        for j in 0..hdim {
            let c = sigmoid(f[j]) * self.c[j] + sigmoid(i[j]) * g[j].tanh();
            self.c[j] = c;
            self.h[j] = sigmoid(o[j]) * c.tanh();
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
            let n = (self.gates[2 * hdim + j] + r * self.gates_h[2 * hdim + j]).tanh();
            self.h[j] = (1.0 - z) * n + z * self.h[j];
        }
    }
}

impl Kernel for RecurrentKernel {
    fn set_knobs(&mut self, knobs: &[f32]) {
        let k = self.knob_count;
        for (r, cond) in self.cond.iter_mut().enumerate() {
            *cond = self.b_in[r] + dot(&self.w_k[r * k..(r + 1) * k], knobs);
        }
    }

    fn process(&mut self, input: &[f32], output: &mut [f32]) {
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
