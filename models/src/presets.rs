//! Named architecture presets, as chosen with `--arch` on the command line.

use dsp::model::{Activation, Cell, ConvBlockSpec, ConvNet, FilmSpec, Network, RecurrentNet};

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
    for (cell, prefix, summary) in [
        (Cell::Lstm, "lstm", "LSTM, knobs concatenated to the input, input skip"),
        (Cell::Gru, "gru", "GRU, knobs concatenated to the input, input skip"),
    ] {
        for hidden in RECURRENT_SIZES {
            presets.push(Preset {
                name: format!("{prefix}-{hidden}"),
                summary,
                network: Network::Recurrent(RecurrentNet {
                    cell,
                    hidden_size: hidden,
                    skip: true,
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
    presets
}

/// The preset called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<Preset, UnknownPreset> {
    all()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| UnknownPreset {
            name: name.to_string(),
            known: all().iter().map(|p| p.name.clone()).collect::<Vec<_>>().join(", "),
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
        for (name, lo_ms, hi_ms) in [("tcn-45", 40.0, 50.0), ("gcn-250", 220.0, 260.0), ("tcn-2500", 2400.0, 2600.0)] {
            let rf = find(name).unwrap().network.receptive_field_samples().unwrap();
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
    fn unknown_name_lists_known_presets() {
        let err = find("lstm-33").unwrap_err().to_string();
        assert!(err.contains("lstm-32") && err.contains("tcn-45"), "{err}");
    }
}
