//! FiLM offsets for the convolution and state-space networks: the static part from the knobs
//! (the [`FilmSpec`] MLP) and, for time-varying FiLM, the block-rate controller's part.

use candle_core::{Result, Tensor};
use dsp::model::FilmSpec;

use super::TrainableNet;

impl TrainableNet {
    /// The knob MLP's output `[B, width]` (per block: scale offsets, then shifts), or `None`
    /// without FiLM or without knobs.
    pub(super) fn static_film(
        &self,
        film: Option<&FilmSpec>,
        knobs: &Tensor,
    ) -> Result<Option<Tensor>> {
        if film.is_none() || self.knob_count == 0 {
            return Ok(None);
        }
        let h = knobs
            .matmul(&self.w("film.l1.w").t()?)?
            .broadcast_add(self.w("film.l1.b"))?
            .tanh()?;
        Ok(Some(
            h.matmul(&self.w("film.l2.w").t()?)?
                .broadcast_add(self.w("film.l2.b"))?,
        ))
    }
}
