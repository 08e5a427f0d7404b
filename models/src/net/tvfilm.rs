//! Trainable time-varying FiLM (see [`TvFilmNet`] for the controller's equations).
//!
//! The controller's blocks are counted from the first *output* sample (input index
//! `warmup_samples()`), just as the engine counts them from its last reset: a clip whose
//! warm-up context is zeros then reproduces the engine exactly once the receptive field has
//! passed. The context before the first output sample takes block 0's modulation.
//!
//! Block levels are computed from the input samples in plain Rust, with the same sequential
//! sum as the engine ([`dsp::model::level_from_power`]), since the input needs no gradient.
//! The controller runs as the fused LSTM op over the full blocks; its per-block offsets are
//! repeated over each block's samples.

use candle_core::{DType, Result, Tensor};
use dsp::model::{block_level, FilmSpec, Network, TvFilmNet};

use super::{RecurrentState, TrainableNet};

impl TrainableNet {
    /// FiLM offsets over time, time-major `[B, T, W]` (static from the knobs plus the
    /// controller's), and the controller's `(h, c)` after the last full block.
    ///
    /// The controller's first block starts at input index `anchor`; earlier samples take
    /// block 0's offsets. `ctrl`: the controller state at `anchor` (zero when `None`). The
    /// returned state continues the stream exactly when `T - anchor` is a multiple of
    /// `block_samples`; otherwise the partial last block's level is dropped (training's
    /// burn-in is a whole number of blocks).
    fn tv_film_offsets(
        &self,
        tv: &TvFilmNet,
        film: Option<&FilmSpec>,
        (x, anchor): (&Tensor, usize),
        knobs: &Tensor,
        ctrl: Option<(Tensor, Tensor)>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b_sz, t_total) = x.dims2()?;
        let t_len = t_total.checked_sub(anchor).filter(|&t| t > 0).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "time-varying FiLM: {t_total} input samples leave no output after {anchor} of warm-up"
            ))
        })?;
        let (bs, hid) = (tv.block_samples, tv.hidden_size);
        let dev = x.device();
        let (h0, c0) = match ctrl {
            Some(s) => s,
            None => {
                let z = Tensor::zeros((b_sz, hid), DType::F32, dev)?;
                (z.clone(), z)
            }
        };

        // Level of every full block, [B, n_full, 1].
        let n_full = t_len / bs;
        let blocks = t_len.div_ceil(bs);
        let (h_prev, h_last, c_last) = if n_full > 0 {
            let levels: Vec<f32> = x
                .to_vec2::<f32>()?
                .iter()
                .flat_map(|item| {
                    item[anchor..]
                        .chunks_exact(bs)
                        .map(block_level)
                        .collect::<Vec<_>>()
                })
                .collect();
            let levels = Tensor::from_vec(levels, (b_sz, n_full, 1), dev)?;
            let input = if self.knob_count > 0 {
                let k = knobs
                    .unsqueeze(1)?
                    .broadcast_as((b_sz, n_full, self.knob_count))?
                    .contiguous()?;
                Tensor::cat(&[&levels, &k], 2)?
            } else {
                levels
            };

            // h_j for j = 0..blocks: the start state, then the state after each full block.
            let (h_seq, h_last, c_last) = crate::ops::lstm::lstm(
                &input,
                &h0,
                &c0,
                self.w("tvfilm.lstm.w_ih"),
                self.w("tvfilm.lstm.w_hh"),
                self.w("tvfilm.lstm.b"),
            )?;
            let all = Tensor::cat(&[&h0.unsqueeze(1)?, &h_seq], 1)?;
            (all.narrow(1, 0, blocks)?, h_last, c_last)
        } else {
            (h0.unsqueeze(1)?, h0.clone(), c0)
        };

        // Offsets per block, then per sample.
        let per_block = h_prev
            .broadcast_matmul(&self.w("tvfilm.out.w").t()?)?
            .broadcast_add(self.w("tvfilm.out.b"))?;
        let width = per_block.dim(2)?;
        let mut per_sample = per_block
            .unsqueeze(2)?
            .broadcast_as((b_sz, blocks, bs, width))?
            .reshape((b_sz, blocks * bs, width))?
            .narrow(1, 0, t_len)?;
        if anchor > 0 {
            let lead = per_block
                .narrow(1, 0, 1)?
                .broadcast_as((b_sz, anchor, width))?;
            per_sample = Tensor::cat(&[&lead, &per_sample], 1)?;
        }
        let offsets = match self.static_film(film, knobs)? {
            Some(s) => s.unsqueeze(1)?.broadcast_add(&per_sample)?,
            None => per_sample,
        };
        Ok((offsets, h_last, c_last))
    }

    /// Forward pass of a time-varying-FiLM network; see [`TrainableNet::forward`].
    pub(super) fn forward_time_varying(
        &self,
        tv: &TvFilmNet,
        x: &Tensor,
        knobs: &Tensor,
        state: Option<&RecurrentState>,
    ) -> Result<(Tensor, Option<RecurrentState>)> {
        match tv.inner.as_ref() {
            Network::Conv(net) => {
                let anchor = net.receptive_field_samples() - 1;
                let (offsets, _, _) =
                    self.tv_film_offsets(tv, net.film.as_ref(), (x, anchor), knobs, None)?;
                let film = offsets.transpose(1, 2)?;
                Ok((self.forward_conv_modulated(net, x, Some(&film))?, None))
            }
            Network::Ssm(net) => {
                let width = Self::ssm_state_width(net);
                let ctrl = match state {
                    Some(s) => Some((
                        s.h.narrow(1, width, tv.hidden_size)?,
                        s.c.narrow(1, width, tv.hidden_size)?,
                    )),
                    None => None,
                };
                let (offsets, ch, cc) =
                    self.tv_film_offsets(tv, net.film.as_ref(), (x, 0), knobs, ctrl)?;
                let (y, s_re, s_im) = self.forward_ssm(net, x, Some(&offsets), state)?;
                let state = RecurrentState::new(
                    Tensor::cat(&[&s_re, &ch], 1)?,
                    Tensor::cat(&[&s_im, &cc], 1)?,
                );
                Ok((y, Some(state)))
            }
            other => candle_core::bail!("time-varying FiLM cannot modulate {}", other.describe()),
        }
    }
}
