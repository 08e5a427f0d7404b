//! Diagonal state-space networks (S4D: Gu, Gupta, Goel and Ré, "On the Parameterization and
//! Initialization of Diagonal State Space Models", NeurIPS 2022), and their discretisation.

use serde::{Deserialize, Serialize};

use super::network::FilmSpec;

/// A stack of diagonal state-space blocks with FiLM by the knobs.
///
/// The input `x [T]` is lifted to `h_0 = in_w x + in_b` (`C` channels). Block `l` runs, per
/// channel `c`, `N` complex states `s_n` of the continuous system
/// `s' = A s + u`, `y = Re(Σ_n C_n s_n) + D u` with `A_n = -exp(log_a_re_n) + i a_im_n`
/// (stable for any weights; `log_a_re` is floored at [`LOG_A_RE_MIN`]), sampled with
/// zero-order hold at step `dt = exp(log_dt_c)` (in samples), see [`discretize`]:
///
/// ```text
/// s[t] = Ā s[t-1] + B̄ u[t],   y[t] = Re(Σ_n C_n s_n[t]) + D u[t]     (u = h_l, per channel)
/// h_{l+1} = h_l + W_mix tanh(scale_l * y + shift_l) + b_mix
/// ```
///
/// (`B` is fixed at 1: with a learnable complex `C` it would be redundant.) The read-out is
/// `out = head_w · h_L + head_b (+ x when skip)`. FiLM `scale_l`/`shift_l` come from the knobs
/// through the same MLP as [`super::ConvNet`]'s, with `M = 1`: its output holds, per block,
/// `C` scale offsets then `C` shifts.
///
/// The model file stores the *continuous* parameters; the engine discretises them once when
/// it is prepared and the training crate at the start of every forward pass, both with the
/// f32 formulas of [`discretize`], so they agree to the last bit.
///
/// Weights, `C` channels, `N` states, `L` blocks, `K` knobs:
/// - `input.w [C, 1]`, `input.b [C]`;
/// - per block: `blocks.{l}.log_dt [C]`, `blocks.{l}.log_a_re [C, N]`, `blocks.{l}.a_im [C, N]`,
///   `blocks.{l}.c_re [C, N]`, `blocks.{l}.c_im [C, N]`, `blocks.{l}.d [C]`,
///   `blocks.{l}.mix.w [C, C]`, `blocks.{l}.mix.b [C]`;
/// - with FiLM and `K > 0`: `film.l1.w [F, K]`, `film.l1.b [F]`, `film.l2.w [2*C*L, F]`,
///   `film.l2.b [2*C*L]`;
/// - `head.w [1, C]`, `head.b [1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SsmNet {
    /// `C`: channels, each with its own states.
    pub channels: usize,
    /// `N`: complex states per channel and block.
    pub state_size: usize,
    /// `L`: number of blocks.
    pub blocks: usize,
    /// Knob conditioning; `None` for a model without knobs.
    pub film: Option<FilmSpec>,
    /// Adds the input to the output.
    pub skip: bool,
}

impl SsmNet {
    /// Every weight with its shape, for `knob_count` knobs, except `head.b` (see the docs).
    pub(crate) fn weight_shapes(&self, knob_count: usize) -> Vec<(String, Vec<usize>)> {
        let (c, n) = (self.channels, self.state_size);
        let mut shapes = vec![
            ("input.w".to_string(), vec![c, 1]),
            ("input.b".to_string(), vec![c]),
        ];
        for l in 0..self.blocks {
            for (name, shape) in [
                ("log_dt", vec![c]),
                ("log_a_re", vec![c, n]),
                ("a_im", vec![c, n]),
                ("c_re", vec![c, n]),
                ("c_im", vec![c, n]),
                ("d", vec![c]),
                ("mix.w", vec![c, c]),
                ("mix.b", vec![c]),
            ] {
                shapes.push((format!("blocks.{l}.{name}"), shape));
            }
        }
        if let (Some(film), true) = (&self.film, knob_count > 0) {
            let out = 2 * c * self.blocks;
            shapes.push(("film.l1.w".into(), vec![film.hidden_size, knob_count]));
            shapes.push(("film.l1.b".into(), vec![film.hidden_size]));
            shapes.push(("film.l2.w".into(), vec![out, film.hidden_size]));
            shapes.push(("film.l2.b".into(), vec![out]));
        }
        shapes.push(("head.w".into(), vec![1, c]));
        shapes
    }

    /// Multiply-accumulates per sample (a complex state update counts 6, its read-out 2).
    pub(crate) fn macs_per_sample(&self) -> usize {
        let (c, n) = (self.channels, self.state_size);
        2 * c + self.blocks * (c * n * 8 + 2 * c + c * c) + c
    }
}

/// Zero-order-hold discretisation of one block's diagonal system, `[C*N]` each, channel-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Discretized {
    pub a_re: Vec<f32>,
    pub a_im: Vec<f32>,
    pub b_re: Vec<f32>,
    pub b_im: Vec<f32>,
}

/// Floor of `log_a_re`: a pole's decay rate `exp(log_a_re)` never goes below `exp(-20)`
/// (a time constant of 485 million samples, nearly three hours at 48 kHz, so nothing audible
/// is lost). Without it, a weight below about -87 makes the rate underflow to 0 in f32, and a
/// pole with no imaginary part then divides 0 by 0 in `B̄`. Weights below the floor read as
/// the floor, in training and in the engine alike.
pub const LOG_A_RE_MIN: f32 = -20.0;

/// Discretises `s' = A s + u` with zero-order hold over a step `dt`:
/// `Ā = exp(dt A)`, `B̄ = (exp(dt A) - 1) / A`.
///
/// `log_dt [C]`, `log_a_re [C*N]`, `a_im [C*N]` (channel-major), with
/// `A = -exp(max(log_a_re, LOG_A_RE_MIN)) + i a_im` (see [`LOG_A_RE_MIN`]) and
/// `dt = exp(log_dt)` per channel. Every step is plain f32
/// arithmetic in a fixed order, which the training crate repeats op by op; `exp(x) - 1` and
/// `cos(θ) - 1` are formed as `2 tanh(x/2) / (1 - tanh(x/2))` and `-2 sin²(θ/2)` so that
/// small steps (`dt |A| ~ 1e-5`) keep full relative precision in `B̄`.
///
/// # Panics
/// When `log_a_re` and `a_im` differ in length or are not a multiple of `log_dt`'s length.
pub fn discretize(log_dt: &[f32], log_a_re: &[f32], a_im: &[f32]) -> Discretized {
    assert_eq!(
        log_a_re.len(),
        a_im.len(),
        "discretize: A parts differ in length"
    );
    let channels = log_dt.len().max(1);
    assert_eq!(log_a_re.len() % channels, 0, "discretize: A is not [C, N]");
    let n = log_a_re.len() / channels;
    let len = log_a_re.len();
    let mut out = Discretized {
        a_re: vec![0.0; len],
        a_im: vec![0.0; len],
        b_re: vec![0.0; len],
        b_im: vec![0.0; len],
    };
    for i in 0..len {
        let dt = log_dt[i / n.max(1)].exp();
        let re = -log_a_re[i].max(LOG_A_RE_MIN).exp();
        let im = a_im[i];
        let x = dt * re;
        let theta = dt * im;
        let mag = x.exp();
        let (sin, cos) = (theta.sin(), theta.cos());
        out.a_re[i] = mag * cos;
        out.a_im[i] = mag * sin;
        // Ā - 1 without cancellation.
        let t = (x * 0.5).tanh();
        let expm1 = (t * 2.0) / (1.0 - t);
        let half = (theta * 0.5).sin();
        let num_re = expm1 * cos - (half * half) * 2.0;
        let num_im = mag * sin;
        // (Ā - 1) / A; `den` > 0 thanks to the floor on `log_a_re`.
        let den = re * re + im * im;
        out.b_re[i] = (num_re * re + num_im * im) / den;
        out.b_im[i] = (num_im * re - num_re * im) / den;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vanishing_real_pole_becomes_an_integrator_not_nan() {
        // Decay rates far below f32's range, on a pole without imaginary part (S4D's first
        // state starts so): the floor keeps B̄ at its limit dt instead of 0 / 0.
        let dt = 0.5f32;
        for log_a_re in [-30.0f32, -87.5, -200.0, f32::NEG_INFINITY] {
            let d = discretize(&[dt.ln()], &[log_a_re], &[0.0]);
            assert!(
                (d.b_re[0] - dt).abs() <= 1e-6 * dt,
                "log_a_re {log_a_re}: B̄ = {} but the integrator's is {dt}",
                d.b_re[0]
            );
            assert_eq!(d.b_im[0], 0.0);
            assert!(
                d.a_re[0] <= 1.0 && d.a_re[0] > 1.0 - 1e-6,
                "Ā = {}",
                d.a_re[0]
            );
        }
    }

    #[test]
    fn discretisation_matches_f64_zero_order_hold() {
        // Poles from a fast decay to a slow resonance; B̄ = (e^{dt A} - 1) / A in f64.
        let log_dt = [(1e-4f32).ln(), (0.05f32).ln()];
        let log_a_re = [(0.5f32).ln(), (3.0f32).ln(), (0.01f32).ln(), (0.5f32).ln()];
        let a_im = [0.0, 20.0, 3.0, 0.2];
        let d = discretize(&log_dt, &log_a_re, &a_im);
        for i in 0..4 {
            let dt = f64::from(log_dt[i / 2]).exp();
            let (re, im) = (-f64::from(log_a_re[i]).exp(), f64::from(a_im[i]));
            let mag = (dt * re).exp();
            let (ar, ai) = (mag * (dt * im).cos(), mag * (dt * im).sin());
            let (nr, ni) = (ar - 1.0, ai);
            let den = re * re + im * im;
            let (br, bi) = ((nr * re + ni * im) / den, (ni * re - nr * im) / den);
            // Relative to the complex magnitude: a component far below it (Im B̄ of a slow
            // pole is second order in dt) comes out of a cancellation with an absolute error.
            let close = |got: f32, want: f64, magnitude: f64, what: &str| {
                let err = (f64::from(got) - want).abs();
                assert!(err <= 2e-6 * magnitude, "{what}[{i}]: {got} vs {want}");
            };
            let (a_mag, b_mag) = (ar.hypot(ai), br.hypot(bi));
            close(d.a_re[i], ar, a_mag, "a_re");
            close(d.a_im[i], ai, a_mag, "a_im");
            close(d.b_re[i], br, b_mag, "b_re");
            close(d.b_im[i], bi, b_mag, "b_im");
        }
    }

    #[test]
    fn dc_gain_of_a_real_pole_is_one_over_minus_a() {
        // A real pole A = -a passes DC with gain B̄ / (1 - Ā) = 1/a, whatever the step.
        for dt in [1e-4f32, 1e-3, 0.1, 1.0] {
            let d = discretize(&[dt.ln()], &[(2.0f32).ln()], &[0.0]);
            let gain = d.b_re[0] / (1.0 - d.a_re[0]);
            assert!((gain - 0.5).abs() < 1e-3, "dt {dt}: DC gain {gain}");
        }
    }
}
