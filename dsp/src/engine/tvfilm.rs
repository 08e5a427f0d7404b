//! Time-varying FiLM (see [`TvFilmNet`]): wraps a conv or state-space kernel and steps a
//! block-rate LSTM controller at fixed sample positions counted from the last reset, so the
//! output does not depend on how the host cuts the stream into blocks.

use super::film::Film;
use super::recurrent::dot;
use super::Kernel;
use crate::fastmath::{sigmoid, tanh};
use crate::model::{level_from_power, ModelFile, TvFilmNet};

/// A kernel with FiLM sites the controller can drive.
pub(super) trait Modulated: Kernel {
    fn film_mut(&mut self) -> &mut Film;
}

impl Modulated for super::conv::ConvKernel {
    fn film_mut(&mut self) -> &mut Film {
        &mut self.film
    }
}

impl Modulated for super::ssm::SsmKernel {
    fn film_mut(&mut self) -> &mut Film {
        &mut self.film
    }
}

/// The block-rate LSTM and its read-out.
#[derive(Clone)]
struct Controller {
    hidden: usize,
    /// `[4H, 1+K]`, `[4H, H]`, `[4H]` (gates i, f, g, o).
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b: Vec<f32>,
    /// `[W, H]`, `[W]`.
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    /// `[level, knobs...]`, `[1+K]`.
    input: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
    /// Gate pre-activations scratch, `[4H]`.
    gates: Vec<f32>,
    /// FiLM offsets for the current block, `[W]`.
    offsets: Vec<f32>,
}

impl Controller {
    /// One LSTM step on `self.input`.
    fn step(&mut self) {
        let (hdim, cols) = (self.hidden, self.input.len());
        for (r, g) in self.gates.iter_mut().enumerate() {
            *g = self.b[r]
                + dot(&self.w_ih[r * cols..(r + 1) * cols], &self.input)
                + dot(&self.w_hh[r * hdim..(r + 1) * hdim], &self.h);
        }
        let (i, rest) = self.gates.split_at(hdim);
        let (f, rest) = rest.split_at(hdim);
        let (g, o) = rest.split_at(hdim);
        for j in 0..hdim {
            // The activations the training crate's fused LSTM op uses.
            let c = sigmoid(f[j]) * self.c[j] + sigmoid(i[j]) * tanh(g[j]);
            self.c[j] = c;
            self.h[j] = sigmoid(o[j]) * tanh(c);
        }
    }

    /// `offsets = W_out h + b_out`.
    fn read_out(&mut self) {
        let hdim = self.hidden;
        for (o, v) in self.offsets.iter_mut().enumerate() {
            *v = dot(&self.out_w[o * hdim..(o + 1) * hdim], &self.h) + self.out_b[o];
        }
    }
}

#[derive(Clone)]
pub(super) struct TvFilm<K> {
    inner: K,
    controller: Controller,
    block_samples: usize,
    /// Samples of the current controller block seen so far.
    position: usize,
    /// Sum of squares of those samples, accumulated in order.
    sum_sq: f32,
}

impl<K: Modulated> TvFilm<K> {
    pub(super) fn new(model: &ModelFile, net: &TvFilmNet, mut inner: K) -> Self {
        let h = net.hidden_size;
        let width = inner.film_mut().offset_count();
        let controller = Controller {
            hidden: h,
            w_ih: model.weight("tvfilm.lstm.w_ih").data.clone(),
            w_hh: model.weight("tvfilm.lstm.w_hh").data.clone(),
            b: model.weight("tvfilm.lstm.b").data.clone(),
            out_w: model.weight("tvfilm.out.w").data.clone(),
            out_b: model.weight("tvfilm.out.b").data.clone(),
            input: vec![0.0; 1 + model.knobs.len()],
            h: vec![0.0; h],
            c: vec![0.0; h],
            gates: vec![0.0; 4 * h],
            offsets: vec![0.0; width],
        };
        Self {
            inner,
            controller,
            block_samples: net.block_samples,
            position: 0,
            sum_sq: 0.0,
        }
    }
}

impl<K: Modulated> Kernel for TvFilm<K> {
    fn set_knobs(&mut self, knobs: &[f32]) {
        self.inner.set_knobs(knobs);
        self.controller.input[1..].copy_from_slice(knobs);
    }

    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        let mut done = 0;
        while done < input.len() {
            // Run up to the next controller step.
            let n = (self.block_samples - self.position).min(input.len() - done);
            let chunk = &input[done..done + n];
            for &x in chunk {
                self.sum_sq += x * x;
            }
            self.inner.process(chunk, &mut output[done..done + n]);
            self.position += n;
            done += n;

            // At a block boundary, feed the finished block's level to the controller.
            if self.position == self.block_samples {
                self.controller.input[0] = level_from_power(self.sum_sq, self.block_samples);
                self.controller.step();
                self.controller.read_out();
                self.inner
                    .film_mut()
                    .set_time_varying(&self.controller.offsets);
                self.position = 0;
                self.sum_sq = 0.0;
            }
        }
    }

    fn reset(&mut self) {
        // The controller first, so the inner network settles on silence under the modulation
        // it starts with.
        self.controller.h.fill(0.0);
        self.controller.c.fill(0.0);
        self.controller.read_out();
        self.inner
            .film_mut()
            .set_time_varying(&self.controller.offsets);
        self.inner.reset();
        self.position = 0;
        self.sum_sq = 0.0;
    }

    fn state_is_finite(&self) -> bool {
        self.inner.state_is_finite()
            && self
                .controller
                .h
                .iter()
                .chain(&self.controller.c)
                .all(|v| v.is_finite())
    }
}
