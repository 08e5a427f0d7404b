//! Kernel for NAM-style WaveNet layer arrays (see [`WaveNetNet`] for the structure and
//! weight names).
//!
//! Each layer keeps its input, with the history its taps reach back to, in a [`History`]. The
//! knobs' share of every input mixin is constant between knob changes and is folded into a
//! per-layer bias in [`Kernel::set_knobs`].
//!
//! As in the convolution kernel, every inner loop runs along time over one channel with
//! separate multiplies and adds, so the compiler vectorises it and the AVX2+FMA compilation
//! (chosen at run time on x86-64) gives the same bits as the baseline one.

use super::history::History;
use super::recurrent::dot;
use super::simd::{run_block, Isa, VectorKernel};
use super::Kernel;
use crate::fastmath::{sigmoid_in_place, tanh_in_place};
use crate::model::{Activation, ModelFile, WaveNetNet};

#[derive(Clone)]
struct Layer {
    kernel_size: usize,
    dilation: usize,
    /// `[M*C, C, kernel_size]`.
    conv_w: Vec<f32>,
    conv_b: Vec<f32>,
    /// Column 0 of the input mixin (the audio's weight), `[M*C]`.
    mix_x: Vec<f32>,
    /// Columns 1.. of the input mixin, row-major `[M*C, K]`.
    mix_k: Vec<f32>,
    /// `mix_k · knobs`, refreshed when the knobs change, `[M*C]`.
    knob_term: Vec<f32>,
    /// 1x1 output convolution `[C, C]` and its bias `[C]`.
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    /// The layer's input channels and their history, `(kernel_size - 1) * dilation` samples.
    input: History,
}

#[derive(Clone)]
struct Array {
    channels: usize,
    activation: Activation,
    /// Width of the array input (1 for the audio).
    input_size: usize,
    /// `[C, input_size]`.
    rechannel_w: Vec<f32>,
    layers: Vec<Layer>,
    head_size: usize,
    /// `[H, C]` and `[H]` (zeros without a head bias).
    head_w: Vec<f32>,
    head_b: Vec<f32>,
    /// Scratch `[M*C, max_block]`: pre-activations of one layer.
    z: Vec<f32>,
    /// Scratch `[C, max_block]`: activations of one layer.
    act: Vec<f32>,
    /// `[C, max_block]`: sum of the activations (plus the previous array's head output).
    head_acc: Vec<f32>,
    /// `[C, max_block]`: the last layer's output, the next array's input.
    out: Vec<f32>,
    /// `[H, max_block]`: the head rechannel's output.
    head_out: Vec<f32>,
}

#[derive(Clone)]
pub(super) struct WaveNetKernel {
    /// The compilation of [`WaveNetKernel::process_block`] that runs.
    isa: Isa,
    max_block: usize,
    knob_count: usize,
    head_scale: f32,
    arrays: Vec<Array>,
}

impl WaveNetKernel {
    pub(super) fn new(model: &ModelFile, net: &WaveNetNet, max_block: usize) -> Self {
        let k = model.knobs.len();
        let arrays = net
            .arrays
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let c = spec.channels;
                let mc = spec.activation.conv_multiplier() * c;
                let head_size = net.head_size(i);
                let layers = spec
                    .dilations
                    .iter()
                    .enumerate()
                    .map(|(l, &dilation)| {
                        let p = format!("wavenet.{i}.layers.{l}");
                        let mixin = &model.weight(&format!("{p}.mixin.w")).data;
                        let history = (spec.kernel_size - 1) * dilation;
                        Layer {
                            kernel_size: spec.kernel_size,
                            dilation,
                            conv_w: model.weight(&format!("{p}.conv.w")).data.clone(),
                            conv_b: model.weight(&format!("{p}.conv.b")).data.clone(),
                            mix_x: (0..mc).map(|o| mixin[o * (1 + k)]).collect(),
                            mix_k: (0..mc)
                                .flat_map(|o| mixin[o * (1 + k) + 1..(o + 1) * (1 + k)].iter())
                                .copied()
                                .collect(),
                            knob_term: vec![0.0; mc],
                            out_w: model.weight(&format!("{p}.out.w")).data.clone(),
                            out_b: model.weight(&format!("{p}.out.b")).data.clone(),
                            input: History::new(c, history, max_block),
                        }
                    })
                    .collect();
                let head_b = if spec.head_bias {
                    model.weight(&format!("wavenet.{i}.head.b")).data.clone()
                } else {
                    vec![0.0; head_size]
                };
                Array {
                    channels: c,
                    activation: spec.activation,
                    input_size: net.input_size(i),
                    rechannel_w: model
                        .weight(&format!("wavenet.{i}.rechannel.w"))
                        .data
                        .clone(),
                    layers,
                    head_size,
                    head_w: model.weight(&format!("wavenet.{i}.head.w")).data.clone(),
                    head_b,
                    z: vec![0.0; mc * max_block],
                    act: vec![0.0; c * max_block],
                    head_acc: vec![0.0; c * max_block],
                    out: vec![0.0; c * max_block],
                    head_out: vec![0.0; head_size * max_block],
                }
            })
            .collect();
        Self {
            isa: Isa::detect(),
            max_block,
            knob_count: k,
            head_scale: net.head_scale,
            arrays,
        }
    }
}

impl Array {
    /// Runs the array on `n` samples. `input` is channel-major `[input_size, max_block]`,
    /// `audio` the network input (the condition), `head_in` the previous array's head output
    /// `[C, max_block]` or `None` for the first array. Inlined into each compilation of
    /// [`WaveNetKernel::process_block`].
    #[inline(always)]
    fn process(
        &mut self,
        input: &[f32],
        audio: &[f32],
        head_in: Option<&[f32]>,
        n: usize,
        max_block: usize,
    ) {
        let c = self.channels;
        let mc = self.activation.conv_multiplier() * c;

        // Rechannel into the first layer's buffer; seed the head accumulator.
        {
            let first = &mut self.layers[0];
            for ch in 0..c {
                let w = &self.rechannel_w[ch * self.input_size..(ch + 1) * self.input_size];
                let dst = first.input.slot_mut(ch, n);
                dst.fill(0.0);
                for (p, &wp) in w.iter().enumerate() {
                    for (d, &x) in dst.iter_mut().zip(&input[p * max_block..][..n]) {
                        *d += wp * x;
                    }
                }
            }
        }
        for ch in 0..c {
            let acc = &mut self.head_acc[ch * max_block..][..n];
            match head_in {
                Some(h) => acc.copy_from_slice(&h[ch * max_block..][..n]),
                None => acc.fill(0.0),
            }
        }

        for l in 0..self.layers.len() {
            let (done, rest) = self.layers.split_at_mut(l + 1);
            let layer = &mut done[l];

            // Dilated causal convolution plus the input mixin.
            for o in 0..mc {
                let z = &mut self.z[o * max_block..][..n];
                z.fill(layer.conv_b[o]);
                for ci in 0..c {
                    for tap in 0..layer.kernel_size {
                        let w = layer.conv_w[(o * c + ci) * layer.kernel_size + tap];
                        let back = (layer.kernel_size - 1 - tap) * layer.dilation;
                        for (zt, &xt) in z.iter_mut().zip(layer.input.delayed(ci, back, n)) {
                            *zt += w * xt;
                        }
                    }
                }
                let (wx, kb) = (layer.mix_x[o], layer.knob_term[o]);
                for (zt, &xt) in z.iter_mut().zip(audio) {
                    *zt += wx * xt + kb;
                }
            }

            // Activation over each channel's slice, accumulated into the head.
            for ch in 0..c {
                let (values, gates) = self.z.split_at_mut(c * max_block);
                let a = &mut values[ch * max_block..][..n];
                tanh_in_place(a);
                if self.activation == Activation::Gated {
                    let g = &mut gates[ch * max_block..][..n];
                    sigmoid_in_place(g);
                    for (a, &g) in a.iter_mut().zip(&*g) {
                        *a *= g;
                    }
                }
                self.act[ch * max_block..][..n].copy_from_slice(a);
                for (h, &a) in self.head_acc[ch * max_block..][..n].iter_mut().zip(&*a) {
                    *h += a;
                }
            }

            // 1x1 plus residual, written where the next layer (or the next array) reads it.
            for ch in 0..c {
                let w = &layer.out_w[ch * c..(ch + 1) * c];
                let dst = match &mut *rest {
                    [next, ..] => next.input.slot_mut(ch, n),
                    [] => &mut self.out[ch * max_block..][..n],
                };
                dst.fill(0.0);
                for (j, &wj) in w.iter().enumerate() {
                    for (d, &a) in dst.iter_mut().zip(&self.act[j * max_block..][..n]) {
                        *d += wj * a;
                    }
                }
                let bias = layer.out_b[ch];
                for (d, &x) in dst.iter_mut().zip(layer.input.delayed(ch, 0, n)) {
                    *d = x + (*d + bias);
                }
            }

            layer.input.advance(n, max_block);
        }

        // Head rechannel.
        for h in 0..self.head_size {
            let w = &self.head_w[h * c..(h + 1) * c];
            let dst = &mut self.head_out[h * max_block..][..n];
            dst.fill(0.0);
            for (ch, &wc) in w.iter().enumerate() {
                for (d, &a) in dst.iter_mut().zip(&self.head_acc[ch * max_block..][..n]) {
                    *d += wc * a;
                }
            }
            let bias = self.head_b[h];
            for d in dst.iter_mut() {
                *d += bias;
            }
        }
    }
}

impl VectorKernel for WaveNetKernel {
    fn isa_mut(&mut self) -> &mut Isa {
        &mut self.isa
    }

    /// One block through every array; inlined into each compilation of `process`.
    #[inline(always)]
    fn process_block(&mut self, input: &[f32], output: &mut [f32]) {
        let n = input.len();
        debug_assert!(n <= self.max_block);
        let max_block = self.max_block;
        for i in 0..self.arrays.len() {
            let (before, rest) = self.arrays.split_at_mut(i);
            let array = &mut rest[0];
            match before.last() {
                None => array.process(input, input, None, n, max_block),
                Some(prev) => array.process(&prev.out, input, Some(&prev.head_out), n, max_block),
            }
        }
        let last = self
            .arrays
            .last()
            .expect("a WaveNet has at least one array");
        for (y, &h) in output.iter_mut().zip(&last.head_out[..n]) {
            *y = self.head_scale * h;
        }
    }
}

impl Kernel for WaveNetKernel {
    fn set_knobs(&mut self, knobs: &[f32]) {
        let k = self.knob_count;
        for layer in self.arrays.iter_mut().flat_map(|a| a.layers.iter_mut()) {
            for (o, term) in layer.knob_term.iter_mut().enumerate() {
                *term = dot(&layer.mix_k[o * k..(o + 1) * k], knobs);
            }
        }
    }

    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        run_block(self, input, output);
    }

    fn reset(&mut self) {
        for layer in self.arrays.iter_mut().flat_map(|a| a.layers.iter_mut()) {
            layer.input.clear();
        }
        // Settle on silence: each zero sample through the arrays settles one more layer (see
        // `History::hold_newest`).
        let layers: usize = self.arrays.iter().map(|a| a.layers.len()).sum();
        let mut out = [0.0f32];
        for _ in 0..layers {
            self.process(&[0.0], &mut out);
            for layer in self.arrays.iter_mut().flat_map(|a| a.layers.iter_mut()) {
                layer.input.hold_newest();
            }
        }
    }

    fn state_is_finite(&self) -> bool {
        self.arrays
            .iter()
            .flat_map(|a| a.layers.iter())
            .all(|l| l.input.is_finite())
    }
}
