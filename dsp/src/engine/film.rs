//! Feature-wise linear modulation shared by the convolution and state-space kernels: a static
//! part from the knobs (the [`FilmSpec`] MLP) plus an optional time-varying part written by a
//! block-rate controller (see `tvfilm.rs`).

use super::recurrent::dot;
use crate::model::{FilmSpec, ModelFile};

/// The knob MLP `knobs -> tanh(W1 k + b1) -> W2 h + b2`.
#[derive(Clone)]
struct Mlp {
    hidden: usize,
    /// `[F, K]`, `[F]`, `[out, F]`, `[out]`.
    l1_w: Vec<f32>,
    l1_b: Vec<f32>,
    l2_w: Vec<f32>,
    l2_b: Vec<f32>,
    /// Hidden activations scratch `[F]`.
    h: Vec<f32>,
}

/// Scale and shift of every block's `width` features.
///
/// Offsets are laid out per block as `width` scale offsets then `width` shifts; the
/// modulation of block `l`, feature `j` is `scale = 1 + (static + tv)`, `shift = static + tv`.
#[derive(Clone)]
pub(super) struct Film {
    width: usize,
    mlp: Option<Mlp>,
    /// Offsets from the knobs, `[L * 2 * width]` (zeros without knobs).
    static_out: Vec<f32>,
    /// Offsets from the time-varying controller, `[L * 2 * width]` (zeros without one).
    tv_out: Vec<f32>,
    /// `[L * width]` each.
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl Film {
    /// FiLM of `blocks` blocks of `width` features; the MLP exists when `spec` is set and the
    /// model has knobs.
    pub(super) fn new(
        model: &ModelFile,
        spec: Option<&FilmSpec>,
        blocks: usize,
        width: usize,
    ) -> Self {
        let mlp = match (spec, model.knobs.is_empty()) {
            (Some(spec), false) => Some(Mlp {
                hidden: spec.hidden_size,
                l1_w: model.weight("film.l1.w").data.clone(),
                l1_b: model.weight("film.l1.b").data.clone(),
                l2_w: model.weight("film.l2.w").data.clone(),
                l2_b: model.weight("film.l2.b").data.clone(),
                h: vec![0.0; spec.hidden_size],
            }),
            _ => None,
        };
        let len = blocks * 2 * width;
        Self {
            width,
            mlp,
            static_out: vec![0.0; len],
            tv_out: vec![0.0; len],
            scale: vec![1.0; blocks * width],
            shift: vec![0.0; blocks * width],
        }
    }

    /// Recomputes the static part from normalised knob travel.
    pub(super) fn set_knobs(&mut self, knobs: &[f32]) {
        let Some(mlp) = &mut self.mlp else {
            return;
        };
        let k = knobs.len();
        for (j, h) in mlp.h.iter_mut().enumerate() {
            *h = (mlp.l1_b[j] + dot(&mlp.l1_w[j * k..(j + 1) * k], knobs)).tanh();
        }
        let f = mlp.hidden;
        for (o, out) in self.static_out.iter_mut().enumerate() {
            *out = mlp.l2_b[o] + dot(&mlp.l2_w[o * f..(o + 1) * f], &mlp.h);
        }
        self.refresh();
    }

    /// Replaces the time-varying offsets (`[L * 2 * width]`).
    pub(super) fn set_time_varying(&mut self, offsets: &[f32]) {
        self.tv_out.copy_from_slice(offsets);
        self.refresh();
    }

    /// Number of offsets the time-varying controller must produce.
    pub(super) fn offset_count(&self) -> usize {
        self.tv_out.len()
    }

    fn refresh(&mut self) {
        let w = self.width;
        for (l, (scale, shift)) in self
            .scale
            .chunks_mut(w)
            .zip(self.shift.chunks_mut(w))
            .enumerate()
        {
            let base = l * 2 * w;
            for j in 0..w {
                scale[j] = 1.0 + (self.static_out[base + j] + self.tv_out[base + j]);
                shift[j] = self.static_out[base + w + j] + self.tv_out[base + w + j];
            }
        }
    }

    /// Scales of block `l`, `[width]`.
    pub(super) fn scale(&self, l: usize) -> &[f32] {
        &self.scale[l * self.width..(l + 1) * self.width]
    }

    /// Shifts of block `l`, `[width]`.
    pub(super) fn shift(&self, l: usize) -> &[f32] {
        &self.shift[l * self.width..(l + 1) * self.width]
    }
}
