//! AdamW with its state open for checkpoints, and gradient-norm clipping.
//!
//! candle-nn ships an AdamW, but its moment estimates are private, so a training run could not
//! be resumed exactly after a kill. This one keeps them in plain tensors.
//! Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct AdamWParams {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            learning_rate: 5e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
        }
    }
}

/// AdamW over a fixed list of variables.
pub struct AdamW {
    pub params: AdamWParams,
    vars: Vec<Var>,
    /// First and second moment estimates, one per variable.
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Number of updates taken.
    pub step: u64,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, params: AdamWParams) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            params,
            vars,
            m,
            v,
            step: 0,
        })
    }

    /// One update from `grads`; variables without a gradient are left alone.
    pub fn update(&mut self, grads: &GradStore, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let p = self.params;
        let bias1 = 1.0 - p.beta1.powi(self.step as i32);
        let bias2 = 1.0 - p.beta2.powi(self.step as i32);
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g * grad_scale)?;
            let m = ((&self.m[i] * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + p.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - p.learning_rate * p.weight_decay))?;
            var.set(&(decayed - (update * p.learning_rate)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// Global L2 norm of the gradients of `vars`, and the factor that scales it down to at most
/// `max_norm` (1 when already below).
pub fn clip_factor(grads: &GradStore, vars: &[Var], max_norm: f64) -> Result<(f64, f64)> {
    let mut sum_sq = 0.0f64;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            sum_sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = sum_sq.sqrt();
    let factor = if norm.is_finite() && norm > max_norm {
        max_norm / norm
    } else {
        1.0
    };
    Ok((norm, factor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn minimises_a_quadratic() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[3.0f32, -2.0], &dev).unwrap()).unwrap();
        let mut opt = AdamW::new(
            vec![x.clone()],
            AdamWParams {
                learning_rate: 0.1,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.update(&grads, 1.0).unwrap();
        }
        let v = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|a| a.abs() < 1e-2), "{v:?}");
    }

    #[test]
    fn clip_factor_scales_norm_to_limit() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[3.0f32, 4.0], &dev).unwrap()).unwrap();
        // d/dx of 0.5*|x|^2 is x, whose norm is 5.
        let loss = (x.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let grads = loss.backward().unwrap();
        let (norm, factor) = clip_factor(&grads, &[x], 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6 && (factor - 0.2).abs() < 1e-9);
    }
}
