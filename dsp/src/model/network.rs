//! Network descriptions stored in model files, with the weight names and shapes each needs.

use serde::{Deserialize, Serialize};

use super::ssm::SsmNet;
use super::tvfilm::TvFilmNet;
use super::wavenet::WaveNetNet;

/// The architecture of a model. Every variant is conditioned on the model's knobs, given to it
/// as normalised travel in `0..=1` (see [`crate::knob::KnobSpec::normalize`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Network {
    Recurrent(RecurrentNet),
    Conv(ConvNet),
    /// NAM-style WaveNet layer arrays, knobs through the input mixins.
    #[serde(rename = "wavenet")]
    WaveNet(WaveNetNet),
    /// Diagonal state-space (S4D-style) blocks with FiLM by the knobs.
    Ssm(SsmNet),
    /// A conv or state-space network whose FiLM a block-rate controller modulates over time.
    TimeVarying(TvFilmNet),
}

/// Recurrent cell type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    /// Number of gates, i.e. rows of the weight matrices per hidden unit.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// A single recurrent layer and a linear read-out, conditioned by concatenation: its input at
/// each sample is `[x, knob_1, ..., knob_K, lv_1, ..., lv_D]`, `lv_d` the input's level from
/// a [`LevelDetector`](super::LevelDetector) with time constant `level_inputs[d]`.
///
/// Weights (PyTorch layout, gates stacked along rows), `G` gates, `H` hidden, `K` knobs, `D`
/// level inputs, `I = 1 + K + D` inputs:
/// - `rnn.w_ih [G*H, I]`, `rnn.w_hh [G*H, H]`;
/// - LSTM: `rnn.b [4H]` (input and recurrent biases summed), gate order i, f, g, o;
/// - GRU: `rnn.b_ih [3H]`, `rnn.b_hh [3H]`, gate order r, z, n, with
///   `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`;
/// - `head.w [1, H]`, `head.b [1]`: `y = head.w · h + head.b (+ x when skip)`;
/// - with the gain head, `gain.w [1, H]`, `gain.b [1]`: the skip's unit gain becomes
///   `exp(s (gain.w · h + gain.b))`, `s` = [`GAIN_HEAD_SCALE`], so
///   `y = head.w · h + head.b + exp(s (gain.w · h + gain.b)) x`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurrentNet {
    pub cell: Cell,
    pub hidden_size: usize,
    /// Adds the input to the output, so the network learns the difference from a wire.
    pub skip: bool,
    /// A second read-out of the hidden state sets the gain of the input skip, like the VCA of
    /// a compressor: a level-dependent gain is one read-out of the state instead of a product
    /// the cell itself must form. The read-out is in the log domain, so a gain of -30 dB is as
    /// precise as one of 0 dB. Needs the skip. Added in schema 2.0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gain_head: bool,
    /// Time constants, in samples at the model's rate, of level detectors whose readings in dB
    /// the cell sees besides the waveform. A cell fed only the waveform must rectify, smooth
    /// and take the logarithm of signals spanning 40 dB itself, and learns memories of
    /// thousands of samples (a compressor's release) only slowly through truncated
    /// back-propagation; detectors spread from attack to release times hand it those
    /// readings. Added in schema 2.0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub level_inputs: Vec<f32>,
}

/// Log-gain per unit of the gain head's read-out: one unit is 40 dB (`ln 100`). Optimisers
/// such as Adam move a weight by about the learning rate per step, so without this scale a
/// compressor's 30 dB of gain reduction would take thousands of steps to reach.
pub const GAIN_HEAD_SCALE: f32 = 4.605_170_2;

impl RecurrentNet {
    /// Columns of `rnn.w_ih`: the waveform, the knobs and the level inputs.
    pub fn input_size(&self, knob_count: usize) -> usize {
        1 + knob_count + self.level_inputs.len()
    }
}

/// Convolution block flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Temporal convolutional network block: `tanh(conv(x))`.
    Tanh,
    /// Gated convolutional block (WaveNet-style): `tanh(a) * sigmoid(b)` with `a`, `b` the two
    /// halves of a convolution with twice the channels.
    Gated,
}

impl Activation {
    /// Convolution output channels per block channel.
    pub fn conv_multiplier(self) -> usize {
        match self {
            Activation::Tanh => 1,
            Activation::Gated => 2,
        }
    }
}

/// One dilated causal convolution block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvBlockSpec {
    pub kernel_size: usize,
    pub dilation: usize,
}

/// Feature-wise linear modulation of every block's convolution output by the knobs, through a
/// small multilayer perceptron: `knobs -> tanh(W1 k + b1) -> W2 h + b2`, whose output holds,
/// for each block in turn, `M*C` scale offsets then `M*C` shifts (`M` the conv multiplier).
/// The scale is `1 + offset`, so a zero network is the identity. Static over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilmSpec {
    pub hidden_size: usize,
}

/// A stack of dilated causal convolutions (TCN or, with gated activations, GCN), each with a
/// 1x1 residual path, and a 1x1 read-out.
///
/// Block `l` maps `x_l [C_in, T]` (C_in = 1 for the first block, C after) to
/// `x_{l+1} = act(film_l(conv_l(x_l))) + res_l · x_l`. Weights, `M` the conv multiplier:
/// - `blocks.{l}.conv.w [M*C, C_in, kernel]` (tap `kernel-1` is the current sample, tap `j`
///   is `(kernel-1-j)*dilation` samples in the past), `blocks.{l}.conv.b [M*C]`;
/// - `blocks.{l}.res.w [C, C_in]`;
/// - with FiLM and `K > 0` knobs: `film.l1.w [F, K]`, `film.l1.b [F]`,
///   `film.l2.w [2*M*C*L, F]`, `film.l2.b [2*M*C*L]`;
/// - `head.w [1, C]`, `head.b [1]`: `y = head.w · x_L + head.b (+ x when skip)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvNet {
    pub channels: usize,
    pub activation: Activation,
    pub blocks: Vec<ConvBlockSpec>,
    /// Knob conditioning; `None` for a model without knobs.
    pub film: Option<FilmSpec>,
    pub skip: bool,
}

impl ConvNet {
    /// Samples of input that influence one output sample (1 = memoryless).
    pub fn receptive_field_samples(&self) -> usize {
        1 + self
            .blocks
            .iter()
            .map(|b| (b.kernel_size - 1) * b.dilation)
            .sum::<usize>()
    }
}

impl Network {
    /// Every weight the network reads, with its shape, for a model with `knob_count` knobs.
    pub fn weight_shapes(&self, knob_count: usize) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        match self {
            Network::Recurrent(r) => {
                let gh = r.cell.gates() * r.hidden_size;
                shapes.push(("rnn.w_ih".into(), vec![gh, r.input_size(knob_count)]));
                shapes.push(("rnn.w_hh".into(), vec![gh, r.hidden_size]));
                match r.cell {
                    Cell::Lstm => shapes.push(("rnn.b".into(), vec![gh])),
                    Cell::Gru => {
                        shapes.push(("rnn.b_ih".into(), vec![gh]));
                        shapes.push(("rnn.b_hh".into(), vec![gh]));
                    }
                }
                shapes.push(("head.w".into(), vec![1, r.hidden_size]));
                if r.gain_head {
                    shapes.push(("gain.w".into(), vec![1, r.hidden_size]));
                    shapes.push(("gain.b".into(), vec![1]));
                }
            }
            Network::Conv(c) => {
                let m = c.activation.conv_multiplier();
                for (l, block) in c.blocks.iter().enumerate() {
                    let c_in = if l == 0 { 1 } else { c.channels };
                    shapes.push((
                        format!("blocks.{l}.conv.w"),
                        vec![m * c.channels, c_in, block.kernel_size],
                    ));
                    shapes.push((format!("blocks.{l}.conv.b"), vec![m * c.channels]));
                    shapes.push((format!("blocks.{l}.res.w"), vec![c.channels, c_in]));
                }
                if let (Some(film), true) = (&c.film, knob_count > 0) {
                    let out = 2 * m * c.channels * c.blocks.len();
                    shapes.push(("film.l1.w".into(), vec![film.hidden_size, knob_count]));
                    shapes.push(("film.l1.b".into(), vec![film.hidden_size]));
                    shapes.push(("film.l2.w".into(), vec![out, film.hidden_size]));
                    shapes.push(("film.l2.b".into(), vec![out]));
                }
                shapes.push(("head.w".into(), vec![1, c.channels]));
            }
            // The last array's head is the read-out, so there is no shared `head.b`.
            Network::WaveNet(w) => return w.weight_shapes(knob_count),
            Network::Ssm(s) => shapes.extend(s.weight_shapes(knob_count)),
            Network::TimeVarying(tv) => {
                let mut shapes = tv.inner.weight_shapes(knob_count);
                shapes.extend(tv.controller_shapes(knob_count));
                return shapes;
            }
        }
        shapes.push(("head.b".into(), vec![1]));
        shapes
    }

    /// Parameter count for a model with `knob_count` knobs.
    pub fn parameter_count(&self, knob_count: usize) -> usize {
        self.weight_shapes(knob_count)
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Samples of past input an output depends on; `None` for recurrent (unbounded) memory.
    pub fn receptive_field_samples(&self) -> Option<usize> {
        match self {
            Network::Recurrent(_) | Network::Ssm(_) => None,
            Network::TimeVarying(tv) => tv.inner.receptive_field_samples(),
            Network::Conv(c) => Some(c.receptive_field_samples()),
            Network::WaveNet(w) => Some(w.receptive_field_samples()),
        }
    }

    /// Multiply-accumulates per output sample, a rough real-time cost figure.
    pub fn macs_per_sample(&self, knob_count: usize) -> usize {
        match self {
            Network::Recurrent(r) => {
                let gh = r.cell.gates() * r.hidden_size;
                let heads = if r.gain_head { 2 } else { 1 };
                gh * r.input_size(knob_count) + gh * r.hidden_size + heads * r.hidden_size
            }
            Network::Conv(c) => {
                let m = c.activation.conv_multiplier();
                c.blocks
                    .iter()
                    .enumerate()
                    .map(|(l, b)| {
                        let c_in = if l == 0 { 1 } else { c.channels };
                        m * c.channels * c_in * b.kernel_size + c.channels * c_in
                    })
                    .sum::<usize>()
                    + c.channels
            }
            Network::WaveNet(w) => w.macs_per_sample(),
            Network::Ssm(s) => s.macs_per_sample(),
            Network::TimeVarying(tv) => {
                tv.inner.macs_per_sample(knob_count) + tv.controller_macs_per_sample(knob_count)
            }
        }
    }

    /// Short description, e.g. `LSTM, 32 hidden` or `TCN, 16 ch, 5 blocks, kernel 7`.
    pub fn describe(&self) -> String {
        match self {
            Network::Recurrent(r) => {
                let cell = match r.cell {
                    Cell::Lstm => "LSTM",
                    Cell::Gru => "GRU",
                };
                let gain = if r.gain_head { ", gain head" } else { "" };
                let level = match r.level_inputs.len() {
                    0 => String::new(),
                    n => format!(", {n} level inputs"),
                };
                format!("{cell}, {} hidden{gain}{level}", r.hidden_size)
            }
            Network::Conv(c) => {
                let kind = match c.activation {
                    Activation::Tanh => "TCN",
                    Activation::Gated => "GCN",
                };
                format!("{kind}, {} ch, {} blocks", c.channels, c.blocks.len())
            }
            Network::WaveNet(w) => {
                let arrays: Vec<String> = w
                    .arrays
                    .iter()
                    .map(|a| format!("{}x{} ch", a.dilations.len(), a.channels))
                    .collect();
                format!("WaveNet, layer arrays {}", arrays.join(" + "))
            }
            Network::Ssm(s) => format!(
                "S4D, {} ch, {} blocks, {} states",
                s.channels, s.blocks, s.state_size
            ),
            Network::TimeVarying(tv) => format!(
                "{}, time-varying FiLM every {} samples (LSTM {})",
                tv.inner.describe(),
                tv.block_samples,
                tv.hidden_size
            ),
        }
    }

    /// Turns the input skip on or off where the architecture has one (not NAM's WaveNet).
    pub fn set_skip(&mut self, skip: bool) {
        match self {
            Network::Recurrent(r) => r.skip = skip,
            Network::Conv(c) => c.skip = skip,
            Network::Ssm(s) => s.skip = skip,
            Network::TimeVarying(tv) => tv.inner.set_skip(skip),
            Network::WaveNet(_) => {}
        }
    }

    /// Number of FiLM offsets the network's blocks take (per block, scale offsets then
    /// shifts), or `None` for networks without FiLM sites.
    pub fn film_width(&self) -> Option<usize> {
        match self {
            Network::Conv(c) => {
                Some(2 * c.activation.conv_multiplier() * c.channels * c.blocks.len())
            }
            Network::Ssm(s) => Some(2 * s.channels * s.blocks),
            Network::Recurrent(_) | Network::WaveNet(_) | Network::TimeVarying(_) => None,
        }
    }

    /// The oldest model-file schema that describes this network: readers of older majors
    /// would misread it (they ignore fields they do not know), so files are stamped with this
    /// rather than the newest version, and older builds keep reading what they can play.
    pub fn schema_version_needed(&self) -> [u32; 2] {
        match self {
            Network::Recurrent(r) if r.gain_head || !r.level_inputs.is_empty() => [2, 0],
            _ => [1, 0],
        }
    }

    /// Checks the structure beyond what the types express (e.g. what a time-varying FiLM may
    /// wrap); the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Network::Recurrent(r) if r.gain_head && !r.skip => {
                Err("the gain head sets the gain of the input skip: it needs skip = true".into())
            }
            Network::Recurrent(r)
                if r.level_inputs
                    .iter()
                    .any(|tau| !(tau.is_finite() && *tau >= 1.0)) =>
            {
                Err(format!(
                    "level input time constants must be at least 1 sample, not {:?}",
                    r.level_inputs
                ))
            }
            Network::TimeVarying(tv) => tv.check(),
            Network::WaveNet(w)
                if w.arrays.is_empty() || w.arrays.iter().any(|a| a.dilations.is_empty()) =>
            {
                Err("a WaveNet needs at least one layer array, each with at least one layer".into())
            }
            _ => Ok(()),
        }
    }
}
