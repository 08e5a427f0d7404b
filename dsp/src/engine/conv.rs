//! Kernel for dilated causal convolution stacks (TCN and GCN, see [`ConvNet`]).
//!
//! Each block keeps its input, with the history its taps reach back to, in a [`History`].
//!
//! Every inner loop runs along time over one channel (multiply-adds of a weight times a
//! channel's samples, activations over a channel's slice), with no sums across lanes, so the
//! compiler vectorises them and every vector width gives the same result to the bit. The code
//! is compiled for the target's baseline and, on x86-64, again with AVX2 and FMA enabled
//! (multiply and add stay separate operations, so the results do not change), chosen at run
//! time.

use super::film::Film;
use super::history::History;
use super::simd::{run_block, Isa, VectorKernel};
use super::Kernel;
use crate::fastmath::{sigmoid_in_place, tanh_in_place};
use crate::model::{Activation, ConvNet, ModelFile};

#[derive(Clone)]
struct Block {
    c_in: usize,
    kernel_size: usize,
    dilation: usize,
    /// `[M*C, c_in, kernel_size]`.
    conv_w: Vec<f32>,
    conv_b: Vec<f32>,
    /// `[C, c_in]`.
    res_w: Vec<f32>,
    /// The block's input channels and their history, `(kernel_size - 1) * dilation` samples.
    input: History,
    /// Conv output for one block, `[M*C, max_block]`.
    z: Vec<f32>,
}

#[derive(Clone)]
pub(super) struct ConvKernel {
    /// The compilation of [`ConvKernel::process_block`] that runs.
    isa: Isa,
    channels: usize,
    activation: Activation,
    skip: bool,
    max_block: usize,
    blocks: Vec<Block>,
    /// Modulation of each block's conv output, `M*C` features per block.
    pub(super) film: Film,
    head_w: Vec<f32>,
    head_b: f32,
    /// Output of the last block, `[C, max_block]`.
    last: Vec<f32>,
}

impl ConvKernel {
    pub(super) fn new(model: &ModelFile, net: &ConvNet, max_block: usize) -> Self {
        let m = net.activation.conv_multiplier();
        let c = net.channels;
        let blocks = net
            .blocks
            .iter()
            .enumerate()
            .map(|(l, spec)| {
                let c_in = if l == 0 { 1 } else { c };
                let history = (spec.kernel_size - 1) * spec.dilation;
                Block {
                    c_in,
                    kernel_size: spec.kernel_size,
                    dilation: spec.dilation,
                    conv_w: model.weight(&format!("blocks.{l}.conv.w")).data.clone(),
                    conv_b: model.weight(&format!("blocks.{l}.conv.b")).data.clone(),
                    res_w: model.weight(&format!("blocks.{l}.res.w")).data.clone(),
                    input: History::new(c_in, history, max_block),
                    z: vec![0.0; m * c * max_block],
                }
            })
            .collect();
        let film = Film::new(model, net.film.as_ref(), net.blocks.len(), m * c);
        Self {
            isa: Isa::detect(),
            channels: c,
            activation: net.activation,
            skip: net.skip,
            max_block,
            blocks,
            film,
            head_w: model.weight("head.w").data.clone(),
            head_b: model.weight("head.b").data[0],
            last: vec![0.0; c * max_block],
        }
    }
}

impl VectorKernel for ConvKernel {
    fn isa_mut(&mut self) -> &mut Isa {
        &mut self.isa
    }

    /// One block through the stack; inlined into each compilation of `process`.
    #[inline(always)]
    fn process_block(&mut self, input: &[f32], output: &mut [f32]) {
        let n = input.len();
        debug_assert!(n <= self.max_block);
        let c = self.channels;
        let mc = c * self.activation.conv_multiplier();

        // Feed the audio into the first block's input buffer.
        self.blocks[0].input.slot_mut(0, n).copy_from_slice(input);

        for l in 0..self.blocks.len() {
            let (done, rest) = self.blocks.split_at_mut(l + 1);
            let block = &mut done[l];

            // Dilated causal convolution, FiLM applied to its output.
            // TODO: each of the `M*C x c_in x kernel_size` inner loops runs over only the
            // call's `n` samples, so at small blocks loop overhead dominates (tcn-45 costs
            // about 8x more per sample at 16-sample blocks than at 512). A layout with the
            // channels innermost (one vector across output channels per tap and sample) would
            // keep the cost flat; the WaveNet kernel has the same limit.
            for o in 0..mc {
                let z = &mut block.z[o * self.max_block..o * self.max_block + n];
                z.fill(block.conv_b[o]);
                for ci in 0..block.c_in {
                    for tap in 0..block.kernel_size {
                        let w = block.conv_w[(o * block.c_in + ci) * block.kernel_size + tap];
                        let back = (block.kernel_size - 1 - tap) * block.dilation;
                        for (zt, &xt) in z.iter_mut().zip(block.input.delayed(ci, back, n)) {
                            *zt += w * xt;
                        }
                    }
                }
                let (scale, shift) = (self.film.scale(l)[o], self.film.shift(l)[o]);
                for zt in z.iter_mut() {
                    *zt = *zt * scale + shift;
                }
            }

            // Activation in place over each channel's slice.
            for ch in 0..c {
                let (values, gates) = block.z.split_at_mut(c * self.max_block);
                let a = &mut values[ch * self.max_block..][..n];
                tanh_in_place(a);
                if self.activation == Activation::Gated {
                    let g = &mut gates[ch * self.max_block..][..n];
                    sigmoid_in_place(g);
                    for (a, &g) in a.iter_mut().zip(&*g) {
                        *a *= g;
                    }
                }
            }

            // Plus the 1x1 residual, written where the next stage reads it.
            for ch in 0..c {
                let dst = match &mut *rest {
                    [nb, ..] => nb.input.slot_mut(ch, n),
                    [] => &mut self.last[ch * self.max_block..][..n],
                };
                dst.copy_from_slice(&block.z[ch * self.max_block..][..n]);
                for ci in 0..block.c_in {
                    let w = block.res_w[ch * block.c_in + ci];
                    for (d, &xt) in dst.iter_mut().zip(block.input.delayed(ci, 0, n)) {
                        *d += w * xt;
                    }
                }
            }

            block.input.advance(n, self.max_block);
        }

        // Read-out.
        output.fill(self.head_b);
        for ch in 0..c {
            let w = self.head_w[ch];
            for (y, &v) in output
                .iter_mut()
                .zip(&self.last[ch * self.max_block..][..n])
            {
                *y += w * v;
            }
        }
        if self.skip {
            for (y, &x) in output.iter_mut().zip(input) {
                *y += x;
            }
        }
    }
}

impl Kernel for ConvKernel {
    fn set_knobs(&mut self, knobs: &[f32]) {
        self.film.set_knobs(knobs);
    }

    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        run_block(self, input, output);
    }

    fn reset(&mut self) {
        for block in &mut self.blocks {
            block.input.clear();
        }
        // Settle on silence: each zero sample through the stack settles one more block (see
        // `History::hold_newest`).
        let mut out = [0.0f32];
        for _ in 0..self.blocks.len() {
            self.process(&[0.0], &mut out);
            for block in &mut self.blocks {
                block.input.hold_newest();
            }
        }
    }

    fn state_is_finite(&self) -> bool {
        self.blocks.iter().all(|b| b.input.is_finite())
    }
}
