//! Trainable forms of the networks in [`dsp::model::Network`].
//!
//! The weights live in candle [`Var`]s named exactly as in the model file, so exporting a model
//! is a copy and the real-time engine in `dsp` computes the same function (parity is tested).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Result, Tensor, Var, D};
use dsp::model::{Cell, ConvNet, Network, RecurrentNet, SsmNet, WeightTensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

mod film;
mod ssm;
mod tvfilm;
mod wavenet;

/// Recurrent state carried between segments of truncated back-propagation through time.
///
/// For state-space networks, `h` holds the real parts and `c` the imaginary parts of every
/// block's `C*N` states, block after block, `[B, L*C*N]`; under time-varying FiLM the
/// controller's `h` and `c` follow, `[B, L*C*N + H]`.
#[derive(Debug, Clone)]
pub struct RecurrentState {
    /// `[B, H]`.
    pub h: Tensor,
    /// `[B, H]`; unused by GRUs.
    pub c: Tensor,
    /// Recurrent nets with level inputs: the level detectors' states (smoothed powers, see
    /// [`dsp::model::LevelDetector`]), `[B * D]` item-major. Not differentiable: they depend on
    /// the input alone. `None` starts them from silence.
    pub level: Option<Vec<f32>>,
}

impl RecurrentState {
    /// A state of `h` and `c` without a level detector.
    pub fn new(h: Tensor, c: Tensor) -> Self {
        Self { h, c, level: None }
    }

    /// The same state cut off from the graph, to start the next segment.
    pub fn detach(&self) -> Self {
        Self {
            h: self.h.detach(),
            c: self.c.detach(),
            level: self.level.clone(),
        }
    }
}

/// The readings of level detectors with time constants `taus` (see
/// [`dsp::model::LevelDetector`]) on `x [B, T]` at every sample, `[B, T, D]`, the detectors
/// starting from the states `start` (`[B * D]`, silence when `None`), and their states after
/// the last sample.
pub fn level_features(
    taus: &[f32],
    x: &Tensor,
    start: Option<&[f32]>,
) -> Result<(Tensor, Vec<f32>)> {
    let (b_sz, t_len) = x.dims2()?;
    let d = taus.len();
    let samples = x.to_vec2::<f32>()?;
    let mut readings = vec![0.0f32; b_sz * t_len * d];
    let mut end = Vec::with_capacity(b_sz * d);
    for (item, row) in samples.iter().enumerate() {
        let out = &mut readings[item * t_len * d..(item + 1) * t_len * d];
        for (k, &tau) in taus.iter().enumerate() {
            let mut det = dsp::model::LevelDetector::new(tau);
            det.set_power(start.map_or(0.0, |s| s[item * d + k]));
            for (t, &v) in row.iter().enumerate() {
                out[t * d + k] = det.next(v);
            }
            end.push(det.power());
        }
    }
    Ok((
        Tensor::from_vec(readings, (b_sz, t_len, d), x.device())?,
        end,
    ))
}

/// A network with trainable weights.
pub struct TrainableNet {
    pub network: Network,
    pub knob_count: usize,
    /// Weights by model-file name.
    pub vars: BTreeMap<String, Var>,
    device: Device,
}

impl TrainableNet {
    /// Fresh weights drawn from a seeded generator: uniform in `±1/sqrt(fan_in)` as PyTorch
    /// does for recurrent and convolution layers, zero for FiLM's output layer (so training
    /// starts from unmodulated blocks) and for biases of the read-out.
    pub fn init(network: &Network, knob_count: usize, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut vars = BTreeMap::new();
        let shapes = network.weight_shapes(knob_count);
        for (name, shape) in shapes.iter().cloned() {
            let n: usize = shape.iter().product();
            let special = match network {
                Network::Ssm(_) => ssm::init_values(&name, &shape, &mut rng),
                Network::TimeVarying(tv) if matches!(*tv.inner, Network::Ssm(_)) => {
                    ssm::init_values(&name, &shape, &mut rng)
                }
                _ => None,
            };
            if let Some(data) = special {
                let t = Tensor::from_vec(data, shape.as_slice(), device)?;
                vars.insert(name, Var::from_tensor(&t)?);
                continue;
            }
            let bound = match (&network, name.as_str()) {
                // The gain head starts closed, so training starts from the plain network.
                (_, "film.l2.w" | "film.l2.b" | "head.b" | "gain.w" | "gain.b") => 0.0,
                // The controller starts silent (static FiLM only); its LSTM as PyTorch's.
                (_, "tvfilm.out.w" | "tvfilm.out.b") => 0.0,
                (_, n) if n.starts_with("tvfilm.lstm.") => 2.0 / (shape[0] as f32).sqrt(),
                (Network::Recurrent(r), _) => 1.0 / (r.hidden_size as f32).sqrt(),
                (Network::Conv(_), _) => {
                    let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
                    1.0 / (fan_in as f32).sqrt()
                }
                (Network::WaveNet(_) | Network::Ssm(_) | Network::TimeVarying(_), _) => {
                    wavenet::init_bound(&name, &shape, &shapes)
                }
            };
            let data: Vec<f32> = (0..n)
                .map(|_| {
                    if bound == 0.0 {
                        0.0
                    } else {
                        rng.random_range(-bound..bound)
                    }
                })
                .collect();
            let t = Tensor::from_vec(data, shape.as_slice(), device)?;
            vars.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Self {
            network: network.clone(),
            knob_count,
            vars,
            device: device.clone(),
        })
    }

    /// Trainable copy of exported weights (to resume or fine-tune a model file).
    pub fn from_weights(
        network: &Network,
        knob_count: usize,
        weights: &BTreeMap<String, WeightTensor>,
        device: &Device,
    ) -> Result<Self> {
        let mut vars = BTreeMap::new();
        for (name, shape) in network.weight_shapes(knob_count) {
            let w = weights
                .get(&name)
                .ok_or_else(|| candle_core::Error::Msg(format!("weight {name:?} missing")))?;
            let t = Tensor::from_vec(w.data.clone(), shape.as_slice(), device)?;
            vars.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Self {
            network: network.clone(),
            knob_count,
            vars,
            device: device.clone(),
        })
    }

    /// The current weights in model-file form.
    pub fn to_weights(&self) -> Result<BTreeMap<String, WeightTensor>> {
        self.vars
            .iter()
            .map(|(name, var)| {
                let t = var.as_tensor();
                let data = t.flatten_all()?.to_vec1::<f32>()?;
                Ok((name.clone(), WeightTensor::new(t.dims().to_vec(), data)))
            })
            .collect()
    }

    /// All trainable variables, in name order.
    pub fn all_vars(&self) -> Vec<Var> {
        self.vars.values().cloned().collect()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn w(&self, name: &str) -> &Tensor {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("weight {name:?} was created at init"))
            .as_tensor()
    }

    /// Input samples consumed before the first output sample: the output of
    /// [`TrainableNet::forward`] on `T` samples is `T - warmup_samples()` long.
    pub fn warmup_samples(&self) -> usize {
        self.network.receptive_field_samples().unwrap_or(1) - 1
    }

    /// Zero recurrent state for a batch of `batch` items.
    pub fn zero_state(&self, batch: usize) -> Result<Option<RecurrentState>> {
        match &self.network {
            Network::Recurrent(r) => {
                let z = Tensor::zeros((batch, r.hidden_size), DType::F32, &self.device)?;
                Ok(Some(RecurrentState::new(z.clone(), z)))
            }
            Network::Conv(_) | Network::WaveNet(_) => Ok(None),
            Network::Ssm(s) => {
                let z = Tensor::zeros((batch, Self::ssm_state_width(s)), DType::F32, &self.device)?;
                Ok(Some(RecurrentState::new(z.clone(), z)))
            }
            Network::TimeVarying(tv) => match tv.inner.as_ref() {
                Network::Ssm(s) => {
                    let width = Self::ssm_state_width(s) + tv.hidden_size;
                    let z = Tensor::zeros((batch, width), DType::F32, &self.device)?;
                    Ok(Some(RecurrentState::new(z.clone(), z)))
                }
                _ => Ok(None),
            },
        }
    }

    /// Runs the network on a batch.
    ///
    /// `x`: audio `[B, T]`; `knobs`: normalised knob travel `[B, K]`, constant over the segment;
    /// `state`: recurrent state from the previous segment (zero when `None`).
    /// Returns the output `[B, T - warmup_samples()]` and the final recurrent state.
    pub fn forward(
        &self,
        x: &Tensor,
        knobs: &Tensor,
        state: Option<&RecurrentState>,
    ) -> Result<(Tensor, Option<RecurrentState>)> {
        match &self.network {
            Network::Recurrent(r) => {
                let (y, s) = self.forward_recurrent(r, x, knobs, state)?;
                Ok((y, Some(s)))
            }
            Network::Conv(c) => Ok((self.forward_conv(c, x, knobs)?, None)),
            Network::WaveNet(w) => Ok((self.forward_wavenet(w, x, knobs)?, None)),
            Network::Ssm(s) => {
                let (y, state) = self.forward_ssm_net(s, x, knobs, state)?;
                Ok((y, Some(state)))
            }
            Network::TimeVarying(tv) => self.forward_time_varying(tv, x, knobs, state),
        }
    }

    fn forward_ssm_net(
        &self,
        net: &SsmNet,
        x: &Tensor,
        knobs: &Tensor,
        state: Option<&RecurrentState>,
    ) -> Result<(Tensor, RecurrentState)> {
        let film = match self.static_film(net.film.as_ref(), knobs)? {
            Some(f) => Some(f.unsqueeze(1)?),
            None => None,
        };
        let (y, h, c) = self.forward_ssm(net, x, film.as_ref(), state)?;
        Ok((y, RecurrentState::new(h, c)))
    }

    fn forward_recurrent(
        &self,
        net: &RecurrentNet,
        x: &Tensor,
        knobs: &Tensor,
        state: Option<&RecurrentState>,
    ) -> Result<(Tensor, RecurrentState)> {
        let (b_sz, t_len) = x.dims2()?;
        let zero;
        let state = match state {
            Some(s) => s,
            None => {
                zero = self.zero_state(b_sz)?.expect("recurrent");
                &zero
            }
        };
        // Conditioning by concatenation: [x, knobs..., level] at every sample.
        let mut columns = vec![x.unsqueeze(2)?];
        if self.knob_count > 0 {
            let k = knobs
                .unsqueeze(1)?
                .broadcast_as((b_sz, t_len, self.knob_count))?;
            columns.push(k.contiguous()?);
        }
        let level_state = if net.level_inputs.is_empty() {
            None
        } else {
            let (level, end) = level_features(&net.level_inputs, x, state.level.as_deref())?;
            columns.push(level);
            Some(end)
        };
        let input = if columns.len() > 1 {
            Tensor::cat(&columns, 2)?
        } else {
            columns.remove(0)
        };
        let (h_seq, state) = match net.cell {
            Cell::Lstm => {
                let (h_seq, h, c) = crate::ops::lstm::lstm(
                    &input,
                    &state.h,
                    &state.c,
                    self.w("rnn.w_ih"),
                    self.w("rnn.w_hh"),
                    self.w("rnn.b"),
                )?;
                (h_seq, RecurrentState::new(h, c))
            }
            Cell::Gru => {
                let (h_seq, h) = crate::ops::gru::gru(
                    &input,
                    &state.h,
                    self.w("rnn.w_ih"),
                    self.w("rnn.w_hh"),
                    self.w("rnn.b_ih"),
                    self.w("rnn.b_hh"),
                )?;
                (h_seq, RecurrentState::new(h, state.c.clone()))
            }
        };
        let y = h_seq
            .broadcast_matmul(&self.w("head.w").t()?)?
            .squeeze(2)?
            .broadcast_add(self.w("head.b"))?;
        let y = if net.gain_head {
            let gain = h_seq
                .broadcast_matmul(&self.w("gain.w").t()?)?
                .squeeze(2)?
                .broadcast_add(self.w("gain.b"))?
                .affine(f64::from(dsp::model::GAIN_HEAD_SCALE), 0.0)?
                .exp()?;
            (y + (gain * x)?)?
        } else if net.skip {
            (y + x)?
        } else {
            y
        };
        let mut state = state;
        state.level = level_state;
        Ok((y, state))
    }

    fn forward_conv(&self, net: &ConvNet, x: &Tensor, knobs: &Tensor) -> Result<Tensor> {
        let film = match self.static_film(net.film.as_ref(), knobs)? {
            Some(f) => Some(f.unsqueeze(2)?),
            None => None,
        };
        self.forward_conv_modulated(net, x, film.as_ref())
    }

    /// The conv stack with FiLM offsets `film`: `[B, W, 1]` (constant) or `[B, W, T]` (over
    /// time, aligned with `x [B, T]`), `W` = [`Network::film_width`].
    fn forward_conv_modulated(
        &self,
        net: &ConvNet,
        x: &Tensor,
        film: Option<&Tensor>,
    ) -> Result<Tensor> {
        let m = net.activation.conv_multiplier();
        let mc = m * net.channels;

        let mut h = x.unsqueeze(1)?; // [B, 1, T]
        for (l, block) in net.blocks.iter().enumerate() {
            let hist = (block.kernel_size - 1) * block.dilation;
            let t_in = h.dim(D::Minus1)?;
            let mut z = crate::ops::dilated_conv1d(
                &h,
                self.w(&format!("blocks.{l}.conv.w")),
                Some(self.w(&format!("blocks.{l}.conv.b"))),
                block.dilation,
            )?;
            if let Some(f) = film {
                // Over time, the conv output covers the last samples of the input.
                let (t_f, t_z) = (f.dim(2)?, z.dim(2)?);
                let f = if t_f > 1 {
                    f.narrow(2, t_f - t_z, t_z)?
                } else {
                    f.clone()
                };
                let scale = (f.narrow(1, l * 2 * mc, mc)? + 1.0)?;
                let shift = f.narrow(1, l * 2 * mc + mc, mc)?;
                z = z.broadcast_mul(&scale)?.broadcast_add(&shift)?;
            }
            let act = crate::ops::activate(&z, net.activation)?;
            let res = self
                .w(&format!("blocks.{l}.res.w"))
                .broadcast_matmul(&h.narrow(2, hist, t_in - hist)?)?;
            h = (act + res)?;
        }
        let y = self
            .w("head.w")
            .broadcast_matmul(&h)?
            .squeeze(1)?
            .broadcast_add(self.w("head.b"))?;
        if net.skip {
            let t_out = y.dim(1)?;
            let t_in = x.dim(1)?;
            y + x.narrow(1, t_in - t_out, t_out)?
        } else {
            Ok(y)
        }
    }
}

#[cfg(test)]
mod tests_arch;
