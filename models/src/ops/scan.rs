//! A fused, differentiable diagonal complex linear recurrence: the sequential core of a
//! diagonal state-space layer (S4D: Gu, Gupta, Goel and Ré, "On the Parameterization and
//! Initialization of Diagonal State Space Models", NeurIPS 2022; S5: Smith, Warrington and
//! Linderman, "Simplified State Space Layers for Sequence Modeling", ICLR 2023).
//!
//! For every batch item `b` and complex state `n` the op runs, over time steps `t`,
//!
//! ```text
//! s[b, t, n] = a[n] * s[b, t-1, n] + u[b, t, n],      s[b, -1, n] = s0[b, n]
//! ```
//!
//! with complex `a` (stable when `|a| < 1`; the op itself does not require it). The caller
//! forms the input `u` (usually `B̄ x`, the discretised input matrix applied to the layer input)
//! and reads the layer output from `s` (usually `Re(C̄ s)`).
//!
//! Complex numbers travel as separate real and imaginary `f32` tensors. The whole sequence is
//! one candle custom op, so the graph holds a handful of nodes instead of thousands of tiny
//! per-step ones. Its backward pass is the adjoint recurrence run in reverse time,
//!
//! ```text
//! G[t]  = dL/ds[t] + conj(a) * G[t+1],                 G[T] = 0
//! dL/du[t] = G[t],   dL/ds0 = conj(a) * G[0],   dL/da = Σ_{b,t} conj(s[t-1]) * G[t]
//! ```
//!
//! where a complex gradient means `dL/dRe + i dL/dIm` of the real loss `L`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Error, Layout, Result, Shape, Storage, Tensor};

/// What is wrong with the arguments of [`diag_scan`]. Returned wrapped in
/// [`candle_core::Error::Wrapped`] so the function composes with other candle code.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// An argument does not have the shape the op needs.
    #[error("diag_scan: `{name}` has shape {got:?}, expected {expected}")]
    Shape {
        /// Argument name, e.g. `u_im`.
        name: &'static str,
        /// Shape it has.
        got: Vec<usize>,
        /// Shape it needs, in words, e.g. `[B, T, N] = [4, 100, 16]`.
        expected: String,
    },
    /// An argument is not `f32`.
    #[error("diag_scan: `{name}` has dtype {got:?}, only f32 is supported")]
    DType {
        /// Argument name.
        name: &'static str,
        /// Dtype it has.
        got: DType,
    },
    /// The op ran on a device it has no kernel for.
    #[error("diag_scan: no kernel for device {device}; only the CPU is implemented")]
    Device {
        /// The device, in words.
        device: String,
    },
}

/// Runs the diagonal complex recurrence `s[t] = a * s[t-1] + u[t]` over a whole batch.
///
/// Shapes (all `f32`, on one device):
/// - `a_re`, `a_im`: `[N]`, the per-state complex decay.
/// - `u_re`, `u_im`: `[B, T, N]`, the input added at each step, batch-major.
/// - `s0_re`, `s0_im`: `[B, N]`, the state before the first step (zeros for a fresh start,
///   or the last state of the previous chunk for truncated back-propagation through time).
///
/// Returns `(s_re, s_im)`, each `[B, T, N]`: the state after each step. The result is
/// differentiable w.r.t. every argument; see the module docs for the backward recurrence.
///
/// # Errors
/// A [`ScanError`] (wrapped in a candle error) when shapes disagree, a dtype is not `f32` or
/// the tensors are not on the CPU.
///
/// Cost: the kernels take ~25 ms forward+backward at B=4, T=48000, N=16; candle's backprop
/// bookkeeping around them (stacking, narrowing, gradient accumulation) takes several times that.
/// TODO: a variant that also applies the output projection would keep only `[B, T, H]` in the
/// graph. TODO: CUDA kernel; the op only runs on the CPU, so a GPU training run must keep this
/// layer's tensors on the CPU.
pub fn diag_scan(
    a_re: &Tensor,
    a_im: &Tensor,
    u_re: &Tensor,
    u_im: &Tensor,
    s0_re: &Tensor,
    s0_im: &Tensor,
) -> Result<(Tensor, Tensor)> {
    // Check shapes and dtypes.
    let (b_sz, t_len, n_states) = u_re.dims3()?;
    let expect = |name: &'static str, t: &Tensor, dims: &[usize], words: &str| -> Result<()> {
        if t.dtype() != DType::F32 {
            return Err(Error::wrap(ScanError::DType {
                name,
                got: t.dtype(),
            }));
        }
        if t.dims() != dims {
            return Err(Error::wrap(ScanError::Shape {
                name,
                got: t.dims().to_vec(),
                expected: format!("{words} = {dims:?}"),
            }));
        }
        Ok(())
    };
    expect("a_re", a_re, &[n_states], "[N]")?;
    expect("a_im", a_im, &[n_states], "[N]")?;
    expect("u_re", u_re, &[b_sz, t_len, n_states], "[B, T, N]")?;
    expect("u_im", u_im, &[b_sz, t_len, n_states], "[B, T, N]")?;
    expect("s0_re", s0_re, &[b_sz, n_states], "[B, N]")?;
    expect("s0_im", s0_im, &[b_sz, n_states], "[B, N]")?;
    if !u_re.device().is_cpu() {
        return Err(Error::wrap(ScanError::Device {
            device: format!("{:?}", u_re.device()),
        }));
    }

    // Pack real and imaginary parts along a new leading axis: the custom op takes three inputs.
    let a = Tensor::stack(&[a_re, a_im], 0)?.contiguous()?;
    let u = Tensor::stack(&[u_re, u_im], 0)?.contiguous()?;
    let s0 = Tensor::stack(&[s0_re, s0_im], 0)?.contiguous()?;

    // Run the fused scan and unpack.
    let s = a.apply_op3(&u, &s0, DiagScan)?;
    Ok((s.get(0)?, s.get(1)?))
}

/// The custom op. Inputs: `a` `[2, N]`, `u` `[2, B, T, N]`, `s0` `[2, B, N]` (index 0 real,
/// 1 imaginary); output `s` `[2, B, T, N]`.
struct DiagScan;

/// Borrows the contiguous `f32` data of a CPU storage.
fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    name: &'static str,
) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data.as_slice(),
        other => {
            return Err(Error::wrap(ScanError::DType {
                name,
                got: other.dtype(),
            }))
        }
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(Error::RequiresContiguous { op: "diag_scan" }.bt()),
    }
}

/// Forward recurrence on packed buffers; returns the packed states `[2, B, T, N]`. Batch items
/// are independent, so they are spread over up to `threads` scoped threads.
fn scan_forward(
    a: &[f32],
    u: &[f32],
    s0: &[f32],
    (b_sz, t_len, n): (usize, usize, usize),
    threads: usize,
) -> Vec<f32> {
    let item_len = t_len * n;
    let (a_re, a_im) = a.split_at(n);
    let (u_re, u_im) = u.split_at(b_sz * item_len);
    let (s0_re, s0_im) = s0.split_at(b_sz * n);
    let mut out = vec![0f32; 2 * b_sz * item_len];
    let (out_re, out_im) = out.split_at_mut(b_sz * item_len);

    // One task per batch item: (u_re, u_im, s0_re, s0_im, out_re, out_im) of that item.
    let items = u_re
        .chunks(item_len)
        .zip(u_im.chunks(item_len))
        .zip(s0_re.chunks(n).zip(s0_im.chunks(n)))
        .zip(out_re.chunks_mut(item_len).zip(out_im.chunks_mut(item_len)));
    let mut tasks: Vec<_> = items.collect();
    let per_thread = tasks.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for chunk in tasks.chunks_mut(per_thread) {
            scope.spawn(move || {
                let mut state_re = vec![0f32; n];
                let mut state_im = vec![0f32; n];
                for (((ur, ui), (s0r, s0i)), (or, oi)) in chunk.iter_mut() {
                    state_re.copy_from_slice(s0r);
                    state_im.copy_from_slice(s0i);
                    for row in (0..item_len).step_by(n) {
                        for k in 0..n {
                            let (sr, si) = (state_re[k], state_im[k]);
                            let nr = a_re[k] * sr - a_im[k] * si + ur[row + k];
                            let ni = a_re[k] * si + a_im[k] * sr + ui[row + k];
                            state_re[k] = nr;
                            state_im[k] = ni;
                            or[row + k] = nr;
                            oi[row + k] = ni;
                        }
                    }
                }
            });
        }
    });
    out
}

/// Gradients of the packed inputs: `a` `[2, N]`, `u` `[2, B, T, N]`, `s0` `[2, B, N]`.
struct ScanGrads {
    a: Vec<f32>,
    u: Vec<f32>,
    s0: Vec<f32>,
}

/// Reverse-time adjoint recurrence (module docs) on packed buffers, given the forward states
/// `s` and their gradient `grad_s` (both `[2, B, T, N]`). Batch items run on up to `threads`
/// scoped threads.
fn scan_backward(
    a: &[f32],
    s0: &[f32],
    s: &[f32],
    grad_s: &[f32],
    (b_sz, t_len, n): (usize, usize, usize),
    threads: usize,
) -> ScanGrads {
    let item_len = t_len * n;
    let len = b_sz * item_len;
    let (a_re, a_im) = a.split_at(n);
    let (s0_re, s0_im) = s0.split_at(b_sz * n);
    let (s_re, s_im) = s.split_at(len);
    let (g_re, g_im) = grad_s.split_at(len);
    let mut grad_u = vec![0f32; 2 * len];
    let (gu_re, gu_im) = grad_u.split_at_mut(len);
    let mut grad_s0 = vec![0f32; 2 * b_sz * n];
    let (gs0_re, gs0_im) = grad_s0.split_at_mut(b_sz * n);
    // dL/da sums over B*T terms: each item accumulates in f64 so long sequences keep precision.
    let mut grad_a_items = vec![0f64; 2 * b_sz * n];

    // One task per batch item, holding that item's inputs and output chunks.
    let inputs = s_re
        .chunks(item_len)
        .zip(s_im.chunks(item_len))
        .zip(g_re.chunks(item_len).zip(g_im.chunks(item_len)))
        .zip(s0_re.chunks(n).zip(s0_im.chunks(n)));
    let outputs = gu_re
        .chunks_mut(item_len)
        .zip(gu_im.chunks_mut(item_len))
        .zip(gs0_re.chunks_mut(n).zip(gs0_im.chunks_mut(n)))
        .zip(grad_a_items.chunks_mut(2 * n));
    let mut tasks: Vec<_> = inputs.zip(outputs).collect();
    let per_thread = tasks.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for chunk in tasks.chunks_mut(per_thread) {
            scope.spawn(move || {
                for ((((sr, si), (gr_in, gi_in)), (s0r, s0i)), (((gur, gui), (gs0r, gs0i)), ga)) in
                    chunk.iter_mut()
                {
                    let (ga_re, ga_im) = ga.split_at_mut(n);
                    // carry = conj(a) G[t+1], the gradient flowing into s[t] from step t+1.
                    let mut carry_re = vec![0f32; n];
                    let mut carry_im = vec![0f32; n];
                    for row in (0..item_len).step_by(n).rev() {
                        let (prev_re, prev_im) = if row > 0 {
                            (&sr[row - n..row], &si[row - n..row])
                        } else {
                            (&s0r[..], &s0i[..])
                        };
                        for k in 0..n {
                            // G[t] = dL/ds[t] + conj(a) G[t+1]; it is also dL/du[t].
                            let gr = gr_in[row + k] + carry_re[k];
                            let gi = gi_in[row + k] + carry_im[k];
                            gur[row + k] = gr;
                            gui[row + k] = gi;

                            // dL/da += conj(s[t-1]) G[t].
                            let (pr, pi) = (prev_re[k], prev_im[k]);
                            ga_re[k] += f64::from(pr * gr + pi * gi);
                            ga_im[k] += f64::from(pr * gi - pi * gr);

                            // Pass conj(a) G[t] on to step t-1.
                            carry_re[k] = a_re[k] * gr + a_im[k] * gi;
                            carry_im[k] = a_re[k] * gi - a_im[k] * gr;
                        }
                    }
                    // dL/ds0 = conj(a) G[0].
                    gs0r.copy_from_slice(&carry_re);
                    gs0i.copy_from_slice(&carry_im);
                }
            });
        }
    });

    // Sum the per-item dL/da.
    let mut grad_a = vec![0f64; 2 * n];
    for item in grad_a_items.chunks(2 * n) {
        grad_a.iter_mut().zip(item).for_each(|(acc, g)| *acc += g);
    }
    ScanGrads {
        a: grad_a.iter().map(|&g| g as f32).collect(),
        u: grad_u,
        s0: grad_s0,
    }
}

/// Runs `f` on the contiguous `f32` data of a CPU tensor without copying it.
fn with_cpu_f32<R>(t: &Tensor, name: &'static str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(f32_slice(cpu, layout, name)?)),
        _ => Err(Error::wrap(ScanError::Device {
            device: format!("{:?}", t.device()),
        })),
    }
}

/// Threads for the batch-parallel kernels: candle's own CPU thread count.
fn kernel_threads() -> usize {
    candle_core::utils::get_num_threads()
}

impl CustomOp3 for DiagScan {
    fn name(&self) -> &'static str {
        "diag_scan"
    }

    fn cpu_fwd(
        &self,
        a_storage: &CpuStorage,
        a_layout: &Layout,
        u_storage: &CpuStorage,
        u_layout: &Layout,
        s0_storage: &CpuStorage,
        s0_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        // Read sizes (already checked by `diag_scan`) and borrow the packed inputs.
        let (_, b_sz, t_len, n) = u_layout.shape().dims4()?;
        let a = f32_slice(a_storage, a_layout, "a")?;
        let u = f32_slice(u_storage, u_layout, "u")?;
        let s0 = f32_slice(s0_storage, s0_layout, "s0")?;

        // Scan.
        let out = scan_forward(a, u, s0, (b_sz, t_len, n), kernel_threads());
        Ok((CpuStorage::F32(out), Shape::from((2, b_sz, t_len, n))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        u: &Tensor,
        s0: &Tensor,
        s: &Tensor,
        grad_s: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Borrow the data and run the reverse-time adjoint scan.
        let (_, b_sz, t_len, n) = u.dims4()?;
        let grads = with_cpu_f32(a, "a", |a_h| {
            with_cpu_f32(s0, "s0", |s0_h| {
                with_cpu_f32(s, "s", |s_h| {
                    with_cpu_f32(grad_s, "grad_s", |g_h| {
                        scan_backward(a_h, s0_h, s_h, g_h, (b_sz, t_len, n), kernel_threads())
                    })
                })
            })
        })????;

        // Hand the gradients back in the packed input shapes.
        let dev = u.device();
        Ok((
            Some(Tensor::from_vec(grads.a, a.shape(), dev)?),
            Some(Tensor::from_vec(grads.u, u.shape(), dev)?),
            Some(Tensor::from_vec(grads.s0, s0.shape(), dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    /// Random test instance: `a` inside the unit circle, everything else uniform in [-1, 1].
    struct Instance {
        a_re: Vec<f32>,
        a_im: Vec<f32>,
        u_re: Vec<f32>,
        u_im: Vec<f32>,
        s0_re: Vec<f32>,
        s0_im: Vec<f32>,
        /// Weights of the scalar test loss `Σ w_re s_re + w_im s_im + ½ s_re²`.
        w_re: Vec<f32>,
        w_im: Vec<f32>,
        b_sz: usize,
        t_len: usize,
        n: usize,
    }

    impl Instance {
        fn new(b_sz: usize, t_len: usize, n: usize, seed: u64) -> Self {
            let mut rng = Pcg64::seed_from_u64(seed);
            let mut uni = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
            };
            let radius: Vec<f32> = uni(n).iter().map(|r| 0.8 + 0.15 * r.abs()).collect();
            let angle = uni(n);
            let a_re = radius
                .iter()
                .zip(&angle)
                .map(|(r, p)| r * (3.0 * p).cos())
                .collect();
            let a_im = radius
                .iter()
                .zip(&angle)
                .map(|(r, p)| r * (3.0 * p).sin())
                .collect();
            let len = b_sz * t_len * n;
            Self {
                a_re,
                a_im,
                u_re: uni(len),
                u_im: uni(len),
                s0_re: uni(b_sz * n),
                s0_im: uni(b_sz * n),
                w_re: uni(len),
                w_im: uni(len),
                b_sz,
                t_len,
                n,
            }
        }

        /// The six arguments as candle variables, in `diag_scan` order.
        fn vars(&self, dev: &Device) -> Vec<Var> {
            let (b, t, n) = (self.b_sz, self.t_len, self.n);
            vec![
                Var::from_vec(self.a_re.clone(), n, dev).unwrap(),
                Var::from_vec(self.a_im.clone(), n, dev).unwrap(),
                Var::from_vec(self.u_re.clone(), (b, t, n), dev).unwrap(),
                Var::from_vec(self.u_im.clone(), (b, t, n), dev).unwrap(),
                Var::from_vec(self.s0_re.clone(), (b, n), dev).unwrap(),
                Var::from_vec(self.s0_im.clone(), (b, n), dev).unwrap(),
            ]
        }

        fn loss(&self, s_re: &Tensor, s_im: &Tensor) -> Tensor {
            let shape = s_re.shape().clone();
            let dev = s_re.device();
            let w_re = Tensor::from_vec(self.w_re.clone(), &shape, dev).unwrap();
            let w_im = Tensor::from_vec(self.w_im.clone(), &shape, dev).unwrap();
            let lin = ((s_re * w_re).unwrap() + (s_im * w_im).unwrap()).unwrap();
            let quad = (s_re.sqr().unwrap() * 0.5).unwrap();
            (lin + quad).unwrap().sum_all().unwrap()
        }

        /// The same loss in plain f64, from a plain f64 scan, for finite differences.
        fn loss_f64(&self, p: &[Vec<f64>; 6]) -> f64 {
            let [a_re, a_im, u_re, u_im, s0_re, s0_im] = p;
            let (t_len, n) = (self.t_len, self.n);
            let mut total = 0.0;
            for b in 0..self.b_sz {
                for k in 0..n {
                    let (mut sr, mut si) = (s0_re[b * n + k], s0_im[b * n + k]);
                    for t in 0..t_len {
                        let i = (b * t_len + t) * n + k;
                        let nr = a_re[k] * sr - a_im[k] * si + u_re[i];
                        let ni = a_re[k] * si + a_im[k] * sr + u_im[i];
                        (sr, si) = (nr, ni);
                        total += f64::from(self.w_re[i]) * sr + f64::from(self.w_im[i]) * si;
                        total += 0.5 * sr * sr;
                    }
                }
            }
            total
        }
    }

    /// Unrolled reference: one small candle op per step, differentiated by candle itself.
    fn unrolled(v: &[Var]) -> (Tensor, Tensor) {
        let (a_re, a_im) = (v[0].as_tensor(), v[1].as_tensor());
        let (mut sr, mut si) = (v[4].as_tensor().clone(), v[5].as_tensor().clone());
        let t_len = v[2].dims()[1];
        let (mut outs_re, mut outs_im) = (Vec::new(), Vec::new());
        for t in 0..t_len {
            let ur = v[2]
                .as_tensor()
                .narrow(1, t, 1)
                .unwrap()
                .squeeze(1)
                .unwrap();
            let ui = v[3]
                .as_tensor()
                .narrow(1, t, 1)
                .unwrap()
                .squeeze(1)
                .unwrap();
            let nr = ((sr.broadcast_mul(a_re).unwrap() - si.broadcast_mul(a_im).unwrap()).unwrap()
                + ur)
                .unwrap();
            let ni = ((si.broadcast_mul(a_re).unwrap() + sr.broadcast_mul(a_im).unwrap()).unwrap()
                + ui)
                .unwrap();
            (sr, si) = (nr, ni);
            outs_re.push(sr.clone());
            outs_im.push(si.clone());
        }
        (
            Tensor::stack(&outs_re, 1).unwrap(),
            Tensor::stack(&outs_im, 1).unwrap(),
        )
    }

    fn fused(v: &[Var]) -> (Tensor, Tensor) {
        let t: Vec<&Tensor> = v.iter().map(|v| v.as_tensor()).collect();
        diag_scan(t[0], t[1], t[2], t[3], t[4], t[5]).unwrap()
    }

    fn max_abs_diff(x: &Tensor, y: &Tensor) -> f32 {
        (x - y)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn to_vec(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn forward_matches_unrolled_reference() {
        let inst = Instance::new(3, 64, 5, 1);
        let v = inst.vars(&Device::Cpu);
        let (fr, fi) = fused(&v);
        let (rr, ri) = unrolled(&v);
        assert_eq!(fr.dims(), &[3, 64, 5]);
        let err = max_abs_diff(&fr, &rr).max(max_abs_diff(&fi, &ri));
        assert!(err <= 1e-5, "fused vs unrolled forward max error {err}");
    }

    #[test]
    fn gradients_match_unrolled_reference() {
        let inst = Instance::new(2, 40, 4, 2);
        let v = inst.vars(&Device::Cpu);
        let (fr, fi) = fused(&v);
        let grads_fused = inst.loss(&fr, &fi).backward().unwrap();
        let (rr, ri) = unrolled(&v);
        let grads_ref = inst.loss(&rr, &ri).backward().unwrap();
        let names = ["a_re", "a_im", "u_re", "u_im", "s0_re", "s0_im"];
        for (var, name) in v.iter().zip(names) {
            let g_f = grads_fused.get(var.as_tensor()).expect("fused grad");
            let g_r = grads_ref.get(var.as_tensor()).expect("reference grad");
            let scale = to_vec(g_r).iter().fold(0f32, |m, x| m.max(x.abs()));
            let err = max_abs_diff(g_f, g_r);
            assert!(
                err <= 1e-4 * scale.max(1.0),
                "{name}: max gradient error {err}, gradient scale {scale}"
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let inst = Instance::new(2, 6, 3, 3);
        let v = inst.vars(&Device::Cpu);
        let (fr, fi) = fused(&v);
        let grads = inst.loss(&fr, &fi).backward().unwrap();
        let base: [Vec<f64>; 6] = [
            &inst.a_re,
            &inst.a_im,
            &inst.u_re,
            &inst.u_im,
            &inst.s0_re,
            &inst.s0_im,
        ]
        .map(|x| x.iter().map(|&y| f64::from(y)).collect());
        let step = 1e-6;
        for (arg, var) in v.iter().enumerate() {
            let analytic = to_vec(grads.get(var.as_tensor()).unwrap());
            for (i, &g) in analytic.iter().enumerate() {
                // Central difference of the f64 reference.
                let mut plus = base.clone();
                plus[arg][i] += step;
                let mut minus = base.clone();
                minus[arg][i] -= step;
                let numeric = (inst.loss_f64(&plus) - inst.loss_f64(&minus)) / (2.0 * step);
                let err = (f64::from(g) - numeric).abs();
                assert!(
                    err <= 1e-4 * numeric.abs().max(1.0),
                    "arg {arg} elem {i}: analytic {g}, numeric {numeric}"
                );
            }
        }
    }

    #[test]
    fn decaying_pole_gives_geometric_impulse_response() {
        // A single impulse into a state with a = r e^{iθ} must ring as r^t e^{iθt}.
        let dev = Device::Cpu;
        let (r, theta) = (0.9f32, 0.3f32);
        let t_len = 50;
        let a_re = Tensor::new(&[r * theta.cos()], &dev).unwrap();
        let a_im = Tensor::new(&[r * theta.sin()], &dev).unwrap();
        let mut impulse = vec![0f32; t_len];
        impulse[0] = 1.0;
        let u_re = Tensor::from_vec(impulse, (1, t_len, 1), &dev).unwrap();
        let u_im = u_re.zeros_like().unwrap();
        let s0 = Tensor::zeros((1, 1), DType::F32, &dev).unwrap();
        let (s_re, s_im) = diag_scan(&a_re, &a_im, &u_re, &u_im, &s0, &s0).unwrap();
        let (s_re, s_im) = (to_vec(&s_re), to_vec(&s_im));
        for t in 0..t_len {
            let mag = r.powi(t as i32);
            let phase = theta * t as f32;
            assert!(
                (s_re[t] - mag * phase.cos()).abs() <= 1e-5,
                "re at step {t}"
            );
            assert!(
                (s_im[t] - mag * phase.sin()).abs() <= 1e-5,
                "im at step {t}"
            );
        }
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let dev = Device::Cpu;
        let a = Tensor::zeros(4, DType::F32, &dev).unwrap();
        let u = Tensor::zeros((2, 10, 4), DType::F32, &dev).unwrap();
        let s0_bad = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        let err = diag_scan(&a, &a, &u, &u, &s0_bad, &s0_bad).unwrap_err();
        assert!(
            err.to_string().contains("s0_re"),
            "error names the argument: {err}"
        );
    }
}
