//! Parity of the fused GRU with an unrolled candle graph, a plain-Rust f64 reference and
//! finite differences.

use candle_core::{Result, Tensor, Var};

use super::gru;
use crate::ops::test_support::{
    assert_close_relative, check_finite_differences, max_abs_diff, rng, uniform, values,
    weighted_sum_f64,
};

/// Sizes of one test case.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    steps: usize,
    input: usize,
    hidden: usize,
}

/// Random inputs and weights of one case: x, h0, w_ih, w_hh, b_ih, b_hh.
fn random_case(dims: Dims, seed: u64) -> [Tensor; 6] {
    let Dims {
        batch,
        steps,
        input,
        hidden,
    } = dims;
    let mut rng = rng(seed);
    // PyTorch's default init scale 1/sqrt(H), a little larger to exercise saturation.
    let w_scale = 1.5 / (hidden as f32).sqrt();
    [
        uniform(&mut rng, &[batch, steps, input], 1.0),
        uniform(&mut rng, &[batch, hidden], 0.5),
        uniform(&mut rng, &[3 * hidden, input], w_scale),
        uniform(&mut rng, &[3 * hidden, hidden], w_scale),
        uniform(&mut rng, &[3 * hidden], w_scale),
        uniform(&mut rng, &[3 * hidden], w_scale),
    ]
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// The GRU unrolled into per-step candle ops: the slow, obvious reference.
/// Returns (h_seq [B, T, H], h_T).
fn unrolled_gru(
    x: &Tensor,
    h0: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b_ih: &Tensor,
    b_hh: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (_, steps, _) = x.dims3()?;
    let hidden = w_hh.dim(1)?;
    let mut h = h0.clone();
    let mut hs = Vec::with_capacity(steps);
    for t in 0..steps {
        let x_t = x.narrow(1, t, 1)?.squeeze(1)?;
        let gx = x_t.matmul(&w_ih.t()?)?.broadcast_add(b_ih)?;
        let gh = h.matmul(&w_hh.t()?)?.broadcast_add(b_hh)?;
        let part = |g: &Tensor, k: usize| g.narrow(1, k * hidden, hidden);
        let r = sigmoid(&(part(&gx, 0)? + part(&gh, 0)?)?)?;
        let z = sigmoid(&(part(&gx, 1)? + part(&gh, 1)?)?)?;
        let n = (part(&gx, 2)? + (r * part(&gh, 2)?)?)?.tanh()?;
        h = ((z.affine(-1.0, 1.0)? * n)? + (z * &h)?)?;
        hs.push(h.clone());
    }
    Ok((Tensor::stack(&hs, 1)?, h))
}

/// One sequence in f64, plain loops: returns h_1..h_T flattened [T, H].
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the layer's inputs one to one"
)]
fn reference_gru_f64(
    x: &[f32],
    h0: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    b_ih: &[f32],
    b_hh: &[f32],
    input: usize,
    hidden: usize,
) -> Vec<f64> {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut h: Vec<f64> = h0.iter().map(|&v| v as f64).collect();
    let mut out = Vec::new();
    for x_t in x.chunks_exact(input) {
        let gx: Vec<f64> = (0..3 * hidden)
            .map(|row| {
                let s: f64 = (0..input)
                    .map(|k| w_ih[row * input + k] as f64 * x_t[k] as f64)
                    .sum();
                s + b_ih[row] as f64
            })
            .collect();
        let gh: Vec<f64> = (0..3 * hidden)
            .map(|row| {
                let s: f64 = (0..hidden)
                    .map(|k| w_hh[row * hidden + k] as f64 * h[k])
                    .sum();
                s + b_hh[row] as f64
            })
            .collect();
        let next: Vec<f64> = (0..hidden)
            .map(|j| {
                let r = sig(gx[j] + gh[j]);
                let z = sig(gx[hidden + j] + gh[hidden + j]);
                let n = (gx[2 * hidden + j] + r * gh[2 * hidden + j]).tanh();
                (1.0 - z) * n + z * h[j]
            })
            .collect();
        h = next;
        out.extend_from_slice(&h);
    }
    out
}

#[test]
fn forward_matches_unrolled_graph_within_1e5() -> Result<()> {
    let cases = [
        Dims {
            batch: 3,
            steps: 40,
            input: 2,
            hidden: 7,
        },
        Dims {
            batch: 2,
            steps: 300,
            input: 3,
            hidden: 32,
        },
    ];
    for (seed, dims) in cases.into_iter().enumerate() {
        let [x, h0, w_ih, w_hh, b_ih, b_hh] = random_case(dims, seed as u64);
        let (h_seq, h_last) = gru(&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh)?;
        let (want_seq, want_h) = unrolled_gru(&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh)?;
        for (name, got, want) in [("h_seq", &h_seq, &want_seq), ("h_last", &h_last, &want_h)] {
            let diff = max_abs_diff(got, want);
            assert!(diff <= 1e-5, "{dims:?} {name}: max abs diff {diff:e}");
        }
    }
    Ok(())
}

#[test]
fn forward_matches_f64_reference_within_1e5() -> Result<()> {
    let dims = Dims {
        batch: 2,
        steps: 200,
        input: 2,
        hidden: 9,
    };
    let [x, h0, w_ih, w_hh, b_ih, b_hh] = random_case(dims, 12);
    let (h_seq, _) = gru(&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh)?;
    for item in 0..dims.batch {
        let want = reference_gru_f64(
            &values(&x.get(item)?),
            &values(&h0.get(item)?),
            &values(&w_ih),
            &values(&w_hh),
            &values(&b_ih),
            &values(&b_hh),
            dims.input,
            dims.hidden,
        );
        let got = values(&h_seq.get(item)?);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 1e-5, "item {item}: max abs diff {worst:e}");
    }
    Ok(())
}

/// Vars for every input, a loss that reaches h_seq and h_T, and its gradients.
struct GradCase {
    vars: Vec<(&'static str, Var)>,
    weights: [Tensor; 2],
}

impl GradCase {
    fn new(dims: Dims, seed: u64) -> Result<Self> {
        let tensors = random_case(dims, seed);
        let names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"];
        let vars = names
            .into_iter()
            .zip(tensors.iter())
            .map(|(n, t)| Ok((n, Var::from_tensor(t)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut rng = rng(seed + 1000);
        let weights = [
            uniform(&mut rng, &[dims.batch, dims.steps, dims.hidden], 1.0),
            uniform(&mut rng, &[dims.batch, dims.hidden], 1.0),
        ];
        Ok(Self { vars, weights })
    }

    fn args(&self) -> Vec<&Tensor> {
        self.vars.iter().map(|(_, v)| v.as_tensor()).collect()
    }

    /// `Σ h_seq r1 + Σ h_T r2` as a candle scalar.
    fn loss(&self, outputs: &(Tensor, Tensor)) -> Result<Tensor> {
        let [r1, r2] = &self.weights;
        outputs.0.mul(r1)?.sum_all()? + outputs.1.mul(r2)?.sum_all()?
    }

    fn fused(&self) -> Result<(Tensor, Tensor)> {
        let a = self.args();
        gru(a[0], a[1], a[2], a[3], a[4], a[5])
    }

    fn unrolled(&self) -> Result<(Tensor, Tensor)> {
        let a = self.args();
        unrolled_gru(a[0], a[1], a[2], a[3], a[4], a[5])
    }

    /// The same loss in f64 from the fused forward.
    fn fused_loss_f64(&self) -> Result<f64> {
        let (h_seq, h_last) = self.fused()?;
        let [r1, r2] = &self.weights;
        Ok(weighted_sum_f64(&h_seq, r1) + weighted_sum_f64(&h_last, r2))
    }
}

#[test]
fn gradients_match_unrolled_graph_within_1e4_relative() -> Result<()> {
    // 300 steps: the weight gradients cross a GRAD_BLOCK_STEPS boundary.
    let dims = Dims {
        batch: 3,
        steps: 300,
        input: 2,
        hidden: 6,
    };
    let case = GradCase::new(dims, 22)?;
    let fused = case.loss(&case.fused()?)?.backward()?;
    let unrolled = case.loss(&case.unrolled()?)?.backward()?;
    for (name, var) in &case.vars {
        let got = fused.get(var.as_tensor()).expect("fused gradient exists");
        let want = unrolled
            .get(var.as_tensor())
            .expect("unrolled gradient exists");
        assert_close_relative(name, got, want, 1e-4);
    }
    Ok(())
}

#[test]
fn gradients_match_finite_differences() -> Result<()> {
    let dims = Dims {
        batch: 2,
        steps: 5,
        input: 2,
        hidden: 3,
    };
    let case = GradCase::new(dims, 32)?;
    let grads = case.loss(&case.fused()?)?.backward()?;
    for (name, var) in &case.vars {
        let analytic = grads
            .get(var.as_tensor())
            .expect("gradient exists")
            .copy()?;
        // eps 1e-3 in f32: differences of an O(1) loss carry ~1e-4 rounding noise; the
        // tolerance is well above that and far below the size of a wrong term.
        check_finite_differences(name, var, &analytic, 1e-3, 1e-2, 1e-3, &|| {
            case.fused_loss_f64()
        })?;
    }
    Ok(())
}

#[test]
fn two_segments_with_carried_state_equal_one_pass() -> Result<()> {
    let dims = Dims {
        batch: 2,
        steps: 30,
        input: 2,
        hidden: 5,
    };
    let [x, h0, w_ih, w_hh, b_ih, b_hh] = random_case(dims, 42);
    let (whole, _) = gru(&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh)?;
    let split_at = 12;
    let (first, h_mid) = gru(&x.narrow(1, 0, split_at)?, &h0, &w_ih, &w_hh, &b_ih, &b_hh)?;
    let rest = x.narrow(1, split_at, dims.steps - split_at)?;
    let (second, _) = gru(&rest, &h_mid.detach(), &w_ih, &w_hh, &b_ih, &b_hh)?;
    let joined = Tensor::cat(&[&first, &second], 1)?;
    let diff = max_abs_diff(&joined, &whole);
    assert!(diff <= 1e-6, "segmented vs whole: max abs diff {diff:e}");
    Ok(())
}

#[test]
fn rejects_mismatched_shapes() {
    let dims = Dims {
        batch: 2,
        steps: 4,
        input: 2,
        hidden: 3,
    };
    let [x, h0, w_ih, w_hh, b_ih, b_hh] = random_case(dims, 52);
    let err = gru(&x, &h0, &w_ih, &w_hh, &b_ih.narrow(0, 0, 3).unwrap(), &b_hh).unwrap_err();
    assert!(err.to_string().contains("b_ih"), "{err}");
    let err = gru(&x, &h0, &w_ih.t().unwrap(), &w_hh, &b_ih, &b_hh).unwrap_err();
    assert!(err.to_string().contains("w_ih"), "{err}");
}

#[test]
fn threaded_batch_matches_items_run_alone() -> Result<()> {
    // 4 x 1100 steps is above the threading threshold; one item alone stays on one thread.
    let dims = Dims {
        batch: 4,
        steps: 1100,
        input: 2,
        hidden: 5,
    };
    let case = GradCase::new(dims, 62)?;
    let grads = case.loss(&case.fused()?)?.backward()?;
    let (h_seq, _) = case.fused()?;
    let a = case.args();
    let mut w_hh_grad_sum = a[3].zeros_like()?;
    for item in 0..dims.batch {
        let pick = |t: &Tensor| t.narrow(0, item, 1);
        let (h_item, h_last) = gru(&pick(a[0])?, &pick(a[1])?, a[2], a[3], a[4], a[5])?;
        let diff = max_abs_diff(&h_item, &pick(&h_seq)?);
        assert!(diff <= 1e-6, "item {item}: h_seq differs by {diff:e}");
        let [r1, r2] = &case.weights;
        let loss = (h_item.mul(&pick(r1)?)?.sum_all()? + h_last.mul(&pick(r2)?)?.sum_all()?)?;
        let item_grads = loss.backward()?;
        w_hh_grad_sum = (w_hh_grad_sum + item_grads.get(a[3]).expect("w_hh gradient"))?;
    }
    let batch_grad = grads.get(a[3]).expect("w_hh gradient");
    assert_close_relative("w_hh", batch_grad, &w_hh_grad_sum, 1e-5);
    Ok(())
}
