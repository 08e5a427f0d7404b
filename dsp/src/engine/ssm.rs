//! Scalar kernel for diagonal state-space networks (see [`SsmNet`] for the equations and the
//! weights). The continuous parameters are discretised once, here, with
//! [`crate::model::discretize`]; the state is `C*N` complex values per block.

use super::film::Film;
use super::recurrent::dot;
use super::Kernel;
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
    /// `[C, C]` and `[C]`.
    mix_w: Vec<f32>,
    mix_b: Vec<f32>,
    /// Complex state, `[C*N]`.
    s_re: Vec<f32>,
    s_im: Vec<f32>,
}

#[derive(Clone)]
pub(super) struct SsmKernel {
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
                    mix_w: w("mix.w"),
                    mix_b: w("mix.b"),
                    s_re: vec![0.0; c * n],
                    s_im: vec![0.0; c * n],
                }
            })
            .collect();
        Self {
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
        }
    }
}

impl Kernel for SsmKernel {
    fn set_knobs(&mut self, knobs: &[f32]) {
        self.film.set_knobs(knobs);
    }

    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        let (c, n) = (self.channels, self.states);
        for (&x, y) in input.iter().zip(output.iter_mut()) {
            // Lift to C channels.
            for ch in 0..c {
                self.h[ch] = self.in_w[ch] * x + self.in_b[ch];
            }

            for (l, block) in self.blocks.iter_mut().enumerate() {
                // State update and read-out, then FiLM and tanh, per channel.
                let (scale, shift) = (self.film.scale(l), self.film.shift(l));
                for ch in 0..c {
                    let u = self.h[ch];
                    let mut ys = 0.0;
                    for i in ch * n..(ch + 1) * n {
                        let (sr, si) = (block.s_re[i], block.s_im[i]);
                        let nr = block.a_re[i] * sr - block.a_im[i] * si + u * block.b_re[i];
                        let ni = block.a_re[i] * si + block.a_im[i] * sr + u * block.b_im[i];
                        block.s_re[i] = nr;
                        block.s_im[i] = ni;
                        ys += nr * block.c_re[i] - ni * block.c_im[i];
                    }
                    let v = ys + u * block.d[ch];
                    self.act[ch] = (v * scale[ch] + shift[ch]).tanh();
                }

                // 1x1 mix and residual.
                for ch in 0..c {
                    let m = dot(&block.mix_w[ch * c..(ch + 1) * c], &self.act) + block.mix_b[ch];
                    self.h[ch] += m;
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
