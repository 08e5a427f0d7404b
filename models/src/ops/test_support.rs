//! Test helpers shared by the fused-op tests: seeded random tensors, tolerance checks and
//! central finite differences.

use candle_core::{Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// A seeded generator for reproducible test data.
pub(crate) fn rng(seed: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed)
}

/// A CPU f32 tensor of `shape` with elements uniform in [-scale, scale].
pub(crate) fn uniform(rng: &mut Pcg64, shape: &[usize], scale: f32) -> Tensor {
    let count = shape.iter().product();
    let data: Vec<f32> = (0..count)
        .map(|_| rng.random_range(-scale..=scale))
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data length")
}

/// All elements of `t` as f32, row-major.
pub(crate) fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 CPU tensor")
}

/// Largest absolute element-wise difference of two tensors of one shape.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts `max |got - want| <= rel_tol * max |want|` (a tensor-wise relative error, so that
/// elements near zero do not dominate).
pub(crate) fn assert_close_relative(name: &str, got: &Tensor, want: &Tensor, rel_tol: f32) {
    let scale = values(want).iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(got, want);
    assert!(
        scale > 0.0,
        "{name}: reference is all zeros, the test would prove nothing"
    );
    assert!(
        diff <= rel_tol * scale,
        "{name}: max abs diff {diff:e} exceeds {rel_tol:e} x max |ref| {scale:e}"
    );
}

/// Checks `analytic` (the gradient of `loss` w.r.t. `var`) against central differences:
/// every element must satisfy `|fd - analytic| <= rel_tol |analytic| + abs_tol`.
///
/// `loss` is evaluated with each element of `var` moved by ±`eps`; `var` is restored after.
pub(crate) fn check_finite_differences(
    name: &str,
    var: &Var,
    analytic: &Tensor,
    eps: f32,
    rel_tol: f64,
    abs_tol: f64,
    loss: &dyn Fn() -> Result<f64>,
) -> Result<()> {
    let original = var.as_tensor().copy()?;
    let base = values(&original);
    let grads = values(analytic);
    assert_eq!(base.len(), grads.len(), "{name}: gradient shape differs");
    for (k, &g) in grads.iter().enumerate() {
        // Loss at +eps and -eps in element k.
        let mut moved = base.clone();
        moved[k] = base[k] + eps;
        var.set(&Tensor::from_vec(
            moved.clone(),
            original.shape(),
            &Device::Cpu,
        )?)?;
        let up = loss()?;
        moved[k] = base[k] - eps;
        var.set(&Tensor::from_vec(moved, original.shape(), &Device::Cpu)?)?;
        let down = loss()?;
        let fd = (up - down) / (2.0 * eps as f64);

        let g = g as f64;
        assert!(
            (fd - g).abs() <= rel_tol * g.abs() + abs_tol,
            "{name}[{k}]: finite difference {fd:e} vs analytic {g:e}"
        );
    }
    var.set(&original)?;
    Ok(())
}

/// `Σ a_k r_k` in f64 over all elements of two tensors of one shape.
pub(crate) fn weighted_sum_f64(a: &Tensor, r: &Tensor) -> f64 {
    values(a)
        .iter()
        .zip(values(r))
        .map(|(&x, y)| x as f64 * y as f64)
        .sum()
}
