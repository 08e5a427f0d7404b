//! Training and playback compute the same function: for every architecture preset, a seeded
//! network run through `TrainableNet::forward` and, exported to a model file, through the
//! real-time `dsp::engine::Player` gives the same samples within [`PARITY_TOLERANCE`].
//!
//! The nets are not left as init made them: FiLM's output layer and the read-out bias (zero at
//! init) get seeded values and every weight is scaled by [`WEIGHT_GAIN`], so knobs modulate
//! the conv blocks and the activations work in their curved range. Each comparison also checks
//! that this made the test meaningful: the output is far from the input, it is clearly not a
//! linear function of the input, and the knobs change it.
//!
//! Conv nets: the forward pass gets `warmup_samples()` zeros before the clip, so its output is
//! as long as the clip and matches a player that starts from silence.

mod common;

use candle_core::Device;
use common::{
    esr, exercise_weights, forward_clip, knob_specs, max_abs_diff, model_file, normalized,
    settings, Setting,
};
use dsp::engine::Player;
use dsp::knob::KnobSpec;
use dsp::model::{ModelFile, Network};
use models::net::TrainableNet;

/// Largest allowed sample difference between forward pass and player, relative to the larger
/// of full scale (1) and the output's peak: seeded gain heads may amplify by 40 dB, where f32
/// rounding alone is 1e-7 of the peak.
const PARITY_TOLERANCE: f32 = 1e-5;
/// Scale applied to every initial weight (see the module docs).
const WEIGHT_GAIN: f64 = 1.5;
/// The same for LSTMs and GRUs, whose `±1/sqrt(H)` init keeps the gates nearly linear.
const RECURRENT_WEIGHT_GAIN: f64 = 2.5;
/// Range of the seeded values given to the tensors init leaves at zero.
const ZERO_FILL: f32 = 0.3;
/// The output must differ from the input by at least this error-to-signal ratio (-20 dB).
const MIN_ESR_FROM_INPUT: f64 = 1e-2;
/// Doubling the input must change the output's deviation from its silent response by a
/// factor that differs from 2 by at least this fraction (see [`nonlinearity`]).
const MIN_NONLINEARITY: f64 = 2e-2;
/// Outputs at the lowest and highest knob settings must differ by at least this ESR.
const MIN_KNOB_ESR: f64 = 1e-3;
/// Largest block handed to the player; the clip is fed in blocks of varying size below it.
const MAX_BLOCK: usize = 1024;
const RATE: u32 = common::SAMPLE_RATE_HZ;

/// Seconds of music each preset is compared on: 10 s for the cheap presets; 3 s or 2 s for
/// those whose scalar player or candle forward pass costs 0.2 to 1 s per second of audio on
/// one core (measured on the 2-core CI machine), which keeps this file near a minute. Parity
/// errors do not build up over time in these stable nets (measured: 1e-7 to 5e-7 for the
/// recurrent presets on 1 s and on 10 s alike), so the shorter clips lose little.
fn clip_seconds(preset: &str) -> usize {
    const TWO: [&str; 7] = [
        "lstm-96",
        "gru-96",
        "lstm-96-gain",
        "gru-96-gain",
        "wavenet-standard",
        "s4-4x16",
        "s4-4x16-tv",
    ];
    const TEN: [&str; 12] = [
        "lstm-8",
        "lstm-16",
        "lstm-24",
        "lstm-32",
        "gru-8",
        "gru-16",
        "gru-24",
        "gru-32",
        "gru-48",
        "tcn-45",
        "wavenet-lite",
        "tcn-45-tv",
    ];
    if TWO.contains(&preset) {
        2
    } else if TEN.contains(&preset) {
        10
    } else {
        3
    }
}

/// The `len` samples of `clip` around its loudest peak: music from `dsp::stimulus::music`
/// spans 32 dB from bar to bar, and a quiet bar would hardly bend any curve.
fn loudest(clip: &[f32], len: usize) -> &[f32] {
    let peak = (0..clip.len())
        .max_by(|&a, &b| clip[a].abs().total_cmp(&clip[b].abs()))
        .unwrap_or(0);
    let start = peak
        .saturating_sub(len / 2)
        .min(clip.len().saturating_sub(len));
    &clip[start..(start + len).min(clip.len())]
}

/// `network` with its input skip set to `skip`; `None` when the architecture has no skip.
fn with_skip(network: &Network, skip: bool) -> Option<Network> {
    let mut n = network.clone();
    match &mut n {
        // The gain head scales the skip: it cannot be switched off.
        Network::Recurrent(r) if r.gain_head => return None,
        Network::Recurrent(r) => r.skip = skip,
        Network::Conv(c) => c.skip = skip,
        Network::Ssm(s) => s.skip = skip,
        Network::TimeVarying(tv) => {
            return with_skip(&tv.inner, skip).map(|inner| {
                let mut tv = tv.clone();
                tv.inner = Box::new(inner);
                Network::TimeVarying(tv)
            })
        }
        Network::WaveNet(_) => return None,
    }
    Some(n)
}

/// A seeded net with exercised weights and its model file.
fn build(
    network: &Network,
    knobs: &[KnobSpec],
    seed: u64,
    name: &str,
) -> (TrainableNet, ModelFile) {
    let net = TrainableNet::init(network, knobs.len(), seed, &Device::Cpu).unwrap();
    let gain = match network {
        Network::Recurrent(_) => RECURRENT_WEIGHT_GAIN,
        _ => WEIGHT_GAIN,
    };
    exercise_weights(&net, seed ^ 0x5eed, ZERO_FILL, gain);
    let model = model_file(&net, knobs, name);
    (net, model)
}

/// Plays `input` through a fresh player at `setting`, in blocks of varying size.
fn play(model: &ModelFile, setting: &Setting, input: &[f32]) -> Vec<f32> {
    let mut player = Player::new(model, MAX_BLOCK).unwrap();
    player.set_knob_values(&setting.values).unwrap();
    player.reset();
    let mut out = vec![0.0; input.len()];
    let sizes = [MAX_BLOCK, 1, 317, 64, 1000, 7];
    let mut done = 0;
    for &n in sizes.iter().cycle() {
        if done == input.len() {
            break;
        }
        let n = n.min(input.len() - done);
        player.process(&input[done..done + n], &mut out[done..done + n]);
        done += n;
    }
    out
}

/// How far the net is from a linear system on `clip`: with `r(.)` the forward pass minus the
/// input skip (which is linear) and `r0` its response to silence, `|d2 - 2 d1| / |2 d1|` where
/// `d1 = r(x) - r0`, `d2 = r(2x) - r0` (0 for a linear system, even one with an offset).
fn nonlinearity(net: &TrainableNet, clip: &[f32], knobs: &[f32], skip: bool) -> f64 {
    let doubled: Vec<f32> = clip.iter().map(|x| 2.0 * x).collect();
    let without_skip = |input: &[f32]| -> Vec<f32> {
        let y = forward_clip(net, input, knobs);
        let s = if skip { 1.0 } else { 0.0 };
        y.iter().zip(input).map(|(y, x)| y - s * x).collect()
    };
    let y1 = without_skip(clip);
    let y2 = without_skip(&doubled);
    let y0 = without_skip(&vec![0.0; clip.len()]);
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for ((a, b), z) in y1.iter().zip(&y2).zip(&y0) {
        let (d1, d2) = ((a - z) as f64, (b - z) as f64);
        num += (d2 - 2.0 * d1).powi(2);
        den += (2.0 * d1).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

/// Compares forward pass and player on `clip` at each setting and checks that each output is
/// far from the input. Returns the largest parity error over the whole
/// clip and over the part after the receptive field (the whole clip for recurrent nets).
fn compare(
    label: &str,
    net: &TrainableNet,
    model: &ModelFile,
    settings: &[Setting],
    clip: &[f32],
) -> (f32, f32) {
    let knobs = &model.knobs;
    let after = net.warmup_samples();
    let (mut err_all, mut err_after) = (0.0f32, 0.0f32);
    for setting in settings {
        let reference = forward_clip(net, clip, &normalized(knobs, &setting.values));
        let played = play(model, setting, clip);
        assert!(
            played.iter().all(|v| v.is_finite()),
            "{label} at {}: non-finite output",
            setting.name
        );
        let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        err_all = err_all.max(max_abs_diff(&reference, &played) / scale);
        err_after = err_after.max(max_abs_diff(&reference[after..], &played[after..]) / scale);
        let from_input = esr(&played, clip);
        assert!(
            from_input >= MIN_ESR_FROM_INPUT,
            "{label} at {}: output is within ESR {from_input:.2e} of the input, too close to a \
             wire to test anything",
            setting.name
        );
    }
    (err_all, err_after)
}

/// Checks the presets that `family` selects, each with 1 or 2 knobs, the skip on or off and
/// a knob setting in turn, on music (see [`clip_seconds`]). Parity is checked from the end of
/// the receptive field on; the samples before it are the subject of
/// [`conv_nets_right_after_reset_match_a_silent_past`]. On a loud excerpt, the forward pass
/// must also be clearly nonlinear and respond to the knobs.
fn check_presets(family: impl Fn(&Network) -> bool) {
    let mut report = Vec::new();
    for (i, preset) in models::presets::all().into_iter().enumerate() {
        if !family(&preset.network) {
            continue;
        }
        let knob_count = 1 + i % 2;
        let knobs = knob_specs(knob_count);
        let (network, skip) = match with_skip(&preset.network, i % 4 < 2) {
            Some(n) => (n, i % 4 < 2),
            // No switchable skip: a WaveNet has none, a gain head always scales one.
            None => {
                let skip = matches!(&preset.network, Network::Recurrent(r) if r.skip);
                (preset.network.clone(), skip)
            }
        };
        let label = format!("{} ({knob_count} knobs, skip {skip})", preset.name);
        let (net, model) = build(&network, &knobs, 1000 + i as u64, &preset.name);

        // Forward pass against player at one setting, chosen in turn.
        let all = settings(&knobs);
        let setting = &all[i % all.len()];
        let seconds = clip_seconds(&preset.name);
        let clip = dsp::stimulus::music(RATE, seconds * RATE as usize, 7 + i as u64, -1.0);
        let (_, err) = compare(&label, &net, &model, std::slice::from_ref(setting), &clip);
        assert!(
            err <= PARITY_TOLERANCE,
            "{label} at {}: forward and player differ by {err:e} (> {PARITY_TOLERANCE:e})",
            setting.name
        );

        // The function compared is not a trivial one.
        let excerpt = loudest(&clip, RATE as usize / 4);
        let nl = nonlinearity(&net, excerpt, &normalized(&knobs, &all[1].values), skip);
        assert!(
            nl >= MIN_NONLINEARITY,
            "{label}: nonlinearity {nl:.2e} is too small for the test to mean much"
        );
        let at_min = forward_clip(&net, excerpt, &normalized(&knobs, &all[0].values));
        let at_max = forward_clip(&net, excerpt, &normalized(&knobs, &all[2].values));
        let knob_esr = esr(&at_min, &at_max);
        assert!(
            knob_esr >= MIN_KNOB_ESR,
            "{label}: min and max knob settings give nearly the same output (ESR {knob_esr:.2e})"
        );
        report.push(format!(
            "{label}: {seconds} s at {}, max error {err:.2e}, nonlinearity {nl:.3}, knob ESR \
             {knob_esr:.2e}",
            setting.name
        ));
    }
    assert!(!report.is_empty(), "no preset selected");
    println!("{}", report.join("\n"));
}

#[test]
fn recurrent_presets_match_the_engine_on_music() {
    check_presets(|n| matches!(n, Network::Recurrent(_)));
}

#[test]
fn conv_presets_match_the_engine_on_music() {
    check_presets(|n| matches!(n, Network::Conv(_)));
}

#[test]
fn other_presets_match_the_engine_on_music() {
    check_presets(|n| !matches!(n, Network::Recurrent(_) | Network::Conv(_)));
}

/// One small preset per family with 1 and 2 knobs, skip on and off, at the minimum, default,
/// maximum and an interior knob setting each, on 0.25 s of music (more than five times the
/// 45 ms receptive field; 104 comparisons in all).
#[test]
fn knob_settings_and_skip_match_the_engine() {
    let families = [
        "lstm-16",
        "gru-16",
        "tcn-45",
        "gcn-45",
        "wavenet-lite",
        "s4-4x16",
        "tcn-45-tv",
    ];
    let clip = dsp::stimulus::music(RATE, RATE as usize / 4, 3, -1.0);
    let mut seed = 2000;
    for name in families {
        let preset = models::presets::find(name).unwrap();
        for knob_count in [1, 2] {
            let knobs = knob_specs(knob_count);
            for skip in [false, true] {
                let network = match with_skip(&preset.network, skip) {
                    Some(n) => n,
                    // No skip flag (WaveNet): one pass is enough.
                    None if skip => continue,
                    None => preset.network.clone(),
                };
                seed += 1;
                let label = format!("{name} ({knob_count} knobs, skip {skip})");
                let (net, model) = build(&network, &knobs, seed, name);
                let (_, err) = compare(&label, &net, &model, &settings(&knobs), &clip);
                assert!(
                    err <= PARITY_TOLERANCE,
                    "{label}: forward and player differ by {err:e} (> {PARITY_TOLERANCE:e})"
                );
            }
        }
    }
}

/// A player that was just reset must behave as if the input had been silent forever, which is
/// what the forward pass sees in its zero-padded warm-up: every intermediate block's history
/// must hold that block's response to silence, not zeros.
#[test]
fn conv_nets_right_after_reset_match_a_silent_past() {
    let clip = dsp::stimulus::music(RATE, RATE as usize / 5, 11, -1.0);
    let mut failures = Vec::new();
    for (i, name) in ["tcn-45", "gcn-45", "wavenet-lite", "tcn-45-tv"]
        .into_iter()
        .enumerate()
    {
        let preset = models::presets::find(name).unwrap();
        let knobs = knob_specs(1);
        let (net, model) = build(&preset.network, &knobs, 3000 + i as u64, name);
        let (err_all, err_after) = compare(name, &net, &model, &settings(&knobs)[1..2], &clip);
        assert!(
            err_after <= PARITY_TOLERANCE,
            "{name}: {err_after:e} after the receptive field"
        );
        if err_all > PARITY_TOLERANCE {
            failures.push(format!(
                "{name}: forward and player differ by {err_all:e} within the first {} samples \
                 after reset",
                net.warmup_samples()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
