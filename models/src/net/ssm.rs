//! Trainable diagonal state-space network (see [`SsmNet`] for the equations and weights).
//!
//! The continuous parameters are discretised at the start of every forward pass with the same
//! f32 operations, in the same order, as [`dsp::model::discretize`], and the recurrence runs
//! as the fused [`diag_scan`] op, so training and the engine agree to rounding.

use candle_core::{DType, Result, Tensor, D};
use dsp::model::SsmNet;
use rand::Rng;
use rand_pcg::Pcg64Mcg;

use super::{RecurrentState, TrainableNet};
use crate::ops::scan::diag_scan;

/// Range of the initial step `dt` in samples: poles with `Re A = -1/2` then have time
/// constants from 20 to 20,000 samples (0.4 ms to 420 ms at 48 kHz), the span of attack and
/// release times of compressors and of the memory of drive circuits.
const INIT_DT_SAMPLES: (f32, f32) = (1e-4, 1e-1);
/// S4D-Lin's initial real part of `A`: `-1/2`.
const INIT_A_RE: f32 = -0.5;

/// Discretised `Ā`, `B̄` of one block, `[C, N]` each.
struct Disc {
    a_re: Tensor,
    a_im: Tensor,
    b_re: Tensor,
    b_im: Tensor,
}

impl TrainableNet {
    /// Zero-order hold as in [`dsp::model::discretize`], op for op.
    fn discretize_block(&self, l: usize) -> Result<Disc> {
        let w = |n: &str| self.w(&format!("blocks.{l}.{n}"));
        let dt = w("log_dt").exp()?.unsqueeze(1)?;
        let re = w("log_a_re")
            .maximum(dsp::model::LOG_A_RE_MIN)?
            .exp()?
            .neg()?;
        let im = w("a_im");
        let x = re.broadcast_mul(&dt)?;
        let theta = im.broadcast_mul(&dt)?;
        let mag = x.exp()?;
        let (sin, cos) = (theta.sin()?, theta.cos()?);
        let a_re = (&mag * &cos)?;
        let a_im = (&mag * &sin)?;
        // Ā - 1 without cancellation: expm1(x) cos θ - 2 sin²(θ/2).
        let t = (&x * 0.5)?.tanh()?;
        let expm1 = ((&t * 2.0)? / t.affine(-1.0, 1.0)?)?;
        let half = (&theta * 0.5)?.sin()?;
        let num_re = ((expm1 * &cos)? - (half.sqr()? * 2.0)?)?;
        let num_im = (&mag * &sin)?;
        let den = (re.sqr()? + im.sqr()?)?;
        let b_re = (((&num_re * &re)? + (&num_im * im)?)? / &den)?;
        let b_im = (((&num_im * &re)? - (&num_re * im)?)? / &den)?;
        Ok(Disc {
            a_re,
            a_im,
            b_re,
            b_im,
        })
    }

    /// Width of the packed SSM state per batch item: `L * C * N`.
    pub(super) fn ssm_state_width(net: &SsmNet) -> usize {
        net.blocks * net.channels * net.state_size
    }

    /// `x [B, T]`, `knobs [B, K]`, state from the previous segment (zero when `None`).
    /// `film` holds the per-sample or per-segment modulation offsets `[B, T or 1, 2*C*L]`.
    /// Returns `[B, T]` and the state after the last sample (see [`RecurrentState`]).
    pub(super) fn forward_ssm(
        &self,
        net: &SsmNet,
        x: &Tensor,
        film: Option<&Tensor>,
        state: Option<&RecurrentState>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b_sz, t_len) = x.dims2()?;
        let (c, n) = (net.channels, net.state_size);
        let width = Self::ssm_state_width(net);
        let (s_re, s_im) = match state {
            Some(s) => (s.h.narrow(1, 0, width)?, s.c.narrow(1, 0, width)?),
            None => {
                let z = Tensor::zeros((b_sz, width), DType::F32, x.device())?;
                (z.clone(), z)
            }
        };

        // Lift to C channels, [B, T, C].
        let mut h = x
            .unsqueeze(2)?
            .broadcast_mul(&self.w("input.w").reshape((1, 1, c))?)?
            .broadcast_add(self.w("input.b"))?;

        let (mut last_re, mut last_im) = (Vec::new(), Vec::new());
        for l in 0..net.blocks {
            let p = |name: &str| format!("blocks.{l}.{name}");
            let disc = self.discretize_block(l)?;

            // The diagonal recurrence over C*N states.
            let u = h.unsqueeze(3)?;
            let u_re = u.broadcast_mul(&disc.b_re)?.reshape((b_sz, t_len, c * n))?;
            let u_im = u.broadcast_mul(&disc.b_im)?.reshape((b_sz, t_len, c * n))?;
            let s0_re = s_re.narrow(1, l * c * n, c * n)?.contiguous()?;
            let s0_im = s_im.narrow(1, l * c * n, c * n)?.contiguous()?;
            let (sr, si) = diag_scan(
                &disc.a_re.flatten_all()?,
                &disc.a_im.flatten_all()?,
                &u_re,
                &u_im,
                &s0_re,
                &s0_im,
            )?;
            last_re.push(sr.narrow(1, t_len - 1, 1)?.squeeze(1)?);
            last_im.push(si.narrow(1, t_len - 1, 1)?.squeeze(1)?);

            // y = Re(C s) + D u, FiLM, tanh, 1x1 mix, residual.
            let sr = sr.reshape((b_sz, t_len, c, n))?;
            let si = si.reshape((b_sz, t_len, c, n))?;
            let ys = (sr.broadcast_mul(self.w(&p("c_re")))?
                - si.broadcast_mul(self.w(&p("c_im")))?)?
            .sum(D::Minus1)?;
            let mut y = (ys + h.broadcast_mul(self.w(&p("d")))?)?;
            if let Some(f) = film {
                let scale = (f.narrow(2, l * 2 * c, c)? + 1.0)?;
                let shift = f.narrow(2, l * 2 * c + c, c)?;
                y = y.broadcast_mul(&scale)?.broadcast_add(&shift)?;
            }
            let act = y.tanh()?;
            let mixed = act
                .broadcast_matmul(&self.w(&p("mix.w")).t()?)?
                .broadcast_add(self.w(&p("mix.b")))?;
            h = (h + mixed)?;
        }

        let y = h
            .broadcast_matmul(&self.w("head.w").t()?)?
            .squeeze(2)?
            .broadcast_add(self.w("head.b"))?;
        let y = if net.skip { (y + x)? } else { y };
        Ok((y, Tensor::cat(&last_re, 1)?, Tensor::cat(&last_im, 1)?))
    }
}

/// Initial values of the SSM's own parameters (S4D-Lin: `A_n = -1/2 + iπn`, `dt` log-uniform
/// in [`INIT_DT_SAMPLES`]), or `None` for the default uniform fan-in initialisation.
pub(super) fn init_values(name: &str, shape: &[usize], rng: &mut Pcg64Mcg) -> Option<Vec<f32>> {
    let len: usize = shape.iter().product();
    let uniform = |rng: &mut Pcg64Mcg, bound: f32| -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-bound..bound)).collect()
    };
    if name == "input.b" || name.ends_with(".mix.b") {
        return Some(vec![0.0; len]);
    }
    let values = match name.rsplit_once('.').map_or(name, |(_, s)| s) {
        "log_dt" => {
            let (lo, hi) = (INIT_DT_SAMPLES.0.ln(), INIT_DT_SAMPLES.1.ln());
            (0..len).map(|_| rng.random_range(lo..hi)).collect()
        }
        "log_a_re" => vec![(-INIT_A_RE).ln(); len],
        "a_im" => {
            let n = shape[1];
            (0..len)
                .map(|i| std::f32::consts::PI * (i % n) as f32)
                .collect()
        }
        "c_re" | "c_im" => uniform(rng, 1.0 / (shape[1] as f32).sqrt()),
        "d" => uniform(rng, 1.0),
        _ => return None,
    };
    Some(values)
}
