//! Kernel for diagonal state-space networks (see [`SsmNet`] for the equations and the
//! weights). The continuous parameters are discretised once, here, with
//! [`crate::model::discretize`]; the state is `C*N` complex values per block.
//!
//! Per sample, every step is a loop over all states or all channels at once (the state update
//! over `C*N` states, the 1x1 mix as one multiply-add of a weight column per channel), which
//! the compiler vectorises; the only sums, each channel's read-out over its `N` states, run in
//! index order. So the baseline and the AVX2+FMA compilations (chosen at run time on x86-64,
//! multiply and add kept apart) give the same bits.

use super::film::Film;
use super::recurrent::dot;
use super::simd::{run_block, Isa, VectorKernel};
use super::Kernel;
use crate::fastmath::tanh_in_place;
use crate::model::{discretize, ModelFile, SsmNet};

#[derive(Clone)]
struct Block {
    /// Discretised `Ā` and `B̄`, `[C*N]` channel-major.
    a_re: Vec<f32>,
    a_im: Vec<f32>,
    b_re: Vec<f32>,
    b_im: Vec<f32>,
    /// Read-out `C`, `[C*N]`, and feedthrough `D`, `[C]`.
    c_re: Vec<f32>,
    c_im: Vec<f32>,
    d: Vec<f32>,
    /// The 1x1 mix `[C, C]` stored by columns (`mix_columns[j * C + ch]` is `mix.w[ch, j]`),
    /// and its bias `[C]`.
    mix_columns: Vec<f32>,
    mix_b: Vec<f32>,
    /// Complex state, `[C*N]`.
    s_re: Vec<f32>,
    s_im: Vec<f32>,
}

#[derive(Clone)]
pub(super) struct SsmKernel {
    /// The compilation of [`SsmKernel::process_block`] that runs.
    isa: Isa,
    channels: usize,
    states: usize,
    skip: bool,
    in_w: Vec<f32>,
    in_b: Vec<f32>,
    blocks: Vec<Block>,
    /// Modulation of each block's output, `C` features per block.
    pub(super) film: Film,
    head_w: Vec<f32>,
    head_b: f32,
    /// Block input and output per channel, `[C]`.
    h: Vec<f32>,
    /// Activations of one block, `[C]`.
    act: Vec<f32>,
    /// Scratch: each state's input (its channel's `h`), `[C*N]`.
    u: Vec<f32>,
    /// Scratch: each state's share of its channel's read-out, `[C*N]`.
    parts: Vec<f32>,
    /// Scratch: the 1x1 mix's products, `[C]`.
    mixed: Vec<f32>,
}

impl SsmKernel {
    pub(super) fn new(model: &ModelFile, net: &SsmNet) -> Self {
        let (c, n) = (net.channels, net.state_size);
        let blocks = (0..net.blocks)
            .map(|l| {
                let w = |name: &str| model.weight(&format!("blocks.{l}.{name}")).data.clone();
                let disc = discretize(&w("log_dt"), &w("log_a_re"), &w("a_im"));
                Block {
                    a_re: disc.a_re,
                    a_im: disc.a_im,
                    b_re: disc.b_re,
                    b_im: disc.b_im,
                    c_re: w("c_re"),
                    c_im: w("c_im"),
                    d: w("d"),
                    mix_columns: {
                        let mix = w("mix.w");
                        (0..c * c).map(|k| mix[(k % c) * c + k / c]).collect()
                    },
                    mix_b: w("mix.b"),
                    s_re: vec![0.0; c * n],
                    s_im: vec![0.0; c * n],
                }
            })
            .collect();
        Self {
            isa: Isa::detect(),
            channels: c,
            states: n,
            skip: net.skip,
            in_w: model.weight("input.w").data.clone(),
            in_b: model.weight("input.b").data.clone(),
            blocks,
            film: Film::new(model, net.film.as_ref(), net.blocks, c),
            head_w: model.weight("head.w").data.clone(),
            head_b: model.weight("head.b").data[0],
            h: vec![0.0; c],
            act: vec![0.0; c],
            u: vec![0.0; c * n],
            parts: vec![0.0; c * n],
            mixed: vec![0.0; c],
        }
    }
}

impl VectorKernel for SsmKernel {
    fn isa_mut(&mut self) -> &mut Isa {
        &mut self.isa
    }

    /// The sample loop; inlined into each compilation of `process`.
    #[inline(always)]
    fn process_block(&mut self, input: &[f32], output: &mut [f32]) {
        let (c, n) = (self.channels, self.states);
        for (&x, y) in input.iter().zip(output.iter_mut()) {
            // Lift to C channels.
            for ((h, &w), &b) in self.h.iter_mut().zip(&self.in_w).zip(&self.in_b) {
                *h = w * x + b;
            }

            for (l, block) in self.blocks.iter_mut().enumerate() {
                // State update over every state, each with its channel's input.
                for (u, &h) in self.u.chunks_exact_mut(n).zip(&self.h) {
                    u.fill(h);
                }
                // Slices of one length, so the loop runs without bounds checks.
                let len = c * n;
                let (a_re, a_im) = (&block.a_re[..len], &block.a_im[..len]);
                let (b_re, b_im) = (&block.b_re[..len], &block.b_im[..len]);
                let (c_re, c_im) = (&block.c_re[..len], &block.c_im[..len]);
                let (s_re, s_im) = (&mut block.s_re[..len], &mut block.s_im[..len]);
                let (u, parts) = (&self.u[..len], &mut self.parts[..len]);
                for i in 0..len {
                    let (sr, si) = (s_re[i], s_im[i]);
                    let nr = a_re[i] * sr - a_im[i] * si + u[i] * b_re[i];
                    let ni = a_re[i] * si + a_im[i] * sr + u[i] * b_im[i];
                    s_re[i] = nr;
                    s_im[i] = ni;
                    parts[i] = nr * c_re[i] - ni * c_im[i];
                }

                // Read-out per channel, feedthrough, FiLM and tanh.
                let (scale, shift) = (self.film.scale(l), self.film.shift(l));
                for ch in 0..c {
                    let ys = self.parts[ch * n..(ch + 1) * n]
                        .iter()
                        .fold(0.0, |sum, &p| sum + p);
                    let v = ys + self.h[ch] * block.d[ch];
                    self.act[ch] = v * scale[ch] + shift[ch];
                }
                tanh_in_place(&mut self.act);

                // 1x1 mix and residual, a weight column per activation.
                self.mixed.fill(0.0);
                for (column, &a) in block.mix_columns.chunks_exact(c).zip(&self.act) {
                    for (m, &w) in self.mixed.iter_mut().zip(column) {
                        *m += w * a;
                    }
                }
                for ((h, &m), &b) in self.h.iter_mut().zip(&self.mixed).zip(&block.mix_b) {
                    *h += m + b;
                }
            }

            // Read-out.
            let mut out = dot(&self.head_w, &self.h) + self.head_b;
            if self.skip {
                out += x;
            }
            *y = out;
        }
    }
}

impl Kernel for SsmKernel {
    fn set_knobs(&mut self, knobs: &[f32]) {
        self.film.set_knobs(knobs);
    }

    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        run_block(self, input, output);
    }

    fn reset(&mut self) {
        for block in &mut self.blocks {
            block.s_re.fill(0.0);
            block.s_im.fill(0.0);
        }
    }

    fn state_is_finite(&self) -> bool {
        self.blocks
            .iter()
            .all(|b| b.s_re.iter().chain(&b.s_im).all(|v| v.is_finite()))
    }
}
