//! The model file: the one contract between training (`models`) and playback (`dsp::engine`).
//!
//! A model file is UTF-8 JSON, so it can be read, diffed and archived without fxtwin. It holds
//! everything needed to play the model back: the network description, every weight tensor, the
//! sample rate the model was trained at and the knobs it responds to, plus what training left
//! behind (settings, validation metrics) for the user's information.
//!
//! # Versioning
//! `schema_version` is `[major, minor]`. A reader accepts every major version up to its own
//! ([`SCHEMA_MAJOR`]) and refuses a newer one with [`ModelFileError::NewerVersion`] before
//! looking at anything else, since a newer major version may change any field. Minor versions
//! only add optional fields, which older readers ignore.
//!
//! Writers stamp a file with the oldest version that describes its model
//! ([`Network::schema_version_needed`]), not the newest this build knows, so a model that uses
//! nothing new still plays in older builds; a file whose version is older than its content
//! needs is refused as malformed.
//!
//! | version | adds |
//! |---|---|
//! | 1.0 | the first schema |
//! | 2.0 | the recurrent gain head and level input ([`RecurrentNet::gain_head`], [`RecurrentNet::level_inputs`]); a 1.x reader would ignore them and play the model wrongly |
//!
//! # Weight layout
//! Weights are stored row-major under stable names; [`Network`] documents the names and
//! shapes each architecture expects. Recurrent weights follow PyTorch's layout so imported
//! models map onto them directly.

mod level;
mod network;
mod ssm;
mod tvfilm;
mod wavenet;

pub use level::LevelDetector;
pub use network::{
    Activation, Cell, ConvBlockSpec, ConvNet, FilmSpec, Network, RecurrentNet, GAIN_HEAD_SCALE,
};
pub use ssm::{discretize, Discretized, SsmNet, LOG_A_RE_MIN};
pub use tvfilm::{block_level, level_from_power, TvFilmNet, LEVEL_FLOOR_POWER, LEVEL_RANGE_DB};
pub use wavenet::{LayerArraySpec, WaveNetNet};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::knob::{KnobError, KnobSpec};

/// Identifies fxtwin model files among other JSON files.
pub const FORMAT_ID: &str = "fxtwin-model";
/// Major schema version written by this build; files with a higher major are refused.
pub const SCHEMA_MAJOR: u32 = 2;
/// Minor schema version written by this build.
pub const SCHEMA_MINOR: u32 = 0;
/// File name extension of model files.
pub const EXTENSION: &str = "fxtwin.json";

/// A model that can be played back: network, weights, rate and knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Always [`FORMAT_ID`].
    pub format: String,
    /// `[major, minor]`, see the module docs.
    pub schema_version: [u32; 2],
    /// Human-readable name, e.g. the device's.
    pub name: String,
    /// Sample rate the model was trained at and must run at, in Hz.
    pub sample_rate_hz: u32,
    /// The knobs the model responds to, in the order the network sees them.
    pub knobs: Vec<KnobSpec>,
    /// Architecture and hyper-parameters.
    pub network: Network,
    /// Weight tensors by name (see [`Network`] for names and shapes).
    pub weights: BTreeMap<String, WeightTensor>,
    /// How the model was trained, for the user's information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingInfo>,
    /// Validation metrics measured after training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}

/// A dense tensor of `f32` in row-major order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl WeightTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }
}

/// Settings and history of the training run that produced a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingInfo {
    /// Architecture preset name, e.g. `lstm-32`.
    pub preset: String,
    /// Dataset name (the device in the manifest).
    pub dataset: String,
    pub seed: u64,
    pub epochs: usize,
    pub steps: usize,
    /// Wall-clock training time in seconds.
    pub train_seconds: f64,
    /// Parameter count.
    pub parameters: usize,
}

/// Validation figures; lower is better for all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Error-to-signal ratio on held-out time segments of every pair.
    pub validation_esr: f64,
    /// ESR on held-out knob settings, when the dataset held any out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_knob_esr: Option<f64>,
}

/// Why a model file could not be read, written or used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{path}: cannot read model file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write model file: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an fxtwin model file ({reason})")]
    NotAModel { path: PathBuf, reason: String },
    #[error(
        "{path}: model file schema {found_major}.{found_minor} is newer than this fxtwin \
         understands (up to {SCHEMA_MAJOR}.x); update fxtwin to load it"
    )]
    NewerVersion {
        path: PathBuf,
        found_major: u32,
        found_minor: u32,
    },
    #[error("{path}: malformed model file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("model {name:?}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("model {model:?}: {source}")]
    Knob { model: String, source: KnobError },
}

/// The part of a model file read before anything else, to check the version.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    schema_version: Option<[u32; 2]>,
}

impl ModelFile {
    /// A model with no training information, stamped with the oldest schema version that
    /// describes `network`. Not validated: see [`ModelFile::validate`].
    pub fn new(
        name: &str,
        sample_rate_hz: u32,
        knobs: Vec<KnobSpec>,
        network: Network,
        weights: BTreeMap<String, WeightTensor>,
    ) -> Self {
        Self {
            format: FORMAT_ID.into(),
            schema_version: network.schema_version_needed(),
            name: name.into(),
            sample_rate_hz,
            knobs,
            network,
            weights,
            training: None,
            metrics: None,
        }
    }

    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Self, ModelFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses model-file JSON; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self, ModelFileError> {
        let path = origin.to_path_buf();
        let header: Header = serde_json::from_str(text).map_err(|e| ModelFileError::NotAModel {
            path: path.clone(),
            reason: format!("not valid JSON: {e}"),
        })?;
        if header.format.as_deref() != Some(FORMAT_ID) {
            return Err(ModelFileError::NotAModel {
                path,
                reason: format!("its \"format\" field is not {FORMAT_ID:?}"),
            });
        }
        let [major, minor] = header
            .schema_version
            .ok_or_else(|| ModelFileError::Malformed {
                path: path.clone(),
                reason: "missing \"schema_version\"".into(),
            })?;
        if major > SCHEMA_MAJOR {
            return Err(ModelFileError::NewerVersion {
                path,
                found_major: major,
                found_minor: minor,
            });
        }
        let model: ModelFile =
            serde_json::from_str(text).map_err(|e| ModelFileError::Malformed {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        model.validate().map_err(|e| ModelFileError::Malformed {
            path,
            reason: e.to_string(),
        })?;
        Ok(model)
    }

    /// Serialises to JSON (compact: weight arrays dominate the size).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("model files always serialise")
    }

    /// Writes the model atomically (a crash or full disk never leaves a half-written file).
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        crate::fsutil::write_atomic(path, self.to_json().as_bytes()).map_err(|source| {
            ModelFileError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Checks knobs, sample rate and that every weight the network needs is present with the
    /// right shape and finite values.
    pub fn validate(&self) -> Result<(), ModelFileError> {
        let invalid = |reason: String| ModelFileError::Invalid {
            name: self.name.clone(),
            reason,
        };
        if !(8_000..=384_000).contains(&self.sample_rate_hz) {
            return Err(invalid(format!(
                "sample rate {} Hz is outside 8000..384000",
                self.sample_rate_hz
            )));
        }
        for knob in &self.knobs {
            knob.validate().map_err(|source| ModelFileError::Knob {
                model: self.name.clone(),
                source,
            })?;
        }
        self.network.check().map_err(invalid)?;
        let needed = self.network.schema_version_needed();
        if self.schema_version < needed {
            return Err(invalid(format!(
                "its network needs schema {}.{} but the file says {}.{}",
                needed[0], needed[1], self.schema_version[0], self.schema_version[1]
            )));
        }
        for (name, shape) in self.network.weight_shapes(self.knobs.len()) {
            let w = self
                .weights
                .get(&name)
                .ok_or_else(|| invalid(format!("weight {name:?} is missing")))?;
            if w.shape != shape {
                return Err(invalid(format!(
                    "weight {name:?} has shape {:?}, the network needs {shape:?}",
                    w.shape
                )));
            }
            if w.data.len() != shape.iter().product::<usize>() {
                return Err(invalid(format!(
                    "weight {name:?} holds {} values for shape {shape:?}",
                    w.data.len()
                )));
            }
            if w.data.iter().any(|v| !v.is_finite()) {
                return Err(invalid(format!("weight {name:?} holds NaN or infinity")));
            }
        }
        Ok(())
    }

    /// The weight `name`; only call after [`ModelFile::validate`], which guarantees presence.
    pub fn weight(&self, name: &str) -> &WeightTensor {
        self.weights
            .get(name)
            .unwrap_or_else(|| panic!("weight {name:?} missing from a validated model"))
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.weights.values().map(|w| w.data.len()).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests;
