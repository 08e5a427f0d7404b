use super::simd::VectorKernel;
use super::Isa;
use super::*;
use crate::model::tests::{lstm, random_model, TestRng};
use crate::model::{Activation, Cell, ConvBlockSpec, ConvNet, FilmSpec, RecurrentNet};

pub(super) fn networks() -> Vec<(&'static str, Network)> {
    let conv = |activation| {
        Network::Conv(ConvNet {
            channels: 4,
            activation,
            blocks: [1, 3, 9]
                .iter()
                .map(|&d| ConvBlockSpec {
                    kernel_size: 3,
                    dilation: d,
                })
                .collect(),
            film: Some(FilmSpec { hidden_size: 5 }),
            skip: true,
        })
    };
    vec![
        ("lstm", lstm(6)),
        (
            "gru",
            Network::Recurrent(RecurrentNet {
                cell: Cell::Gru,
                hidden_size: 6,
                skip: false,
                gain_head: false,
                level_inputs: Vec::new(),
            }),
        ),
        (
            "lstm with gain head",
            Network::Recurrent(RecurrentNet {
                cell: Cell::Lstm,
                hidden_size: 5,
                skip: true,
                gain_head: true,
                level_inputs: vec![6.0, 60.0],
            }),
        ),
        ("tcn", conv(Activation::Tanh)),
        ("gcn", conv(Activation::Gated)),
    ]
}

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

#[test]
fn block_size_does_not_change_output() {
    let input = music_like(10_000, 7);
    for (name, net) in networks() {
        let model = random_model(net, 2, 11);
        let mut reference = None;
        for block in [1, 7, 64, 4096] {
            let mut player = Player::new(&model, 4096).unwrap();
            let out = render(&mut player, &input, block);
            match &reference {
                None => reference = Some(out),
                Some(r) => {
                    let err = r
                        .iter()
                        .zip(&out)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    assert!(err <= 1e-6, "{name}: block {block} differs by {err}");
                }
            }
        }
    }
}

#[test]
fn conv_kernel_matches_direct_convolution() {
    // One TCN block, one channel, no skip: y[t] = hw * (tanh(sum_j w_j x[t-(k-1-j)d] + b) + r x[t]) + hb.
    let net = Network::Conv(ConvNet {
        channels: 1,
        activation: Activation::Tanh,
        blocks: vec![ConvBlockSpec {
            kernel_size: 3,
            dilation: 5,
        }],
        film: None,
        skip: false,
    });
    let model = random_model(net, 0, 5);
    let w = &model.weight("blocks.0.conv.w").data;
    let b = model.weight("blocks.0.conv.b").data[0];
    let r = model.weight("blocks.0.res.w").data[0];
    let (hw, hb) = (
        model.weight("head.w").data[0],
        model.weight("head.b").data[0],
    );
    let input = music_like(300, 3);
    let mut player = Player::new(&model, 64).unwrap();
    let out = render(&mut player, &input, 50);
    for t in 0..input.len() {
        let x = |i: isize| if i < 0 { 0.0 } else { input[i as usize] };
        let ti = t as isize;
        let z = b + w[0] * x(ti - 10) + w[1] * x(ti - 5) + w[2] * x(ti);
        let expected = hw * (z.tanh() + r * input[t]) + hb;
        assert!((out[t] - expected).abs() < 1e-6, "t={t}");
    }
}

#[test]
fn nan_input_does_not_poison_state() {
    let input = music_like(2048, 9);
    for (name, net) in networks() {
        let model = random_model(net, 2, 13);
        let mut clean = Player::new(&model, 512).unwrap();
        let mut hit = Player::new(&model, 512).unwrap();
        let mut poisoned = input.clone();
        poisoned[100] = f32::NAN;
        poisoned[101] = f32::INFINITY;
        let a = render(&mut clean, &input, 512);
        let b = render(&mut hit, &poisoned, 512);
        assert!(b.iter().all(|v| v.is_finite()), "{name}: non-finite output");
        // Non-finite samples count as silence, so the models differ only by that short gap
        // and recover: the last block's output must be close to the clean run.
        let tail_err = a[1536..]
            .iter()
            .zip(&b[1536..])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            tail_err < 0.5,
            "{name}: still off by {tail_err} a block later"
        );
    }
}

#[test]
fn knob_change_glides_without_steps() {
    // An LSTM with a skip path: a knob jump must not cause an output step larger than the
    // signal's own sample-to-sample motion plus a small margin.
    let model = random_model(lstm(6), 1, 21);
    let mut player = Player::new(&model, 256).unwrap();
    let input = vec![0.1f32; 9600];
    let mut out = vec![0.0; 9600];
    player.set_knob_values(&[0.0]).unwrap();
    player.reset();
    player.process(&input[..4800], &mut out[..4800]);
    player.set_knob_values(&[10.0]).unwrap();
    player.process(&input[4800..], &mut out[4800..]);
    let max_step = out[4700..]
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max);
    let total_move = (out[9599] - out[4799]).abs();
    assert!(total_move > 0.01, "knob had no effect ({total_move})");
    assert!(
        max_step < total_move / 20.0,
        "step {max_step} vs move {total_move}"
    );
}

#[test]
fn knob_out_of_range_is_refused() {
    let model = random_model(lstm(4), 1, 2);
    let mut player = Player::new(&model, 64).unwrap();
    let err = player.set_knob_values(&[11.0]).unwrap_err();
    assert!(err.to_string().contains("knob0"));
}

#[test]
fn recurrent_vector_paths_match_the_scalar_path() {
    use super::recurrent::RecurrentKernel;
    // Hidden sizes that fill whole register blocks and ones that leave padding (GRU-8 has 24
    // gate rows, LSTM-5 20), with and without level inputs and gain head.
    let recurrent = |cell, hidden_size, gain_head: bool| {
        Network::Recurrent(RecurrentNet {
            cell,
            hidden_size,
            skip: true,
            gain_head,
            level_inputs: if gain_head {
                vec![48.0, 480.0, 4800.0]
            } else {
                Vec::new()
            },
        })
    };
    let cases = [
        ("lstm-32", recurrent(Cell::Lstm, 32, false)),
        ("lstm-5", recurrent(Cell::Lstm, 5, false)),
        ("gru-8", recurrent(Cell::Gru, 8, false)),
        ("gru-32", recurrent(Cell::Gru, 32, false)),
        ("lstm-16-gain", recurrent(Cell::Lstm, 16, true)),
        ("gru-11-gain", recurrent(Cell::Gru, 11, true)),
    ];
    let input = music_like(2 * 48_000, 5);
    let isas = Isa::available();
    assert_eq!(isas[0], Isa::Scalar);
    for (seed, (name, network)) in cases.into_iter().enumerate() {
        let model = random_model(network.clone(), 2, 60 + seed as u64);
        let Network::Recurrent(net) = &network else {
            unreachable!()
        };
        let run = |isa| {
            let mut kernel = RecurrentKernel::with_isa(&model, net, isa);
            assert_eq!(kernel.isa(), isa);
            kernel.set_knobs(&[0.3, 0.8]);
            kernel.reset();
            let mut out = vec![0.0; input.len()];
            for (i, o) in input.chunks(64).zip(out.chunks_mut(64)) {
                kernel.process(i, o);
            }
            out
        };
        let reference = run(Isa::Scalar);
        let peak = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            peak > 0.05,
            "{name}: the reference is nearly silent ({peak})"
        );
        for &isa in &isas[1..] {
            let out = run(isa);
            let err = reference
                .iter()
                .zip(&out)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, |m, e| if e > m || e.is_nan() { e } else { m });
            // Relative to the output's scale: a gain head's exp() turns a rounding difference
            // in its argument into the same relative difference of a possibly large output.
            let bound = 1e-6 * peak.max(1.0);
            assert!(
                err <= bound,
                "{name}: {isa:?} differs from scalar by {err:e} (bound {bound:e}, peak {peak})"
            );
        }
    }
}

#[test]
fn conv_history_longer_than_the_block_survives_many_calls() {
    // A receptive field of 2 x 64 x 2 + 1 = 257 samples, played in blocks far smaller than the
    // history and in one large block: each call's input must be found where it was left, also
    // after the history has moved back to the front of its buffer.
    let network = Network::Conv(ConvNet {
        channels: 3,
        activation: Activation::Tanh,
        blocks: [1, 64, 64]
            .iter()
            .map(|&d| ConvBlockSpec {
                kernel_size: 3,
                dilation: d,
            })
            .collect(),
        film: None,
        skip: false,
    });
    let model = random_model(network, 0, 90);
    let input = music_like(5000, 10);
    let mut small = Player::new(&model, 16).unwrap();
    let mut large = Player::new(&model, 8192).unwrap();
    let a = render(&mut small, &input, 13);
    let b = render(&mut large, &input, 5000);
    let err = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(err <= 1e-6, "outputs differ by {err}");
    assert!(b[4000..].iter().any(|v| v.abs() > 0.01), "silent output");
}

/// Runs `run` on every instruction set the processor has and requires the scalar one's bits.
fn assert_same_bits_on_every_isa(what: &str, run: impl Fn(Isa) -> Vec<f32>) {
    let reference = run(Isa::Scalar);
    assert!(reference.iter().any(|v| v.abs() > 0.01), "{what}: silent");
    for isa in Isa::available() {
        let out = run(isa);
        let first_difference = reference
            .iter()
            .zip(&out)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(first_difference, None, "{what} on {isa:?}");
    }
}

/// Plays `input` through `kernel` on instruction set `isa`, in calls of `block` samples.
fn run_kernel_on<K: VectorKernel + Kernel>(
    mut kernel: K,
    isa: Isa,
    knobs: &[f32],
    input: &[f32],
    block: usize,
) -> Vec<f32> {
    assert!(Isa::available().contains(&isa));
    *kernel.isa_mut() = isa;
    kernel.set_knobs(knobs);
    kernel.reset();
    let mut out = vec![0.0; input.len()];
    for (i, o) in input.chunks(block).zip(out.chunks_mut(block)) {
        kernel.process(i, o);
    }
    out
}

#[test]
fn vector_kernels_give_the_same_bits_on_every_isa() {
    // Their loops run along time (or over states) with separate multiplies and adds, so the
    // vector width must not change a single bit.
    use super::conv::ConvKernel;
    use super::ssm::SsmKernel;
    use super::tests_arch::{small_ssm, small_wavenet};
    use super::wavenet::WaveNetKernel;
    let input = music_like(4096, 8);
    let knobs = [0.2, 0.9];
    let mut networks = networks();
    networks.push(("wavenet-tanh", small_wavenet(Activation::Tanh)));
    networks.push(("wavenet-gated", small_wavenet(Activation::Gated)));
    networks.push(("ssm", small_ssm()));
    for (seed, (name, network)) in networks.into_iter().enumerate() {
        let model = random_model(network.clone(), 2, 77 + seed as u64);
        match &network {
            Network::Conv(net) => assert_same_bits_on_every_isa(name, |isa| {
                run_kernel_on(ConvKernel::new(&model, net, 512), isa, &knobs, &input, 500)
            }),
            Network::WaveNet(net) => assert_same_bits_on_every_isa(name, |isa| {
                run_kernel_on(
                    WaveNetKernel::new(&model, net, 512),
                    isa,
                    &knobs,
                    &input,
                    300,
                )
            }),
            Network::Ssm(net) => assert_same_bits_on_every_isa(name, |isa| {
                run_kernel_on(SsmKernel::new(&model, net), isa, &knobs, &input, 256)
            }),
            _ => {}
        }
    }
}
