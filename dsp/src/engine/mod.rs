//! The real-time engine: plays a [`ModelFile`] back, sample by sample, block by block.
//!
//! [`Player::new`] is the `prepare` step: it validates the model and allocates every buffer for
//! the largest block the caller will pass. [`Player::process`] then allocates nothing, takes any
//! number of samples (longer inputs are cut into blocks internally) and produces exactly the
//! output the training crate's reference forward produces for the same input, whatever the block
//! sizes.
//!
//! Knobs arrive as physical values or normalised travel, whenever the caller likes; the player
//! smooths them with a one-pole glide of [`KNOB_GLIDE_MS`] so automation does not zipper. While
//! a knob glides, the network's conditioning is refreshed every [`GLIDE_UPDATE_SAMPLES`].

mod conv;
mod denormal;
mod film;
mod history;
mod recurrent;
mod simd;
mod ssm;
mod tvfilm;
mod wavenet;

pub use denormal::FlushDenormals;
pub use simd::Isa;

use crate::knob::KnobError;
use crate::model::{ModelFile, ModelFileError, Network};

/// Time constant of the knob glide, in milliseconds.
pub const KNOB_GLIDE_MS: f64 = 20.0;
/// While a knob glides, conditioning is recomputed at least this often, in samples.
pub const GLIDE_UPDATE_SAMPLES: usize = 16;
/// A glide closer than this (in normalised travel) to its target snaps onto it.
const GLIDE_SNAP: f32 = 1e-6;

/// A network kernel processes one block with constant conditioning.
trait Kernel {
    /// Recomputes whatever depends on the normalised knob values.
    fn set_knobs(&mut self, knobs: &[f32]);
    /// Processes `input` into `output` (same length, at most the prepared block size).
    fn process(&mut self, input: &[f32], output: &mut [f32]);
    /// Clears the signal history.
    fn reset(&mut self);
    /// `true` when every state value is finite.
    fn state_is_finite(&self) -> bool;
}

#[derive(Clone)]
enum AnyKernel {
    Recurrent(recurrent::RecurrentKernel),
    Conv(conv::ConvKernel),
    WaveNet(wavenet::WaveNetKernel),
    Ssm(ssm::SsmKernel),
    ConvTv(tvfilm::TvFilm<conv::ConvKernel>),
    SsmTv(tvfilm::TvFilm<ssm::SsmKernel>),
}

impl AnyKernel {
    fn as_dyn(&mut self) -> &mut dyn Kernel {
        match self {
            AnyKernel::Recurrent(k) => k,
            AnyKernel::Conv(k) => k,
            AnyKernel::WaveNet(k) => k,
            AnyKernel::Ssm(k) => k,
            AnyKernel::ConvTv(k) => k,
            AnyKernel::SsmTv(k) => k,
        }
    }
}

/// Plays one model in real time.
#[derive(Clone)]
pub struct Player {
    kernel: AnyKernel,
    knob_specs: Vec<crate::knob::KnobSpec>,
    /// Normalised knob travel the glide heads for.
    knob_target: Vec<f32>,
    /// Normalised knob travel the network currently sees.
    knob_current: Vec<f32>,
    /// Largest block handed to the kernel.
    max_block: usize,
    /// Glide time constant in samples.
    glide_samples: f32,
    /// Sanitised input scratch (NaN and infinity replaced by silence), `max_block` long.
    input_scratch: Vec<f32>,
}

impl Player {
    /// Prepares a player for `model`, for blocks of up to `max_block` samples (larger inputs to
    /// [`Player::process`] are split). Knobs start at their defaults.
    pub fn new(model: &ModelFile, max_block: usize) -> Result<Self, ModelFileError> {
        model.validate()?;
        let max_block = max_block.max(1);
        let kernel = match &model.network {
            Network::Recurrent(net) => {
                AnyKernel::Recurrent(recurrent::RecurrentKernel::new(model, net))
            }
            Network::Conv(net) => AnyKernel::Conv(conv::ConvKernel::new(model, net, max_block)),
            Network::WaveNet(net) => {
                AnyKernel::WaveNet(wavenet::WaveNetKernel::new(model, net, max_block))
            }
            Network::Ssm(net) => AnyKernel::Ssm(ssm::SsmKernel::new(model, net)),
            Network::TimeVarying(tv) => match tv.inner.as_ref() {
                Network::Conv(net) => AnyKernel::ConvTv(tvfilm::TvFilm::new(
                    model,
                    tv,
                    conv::ConvKernel::new(model, net, max_block),
                )),
                Network::Ssm(net) => AnyKernel::SsmTv(tvfilm::TvFilm::new(
                    model,
                    tv,
                    ssm::SsmKernel::new(model, net),
                )),
                // `validate` refuses any other inner network.
                other => unreachable!("time-varying FiLM around {}", other.describe()),
            },
        };
        let defaults: Vec<f32> = model
            .knobs
            .iter()
            .map(|k| k.normalize(k.default) as f32)
            .collect();
        let mut player = Self {
            kernel,
            knob_specs: model.knobs.clone(),
            knob_target: defaults.clone(),
            knob_current: defaults,
            max_block,
            glide_samples: (KNOB_GLIDE_MS * 1e-3 * model.sample_rate_hz as f64) as f32,
            input_scratch: vec![0.0; max_block],
        };
        player.reset();
        Ok(player)
    }

    /// Sets knobs by physical value, in the model's knob order; values are range-checked.
    pub fn set_knob_values(&mut self, values: &[f64]) -> Result<(), KnobError> {
        for (spec, (&v, target)) in self
            .knob_specs
            .iter()
            .zip(values.iter().zip(self.knob_target.iter_mut()))
        {
            *target = spec.normalize(spec.check(v)?) as f32;
        }
        Ok(())
    }

    /// Sets knobs by normalised travel (`0..=1`, clamped), in the model's knob order. Does not
    /// allocate: callable from the audio thread.
    pub fn set_knobs_normalized(&mut self, travel: &[f32]) {
        for (target, &t) in self.knob_target.iter_mut().zip(travel) {
            *target = t.clamp(0.0, 1.0);
        }
    }

    /// Clears the signal history and jumps knobs to their targets (no glide).
    pub fn reset(&mut self) {
        self.knob_current.copy_from_slice(&self.knob_target);
        let kernel = self.kernel.as_dyn();
        kernel.set_knobs(&self.knob_current);
        kernel.reset();
    }

    /// Processes `input` into `output` (equal lengths). Allocation-free, lock-free and
    /// without system calls: callable from the audio thread.
    ///
    /// Non-finite input samples are treated as silence, and if the state ever becomes
    /// non-finite the history is cleared, so a burst of NaN cannot silence the model for good.
    /// Subnormal values are flushed to zero while it runs ([`FlushDenormals`]), so a decaying
    /// state costs no more than a live one; the caller's floating-point mode is restored.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        assert_eq!(input.len(), output.len(), "input and output lengths differ");
        let _flush = FlushDenormals::new();
        let mut done = 0;
        while done < input.len() {
            let gliding = self.is_gliding();
            let limit = if gliding {
                GLIDE_UPDATE_SAMPLES.min(self.max_block)
            } else {
                self.max_block
            };
            let n = limit.min(input.len() - done);
            if gliding {
                self.advance_glide(n);
            }

            let scratch = &mut self.input_scratch[..n];
            for (s, &x) in scratch.iter_mut().zip(&input[done..done + n]) {
                *s = if x.is_finite() { x } else { 0.0 };
            }
            let kernel = self.kernel.as_dyn();
            kernel.process(scratch, &mut output[done..done + n]);

            if !kernel.state_is_finite() {
                kernel.reset();
                output[done..done + n].fill(0.0);
            }
            done += n;
        }
    }

    fn is_gliding(&self) -> bool {
        self.knob_current
            .iter()
            .zip(&self.knob_target)
            .any(|(c, t)| c != t)
    }

    /// Moves the knobs `n` samples along their glide and refreshes the conditioning.
    fn advance_glide(&mut self, n: usize) {
        let keep = (-(n as f32) / self.glide_samples.max(1.0)).exp();
        for (c, &t) in self.knob_current.iter_mut().zip(&self.knob_target) {
            *c = t + (*c - t) * keep;
            if (*c - t).abs() < GLIDE_SNAP {
                *c = t;
            }
        }
        self.kernel.as_dyn().set_knobs(&self.knob_current);
    }

    /// The model's knobs, in order.
    pub fn knob_specs(&self) -> &[crate::knob::KnobSpec] {
        &self.knob_specs
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_arch;
#[cfg(test)]
mod tests_realtime;
