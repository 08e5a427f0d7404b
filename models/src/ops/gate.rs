//! The activations of the convolutional networks as single candle ops: `tanh`, and the gated
//! `tanh(a) σ(g)` of WaveNet-style layers, each with a one-pass backward.
//!
//! candle's `tanh` calls libm once per element and its backward builds three more tensors
//! (`y²`, `1 - y²`, the product); the gated form adds a sigmoid op, two narrows and a product on
//! top. In a TCN training step these element-wise passes cost about as much as the
//! convolutions. Here each direction is one pass with the branch-free activations of
//! [`dsp::fastmath`], which the compiler vectorises.
//!
//! CPU and f32 only, like the other fused ops.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use dsp::model::Activation;

use super::cpu::{f32_slice, run_jobs};
use dsp::fastmath::{sigmoid, tanh as tanh_f32};

/// Elements per job when an element-wise pass is spread over threads.
const CHUNK: usize = 1 << 16;

/// A conv layer's activation of its pre-activation `z: [B, C m, T]` (`m` =
/// [`Activation::conv_multiplier`]): `tanh(z)`, or `tanh(a) σ(g)` over the two halves.
pub fn activate(z: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::Tanh => tanh(z),
        Activation::Gated => gated(z),
    }
}

/// `tanh(x)` element-wise, with absolute error below 3e-7.
pub fn tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Tanh)
}

/// `tanh(a) σ(g)` for `z: [B, 2C, T]` split on dimension 1 into `a = z[:, ..C]` and
/// `g = z[:, C..]`; the result is `[B, C, T]`.
pub fn gated(z: &Tensor) -> candle_core::Result<Tensor> {
    let Ok((_, c2, _)) = z.dims3() else {
        bail!("gated: z must be [B, 2C, T], got {:?}", z.shape());
    };
    if c2 % 2 != 0 {
        bail!("gated: z {:?} must have an even channel count", z.shape());
    }
    z.contiguous()?.apply_op1(Gated)
}

/// Runs `work(dst, k)` over `out` cut into rows of `row_len` elements (`k` counts the rows),
/// on several threads when the pass is long.
fn for_rows(out: &mut [f32], row_len: usize, work: impl Fn(&mut [f32], usize) + Sync) {
    let jobs: Vec<(usize, &mut [f32])> = out.chunks_mut(row_len.max(1)).enumerate().collect();
    run_jobs(jobs, row_len, |(k, dst)| work(dst, k));
}

/// Forward op of [`tanh`].
struct Tanh;

impl CustomOp1 for Tanh {
    fn name(&self) -> &'static str {
        "fxtwin-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name(), "x")?;
        let mut y = vec![0.0f32; x.len()];
        for_rows(&mut y, CHUNK, |dst, k| {
            for (o, &v) in dst.iter_mut().zip(&x[k * CHUNK..]) {
                *o = tanh_f32(v);
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // d tanh(x) / dx = 1 - y².
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &TanhGrad)?))
    }
}

/// `grad (1 - y²)` for the backward of [`Tanh`]: arguments `y`, `grad`.
struct TanhGrad;

impl CustomOp2 for TanhGrad {
    fn name(&self) -> &'static str {
        "fxtwin-tanh-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, self.name(), "y")?;
        let g = f32_slice(s2, l2, self.name(), "output gradient")?;
        if y.len() != g.len() {
            bail!("{}: y {l1:?} and gradient {l2:?} differ", self.name());
        }
        let mut out = vec![0.0f32; y.len()];
        for_rows(&mut out, CHUNK, |dst, k| {
            let (y, g) = (&y[k * CHUNK..], &g[k * CHUNK..]);
            for ((o, &y), &g) in dst.iter_mut().zip(y).zip(g) {
                *o = g * (1.0 - y * y);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Forward op of [`gated`].
struct Gated;

/// The `a` and `g` rows, `T` long, behind output row `k` (item `k / C`, channel `k % C`) of a
/// gated op over `z: [B, 2C, T]`.
fn gate_rows(z: &[f32], k: usize, c: usize, t: usize) -> (&[f32], &[f32]) {
    let (item, ch) = (k / c, k % c);
    let base = item * 2 * c * t;
    (&z[base + ch * t..][..t], &z[base + (c + ch) * t..][..t])
}

/// `(batch, C, T)` of a gated op's input layout `[B, 2C, T]`.
fn gated_dims(l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    match *l.dims() {
        [b, c2, t] if c2 % 2 == 0 => Ok((b, c2 / 2, t)),
        ref d => bail!("fxtwin-gated: z must be [B, 2C, T], got {d:?}"),
    }
}

impl CustomOp1 for Gated {
    fn name(&self) -> &'static str {
        "fxtwin-gated"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let z = f32_slice(s, l, self.name(), "z")?;
        let (b, c, t) = gated_dims(l)?;
        let mut y = vec![0.0f32; b * c * t];
        // Output row k (item k / C, channel k % C) reads a from the same channel in the first
        // half of the item's channels and g from the second half.
        for_rows(&mut y, t, |dst, k| {
            let (a, g) = gate_rows(z, k, c, t);
            for ((o, &a), &g) in dst.iter_mut().zip(a).zip(g) {
                *o = tanh_f32(a) * sigmoid(g);
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, c, t))))
    }

    fn bwd(&self, z: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(z.apply_op2_no_bwd(&grad.contiguous()?, &GatedGrad)?))
    }
}

/// Backward of [`Gated`]: arguments `z: [B, 2C, T]`, `grad: [B, C, T]`; result `[B, 2C, T]`
/// with `da = grad σ(g) (1 - tanh²a)` and `dg = grad tanh(a) σ(g) (1 - σ(g))`.
struct GatedGrad;

impl CustomOp2 for GatedGrad {
    fn name(&self) -> &'static str {
        "fxtwin-gated-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let z = f32_slice(s1, l1, self.name(), "z")?;
        let g_out = f32_slice(s2, l2, self.name(), "output gradient")?;
        let (b, c, t) = gated_dims(l1)?;
        if g_out.len() != b * c * t {
            bail!("{}: gradient {l2:?} does not fit z {l1:?}", self.name());
        }
        let mut dz = vec![0.0f32; z.len()];
        // Row k of dz is item k / 2C, channel k % 2C: the a half for the first C channels.
        for_rows(&mut dz, t, |dst, k| {
            let (item, ch) = (k / (2 * c), k % (2 * c));
            let (a, g) = gate_rows(z, item * c + ch % c, c, t);
            let go = &g_out[(item * c + ch % c) * t..][..t];
            if ch < c {
                for (((o, &a), &g), &go) in dst.iter_mut().zip(a).zip(g).zip(go) {
                    let ta = tanh_f32(a);
                    *o = go * sigmoid(g) * (1.0 - ta * ta);
                }
            } else {
                for (((o, &a), &g), &go) in dst.iter_mut().zip(a).zip(g).zip(go) {
                    let sg = sigmoid(g);
                    *o = go * tanh_f32(a) * sg * (1.0 - sg);
                }
            }
        });
        Ok((CpuStorage::F32(dz), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 6.0)
            .collect()
    }

    #[test]
    fn tanh_matches_candle_forward_and_backward() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_vec(ramp(3 * 4 * 5000), (3, 4, 5000), &dev)?;
        let w = Tensor::from_vec(ramp(3 * 4 * 5000), (3, 4, 5000), &dev)?;
        let ours = tanh(x.as_tensor())?;
        let theirs = x.as_tensor().tanh()?;
        let err = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-6, "forward error {err}");

        let g1 = (ours * &w)?.sum_all()?.backward()?;
        let g2 = (theirs * &w)?.sum_all()?.backward()?;
        let (g1, g2) = (g1.get(&x).unwrap(), g2.get(&x).unwrap());
        let err = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-5, "gradient error {err}");
        Ok(())
    }

    #[test]
    fn gated_matches_candle_forward_and_backward() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (b, c, t) = (2, 3, 7000);
        let z = Var::from_vec(ramp(b * 2 * c * t), (b, 2 * c, t), &dev)?;
        let w = Tensor::from_vec(ramp(b * c * t), (b, c, t), &dev)?;
        let ours = gated(z.as_tensor())?;
        let a = z.as_tensor().narrow(1, 0, c)?.tanh()?;
        let g = candle_nn::ops::sigmoid(&z.as_tensor().narrow(1, c, c)?)?;
        let theirs = (a * g)?;
        let err = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-6, "forward error {err}");

        let g1 = (ours * &w)?.sum_all()?.backward()?;
        let g2 = (theirs * &w)?.sum_all()?.backward()?;
        let (g1, g2) = (g1.get(&z).unwrap(), g2.get(&z).unwrap());
        let err = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-5, "gradient error {err}");
        Ok(())
    }
}
