//! WaveNet layer arrays in the style of Neural Amp Modeler's "A1" WaveNet (Atkinson, NAM,
//! `nam/models/wavenet.py`), with knobs entering every layer through its input mixin.

use serde::{Deserialize, Serialize};

use super::network::Activation;

/// One layer array: a 1x1 "rechannel" of its input, a stack of dilated causal layers with a
/// shared head accumulator, and a 1x1 head rechannel.
///
/// Every layer `l` of the array maps `z [C, T]` with the condition `c [1+K, T]`
/// (`c = [x, knob_1, ..., knob_K]`, `x` the network's audio input) to
///
/// ```text
/// a    = act(conv_l(z) + mixin_l · c)     conv: C -> M*C, kernel k, dilation d_l, with bias
/// z'   = z + W1x1_l · a + b1x1_l           (the layer output, input of layer l+1)
/// head = head + a                          (summed over the layers)
/// ```
///
/// with `M = 2` and `act(u) = tanh(u_1) * sigmoid(u_2)` when gated (NAM's `gated = true` with
/// `activation = "Tanh"`), else `M = 1` and `act = tanh`. The array's first layer reads
/// `rechannel · input`; the array's outputs are its last layer's `z'` (the next array's
/// input) and `head_w · head (+ head_b)`, whose `head_size` is the next array's channel count
/// (it seeds that array's head accumulator) or 1 for the last array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerArraySpec {
    /// `C`: channels of the layer stack.
    pub channels: usize,
    /// Kernel of every dilated convolution, in taps (NAM A1: 3).
    pub kernel_size: usize,
    /// Dilation of each layer, in samples; one layer per entry.
    pub dilations: Vec<usize>,
    /// `Tanh` or `Gated` (see the type docs).
    pub activation: Activation,
    /// Whether the head rechannel has a bias (NAM A1: only the last array's).
    pub head_bias: bool,
}

impl LayerArraySpec {
    /// Receptive field of this array alone, minus one: `(k - 1) * Σ dilations` samples.
    pub fn history_samples(&self) -> usize {
        (self.kernel_size.saturating_sub(1)) * self.dilations.iter().sum::<usize>()
    }
}

/// A WaveNet made of layer arrays, NAM's "A1" structure (see [`LayerArraySpec`]).
///
/// Array `i` takes as input the audio (`input_size = 1`) for `i = 0`, else the layer output
/// of array `i-1` (`input_size = C_{i-1}`); its head accumulator starts from array `i-1`'s
/// head output (so array `i-1`'s `head_size` is `C_i`) and the last array's head output
/// (`head_size = 1`) times `head_scale` is the network output. Every layer's condition is
/// `[x, knobs...]` (`condition_size = 1 + K`); NAM models have `K = 0`.
///
/// Weights, for array `i` with `C` channels, conv multiplier `M`, previous width `P`
/// (`P = 1` for the first array, else the previous array's `C`), head size `H`:
/// - `wavenet.{i}.rechannel.w [C, P]` (no bias);
/// - per layer `l`: `wavenet.{i}.layers.{l}.conv.w [M*C, C, kernel]` (tap `kernel-1` is the
///   current sample, tap `j` is `(kernel-1-j)*dilation` samples in the past, PyTorch's layout),
///   `...conv.b [M*C]`, `...mixin.w [M*C, 1+K]` (column 0 multiplies `x`, column `1+k` knob
///   `k`; no bias), `...out.w [C, C]`, `...out.b [C]` (NAM's `_1x1`);
/// - `wavenet.{i}.head.w [H, C]`, and `wavenet.{i}.head.b [H]` when `head_bias`.
///
/// # Importing a `.nam` file
/// NAM's flat weight list is, array by array: rechannel weight, then for each layer conv
/// weight, conv bias, input-mixin weight, 1x1 weight, 1x1 bias, then the head rechannel weight
/// and (if `head_bias`) its bias; after the last array comes `head_scale`. Every tensor is
/// flattened row-major in PyTorch's `[out, in, kernel]` order, which is exactly the order and
/// layout of the names above (with `K = 0`). The trailing `head_scale` value goes into
/// [`WaveNetNet::head_scale`], which is a fixed setting here, not a trained weight (as in NAM).
/// So a NAM "standard" model holds 13,802 values: 13,801 weights plus `head_scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveNetNet {
    /// The arrays, input side first; at least one.
    pub arrays: Vec<LayerArraySpec>,
    /// Fixed gain on the last head output (NAM A1: 0.02).
    pub head_scale: f32,
}

impl WaveNetNet {
    /// Samples of input that influence one output sample: `1 + Σ_arrays (k-1) Σ dilations`.
    pub fn receptive_field_samples(&self) -> usize {
        1 + self
            .arrays
            .iter()
            .map(LayerArraySpec::history_samples)
            .sum::<usize>()
    }

    /// Head size of array `i`: the next array's channels, or 1 for the last array.
    pub fn head_size(&self, i: usize) -> usize {
        self.arrays.get(i + 1).map_or(1, |next| next.channels)
    }

    /// Input width of array `i`: 1 (the audio) for the first, else the previous channels.
    pub fn input_size(&self, i: usize) -> usize {
        if i == 0 {
            1
        } else {
            self.arrays[i - 1].channels
        }
    }

    /// Every weight with its shape, for `knob_count` knobs (see the type docs).
    pub(crate) fn weight_shapes(&self, knob_count: usize) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        for (i, array) in self.arrays.iter().enumerate() {
            let c = array.channels;
            let mc = array.activation.conv_multiplier() * c;
            shapes.push((
                format!("wavenet.{i}.rechannel.w"),
                vec![c, self.input_size(i)],
            ));
            for l in 0..array.dilations.len() {
                let p = format!("wavenet.{i}.layers.{l}");
                shapes.push((format!("{p}.conv.w"), vec![mc, c, array.kernel_size]));
                shapes.push((format!("{p}.conv.b"), vec![mc]));
                shapes.push((format!("{p}.mixin.w"), vec![mc, 1 + knob_count]));
                shapes.push((format!("{p}.out.w"), vec![c, c]));
                shapes.push((format!("{p}.out.b"), vec![c]));
            }
            let h = self.head_size(i);
            shapes.push((format!("wavenet.{i}.head.w"), vec![h, c]));
            if array.head_bias {
                shapes.push((format!("wavenet.{i}.head.b"), vec![h]));
            }
        }
        shapes
    }

    /// Multiply-accumulates per output sample.
    /// The knobs' share of the input mixin is constant and computed when they change, so only
    /// the audio column counts.
    pub(crate) fn macs_per_sample(&self) -> usize {
        self.arrays
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let c = a.channels;
                let mc = a.activation.conv_multiplier() * c;
                let per_layer = mc * c * a.kernel_size + mc + c * c;
                c * self.input_size(i) + a.dilations.len() * per_layer + self.head_size(i) * c
            })
            .sum()
    }
}
