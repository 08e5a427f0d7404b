//! Parity of the fused LSTM with an unrolled candle graph, a plain-Rust f64 reference and
//! finite differences.

use candle_core::{Result, Tensor, Var};

use super::{forward_body, lstm, scan_forward, ForwardJob, SAVED_PER_HIDDEN};
use crate::ops::cpu::{has_avx2, transpose};
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

/// Random inputs and weights of one case: x, h0, c0, w_ih, w_hh, b.
fn random_case(dims: Dims, seed: u64) -> [Tensor; 6] {
    let Dims {
        batch,
        steps,
        input,
        hidden,
    } = dims;
    let mut rng = rng(seed);
    // Weights scaled like PyTorch's default init, 1/sqrt(H), a little larger to exercise
    // saturation.
    let w_scale = 1.5 / (hidden as f32).sqrt();
    [
        uniform(&mut rng, &[batch, steps, input], 1.0),
        uniform(&mut rng, &[batch, hidden], 0.5),
        uniform(&mut rng, &[batch, hidden], 0.5),
        uniform(&mut rng, &[4 * hidden, input], w_scale),
        uniform(&mut rng, &[4 * hidden, hidden], w_scale),
        uniform(&mut rng, &[4 * hidden], w_scale),
    ]
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// The LSTM unrolled into per-step candle ops (matmul, sigmoid, tanh): the slow, obvious
/// reference. Returns (h_seq [B, T, H], h_T, c_T).
fn unrolled_lstm(
    x: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, steps, _) = x.dims3()?;
    let hidden = w_hh.dim(1)?;
    let (mut h, mut c) = (h0.clone(), c0.clone());
    let mut hs = Vec::with_capacity(steps);
    for t in 0..steps {
        let x_t = x.narrow(1, t, 1)?.squeeze(1)?;
        let z = (x_t.matmul(&w_ih.t()?)? + h.matmul(&w_hh.t()?)?)?.broadcast_add(b)?;
        let i = sigmoid(&z.narrow(1, 0, hidden)?)?;
        let f = sigmoid(&z.narrow(1, hidden, hidden)?)?;
        let g = z.narrow(1, 2 * hidden, hidden)?.tanh()?;
        let o = sigmoid(&z.narrow(1, 3 * hidden, hidden)?)?;
        c = ((f * &c)? + (i * g)?)?;
        h = (o * c.tanh()?)?;
        hs.push(h.clone());
    }
    Ok((Tensor::stack(&hs, 1)?, h, c))
}

/// One sequence in f64, plain loops: returns h_1..h_T flattened [T, H].
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the layer's inputs one to one"
)]
fn reference_lstm_f64(
    x: &[f32],
    h0: &[f32],
    c0: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    b: &[f32],
    input: usize,
    hidden: usize,
) -> Vec<f64> {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut h: Vec<f64> = h0.iter().map(|&v| v as f64).collect();
    let mut c: Vec<f64> = c0.iter().map(|&v| v as f64).collect();
    let mut out = Vec::new();
    for x_t in x.chunks_exact(input) {
        let z: Vec<f64> = (0..4 * hidden)
            .map(|row| {
                let from_x: f64 = (0..input)
                    .map(|k| w_ih[row * input + k] as f64 * x_t[k] as f64)
                    .sum();
                let from_h: f64 = (0..hidden)
                    .map(|k| w_hh[row * hidden + k] as f64 * h[k])
                    .sum();
                from_x + from_h + b[row] as f64
            })
            .collect();
        for j in 0..hidden {
            let (i, f) = (sig(z[j]), sig(z[hidden + j]));
            let (g, o) = (z[2 * hidden + j].tanh(), sig(z[3 * hidden + j]));
            c[j] = f * c[j] + i * g;
            h[j] = o * c[j].tanh();
        }
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
        let [x, h0, c0, w_ih, w_hh, b] = random_case(dims, seed as u64);
        let (h_seq, h_last, c_last) = lstm(&x, &h0, &c0, &w_ih, &w_hh, &b)?;
        let (want_seq, want_h, want_c) = unrolled_lstm(&x, &h0, &c0, &w_ih, &w_hh, &b)?;
        for (name, got, want) in [
            ("h_seq", &h_seq, &want_seq),
            ("h_last", &h_last, &want_h),
            ("c_last", &c_last, &want_c),
        ] {
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
    let [x, h0, c0, w_ih, w_hh, b] = random_case(dims, 11);
    let (h_seq, _, _) = lstm(&x, &h0, &c0, &w_ih, &w_hh, &b)?;
    for item in 0..dims.batch {
        let want = reference_lstm_f64(
            &values(&x.get(item)?),
            &values(&h0.get(item)?),
            &values(&c0.get(item)?),
            &values(&w_ih),
            &values(&w_hh),
            &values(&b),
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

/// Vars for every input, a loss that reaches h_seq, h_T and c_T, and its gradients.
struct GradCase {
    vars: Vec<(&'static str, Var)>,
    weights: [Tensor; 3],
}

impl GradCase {
    fn new(dims: Dims, seed: u64) -> Result<Self> {
        let tensors = random_case(dims, seed);
        let names = ["x", "h0", "c0", "w_ih", "w_hh", "b"];
        let vars = names
            .into_iter()
            .zip(tensors.iter())
            .map(|(n, t)| Ok((n, Var::from_tensor(t)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut rng = rng(seed + 1000);
        let weights = [
            uniform(&mut rng, &[dims.batch, dims.steps, dims.hidden], 1.0),
            uniform(&mut rng, &[dims.batch, dims.hidden], 1.0),
            uniform(&mut rng, &[dims.batch, dims.hidden], 1.0),
        ];
        Ok(Self { vars, weights })
    }

    fn args(&self) -> Vec<&Tensor> {
        self.vars.iter().map(|(_, v)| v.as_tensor()).collect()
    }

    /// `Σ h_seq r1 + Σ h_T r2 + Σ c_T r3` as a candle scalar.
    fn loss(&self, outputs: &(Tensor, Tensor, Tensor)) -> Result<Tensor> {
        let [r1, r2, r3] = &self.weights;
        (outputs.0.mul(r1)?.sum_all()? + outputs.1.mul(r2)?.sum_all()?)?
            + outputs.2.mul(r3)?.sum_all()?
    }

    fn fused(&self) -> Result<(Tensor, Tensor, Tensor)> {
        let a = self.args();
        lstm(a[0], a[1], a[2], a[3], a[4], a[5])
    }

    fn unrolled(&self) -> Result<(Tensor, Tensor, Tensor)> {
        let a = self.args();
        unrolled_lstm(a[0], a[1], a[2], a[3], a[4], a[5])
    }

    /// The same loss in f64 from the fused forward.
    fn fused_loss_f64(&self) -> Result<f64> {
        let (h_seq, h_last, c_last) = self.fused()?;
        let [r1, r2, r3] = &self.weights;
        Ok(weighted_sum_f64(&h_seq, r1)
            + weighted_sum_f64(&h_last, r2)
            + weighted_sum_f64(&c_last, r3))
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
    let case = GradCase::new(dims, 21)?;
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
    let case = GradCase::new(dims, 31)?;
    let grads = case.loss(&case.fused()?)?.backward()?;
    for (name, var) in &case.vars {
        let analytic = grads
            .get(var.as_tensor())
            .expect("gradient exists")
            .copy()?;
        // eps 1e-3 in f32: the loss is O(1) with ~1e-7 rounding, so differences carry
        // ~1e-4 noise; 1e-3 absolute plus 1e-2 relative is well above that and far below the
        // size of a wrong term.
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
    let [x, h0, c0, w_ih, w_hh, b] = random_case(dims, 41);
    let (whole, _, _) = lstm(&x, &h0, &c0, &w_ih, &w_hh, &b)?;
    let split_at = 12;
    let (first, h_mid, c_mid) = lstm(&x.narrow(1, 0, split_at)?, &h0, &c0, &w_ih, &w_hh, &b)?;
    let (second, _, _) = lstm(
        &x.narrow(1, split_at, dims.steps - split_at)?,
        &h_mid.detach(),
        &c_mid.detach(),
        &w_ih,
        &w_hh,
        &b,
    )?;
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
    let [x, h0, c0, w_ih, w_hh, b] = random_case(dims, 51);
    let err = lstm(&x, &h0, &c0, &w_ih.t().unwrap(), &w_hh, &b).unwrap_err();
    assert!(err.to_string().contains("w_ih"), "{err}");
    let err = lstm(&x, &h0.narrow(0, 0, 1).unwrap(), &c0, &w_ih, &w_hh, &b).unwrap_err();
    assert!(err.to_string().contains("h0"), "{err}");
    let err = lstm(&x.narrow(1, 0, 0).unwrap(), &h0, &c0, &w_ih, &w_hh, &b).unwrap_err();
    assert!(err.to_string().contains("time step"), "{err}");
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
    let case = GradCase::new(dims, 61)?;
    let grads = case.loss(&case.fused()?)?.backward()?;
    let (h_seq, _, _) = case.fused()?;
    let a = case.args();
    let mut w_hh_grad_sum = a[4].zeros_like()?;
    for item in 0..dims.batch {
        let pick = |t: &Tensor| t.narrow(0, item, 1);
        let (h_item, h_last, c_last) =
            lstm(&pick(a[0])?, &pick(a[1])?, &pick(a[2])?, a[3], a[4], a[5])?;
        let diff = max_abs_diff(&h_item, &pick(&h_seq)?);
        assert!(diff <= 1e-6, "item {item}: h_seq differs by {diff:e}");
        let [r1, r2, r3] = &case.weights;
        let loss = ((h_item.mul(&pick(r1)?)?.sum_all()? + h_last.mul(&pick(r2)?)?.sum_all()?)?
            + c_last.mul(&pick(r3)?)?.sum_all()?)?;
        let item_grads = loss.backward()?;
        w_hh_grad_sum = (w_hh_grad_sum + item_grads.get(a[4]).expect("w_hh gradient"))?;
    }
    let batch_grad = grads.get(a[4]).expect("w_hh gradient");
    assert_close_relative("w_hh", batch_grad, &w_hh_grad_sum, 1e-5);
    Ok(())
}

#[test]
fn avx2_and_baseline_kernels_agree() -> Result<()> {
    if !has_avx2() {
        eprintln!("no AVX2 on this CPU: only the baseline kernel exists here");
        return Ok(());
    }
    let dims = Dims {
        batch: 1,
        steps: 500,
        input: 3,
        hidden: 32,
    };
    let [x, h0, c0, w_ih, w_hh, b] = random_case(dims, 71);
    let packed = Tensor::cat(&[&w_hh, &w_ih, &b.unsqueeze(1)?], 1)?;
    let w_t = transpose(
        &values(&packed),
        4 * dims.hidden,
        dims.hidden + dims.input + 1,
    );
    let state0 = [values(&h0), values(&c0)].concat();
    let x = values(&x);
    let run = |dispatched: bool| {
        let mut h_out = vec![0.0f32; dims.steps * dims.hidden];
        let mut c_out = vec![0.0f32; dims.hidden];
        let mut saved = vec![0.0f32; dims.steps * SAVED_PER_HIDDEN * dims.hidden];
        let job = ForwardJob {
            hidden: dims.hidden,
            input: dims.input,
            x: &x,
            state0: &state0,
            h_out: &mut h_out,
            c_out: &mut c_out,
            saved: &mut saved,
        };
        if dispatched {
            scan_forward(&w_t, job);
        } else {
            forward_body(&w_t, job);
        }
        h_out
    };
    let worst = run(true)
        .iter()
        .zip(run(false))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "AVX2 and baseline h_seq differ by {worst:e}");
    Ok(())
}
