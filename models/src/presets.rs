//! Named architecture presets, as chosen with `--arch` on the command line.

use dsp::model::{
    Activation, Cell, ConvBlockSpec, ConvNet, FilmSpec, LayerArraySpec, Network, RecurrentNet,
    SsmNet, TvFilmNet, WaveNetNet,
};

/// Hidden size of the FiLM conditioning network of convolution presets.
const FILM_HIDDEN: usize = 16;
/// Channels of convolution presets.
const CONV_CHANNELS: usize = 16;

/// A named architecture.
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub summary: &'static str,
    pub network: Network,
}

/// Time constants of the level inputs of the `-gain` recurrent presets, in samples: 1, 10 and
/// 100 ms at 48 kHz, from a compressor's fast attack to a typical release.
const LEVEL_INPUTS_SAMPLES: [f32; 3] = [48.0, 480.0, 4800.0];

/// Recurrent hidden sizes offered as presets.
pub const RECURRENT_SIZES: [usize; 7] = [8, 16, 24, 32, 48, 64, 96];

/// Receptive fields of the convolution presets at 48 kHz: (name suffix, kernel, dilations).
/// 45 ms: kernel 7, dilations 4^0..4^4 (2047 samples, 42.6 ms);
/// 250 ms: kernel 9, dilations 4^0..4^5 (10921 samples, 227 ms);
/// 2500 ms: kernel 12, dilations 10^0..10^4 (122222 samples, 2546 ms).
const CONV_LAYOUTS: [(&str, usize, &[usize]); 3] = [
    ("45", 7, &[1, 4, 16, 64, 256]),
    ("250", 9, &[1, 4, 16, 64, 256, 1024]),
    ("2500", 12, &[1, 10, 100, 1000, 10000]),
];

/// Every preset, recurrent first.
pub fn all() -> Vec<Preset> {
    let mut presets = Vec::new();
    for (cell, prefix, summary, gain_head) in [
        (
            Cell::Lstm,
            "lstm",
            "LSTM, knobs concatenated to the input, input skip",
            false,
        ),
        (
            Cell::Gru,
            "gru",
            "GRU, knobs concatenated to the input, input skip",
            false,
        ),
        (
            Cell::Lstm,
            "lstm",
            "LSTM whose state also sets the input's gain (compressors), knobs concatenated",
            true,
        ),
        (
            Cell::Gru,
            "gru",
            "GRU whose state also sets the input's gain (compressors), knobs concatenated",
            true,
        ),
    ] {
        for hidden in RECURRENT_SIZES {
            let suffix = if gain_head { "-gain" } else { "" };
            presets.push(Preset {
                name: format!("{prefix}-{hidden}{suffix}"),
                summary,
                network: Network::Recurrent(RecurrentNet {
                    cell,
                    hidden_size: hidden,
                    skip: true,
                    gain_head,
                    level_inputs: if gain_head {
                        LEVEL_INPUTS_SAMPLES.to_vec()
                    } else {
                        Vec::new()
                    },
                }),
            });
        }
    }
    for (activation, prefix, summary) in [
        (
            Activation::Tanh,
            "tcn",
            "TCN, 16 ch, dilated causal conv + tanh, FiLM by knobs (name = receptive field in ms)",
        ),
        (
            Activation::Gated,
            "gcn",
            "GCN, 16 ch, dilated causal conv + tanh*sigmoid gate, FiLM by knobs",
        ),
    ] {
        for (suffix, kernel_size, dilations) in CONV_LAYOUTS {
            presets.push(Preset {
                name: format!("{prefix}-{suffix}"),
                summary,
                network: Network::Conv(ConvNet {
                    channels: CONV_CHANNELS,
                    activation,
                    blocks: dilations
                        .iter()
                        .map(|&dilation| ConvBlockSpec {
                            kernel_size,
                            dilation,
                        })
                        .collect(),
                    film: Some(FilmSpec {
                        hidden_size: FILM_HIDDEN,
                    }),
                    skip: false,
                }),
            });
        }
    }
    presets.extend(wavenet_presets());
    presets.push(Preset {
        name: "s4-4x16".into(),
        summary: "S4D state-space, 4 blocks x 16 ch x 8 states, FiLM by knobs, input skip",
        network: Network::Ssm(ssm_4x16()),
    });
    presets.extend(time_varying_presets(&presets));
    presets
}

/// Controller block of the time-varying presets: 128 samples, 2.7 ms at 48 kHz, shorter than
/// a compressor's fastest attack worth modelling and long enough for a level estimate.
const TV_BLOCK_SAMPLES: usize = 128;
/// Hidden size of the time-varying presets' LSTM controller.
const TV_HIDDEN: usize = 16;

/// `tcn-45-tv`, `gcn-250-tv` and `s4-4x16-tv`: the base presets under a time-varying FiLM
/// controller driven by the input level and the knobs.
fn time_varying_presets(base: &[Preset]) -> Vec<Preset> {
    [
        (
            "tcn-45",
            "tcn-45-tv",
            "TCN-45 with time-varying FiLM (LSTM 16 every 128 samples)",
        ),
        (
            "gcn-250",
            "gcn-250-tv",
            "GCN-250 with time-varying FiLM (LSTM 16 every 128 samples)",
        ),
        (
            "s4-4x16",
            "s4-4x16-tv",
            "S4D 4x16 with time-varying FiLM (LSTM 16 every 128 samples)",
        ),
    ]
    .into_iter()
    .filter_map(|(from, name, summary)| {
        let inner = base.iter().find(|p| p.name == from)?.network.clone();
        Some(Preset {
            name: name.into(),
            summary,
            network: Network::TimeVarying(TvFilmNet {
                block_samples: TV_BLOCK_SAMPLES,
                hidden_size: TV_HIDDEN,
                inner: Box::new(inner),
            }),
        })
    })
    .collect()
}

/// Four diagonal state-space blocks of 16 channels with 8 complex states each: 128 poles per
/// block whose initial time constants span 0.4 ms to 420 ms at 48 kHz (attack to release of
/// a compressor), four tanh stages for a drive's saturation; about 3.3k weights and 5.3k
/// multiply-adds per sample, close to an LSTM-32's cost, with far longer memory.
fn ssm_4x16() -> SsmNet {
    SsmNet {
        channels: 16,
        state_size: 8,
        blocks: 4,
        film: Some(FilmSpec {
            hidden_size: FILM_HIDDEN,
        }),
        skip: true,
    }
}

/// NAM's A1 WaveNets, as in its trainer's `_get_wavenet_config` (neural-amp-modeler 0.x,
/// `nam/train/core.py`): "standard" has arrays of 16 and 8 channels with dilations 1..512
/// each; "lite" 12 channels with dilations 1..64, then 6 channels with 128, 256, 512,
/// 1..512. Kernel 3, tanh, no gating, head bias only on the last array, head scale 0.02.
/// Knobs enter every layer through its input mixin.
fn wavenet_presets() -> Vec<Preset> {
    const HEAD_SCALE: f32 = 0.02;
    let octaves = |from: u32, to: u32| (from..=to).map(|e| 1usize << e).collect::<Vec<_>>();
    let array = |channels, dilations, head_bias| LayerArraySpec {
        channels,
        kernel_size: 3,
        dilations,
        activation: Activation::Tanh,
        head_bias,
    };
    let lite_second: Vec<usize> = octaves(7, 9).into_iter().chain(octaves(0, 9)).collect();
    vec![
        Preset {
            name: "wavenet-standard".into(),
            summary: "NAM A1 standard WaveNet (16+8 ch, 2x10 layers), knobs via input mixin",
            network: Network::WaveNet(WaveNetNet {
                arrays: vec![
                    array(16, octaves(0, 9), false),
                    array(8, octaves(0, 9), true),
                ],
                head_scale: HEAD_SCALE,
            }),
        },
        Preset {
            name: "wavenet-lite".into(),
            summary: "NAM A1 lite WaveNet (12+6 ch, 7+13 layers), knobs via input mixin",
            network: Network::WaveNet(WaveNetNet {
                arrays: vec![array(12, octaves(0, 6), false), array(6, lite_second, true)],
                head_scale: HEAD_SCALE,
            }),
        },
    ]
}

/// The preset called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<Preset, UnknownPreset> {
    all()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| UnknownPreset {
            name: name.to_string(),
            known: all()
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[derive(Debug, thiserror::Error)]
#[error("unknown architecture {name:?}; known: {known}")]
pub struct UnknownPreset {
    pub name: String,
    pub known: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_receptive_fields_match_their_names_at_48khz() {
        for (name, lo_ms, hi_ms) in [
            ("tcn-45", 40.0, 50.0),
            ("gcn-250", 220.0, 260.0),
            ("tcn-2500", 2400.0, 2600.0),
        ] {
            let rf = find(name)
                .unwrap()
                .network
                .receptive_field_samples()
                .unwrap();
            let ms = rf as f64 / 48.0;
            assert!((lo_ms..hi_ms).contains(&ms), "{name}: {ms} ms");
        }
    }

    #[test]
    fn tcn_45_has_about_8k_parameters_with_two_knobs() {
        // 5 blocks, kernel 7, 16 channels: 16*7+16+16 + 4*(16*16*7+16+256) + head 17, plus FiLM.
        let p = find("tcn-45").unwrap().network.parameter_count(0);
        assert_eq!(p, 144 + 4 * 2064 + 17);
    }

    #[test]
    fn wavenet_presets_have_nams_sizes() {
        // NAM standard: array 1 = rechannel 16 + 10 * (conv 16*16*3+16, mixin 16, 1x1 16*16+16)
        // + head 16*8; array 2 = 16*8 + 10 * (8*8*3+8 + 8 + 8*8+8) + head 8+1: 13,801 weights,
        // 13,802 values in a .nam file with the head scale.
        let standard = find("wavenet-standard").unwrap().network;
        assert_eq!(
            standard.parameter_count(0),
            (16 + 10 * 1072 + 128) + (128 + 10 * 280 + 9)
        );
        assert_eq!(standard.parameter_count(0) + 1, 13_802);
        // Two knobs add two mixin columns per layer: 16 or 8 weights per column.
        assert_eq!(standard.parameter_count(2), 13_801 + 2 * (10 * 16 + 10 * 8));
        // Lite: 12 + 7 * (12*12*3+12 + 12 + 12*12+12) + 12*6, then 12*6 + 13 * (6*6*3+6 + 6 +
        // 6*6+6) + 6 + 1.
        let lite = find("wavenet-lite").unwrap().network;
        assert_eq!(
            lite.parameter_count(0),
            (12 + 7 * 612 + 72) + (72 + 13 * 162 + 7)
        );
        // Receptive fields: 1 + 2 * (1023 + 1023) and 1 + 2 * (127 + 896 + 1023).
        assert_eq!(standard.receptive_field_samples(), Some(4093));
        assert_eq!(lite.receptive_field_samples(), Some(4093));
    }

    #[test]
    fn time_varying_presets_wrap_their_base() {
        for (name, base) in [
            ("tcn-45-tv", "tcn-45"),
            ("gcn-250-tv", "gcn-250"),
            ("s4-4x16-tv", "s4-4x16"),
        ] {
            let tv = find(name).unwrap().network;
            let base = find(base).unwrap().network;
            assert_eq!(
                tv.receptive_field_samples(),
                base.receptive_field_samples(),
                "{name}"
            );
            // Controller: LSTM 16 on [level, 2 knobs] plus a read-out to every FiLM offset.
            let width = base.film_width().unwrap();
            let controller = 64 * 3 + 64 * 16 + 64 + width * 16 + width;
            assert_eq!(
                tv.parameter_count(2),
                base.parameter_count(2) + controller,
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_name_lists_known_presets() {
        let err = find("lstm-33").unwrap_err().to_string();
        assert!(err.contains("lstm-32") && err.contains("tcn-45"), "{err}");
    }
}
