//! Every architecture's gradients match central finite differences on a tiny instance.
//!
//! For each family (LSTM, GRU, TCN, GCN, WaveNet, S4D and time-varying FiLM, with knobs and
//! with and without the input skip) a tiny seeded network runs a batch of 2 short segments
//! through the training loss ([`models::losses::Loss`] with its default terms, pre-emphasised
//! ESR plus DC) against a random target. The gradient of every element of every weight from
//! `loss.backward()` is compared with `(L(w + eps) - L(w - eps)) / 2 eps`.
//!
//! Tolerance: the forward pass runs in f32, so the difference quotient carries rounding noise
//! of about `1e-7 * L / eps` plus a truncation error of order `eps^2`. Each element must satisfy
//! `|g - fd| <= REL_TOL * max|fd| + ABS_TOL`, with the maximum taken over the same weight
//! tensor, so a small tensor's gradient is judged on its own scale. The checker is itself
//! checked: flipping the sign of any tensor's largest gradient, or scaling a tensor's gradient
//! by 1.1, must be reported.

mod common;

use candle_core::{Device, Tensor};
use dsp::model::{
    Activation, Cell, ConvBlockSpec, ConvNet, FilmSpec, LayerArraySpec, Network, RecurrentNet,
    SsmNet, TvFilmNet, WaveNetNet,
};
use models::losses::{Loss, LossConfig};
use models::net::{RecurrentState, TrainableNet};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Segments per batch.
const BATCH: usize = 2;
/// Output samples per segment that the loss sees.
const SEGMENT_SAMPLES: usize = 24;
/// Samples run before a recurrent segment to give it a non-zero, detached initial state, as
/// training's burn-in does.
const BURN_IN_SAMPLES: usize = 8;
/// Step of the difference quotient relative to the tensor's largest weight magnitude.
const EPS_RELATIVE: f32 = 1e-2;
/// Tolerance relative to the tensor's largest finite-difference gradient.
const REL_TOL: f64 = 2e-2;
/// Absolute tolerance, for tensors whose gradient is small everywhere.
const ABS_TOL: f64 = 2e-4;

fn conv(activation: Activation, blocks: &[(usize, usize)], film: bool, skip: bool) -> ConvNet {
    ConvNet {
        channels: 2,
        activation,
        blocks: blocks
            .iter()
            .map(|&(kernel_size, dilation)| ConvBlockSpec {
                kernel_size,
                dilation,
            })
            .collect(),
        film: film.then_some(FilmSpec { hidden_size: 3 }),
        skip,
    }
}

/// Tiny instances of every family: (name, network, knob count).
fn tiny_networks() -> Vec<(&'static str, Network, usize)> {
    let recurrent = |cell, skip, gain_head| {
        Network::Recurrent(RecurrentNet {
            cell,
            hidden_size: 3,
            skip,
            gain_head,
            level_inputs: if gain_head {
                vec![2.0, 8.0]
            } else {
                Vec::new()
            },
        })
    };
    vec![
        ("lstm, skip, 2 knobs", recurrent(Cell::Lstm, true, false), 2),
        (
            "lstm, no skip, 1 knob",
            recurrent(Cell::Lstm, false, false),
            1,
        ),
        ("gru, skip, 1 knob", recurrent(Cell::Gru, true, false), 1),
        (
            "gru, no skip, 2 knobs",
            recurrent(Cell::Gru, false, false),
            2,
        ),
        (
            "tcn, FiLM, skip, 2 knobs",
            Network::Conv(conv(Activation::Tanh, &[(3, 1), (2, 2)], true, true)),
            2,
        ),
        (
            "tcn, no knobs",
            Network::Conv(conv(Activation::Tanh, &[(2, 1), (3, 2)], true, false)),
            0,
        ),
        (
            "gcn, FiLM, no skip, 1 knob",
            Network::Conv(conv(Activation::Gated, &[(3, 1), (3, 2)], true, false)),
            1,
        ),
        (
            "wavenet, tanh then gated arrays, 2 knobs",
            Network::WaveNet(WaveNetNet {
                arrays: vec![
                    LayerArraySpec {
                        channels: 2,
                        kernel_size: 2,
                        dilations: vec![1, 2],
                        activation: Activation::Tanh,
                        head_bias: false,
                    },
                    LayerArraySpec {
                        channels: 2,
                        kernel_size: 3,
                        dilations: vec![2],
                        activation: Activation::Gated,
                        head_bias: true,
                    },
                ],
                head_scale: 0.5,
            }),
            2,
        ),
        (
            "s4d, FiLM, skip, 1 knob",
            Network::Ssm(SsmNet {
                channels: 2,
                state_size: 2,
                blocks: 2,
                film: Some(FilmSpec { hidden_size: 3 }),
                skip: true,
            }),
            1,
        ),
        (
            "time-varying FiLM over a tcn, 1 knob",
            Network::TimeVarying(TvFilmNet {
                block_samples: 8,
                hidden_size: 2,
                inner: Box::new(Network::Conv(conv(
                    Activation::Tanh,
                    &[(2, 1), (2, 2)],
                    true,
                    true,
                ))),
            }),
            1,
        ),
        // Appended, so the seeds of the cases above (100 + index) stay as they were.
        (
            "lstm, skip, gain head, level input, 2 knobs",
            recurrent(Cell::Lstm, true, true),
            2,
        ),
        (
            "gru, skip, gain head, level input, 1 knob",
            recurrent(Cell::Gru, true, true),
            1,
        ),
    ]
}

/// Weights that by construction do not reach the output: in a WaveNet, the 1x1 after the
/// last layer of the last array (NAM computes it too, and stores it in its files).
fn unused_weights(network: &Network) -> Vec<String> {
    match network {
        Network::WaveNet(w) => {
            let i = w.arrays.len() - 1;
            let l = w.arrays[i].dilations.len() - 1;
            vec![
                format!("wavenet.{i}.layers.{l}.out.b"),
                format!("wavenet.{i}.layers.{l}.out.w"),
            ]
        }
        _ => Vec::new(),
    }
}

/// A tiny net with seeded weights, its inputs and the training loss on them.
struct Problem {
    net: TrainableNet,
    /// `[B, warmup + T]` (after the burn-in for recurrent nets).
    x: Tensor,
    knobs: Tensor,
    target: Tensor,
    loss: Loss,
    /// State after the burn-in, computed once with the initial weights and detached, as the
    /// training loop does; `None` for networks without recurrent state.
    state: Option<RecurrentState>,
}

impl Problem {
    fn new(network: &Network, knob_count: usize, seed: u64) -> Self {
        let dev = Device::Cpu;
        let net = TrainableNet::init(network, knob_count, seed, &dev).unwrap();
        // Zero-initialised tensors (FiLM's output layer, biases) get values so that every
        // gradient path is open, and the weights are enlarged into the curved range of the
        // activations.
        common::exercise_weights(&net, seed + 1, 0.4, 1.5);
        // S4D steps as init draws them (1e-4..0.1 samples) barely move the states within a
        // short segment; steps of 0.2..1 sample make the poles' gradients measurable.
        for (name, var) in &net.vars {
            if name.ends_with(".log_dt") {
                let n = var.as_tensor().elem_count();
                let dt: Vec<f32> = (0..n)
                    .map(|i| (0.2 + 0.8 * i as f32 / (n.max(2) - 1) as f32).ln())
                    .collect();
                var.set(&Tensor::from_vec(dt, var.as_tensor().dims(), &dev).unwrap())
                    .unwrap();
            }
        }
        let recurrent = net.zero_state(1).unwrap().is_some();
        let burn_in = if recurrent { BURN_IN_SAMPLES } else { 0 };
        let len = burn_in + net.warmup_samples() + SEGMENT_SAMPLES;
        let mut rng = Pcg64Mcg::seed_from_u64(seed + 2);
        let mut uniform = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(lo..hi)).collect()
        };
        let x = Tensor::from_vec(uniform(BATCH * len, -0.8, 0.8), (BATCH, len), &dev).unwrap();
        let knobs = Tensor::from_vec(
            uniform(BATCH * knob_count, 0.0, 1.0),
            (BATCH, knob_count),
            &dev,
        )
        .unwrap();
        let target = Tensor::from_vec(
            uniform(BATCH * SEGMENT_SAMPLES, -0.5, 0.5),
            (BATCH, SEGMENT_SAMPLES),
            &dev,
        )
        .unwrap();
        let loss = Loss::new(&LossConfig::default(), &dev).unwrap();

        // Burn-in: the state after it is a constant of the problem (detached), so finite
        // differences must not recompute it with the perturbed weights either.
        let (state, x) = if recurrent {
            let burn = x.narrow(1, 0, BURN_IN_SAMPLES).unwrap();
            let (_, s) = net.forward(&burn, &knobs, None).unwrap();
            let rest = x.dim(1).unwrap() - BURN_IN_SAMPLES;
            (
                s.map(|s| s.detach()),
                x.narrow(1, BURN_IN_SAMPLES, rest).unwrap(),
            )
        } else {
            (None, x)
        };
        Self {
            net,
            x,
            knobs,
            target,
            loss,
            state,
        }
    }

    /// The training loss as a differentiable scalar, computed as the training loop does.
    fn loss(&self) -> Tensor {
        let (pred, _) = self
            .net
            .forward(&self.x, &self.knobs, self.state.as_ref())
            .unwrap();
        assert_eq!(pred.dims(), self.target.dims(), "prediction shape");
        self.loss.compute(&pred, &self.target).unwrap().0
    }

    fn loss_f64(&self) -> f64 {
        self.loss().to_scalar::<f32>().unwrap() as f64
    }
}

/// Analytic and finite-difference gradient of one weight tensor.
struct TensorGrads {
    name: String,
    analytic: Vec<f64>,
    fd: Vec<f64>,
}

/// Elements that break `|g - fd| <= REL_TOL * max|fd| + ABS_TOL`, described.
fn violations(name: &str, analytic: &[f64], fd: &[f64]) -> Vec<String> {
    let scale = fd.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = REL_TOL * scale + ABS_TOL;
    analytic
        .iter()
        .zip(fd)
        .enumerate()
        .filter(|(_, (g, f))| (*g - *f).abs() > tol)
        .map(|(i, (g, f))| {
            format!(
                "{name}[{i}]: analytic {g:.6e} vs finite difference {f:.6e} (tolerance {tol:.1e})"
            )
        })
        .collect()
}

/// Backward-pass and finite-difference gradients of every weight of `problem`.
fn gradients(problem: &Problem) -> Vec<TensorGrads> {
    let grads = problem.loss().backward().unwrap();
    let mut out = Vec::new();
    for (name, var) in &problem.net.vars {
        let original = var.as_tensor().copy().unwrap();
        let base = original.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let analytic: Vec<f64> = match grads.get(var.as_tensor()) {
            Some(g) => g
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect(),
            // No gradient at all: the weight does not reach the loss, which the finite
            // differences below will contradict unless it truly does not.
            None => vec![0.0; base.len()],
        };
        let weight_scale = base.iter().fold(0.1f32, |m, v| m.max(v.abs()));
        let eps = EPS_RELATIVE * weight_scale;
        let mut fd = Vec::with_capacity(base.len());
        for i in 0..base.len() {
            let eval = |delta: f32| {
                let mut moved = base.clone();
                moved[i] += delta;
                var.set(&Tensor::from_vec(moved, original.dims(), &Device::Cpu).unwrap())
                    .unwrap();
                problem.loss_f64()
            };
            // Fourth-order central difference: the eps^2 truncation error of the plain
            // quotient cancels, which matters for the strongly curved S4D pole parameters.
            let d1 = eval(eps) - eval(-eps);
            let d2 = eval(2.0 * eps) - eval(-2.0 * eps);
            fd.push((8.0 * d1 - d2) / (12.0 * eps as f64));
        }
        var.set(&original).unwrap();
        out.push(TensorGrads {
            name: name.clone(),
            analytic,
            fd,
        });
    }
    out
}

#[test]
fn every_family_matches_finite_differences() {
    let mut failures = Vec::new();
    for (i, (label, network, knob_count)) in tiny_networks().into_iter().enumerate() {
        let problem = Problem::new(&network, knob_count, 100 + i as u64);
        let loss = problem.loss_f64();
        assert!(
            loss.is_finite() && loss > 1e-3,
            "{label}: loss {loss} is degenerate"
        );

        let grads = gradients(&problem);
        let unused = unused_weights(&network);
        assert_eq!(
            grads.len(),
            network.weight_shapes(knob_count).len(),
            "{label}: every weight is checked"
        );
        let mut worst = 0.0f64;
        for t in &grads {
            let scale = t.fd.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = t
                .analytic
                .iter()
                .zip(&t.fd)
                .map(|(g, f)| (g - f).abs())
                .fold(0.0, f64::max);
            worst = worst.max(err / (REL_TOL * scale + ABS_TOL));
            // Every weight must influence the loss, or its check proves nothing.
            if unused.contains(&t.name) {
                // NAM's structure: the last layer's 1x1 of the last array feeds nothing.
                assert!(
                    scale == 0.0 && t.analytic.iter().all(|&g| g == 0.0),
                    "{label}: {} should not reach the loss",
                    t.name
                );
                continue;
            }
            assert!(
                scale > 10.0 * ABS_TOL,
                "{label}: {} has a negligible gradient (max |fd| {scale:e}); the test \
                 instance does not exercise it",
                t.name
            );
            failures.extend(
                violations(&t.name, &t.analytic, &t.fd)
                    .into_iter()
                    .map(|v| format!("{label}: {v}")),
            );

            // The checker catches a sign error in the largest element and a 10 % scale error.
            let largest = (0..t.analytic.len())
                .max_by(|&a, &b| t.analytic[a].abs().total_cmp(&t.analytic[b].abs()))
                .unwrap();
            let mut flipped = t.analytic.clone();
            flipped[largest] = -flipped[largest];
            let scaled: Vec<f64> = t.analytic.iter().map(|g| g * 1.1).collect();
            for (what, wrong) in [("sign-flipped", flipped), ("scaled", scaled)] {
                assert!(
                    !violations(&t.name, &wrong, &t.fd).is_empty(),
                    "{label}: a {what} gradient of {} would pass the check",
                    t.name
                );
            }
        }
        println!(
            "{label}: {} weights in {} tensors, loss {loss:.4}, worst error {:.2} of tolerance",
            network.parameter_count(knob_count),
            grads.len(),
            worst
        );
    }
    assert!(
        failures.is_empty(),
        "gradient mismatches:\n{}",
        failures.join("\n")
    );
}
