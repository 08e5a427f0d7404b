//! Candle-vs-engine parity and finite-difference gradient checks for the WaveNet, state-space
//! and time-varying-FiLM networks.

use candle_core::{Device, Tensor};
use dsp::engine::Player;
use dsp::knob::{KnobSpec, Taper};
use dsp::model::{
    Activation, ConvBlockSpec, ConvNet, FilmSpec, LayerArraySpec, ModelFile, Network, SsmNet,
    TvFilmNet, WaveNetNet,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::TrainableNet;

/// Fresh weights, with the zero-initialised ones (FiLM outputs, read-out bias) replaced by
/// small seeded values so every path of the network is exercised.
pub(super) fn busy_net(network: &Network, knob_count: usize, seed: u64) -> TrainableNet {
    let net = TrainableNet::init(network, knob_count, seed, &Device::Cpu).unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x5eed);
    for var in net.vars.values() {
        let t = var.as_tensor();
        let data = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        if data.iter().all(|v| *v == 0.0) {
            let fresh: Vec<f32> = data.iter().map(|_| rng.random_range(-0.2..0.2)).collect();
            var.set(&Tensor::from_vec(fresh, t.dims(), t.device()).unwrap())
                .unwrap();
        }
    }
    net
}

/// A model file holding `net`'s weights with `knob_count` knobs of range 0..10.
pub(super) fn to_model(net: &TrainableNet) -> ModelFile {
    let knobs = (0..net.knob_count)
        .map(|i| KnobSpec {
            name: format!("knob{i}"),
            unit: "dB".into(),
            min: 0.0,
            max: 10.0,
            default: 5.0,
            taper: Taper::Linear,
        })
        .collect();
    ModelFile::new(
        "parity",
        48_000,
        knobs,
        net.network.clone(),
        net.to_weights().unwrap(),
    )
}

/// Largest |engine - candle| for one knob setting, with the engine fed in host blocks of
/// `block` samples. Candle sees the input after `warmup_samples()` zeros (the engine's history
/// after a reset), and the comparison starts once the receptive field holds only real input:
/// before that the engine's zero conv buffers differ from candle's outputs for zero input.
pub(super) fn parity_error(net: &TrainableNet, input: &[f32], knobs: &[f32], block: usize) -> f32 {
    let model = to_model(net);
    let mut player = Player::new(&model, 512).unwrap();
    player.set_knobs_normalized(knobs);
    player.reset();
    let mut engine = vec![0.0; input.len()];
    for (i, o) in input.chunks(block).zip(engine.chunks_mut(block)) {
        player.process(i, o);
    }
    let warmup = net.warmup_samples();
    let padded: Vec<f32> = std::iter::repeat_n(0.0, warmup)
        .chain(input.iter().copied())
        .collect();
    let x = Tensor::from_vec(padded, (1, warmup + input.len()), &Device::Cpu).unwrap();
    let k = Tensor::from_slice(knobs, (1, knobs.len()), &Device::Cpu).unwrap();
    let (y, _) = net.forward(&x, &k, None).unwrap();
    let y = y.squeeze(0).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(y.len(), input.len());
    y[warmup..]
        .iter()
        .zip(&engine[warmup..])
        .map(|(a, b)| (a - b).abs())
        // Not f32::max, which would drop a NaN: a non-finite output on either side fails.
        .fold(
            0.0,
            |worst, e| if e > worst || e.is_nan() { e } else { worst },
        )
}

/// Checks candle's gradient of `Σ_t w_t y_t` (seeded `w`) against central differences of the
/// same f32 forward, for up to `per_var` seeded elements of every variable. Differences
/// of f32 losses with step `h` carry a rounding error of about `1e-7 Σ|w_t y_t| / h` and a
/// truncation error of order `h²`, so the tolerance is `2e-3 |fd| + 1e-6 (1 + Σ|w_t y_t|) / h`.
pub(super) fn check_gradients(net: &TrainableNet, x: &Tensor, knobs: &Tensor, per_var: usize) {
    let loss_of = |net: &TrainableNet| -> (Tensor, f64) {
        let (y, _) = net.forward(x, knobs, None).unwrap();
        let n = y.dim(1).unwrap();
        let w: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let w = Tensor::from_vec(w, n, x.device()).unwrap();
        let weighted = y.broadcast_mul(&w).unwrap();
        let mag = weighted
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        (weighted.sum_all().unwrap(), f64::from(mag))
    };
    let (loss, mag) = loss_of(net);
    let grads = loss.backward().unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(99);
    let h = 1e-2f32;
    let mut checked = 0;
    for (name, var) in &net.vars {
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // A weight the loss does not reach (NAM's last 1x1, say) has no gradient: zero, which
        // the central differences must confirm.
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            None => vec![0.0; base.len()],
        };
        for _ in 0..per_var.min(base.len()) {
            let i = rng.random_range(0..base.len());
            let at = |delta: f32| -> f64 {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.dims(), var.device()).unwrap())
                    .unwrap();
                let l = loss_of(net).0.to_scalar::<f32>().unwrap();
                f64::from(l)
            };
            let fd = (at(h) - at(-h)) / (2.0 * f64::from(h));
            var.set(&Tensor::from_vec(base.clone(), var.dims(), var.device()).unwrap())
                .unwrap();
            let tol = 2e-3 * fd.abs() + 1e-6 * (1.0 + mag) / f64::from(h);
            let err = (f64::from(g[i]) - fd).abs();
            if std::env::var_os("FXTWIN_GRAD_REPORT").is_some() {
                eprintln!("{name}[{i}]: g {} fd {fd} err/tol {:.3}", g[i], err / tol);
            }
            assert!(
                err <= tol,
                "{name}[{i}]: analytic {} vs central difference {fd} (tolerance {tol})",
                g[i]
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

fn small_wavenet(activation: Activation) -> Network {
    Network::WaveNet(WaveNetNet {
        arrays: vec![
            LayerArraySpec {
                channels: 4,
                kernel_size: 3,
                dilations: vec![1, 2, 4, 8],
                activation,
                head_bias: false,
            },
            LayerArraySpec {
                channels: 3,
                kernel_size: 2,
                dilations: vec![1, 16],
                activation,
                head_bias: true,
            },
        ],
        head_scale: 0.3,
    })
}

fn music(seconds: f64, seed: u64) -> Vec<f32> {
    dsp::stimulus::music(48_000, (seconds * 48_000.0) as usize, seed, -3.0)
}

#[test]
fn wavenet_candle_matches_engine_on_music() {
    let input = music(3.0, 1);
    for activation in [Activation::Tanh, Activation::Gated] {
        let net = busy_net(&small_wavenet(activation), 2, 4);
        for knobs in [[0.1, 0.8], [0.9, 0.3]] {
            let err = parity_error(&net, &input, &knobs, 512);
            assert!(
                err <= 1e-5,
                "{activation:?} knobs {knobs:?}: max error {err}"
            );
        }
    }
}

#[test]
fn wavenet_lite_preset_matches_engine() {
    let input = music(1.0, 2);
    let preset = crate::presets::find("wavenet-lite").unwrap();
    let net = busy_net(&preset.network, 1, 5);
    for knobs in [[0.0], [1.0]] {
        let err = parity_error(&net, &input, &knobs, 333);
        assert!(err <= 1e-5, "knobs {knobs:?}: max error {err}");
    }
}

#[test]
fn wavenet_gradients_match_finite_differences() {
    let network = Network::WaveNet(WaveNetNet {
        arrays: vec![
            LayerArraySpec {
                channels: 2,
                kernel_size: 2,
                dilations: vec![1, 2],
                activation: Activation::Gated,
                head_bias: false,
            },
            LayerArraySpec {
                channels: 2,
                kernel_size: 3,
                dilations: vec![1],
                activation: Activation::Tanh,
                head_bias: true,
            },
        ],
        head_scale: 0.7,
    });
    let net = busy_net(&network, 1, 8);
    let x = Tensor::from_vec(music(0.002, 3), (1, 96), &Device::Cpu).unwrap();
    let k = Tensor::new(&[[0.4f32]], &Device::Cpu).unwrap();
    check_gradients(&net, &x, &k, 3);
}

fn small_ssm(film: bool) -> Network {
    Network::Ssm(SsmNet {
        channels: 4,
        state_size: 3,
        blocks: 2,
        film: film.then_some(FilmSpec { hidden_size: 4 }),
        skip: true,
    })
}

#[test]
fn ssm_candle_matches_engine_on_music() {
    let input = music(3.0, 6);
    let net = busy_net(&small_ssm(true), 2, 9);
    for knobs in [[0.2, 0.7], [1.0, 0.0]] {
        let err = parity_error(&net, &input, &knobs, 256);
        assert!(err <= 1e-5, "knobs {knobs:?}: max error {err}");
    }
}

#[test]
fn ssm_with_poles_below_the_decay_floor_matches_engine_and_stays_finite() {
    // Training can push a pole's log decay rate far below anything f32 can exponentiate;
    // both sides floor it the same way and the real pole becomes an integrator.
    let input = music(1.0, 16);
    let net = busy_net(&small_ssm(true), 2, 17);
    for (name, var) in &net.vars {
        if name.ends_with("log_a_re") {
            let t = var.as_tensor();
            let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            values[0] = -120.0;
            values[1] = dsp::model::LOG_A_RE_MIN - 5.0;
            var.set(&Tensor::from_vec(values, t.dims(), t.device()).unwrap())
                .unwrap();
        }
        if name.ends_with("a_im") {
            // The first state of every block: no imaginary part, the 0 / 0 case.
            let t = var.as_tensor();
            let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            values[0] = 0.0;
            var.set(&Tensor::from_vec(values, t.dims(), t.device()).unwrap())
                .unwrap();
        }
    }
    let err = parity_error(&net, &input, &[0.4, 0.6], 256);
    assert!(err.is_finite() && err <= 1e-5, "max error {err}");
}

#[test]
fn ssm_preset_matches_engine() {
    let input = music(1.0, 7);
    let preset = crate::presets::find("s4-4x16").unwrap();
    let net = busy_net(&preset.network, 2, 10);
    for knobs in [[0.3, 0.3], [0.9, 0.6]] {
        let err = parity_error(&net, &input, &knobs, 480);
        assert!(err <= 1e-5, "knobs {knobs:?}: max error {err}");
    }
}

#[test]
fn ssm_state_carries_across_segments() {
    // Two segments with the state handed over equal one long run.
    let net = busy_net(&small_ssm(true), 1, 11);
    let input = music(0.1, 8);
    let dev = Device::Cpu;
    let x = Tensor::from_slice(&input, (1, input.len()), &dev).unwrap();
    let k = Tensor::new(&[[0.5f32]], &dev).unwrap();
    let (whole, _) = net.forward(&x, &k, None).unwrap();
    let cut = 1_000;
    let (a, s) = net
        .forward(&x.narrow(1, 0, cut).unwrap(), &k, None)
        .unwrap();
    let rest = x.narrow(1, cut, input.len() - cut).unwrap();
    let (b, _) = net.forward(&rest, &k, s.as_ref()).unwrap();
    let joined = Tensor::cat(&[a, b], 1).unwrap();
    let err = (whole - joined)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(err <= 1e-6, "segmented run differs by {err}");
}

#[test]
fn ssm_gradients_match_finite_differences() {
    let net = busy_net(&small_ssm(true), 2, 12);
    let x = Tensor::from_vec(music(0.002, 9), (1, 96), &Device::Cpu).unwrap();
    let k = Tensor::new(&[[0.4f32, 0.8]], &Device::Cpu).unwrap();
    check_gradients(&net, &x, &k, 3);
}

fn time_varying(inner: Network, block_samples: usize) -> Network {
    Network::TimeVarying(TvFilmNet {
        block_samples,
        hidden_size: 5,
        inner: Box::new(inner),
    })
}

fn small_conv(activation: Activation) -> Network {
    Network::Conv(ConvNet {
        channels: 3,
        activation,
        blocks: [1, 3, 9]
            .iter()
            .map(|&dilation| ConvBlockSpec {
                kernel_size: 3,
                dilation,
            })
            .collect(),
        film: Some(FilmSpec { hidden_size: 4 }),
        skip: false,
    })
}

#[test]
fn time_varying_candle_matches_engine_on_music() {
    let input = music(3.0, 11);
    for (name, network) in [
        ("tcn-tv", time_varying(small_conv(Activation::Tanh), 128)),
        ("gcn-tv", time_varying(small_conv(Activation::Gated), 100)),
        ("ssm-tv", time_varying(small_ssm(true), 128)),
    ] {
        let net = busy_net(&network, 2, 13);
        for knobs in [[0.25, 0.5], [0.75, 1.0]] {
            // Host blocks of 77 samples straddle the controller's blocks.
            let err = parity_error(&net, &input, &knobs, 77);
            assert!(err <= 1e-5, "{name} knobs {knobs:?}: max error {err}");
        }
    }
}

#[test]
fn time_varying_presets_match_engine() {
    let input = music(1.0, 12);
    for name in ["tcn-45-tv", "s4-4x16-tv"] {
        let net = busy_net(&crate::presets::find(name).unwrap().network, 2, 14);
        let err = parity_error(&net, &input, &[0.6, 0.2], 512);
        assert!(err <= 1e-5, "{name}: max error {err}");
    }
}

#[test]
fn time_varying_ssm_state_carries_across_whole_blocks() {
    // A burn-in of whole controller blocks hands over SSM and controller state exactly.
    let net = busy_net(&time_varying(small_ssm(true), 64), 1, 15);
    let input = music(0.1, 13);
    let dev = Device::Cpu;
    let x = Tensor::from_slice(&input, (1, input.len()), &dev).unwrap();
    let k = Tensor::new(&[[0.3f32]], &dev).unwrap();
    let (whole, _) = net.forward(&x, &k, None).unwrap();
    let cut = 64 * 15;
    let (a, s) = net
        .forward(&x.narrow(1, 0, cut).unwrap(), &k, None)
        .unwrap();
    let rest = x.narrow(1, cut, input.len() - cut).unwrap();
    let (b, _) = net.forward(&rest, &k, s.as_ref()).unwrap();
    let joined = Tensor::cat(&[a, b], 1).unwrap();
    let err = (whole - joined)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(err <= 1e-6, "segmented run differs by {err}");
}

#[test]
fn time_varying_gradients_match_finite_differences() {
    let x = Tensor::from_vec(music(0.004, 14), (1, 192), &Device::Cpu).unwrap();
    let k = Tensor::new(&[[0.4f32, 0.8]], &Device::Cpu).unwrap();
    for network in [
        time_varying(small_conv(Activation::Gated), 16),
        time_varying(small_ssm(true), 16),
    ] {
        let net = busy_net(&network, 2, 16);
        check_gradients(&net, &x, &k, 2);
    }
}

#[test]
fn training_steps_reduce_the_error() {
    // The train loop's sequence (burn-in without gradients for networks with unbounded
    // memory, then a segment after the warm-up) with TrainConfig's learning rate must fit a
    // knob-controlled drive: 60 AdamW steps at least halve the error-to-signal ratio.
    use crate::optim::{AdamW, AdamWParams};
    use crate::train::TrainConfig;
    let dev = Device::Cpu;
    for (name, network) in [
        ("wavenet", small_wavenet(Activation::Tanh)),
        ("ssm", small_ssm(true)),
        ("tcn-tv", time_varying(small_conv(Activation::Tanh), 64)),
        ("ssm-tv", time_varying(small_ssm(true), 64)),
    ] {
        let cfg = TrainConfig::new(name, network.clone());
        assert_eq!(
            cfg.burn_in_samples % 128,
            0,
            "{name}: burn-in cuts a controller block"
        );
        let net = TrainableNet::init(&network, 1, 21, &dev).unwrap();
        let (warmup, burn_in, segment) = (net.warmup_samples(), cfg.burn_in_samples, 1024);
        let len = warmup + burn_in + segment;
        let clip = music(2.0 * len as f64 / 48_000.0, 15);
        let (dry, knob_values) = (vec![&clip[..len], &clip[len..2 * len]], [0.0f32, 1.0]);
        let x: Vec<f32> = dry.concat();
        let y: Vec<f32> = dry
            .iter()
            .zip(knob_values)
            .flat_map(|(d, k)| d.iter().map(move |&v| (v * (1.0 + 4.0 * k)).tanh() * 0.5))
            .collect();
        let x = Tensor::from_vec(x, (2, len), &dev).unwrap();
        let y = Tensor::from_vec(y, (2, len), &dev).unwrap();
        let target = y.narrow(1, len - segment, segment).unwrap();
        let k = Tensor::new(&[[0.0f32], [1.0]], &dev).unwrap();
        let mut opt = AdamW::new(
            net.all_vars(),
            AdamWParams {
                learning_rate: cfg.learning_rate,
                ..Default::default()
            },
        )
        .unwrap();
        let esr = |pred: &Tensor| -> Tensor {
            let err = (pred - &target).unwrap().sqr().unwrap().sum_all().unwrap();
            (err / target
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64)
                .unwrap()
        };
        let mut losses = Vec::new();
        for _ in 0..60 {
            let state = if burn_in > 0 {
                let (_, s) = net
                    .forward(&x.narrow(1, 0, burn_in).unwrap(), &k, None)
                    .unwrap();
                s.map(|s| s.detach())
            } else {
                None
            };
            let xs = x.narrow(1, burn_in, len - burn_in).unwrap();
            let (pred, _) = net.forward(&xs, &k, state.as_ref()).unwrap();
            let loss = esr(&pred);
            losses.push(loss.to_scalar::<f32>().unwrap());
            opt.update(&loss.backward().unwrap(), 1.0).unwrap();
        }
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(last < 0.5 * first, "{name}: ESR {first} -> {last}");
    }
}
