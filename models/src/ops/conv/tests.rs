//! Parity of the fused dilated convolution with candle's `conv1d` (forward and backward) and
//! with central finite differences.

use candle_core::{Device, Result, Tensor, Var};

use super::dilated_conv1d;
use crate::ops::test_support::{
    assert_close_relative, check_finite_differences, rng, uniform, values, weighted_sum_f64,
};

/// Sizes of one test case.
#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    taps: usize,
    dilation: usize,
    t_in: usize,
}

/// Cases covering both product groupings (C_in >= K by tap, C_in < K by channel), kernels 1..7,
/// dilations up to 256, several time tiles, and single items (channel blocks on threads).
const CASES: [Case; 9] = [
    Case {
        batch: 2,
        c_in: 1,
        c_out: 16,
        taps: 7,
        dilation: 1,
        t_in: 300,
    },
    Case {
        batch: 3,
        c_in: 16,
        c_out: 16,
        taps: 7,
        dilation: 4,
        t_in: 500,
    },
    Case {
        batch: 2,
        c_in: 16,
        c_out: 8,
        taps: 3,
        dilation: 16,
        t_in: 400,
    },
    Case {
        batch: 1,
        c_in: 8,
        c_out: 16,
        taps: 1,
        dilation: 1,
        t_in: 70,
    },
    Case {
        batch: 2,
        c_in: 16,
        c_out: 16,
        taps: 5,
        dilation: 64,
        t_in: 2600,
    },
    Case {
        batch: 1,
        c_in: 3,
        c_out: 5,
        taps: 6,
        dilation: 256,
        t_in: 6000,
    },
    Case {
        batch: 1,
        c_in: 16,
        c_out: 16,
        taps: 2,
        dilation: 3,
        t_in: 5000,
    },
    Case {
        batch: 4,
        c_in: 1,
        c_out: 8,
        taps: 4,
        dilation: 2,
        t_in: 129,
    },
    Case {
        batch: 5,
        c_in: 12,
        c_out: 1,
        taps: 3,
        dilation: 9,
        t_in: 100,
    },
];

/// Random input, kernel (scaled like PyTorch's init, 1/sqrt(C_in K)) and bias of one case.
fn random_case(case: Case, seed: u64) -> (Tensor, Tensor, Tensor) {
    let mut rng = rng(seed);
    let w_scale = 1.0 / ((case.c_in * case.taps) as f32).sqrt();
    (
        uniform(&mut rng, &[case.batch, case.c_in, case.t_in], 1.0),
        uniform(&mut rng, &[case.c_out, case.c_in, case.taps], w_scale),
        uniform(&mut rng, &[case.c_out], w_scale),
    )
}

/// candle's own convolution plus bias: the reference.
fn candle_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, dilation: usize) -> Result<Tensor> {
    let y = x.conv1d(w, 0, 1, dilation, 1)?;
    match b {
        Some(b) => y.broadcast_add(&b.unsqueeze(1)?),
        None => Ok(y),
    }
}

#[test]
fn forward_matches_candle_conv1d_within_1e5() -> Result<()> {
    for (k, &case) in CASES.iter().enumerate() {
        let (x, w, b) = random_case(case, 10 + k as u64);
        let t_out = case.t_in - (case.taps - 1) * case.dilation;

        // With a bias.
        let got = dilated_conv1d(&x, &w, Some(&b), case.dilation)?;
        assert_eq!(got.dims(), [case.batch, case.c_out, t_out], "{case:?}");
        let want = candle_conv(&x, &w, Some(&b), case.dilation)?;
        assert_close_relative(&format!("y {case:?}"), &got, &want, 1e-5);

        // Without one.
        let got = dilated_conv1d(&x, &w, None, case.dilation)?;
        let want = candle_conv(&x, &w, None, case.dilation)?;
        assert_close_relative(&format!("y without bias {case:?}"), &got, &want, 1e-5);
    }
    Ok(())
}

/// Gradients `(dx, dw, db)` of `Σ y r` (random `r`) through the fused op and, as reference,
/// through candle's conv1d run on one batch item at a time and summed.
///
/// candle 0.11.1's conv1d backward gives wrong weight gradients for batches of more than one
/// item (and wrong input gradients for one input channel): it convolves transposed,
/// non-contiguous views, the pattern of huggingface/candle#3735. Item by item it is exact,
/// as
/// [`fused_and_reference_gradients_match_plain_f64_loops_within_1e5`] checks.
fn gradients_of_both(case: Case, seed: u64) -> Result<[(Tensor, Tensor); 3]> {
    let (x, w, b) = random_case(case, seed);
    let t_out = case.t_in - (case.taps - 1) * case.dilation;
    let r = uniform(&mut rng(seed + 1000), &[case.batch, case.c_out, t_out], 1.0);

    // The fused op on the whole batch.
    let (xv, wv, bv) = (
        Var::from_tensor(&x)?,
        Var::from_tensor(&w)?,
        Var::from_tensor(&b)?,
    );
    let fused = (dilated_conv1d(&xv, &wv, Some(&bv), case.dilation)? * &r)?
        .sum_all()?
        .backward()?;
    let grad = |var: &Var| -> Result<Tensor> {
        Ok(fused
            .get(var)
            .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))?
            .clone())
    };

    let reference = candle_gradients(&x, &w, &b, &r, case.dilation)?;
    Ok([
        (grad(&xv)?, reference.0),
        (grad(&wv)?, reference.1),
        (grad(&bv)?, reference.2),
    ])
}

/// candle's conv1d gradients `(dx, dw, db)` of `Σ y r`, one batch item at a time.
fn candle_gradients(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    r: &Tensor,
    dilation: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (wv, bv) = (Var::from_tensor(w)?, Var::from_tensor(b)?);
    let mut grad_x = Vec::new();
    let (mut grad_w, mut grad_b) = (w.zeros_like()?, b.zeros_like()?);
    for item in 0..x.dim(0)? {
        let xv = Var::from_tensor(&x.narrow(0, item, 1)?.contiguous()?)?;
        let grads = (candle_conv(&xv, &wv, Some(&bv), dilation)? * r.narrow(0, item, 1)?)?
            .sum_all()?
            .backward()?;
        let missing = || candle_core::Error::Msg("no gradient".into());
        grad_x.push(grads.get(&xv).ok_or_else(missing)?.clone());
        grad_w = (grad_w + grads.get(&wv).ok_or_else(missing)?)?;
        grad_b = (grad_b + grads.get(&bv).ok_or_else(missing)?)?;
    }
    Ok((Tensor::cat(&grad_x, 0)?, grad_w, grad_b))
}

#[test]
fn gradients_match_candle_conv1d_backward_within_1e4() -> Result<()> {
    for (k, &case) in CASES.iter().enumerate() {
        let grads = gradients_of_both(case, 40 + k as u64)?;
        for (name, (got, want)) in ["dx", "dw", "db"].iter().zip(&grads) {
            assert_close_relative(&format!("{name} {case:?}"), got, want, 1e-4);
        }
    }
    Ok(())
}

#[test]
fn single_output_sample_matches_candle_forward_and_backward() -> Result<()> {
    // T_in equal to the kernel's span leaves exactly one output sample.
    for case in [
        Case {
            batch: 2,
            c_in: 16,
            c_out: 16,
            taps: 7,
            dilation: 64,
            t_in: 6 * 64 + 1,
        },
        Case {
            batch: 3,
            c_in: 1,
            c_out: 4,
            taps: 3,
            dilation: 5,
            t_in: 11,
        },
        Case {
            batch: 1,
            c_in: 2,
            c_out: 3,
            taps: 1,
            dilation: 7,
            t_in: 1,
        },
    ] {
        let (x, w, b) = random_case(case, 77);
        let got = dilated_conv1d(&x, &w, Some(&b), case.dilation)?;
        assert_eq!(got.dims(), [case.batch, case.c_out, 1], "{case:?}");
        let want = candle_conv(&x, &w, Some(&b), case.dilation)?;
        assert_close_relative(&format!("y {case:?}"), &got, &want, 1e-5);
        for (name, (got, want)) in ["dx", "dw", "db"].iter().zip(&gradients_of_both(case, 78)?) {
            assert_close_relative(&format!("{name} {case:?}"), got, want, 1e-4);
        }
    }
    Ok(())
}

#[test]
fn gradients_match_central_finite_differences() -> Result<()> {
    // Both groupings: by tap (C_in >= K) and by channel (C_in < K).
    for case in [
        Case {
            batch: 2,
            c_in: 3,
            c_out: 2,
            taps: 2,
            dilation: 3,
            t_in: 9,
        },
        Case {
            batch: 2,
            c_in: 2,
            c_out: 3,
            taps: 3,
            dilation: 2,
            t_in: 9,
        },
    ] {
        let (x, w, b) = random_case(case, 5);
        let (x, w, b) = (
            Var::from_tensor(&x)?,
            Var::from_tensor(&w)?,
            Var::from_tensor(&b)?,
        );
        let t_out = case.t_in - (case.taps - 1) * case.dilation;
        let r = uniform(&mut rng(6), &[case.batch, case.c_out, t_out], 1.0);
        let loss = || -> Result<f64> {
            Ok(weighted_sum_f64(
                &dilated_conv1d(&x, &w, Some(&b), case.dilation)?,
                &r,
            ))
        };
        let grads = (dilated_conv1d(&x, &w, Some(&b), case.dilation)? * &r)?
            .sum_all()?
            .backward()?;

        // The loss is linear in each argument, so central differences are exact up to f32
        // rounding of the outputs (~1e-7 each) divided by 2 eps.
        for (name, var) in [("x", &x), ("w", &w), ("b", &b)] {
            let analytic = grads.get(var).expect("gradient of a Var");
            check_finite_differences(
                &format!("d{name} {case:?}"),
                var,
                analytic,
                1e-2,
                1e-3,
                1e-4,
                &loss,
            )?;
        }
    }
    Ok(())
}

#[test]
fn bad_shapes_are_refused_naming_the_tensor() -> Result<()> {
    let mut rng = rng(9);
    let x = uniform(&mut rng, &[2, 4, 50], 1.0);
    let w = uniform(&mut rng, &[8, 4, 3], 1.0);
    let b = uniform(&mut rng, &[8], 1.0);
    let message = |r: Result<Tensor>| r.expect_err("must fail").to_string();

    let e = message(dilated_conv1d(&x.flatten_from(1)?, &w, Some(&b), 1));
    assert!(
        e.contains("x must be [B, C_in, T]") && e.contains("[2, 200]"),
        "{e}"
    );
    let e = message(dilated_conv1d(&x, &w.flatten_from(1)?, Some(&b), 1));
    assert!(
        e.contains("w must be [C_out, C_in, K]") && e.contains("[8, 12]"),
        "{e}"
    );
    let e = message(dilated_conv1d(&x, &w.narrow(1, 0, 3)?, Some(&b), 1));
    assert!(
        e.contains("w must be [C_out, 4, K]") && e.contains("[8, 3, 3]"),
        "{e}"
    );
    let e = message(dilated_conv1d(&x, &w, Some(&b.narrow(0, 0, 7)?), 1));
    assert!(e.contains("b must be [8]") && e.contains("[7]"), "{e}");
    let e = message(dilated_conv1d(&x, &w, Some(&b), 0));
    assert!(e.contains("dilation must be at least 1"), "{e}");
    // Span (3 - 1) * 25 + 1 = 51 > 50 samples.
    let e = message(dilated_conv1d(&x, &w, Some(&b), 25));
    assert!(
        e.contains("x [2, 4, 50]") && e.contains("span of 51"),
        "{e}"
    );
    Ok(())
}

/// `(dx, dw, db)` of `Σ y r` in f64 with plain loops over the definition.
fn naive_gradients(x: &Tensor, w: &Tensor, r: &Tensor, dilation: usize) -> Result<[Vec<f64>; 3]> {
    let ((batch, c_in, t_in), (c_out, _, taps)) = (x.dims3()?, w.dims3()?);
    let t_out = t_in - (taps - 1) * dilation;
    let (x, w, r) = (values(x), values(w), values(r));
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; c_out];
    for b in 0..batch {
        for o in 0..c_out {
            for t in 0..t_out {
                let g = f64::from(r[(b * c_out + o) * t_out + t]);
                db[o] += g;
                for c in 0..c_in {
                    for j in 0..taps {
                        let xi = (b * c_in + c) * t_in + t + j * dilation;
                        let wi = (o * c_in + c) * taps + j;
                        dx[xi] += g * f64::from(w[wi]);
                        dw[wi] += g * f64::from(x[xi]);
                    }
                }
            }
        }
    }
    Ok([dx, dw, db])
}

#[test]
fn fused_and_reference_gradients_match_plain_f64_loops_within_1e5() -> Result<()> {
    // Batches of more than one item, where candle's batched conv1d backward goes wrong.
    for (k, &case) in CASES.iter().enumerate().filter(|(_, c)| c.batch > 1) {
        let seed = 40 + k as u64;
        let (x, w, _) = random_case(case, seed);
        let t_out = case.t_in - (case.taps - 1) * case.dilation;
        let r = uniform(&mut rng(seed + 1000), &[case.batch, case.c_out, t_out], 1.0);
        let exact = naive_gradients(&x, &w, &r, case.dilation)?;
        let grads = gradients_of_both(case, seed)?;
        for ((name, (fused, candle)), exact) in ["dx", "dw", "db"].iter().zip(grads).zip(exact) {
            let exact: Vec<f32> = exact.iter().map(|&v| v as f32).collect();
            let exact = Tensor::from_vec(exact, fused.shape(), &Device::Cpu)?;
            assert_close_relative(&format!("fused {name} {case:?}"), &fused, &exact, 1e-5);
            assert_close_relative(&format!("candle {name} {case:?}"), &candle, &exact, 1e-5);
        }
    }
    Ok(())
}
