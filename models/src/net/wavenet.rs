//! Trainable NAM-style WaveNet (see [`WaveNetNet`] for the structure and weight names).
//!
//! Convolutions are "valid" (unpadded), as in NAM's training code: every layer shortens the
//! sequence by its own history, and the head terms and the condition are cut to the samples
//! that remain, so the output of `T` input samples is `T - (receptive field - 1)` long.

use candle_core::{Result, Tensor, D};
use dsp::model::WaveNetNet;

use super::TrainableNet;

impl TrainableNet {
    /// `x [B, T]`, `knobs [B, K]` -> `[B, T - receptive_field + 1]`.
    pub(super) fn forward_wavenet(
        &self,
        net: &WaveNetNet,
        x: &Tensor,
        knobs: &Tensor,
    ) -> Result<Tensor> {
        let (b_sz, t_total) = x.dims2()?;

        // The condition [x, knobs...] of every layer, [B, 1+K, T].
        let xs = x.unsqueeze(1)?;
        let cond = if self.knob_count > 0 {
            let k = knobs
                .unsqueeze(2)?
                .broadcast_as((b_sz, self.knob_count, t_total))?
                .contiguous()?;
            Tensor::cat(&[&xs, &k], 1)?
        } else {
            xs.clone()
        };

        let mut input = xs;
        let mut head: Option<Tensor> = None;
        for (i, array) in net.arrays.iter().enumerate() {
            let out_len = input.dim(D::Minus1)? - array.history_samples();

            // Rechannel; the previous array's head output seeds the head accumulator.
            let mut z = self
                .w(&format!("wavenet.{i}.rechannel.w"))
                .broadcast_matmul(&input)?;
            let mut acc = match head.take() {
                Some(h) => {
                    let len = h.dim(D::Minus1)?;
                    Some(h.narrow(2, len - out_len, out_len)?)
                }
                None => None,
            };

            for (l, &dilation) in array.dilations.iter().enumerate() {
                let p = format!("wavenet.{i}.layers.{l}");
                let hist = (array.kernel_size - 1) * dilation;
                let t_new = z.dim(D::Minus1)? - hist;

                // Dilated causal conv plus the input mixin of the condition.
                // The fused op, not candle's `conv1d`: candle 0.11's kernel gradient is wrong
                // for batch > 1 with kernel >= 3 and dilation >= 2 (models/tests/gradients.rs).
                let conv = crate::ops::dilated_conv1d(
                    &z,
                    self.w(&format!("{p}.conv.w")),
                    Some(self.w(&format!("{p}.conv.b"))),
                    dilation,
                )?;
                let c_now = cond.narrow(2, t_total - t_new, t_new)?;
                let pre = (conv + self.w(&format!("{p}.mixin.w")).broadcast_matmul(&c_now)?)?;
                let act = crate::ops::activate(&pre, array.activation)?;

                // 1x1 plus residual; the activation joins the head.
                let mixed = self
                    .w(&format!("{p}.out.w"))
                    .broadcast_matmul(&act)?
                    .broadcast_add(&self.w(&format!("{p}.out.b")).unsqueeze(1)?)?;
                z = (z.narrow(2, hist, t_new)? + mixed)?;
                let term = act.narrow(2, t_new - out_len, out_len)?;
                acc = Some(match acc {
                    None => term,
                    Some(h) => (h + term)?,
                });
            }

            // Head rechannel.
            let acc = acc.expect("a layer array has at least one layer");
            let mut h = self
                .w(&format!("wavenet.{i}.head.w"))
                .broadcast_matmul(&acc)?;
            if array.head_bias {
                h = h.broadcast_add(&self.w(&format!("wavenet.{i}.head.b")).unsqueeze(1)?)?;
            }
            head = Some(h);
            input = z;
        }
        let head = head.expect("a WaveNet has at least one array");
        head.squeeze(1)? * f64::from(net.head_scale)
    }
}

/// PyTorch's default bound for a weight or bias named `name` of shape `shape`: uniform in
/// `±1/sqrt(fan_in)`, where a bias takes the fan-in of its weight (`*.b` -> `*.w`).
pub(super) fn init_bound(name: &str, shape: &[usize], shapes: &[(String, Vec<usize>)]) -> f32 {
    let weight_shape = match name.strip_suffix(".b") {
        Some(stem) => shapes
            .iter()
            .find(|(n, _)| n.strip_suffix(".w") == Some(stem))
            .map_or(shape, |(_, s)| s.as_slice()),
        None => shape,
    };
    let fan_in: usize = weight_shape[1..].iter().product::<usize>().max(1);
    1.0 / (fan_in as f32).sqrt()
}
