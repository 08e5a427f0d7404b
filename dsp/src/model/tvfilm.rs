//! Time-varying FiLM: a block-rate LSTM controller that modulates a convolution or
//! state-space network's FiLM sites from the input level and the knobs.
//!
//! After TFiLM (Birnbaum et al., "Temporal FiLM", NeurIPS 2019) and the TVFiLM conditioning
//! of NablAFx (Comunità, Steinmetz and Reiss, 2024/2025). Unlike NablAFx, whose controller
//! reads the block it modulates (a block of latency in real time), the modulation of block
//! `j` here depends only on input blocks `< j`, so the engine adds no latency.

use serde::{Deserialize, Serialize};

use super::network::Network;

/// Power floor of [`level_from_power`]: -100 dBFS.
pub const LEVEL_FLOOR_POWER: f32 = 1e-10;
/// The level feature spans this many dB from the floor to 0 dBFS RMS.
pub const LEVEL_RANGE_DB: f32 = 100.0;

/// A convolution or state-space network whose FiLM is modulated over time.
///
/// The input is cut into blocks of `block_samples`, counted from the start of the stream: the
/// engine's last reset, or in training the first output sample of a segment (the receptive
/// field's context before it takes block 0's modulation). With `lv_j` the level of input
/// block `j` ([`level_from_power`]) and `(h_0, c_0) = 0`, the controller runs
///
/// ```text
/// (h_{j+1}, c_{j+1}) = LSTM([lv_j, knob_1, ..., knob_K], (h_j, c_j))
/// offsets_j          = W_out h_j + b_out                (modulation of block j)
/// ```
///
/// so block `j` is modulated from input blocks `< j` only. `offsets_j` has the layout of the
/// inner network's FiLM output (per FiLM block: scale offsets, then shifts) and is added to
/// the static FiLM from the knobs: `scale = 1 + (static + offsets)`, `shift = static +
/// offsets`. The engine steps the controller at these fixed sample positions whatever the
/// host's block size.
///
/// Weights (`H` hidden, `K` knobs, `W` = [`Network::film_width`] of the inner network), on top
/// of the inner network's: `tvfilm.lstm.w_ih [4H, 1+K]`, `tvfilm.lstm.w_hh [4H, H]`,
/// `tvfilm.lstm.b [4H]` (PyTorch layout, gates i, f, g, o, biases summed), `tvfilm.out.w
/// [W, H]`, `tvfilm.out.b [W]`.
///
/// The receptive field reported for the whole network is the inner network's (it sets the
/// warm-up of training segments); the controller's memory itself is unbounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TvFilmNet {
    /// Controller block length in samples (e.g. 128, 2.7 ms at 48 kHz).
    pub block_samples: usize,
    /// LSTM hidden size of the controller.
    pub hidden_size: usize,
    /// The modulated network: [`Network::Conv`] or [`Network::Ssm`].
    pub inner: Box<Network>,
}

impl TvFilmNet {
    /// The controller's weights, for `knob_count` knobs and `width` FiLM offsets.
    pub(crate) fn controller_shapes(&self, knob_count: usize) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let width = self.inner.film_width().unwrap_or(0);
        vec![
            ("tvfilm.lstm.w_ih".into(), vec![4 * h, 1 + knob_count]),
            ("tvfilm.lstm.w_hh".into(), vec![4 * h, h]),
            ("tvfilm.lstm.b".into(), vec![4 * h]),
            ("tvfilm.out.w".into(), vec![width, h]),
            ("tvfilm.out.b".into(), vec![width]),
        ]
    }

    /// The controller's multiply-adds per audio sample (one step per block).
    pub(crate) fn controller_macs_per_sample(&self, knob_count: usize) -> usize {
        let h = self.hidden_size;
        let width = self.inner.film_width().unwrap_or(0);
        let per_block = 4 * h * (1 + knob_count) + 4 * h * h + width * h + self.block_samples;
        per_block.div_ceil(self.block_samples.max(1))
    }

    /// Why this network cannot be played, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.block_samples == 0 || self.hidden_size == 0 {
            return Err("time-varying FiLM needs block_samples and hidden_size >= 1".into());
        }
        match *self.inner {
            Network::Conv(_) | Network::Ssm(_) => Ok(()),
            _ => Err(format!(
                "time-varying FiLM can modulate a conv or ssm network, not {}",
                self.inner.describe()
            )),
        }
    }
}

/// The controller's input feature for a block whose samples' squares sum to `sum_sq` over
/// `samples` samples: its RMS level in dB mapped to `0` at -100 dBFS (and below) and `1` at
/// 0 dBFS. Both the engine and training accumulate `sum_sq` sample by sample in order, so the
/// feature is bit-identical between them.
pub fn level_from_power(sum_sq: f32, samples: usize) -> f32 {
    let mean = sum_sq / samples.max(1) as f32;
    1.0 + 10.0 * mean.max(LEVEL_FLOOR_POWER).log10() / LEVEL_RANGE_DB
}

/// [`level_from_power`] of a whole block.
pub fn block_level(block: &[f32]) -> f32 {
    let sum_sq = block.iter().fold(0.0f32, |acc, x| acc + x * x);
    level_from_power(sum_sq, block.len())
}
