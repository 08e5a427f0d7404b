use super::*;
use crate::knob::{KnobSpec, Taper};

/// SplitMix64: a tiny seeded generator for test weights.
pub(crate) struct TestRng(u64);

impl TestRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `-scale..scale`.
    pub(crate) fn uniform(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * scale
    }
}

/// A model with seeded random weights of a plausible scale.
pub(crate) fn random_model(network: Network, knob_count: usize, seed: u64) -> ModelFile {
    let mut rng = TestRng::new(seed);
    let knobs = (0..knob_count)
        .map(|i| KnobSpec {
            name: format!("knob{i}"),
            unit: "dB".into(),
            min: 0.0,
            max: 10.0,
            default: 5.0,
            taper: Taper::Linear,
        })
        .collect();
    let weights = network
        .weight_shapes(knob_count)
        .into_iter()
        .map(|(name, shape)| {
            let fan_in = shape[1..].iter().product::<usize>().max(1);
            let scale = 1.0 / (fan_in as f32).sqrt();
            let n = shape.iter().product();
            let data = (0..n).map(|_| rng.uniform(scale)).collect();
            (name, WeightTensor::new(shape, data))
        })
        .collect();
    ModelFile::new("test", 48_000, knobs, network, weights)
}

pub(crate) fn lstm(hidden: usize) -> Network {
    Network::Recurrent(RecurrentNet {
        cell: Cell::Lstm,
        hidden_size: hidden,
        skip: true,
        gain_head: false,
        level_inputs: Vec::new(),
    })
}

#[test]
fn json_round_trip_is_exact() {
    let model = random_model(lstm(8), 2, 1);
    let back = ModelFile::from_json(&model.to_json(), Path::new("m.json")).unwrap();
    assert_eq!(back, model);
}

#[test]
fn newer_major_version_is_refused_by_name() {
    let mut model = random_model(lstm(4), 0, 2);
    model.schema_version = [SCHEMA_MAJOR + 1, 0];
    // A future version may change anything else too.
    let text = model.to_json().replace("\"network\"", "\"graph\"");
    let err = ModelFile::from_json(&text, Path::new("future.fxtwin.json")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelFileError::NewerVersion { .. }), "{msg}");
    let expected = format!(
        "future.fxtwin.json: model file schema {}.0 is newer",
        SCHEMA_MAJOR + 1
    );
    assert!(msg.starts_with(&expected), "{msg}");
}

#[test]
fn files_carry_the_oldest_schema_that_describes_them() {
    // A plain LSTM is a 1.0 model: older builds still play it.
    let plain = random_model(lstm(4), 1, 5);
    assert_eq!(plain.schema_version, [1, 0]);

    // The gain head changes what the network computes, so a 1.x reader must refuse it.
    let gated = random_model(
        Network::Recurrent(RecurrentNet {
            cell: Cell::Gru,
            hidden_size: 4,
            skip: true,
            gain_head: true,
            level_inputs: Vec::new(),
        }),
        1,
        5,
    );
    assert_eq!(gated.schema_version, [2, 0]);
    let back = ModelFile::from_json(&gated.to_json(), Path::new("g.json")).unwrap();
    assert_eq!(back, gated);

    // A file that claims 1.0 but holds a gain head is malformed, not silently misread.
    let mut mislabelled = gated;
    mislabelled.schema_version = [1, 0];
    let err = ModelFile::from_json(&mislabelled.to_json(), Path::new("m.json")).unwrap_err();
    assert!(err.to_string().contains("needs schema 2.0"), "{err}");
}

#[test]
fn wrong_weight_shape_names_the_weight() {
    let mut model = random_model(lstm(4), 1, 3);
    model.weights.get_mut("rnn.w_hh").unwrap().shape = vec![4, 16];
    let err = ModelFile::from_json(&model.to_json(), Path::new("bad.json")).unwrap_err();
    assert!(
        err.to_string().contains("\"rnn.w_hh\" has shape [4, 16]"),
        "{err}"
    );
}

#[test]
fn other_json_is_not_a_model() {
    let err = ModelFile::from_json("{\"hello\": 1}", Path::new("x.json")).unwrap_err();
    assert!(matches!(err, ModelFileError::NotAModel { .. }));
}
