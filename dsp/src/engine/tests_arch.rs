//! Engine tests for the WaveNet, state-space and time-varying-FiLM architectures.

use super::*;
use crate::model::tests::{random_model, TestRng};

/// The exact logistic function, for references written independently of the kernels.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
use crate::model::{
    Activation, ConvBlockSpec, ConvNet, FilmSpec, LayerArraySpec, SsmNet, TvFilmNet, WaveNetNet,
};

fn music_like(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = TestRng::new(seed);
    (0..len)
        .map(|i| {
            let t = i as f32 / 48_000.0;
            0.5 * (2.0 * std::f32::consts::PI * 220.0 * t).sin() * (1.0 + (3.0 * t).sin()) / 2.0
                + 0.05 * rng.uniform(1.0)
        })
        .collect()
}

fn render(player: &mut Player, input: &[f32], block: usize) -> Vec<f32> {
    let mut out = vec![0.0; input.len()];
    for (i, o) in input.chunks(block).zip(out.chunks_mut(block)) {
        player.process(i, o);
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A small two-array WaveNet: 3 channels then 2, kernel 3 then 2.
pub(crate) fn small_wavenet(activation: Activation) -> Network {
    Network::WaveNet(WaveNetNet {
        arrays: vec![
            LayerArraySpec {
                channels: 3,
                kernel_size: 3,
                dilations: vec![1, 2, 4],
                activation,
                head_bias: false,
            },
            LayerArraySpec {
                channels: 2,
                kernel_size: 2,
                dilations: vec![1, 3],
                activation,
                head_bias: true,
            },
        ],
        head_scale: 0.5,
    })
}

/// A small state-space network: 3 channels, 4 states, 2 blocks, FiLM, input skip.
pub(crate) fn small_ssm() -> Network {
    Network::Ssm(SsmNet {
        channels: 3,
        state_size: 4,
        blocks: 2,
        film: Some(FilmSpec { hidden_size: 5 }),
        skip: true,
    })
}

/// The networks of this file, for the shared checks.
pub(super) fn networks() -> Vec<(&'static str, Network)> {
    vec![
        ("wavenet-tanh", small_wavenet(Activation::Tanh)),
        ("wavenet-gated", small_wavenet(Activation::Gated)),
        ("ssm", small_ssm()),
        ("tcn-tv", time_varying(small_tcn(), 16)),
        ("ssm-tv", time_varying(small_ssm(), 10)),
    ]
}

/// A small TCN: 3 channels, kernel 3, dilations 1, 2, 4, FiLM.
pub(crate) fn small_tcn() -> Network {
    Network::Conv(ConvNet {
        channels: 3,
        activation: Activation::Tanh,
        blocks: [1, 2, 4]
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

/// `inner` under a time-varying FiLM controller of 5 hidden units.
pub(crate) fn time_varying(inner: Network, block_samples: usize) -> Network {
    Network::TimeVarying(TvFilmNet {
        block_samples,
        hidden_size: 5,
        inner: Box::new(inner),
    })
}

#[test]
fn block_size_does_not_change_output() {
    let input = music_like(10_000, 7);
    for (name, net) in networks() {
        let model = random_model(net, 2, 11);
        let mut player = Player::new(&model, 4096).unwrap();
        let reference = render(&mut player, &input, 4096);
        for block in [1, 7, 64] {
            let mut player = Player::new(&model, 4096).unwrap();
            let out = render(&mut player, &input, block);
            let err = max_abs_diff(&reference, &out);
            assert!(err <= 1e-6, "{name}: block {block} differs by {err}");
        }
    }
}

#[test]
fn process_does_not_depend_on_max_block() {
    // The prepared size only bounds the chunks: 64 and 8192 give the same output.
    let input = music_like(5_000, 8);
    for (name, net) in networks() {
        let model = random_model(net, 1, 12);
        let a = render(&mut Player::new(&model, 64).unwrap(), &input, 1000);
        let b = render(&mut Player::new(&model, 8192).unwrap(), &input, 1000);
        let err = max_abs_diff(&a, &b);
        assert!(err <= 1e-6, "{name}: differs by {err}");
    }
}

/// WaveNet written out directly from the formulas in [`WaveNetNet`]'s docs, over the whole
/// signal at once, as a check on the streaming kernel's bookkeeping.
fn wavenet_reference(model: &ModelFile, net: &WaveNetNet, knobs: &[f32], x: &[f32]) -> Vec<f32> {
    let w = |name: String| model.weight(&name).data.clone();
    let len = x.len();
    let past = |sig: &[f32], t: usize, back: usize| if back > t { 0.0 } else { sig[t - back] };
    let cond: Vec<f32> = std::iter::once(1.0).chain(knobs.iter().copied()).collect();
    // input: [P][T]; head: [C][T] from the previous array.
    let mut input: Vec<Vec<f32>> = vec![x.to_vec()];
    let mut head_prev: Option<Vec<Vec<f32>>> = None;
    for (i, a) in net.arrays.iter().enumerate() {
        let c = a.channels;
        let m = a.activation.conv_multiplier();
        let p = input.len();
        let rw = w(format!("wavenet.{i}.rechannel.w"));
        let mut z: Vec<Vec<f32>> = (0..c)
            .map(|ch| {
                (0..len)
                    .map(|t| (0..p).map(|q| rw[ch * p + q] * input[q][t]).sum())
                    .collect()
            })
            .collect();
        let mut head = head_prev.take().unwrap_or_else(|| vec![vec![0.0; len]; c]);
        for (l, &d) in a.dilations.iter().enumerate() {
            let pre = format!("wavenet.{i}.layers.{l}");
            let (cw, cb) = (w(format!("{pre}.conv.w")), w(format!("{pre}.conv.b")));
            let mw = w(format!("{pre}.mixin.w"));
            let (ow, ob) = (w(format!("{pre}.out.w")), w(format!("{pre}.out.b")));
            let k = a.kernel_size;
            let kc = cond.len();
            let mut act = vec![vec![0.0f32; len]; c];
            for t in 0..len {
                let pre_act: Vec<f32> = (0..m * c)
                    .map(|o| {
                        let mut v = cb[o];
                        for ci in 0..c {
                            for tap in 0..k {
                                v +=
                                    cw[(o * c + ci) * k + tap] * past(&z[ci], t, (k - 1 - tap) * d);
                            }
                        }
                        v += mw[o * kc] * x[t];
                        v + (1..kc).map(|j| mw[o * kc + j] * cond[j]).sum::<f32>()
                    })
                    .collect();
                for ch in 0..c {
                    act[ch][t] = match a.activation {
                        Activation::Tanh => pre_act[ch].tanh(),
                        Activation::Gated => pre_act[ch].tanh() * sigmoid(pre_act[c + ch]),
                    };
                    head[ch][t] += act[ch][t];
                }
            }
            z = (0..c)
                .map(|ch| {
                    (0..len)
                        .map(|t| {
                            z[ch][t]
                                + ob[ch]
                                + (0..c).map(|j| ow[ch * c + j] * act[j][t]).sum::<f32>()
                        })
                        .collect()
                })
                .collect();
        }
        let hw = w(format!("wavenet.{i}.head.w"));
        let hb = if a.head_bias {
            w(format!("wavenet.{i}.head.b"))
        } else {
            vec![0.0; net.head_size(i)]
        };
        head_prev = Some(
            (0..net.head_size(i))
                .map(|h| {
                    (0..len)
                        .map(|t| hb[h] + (0..c).map(|ch| hw[h * c + ch] * head[ch][t]).sum::<f32>())
                        .collect()
                })
                .collect(),
        );
        input = z;
    }
    let out = head_prev.expect("at least one array");
    out[0].iter().map(|v| net.head_scale * v).collect()
}

#[test]
fn wavenet_kernel_matches_direct_formulas() {
    let input = music_like(600, 3);
    for (name, net) in networks() {
        let model = random_model(net.clone(), 2, 5);
        let Network::WaveNet(spec) = &net else {
            continue;
        };
        let mut player = Player::new(&model, 128).unwrap();
        player.set_knobs_normalized(&[0.2, 0.9]);
        player.reset();
        let out = render(&mut player, &input, 100);
        // After a reset the player behaves as if the input had always been silent, so the
        // reference (which starts every layer from zero) runs over a silent receptive field
        // first and its output there is dropped.
        let rf = model.network.receptive_field_samples().unwrap();
        let padded: Vec<f32> = std::iter::repeat_n(0.0, rf)
            .chain(input.iter().copied())
            .collect();
        let expected = wavenet_reference(&model, spec, &[0.2, 0.9], &padded)[rf..].to_vec();
        let err = max_abs_diff(&out, &expected);
        assert!(
            err <= 1e-5,
            "{name}: kernel vs direct formulas differ by {err}"
        );
    }
}

#[test]
fn wavenet_output_depends_only_on_its_receptive_field() {
    // Changing one input sample at t0 may move outputs t0..t0+RF-1 and nothing else.
    let net = small_wavenet(Activation::Tanh);
    let rf = net.receptive_field_samples().unwrap();
    assert_eq!(rf, 1 + 2 * 7 + 4);
    let model = random_model(net, 1, 9);
    let input = music_like(200, 4);
    let mut bumped = input.clone();
    let t0 = 80;
    bumped[t0] += 0.3;
    let a = render(&mut Player::new(&model, 64).unwrap(), &input, 64);
    let b = render(&mut Player::new(&model, 64).unwrap(), &bumped, 64);
    for t in 0..input.len() {
        let moved = (a[t] - b[t]).abs() > 0.0;
        let inside = (t0..t0 + rf).contains(&t);
        assert!(
            !moved || inside,
            "output {t} moved, outside {t0}..{}",
            t0 + rf
        );
    }
    assert!(
        (a[t0] - b[t0]).abs() > 1e-6,
        "the bumped sample itself had no effect"
    );
    assert!(
        (a[t0 + rf - 1] - b[t0 + rf - 1]).abs() > 1e-9,
        "the receptive field is shorter than its stated length"
    );
}

#[test]
fn wavenet_knobs_move_the_output() {
    let model = random_model(small_wavenet(Activation::Tanh), 2, 21);
    let input = music_like(2_000, 5);
    let mut p = Player::new(&model, 512).unwrap();
    p.set_knobs_normalized(&[0.0, 0.0]);
    p.reset();
    let lo = render(&mut p, &input, 512);
    p.set_knobs_normalized(&[1.0, 1.0]);
    p.reset();
    let hi = render(&mut p, &input, 512);
    let err = max_abs_diff(&lo, &hi);
    assert!(err > 1e-3, "knobs changed the output by only {err}");
}

/// One SSM block, one channel, one state, no FiLM: a first-order complex filter whose output
/// must follow the recurrence written out by hand.
#[test]
fn ssm_kernel_matches_hand_written_recurrence() {
    let net = Network::Ssm(SsmNet {
        channels: 1,
        state_size: 1,
        blocks: 1,
        film: None,
        skip: false,
    });
    let model = random_model(net, 0, 31);
    let w = |n: &str| model.weight(n).data[0];
    let disc = crate::model::discretize(
        &model.weight("blocks.0.log_dt").data,
        &model.weight("blocks.0.log_a_re").data,
        &model.weight("blocks.0.a_im").data,
    );
    let input = music_like(500, 6);
    let out = render(&mut Player::new(&model, 64).unwrap(), &input, 37);
    let (mut sr, mut si) = (0.0f64, 0.0f64);
    let (ar, ai) = (f64::from(disc.a_re[0]), f64::from(disc.a_im[0]));
    let (br, bi) = (f64::from(disc.b_re[0]), f64::from(disc.b_im[0]));
    for (t, &x) in input.iter().enumerate() {
        let u = f64::from(w("input.w") * x + w("input.b"));
        (sr, si) = (ar * sr - ai * si + br * u, ar * si + ai * sr + bi * u);
        let y = f64::from(w("blocks.0.c_re")) * sr - f64::from(w("blocks.0.c_im")) * si
            + f64::from(w("blocks.0.d")) * u;
        let h = u + f64::from(w("blocks.0.mix.w")) * y.tanh() + f64::from(w("blocks.0.mix.b"));
        let expected = f64::from(w("head.w")) * h + f64::from(w("head.b"));
        assert!(
            (f64::from(out[t]) - expected).abs() < 1e-5,
            "t={t}: {} vs {expected}",
            out[t]
        );
    }
}

#[test]
fn ssm_impulse_response_decays() {
    // Every pole lies inside the unit circle by construction (Re A < 0), so the response to
    // an impulse in silence dies away: the last 100 ms hold less than 1e-3 of the energy.
    let model = random_model(small_ssm(), 1, 33);
    let mut impulse = vec![0.0f32; 48_000];
    impulse[0] = 1.0;
    let mut silent = Player::new(&model, 1024).unwrap();
    let rest = render(&mut silent, &vec![0.0; 48_000], 1024);
    let out = render(&mut Player::new(&model, 1024).unwrap(), &impulse, 1024);
    let diff: Vec<f64> = out
        .iter()
        .zip(&rest)
        .map(|(a, b)| f64::from(a - b))
        .collect();
    let total: f64 = diff.iter().map(|v| v * v).sum();
    let tail: f64 = diff[43_200..].iter().map(|v| v * v).sum();
    assert!(total > 1e-6, "no response at all ({total})");
    assert!(tail < 1e-3 * total, "tail energy {tail} of {total}");
}

#[test]
fn time_varying_film_follows_the_input_level_one_block_late() {
    // A loud burst in otherwise quiet input changes the modulation only from the first block
    // boundary after the burst started: before it, the output equals a run without the burst
    // everywhere the conv's receptive field does not reach the burst.
    let net = time_varying(small_tcn(), 64);
    let model = random_model(net, 1, 41);
    let quiet = music_like(1024, 10)
        .iter()
        .map(|v| 0.01 * v)
        .collect::<Vec<_>>();
    let mut loud = quiet.clone();
    let burst_at = 290; // inside controller block 4 (samples 256..320)
    for v in &mut loud[burst_at..burst_at + 5] {
        *v = 0.9;
    }
    let a = render(&mut Player::new(&model, 1024).unwrap(), &quiet, 1024);
    let b = render(&mut Player::new(&model, 1024).unwrap(), &loud, 1024);
    let rf = small_tcn().receptive_field_samples().unwrap();
    assert!(
        burst_at + 5 + rf < 320,
        "test layout: the conv must forget the burst first"
    );
    // Once the conv's receptive field has passed the burst and before the controller has
    // seen it (its next step is at 320): identical output.
    for t in (burst_at + 5 + rf)..320 {
        assert_eq!(a[t], b[t], "output {t} moved before the controller step");
    }
    // Block 5 (320..384) is modulated from the controller state that read block 4's level.
    let moved = (320..384).map(|t| (a[t] - b[t]).abs()).fold(0.0, f32::max);
    assert!(
        moved > 1e-4,
        "the level burst did not change the modulation ({moved})"
    );
}

#[test]
fn time_varying_controller_needs_a_conv_or_ssm() {
    let mut model = random_model(small_tcn(), 1, 42);
    model.network = time_varying(small_wavenet(Activation::Tanh), 32);
    let err = model.validate().unwrap_err().to_string();
    assert!(err.contains("can modulate a conv or ssm network"), "{err}");
}

#[test]
fn networks_round_trip_through_json_with_their_type_tags() {
    for (name, net) in networks() {
        let model = random_model(net, 2, 50);
        let text = model.to_json();
        let back = ModelFile::from_json(&text, std::path::Path::new("m.fxtwin.json")).unwrap();
        assert_eq!(back, model, "{name}");
        let tag = match &model.network {
            Network::WaveNet(_) => "\"type\":\"wavenet\"",
            Network::Ssm(_) => "\"type\":\"ssm\"",
            Network::TimeVarying(_) => "\"type\":\"time_varying\"",
            _ => unreachable!("only this file's networks"),
        };
        assert!(text.contains(tag), "{name}: no {tag}");
    }
}
