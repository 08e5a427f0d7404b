//! The dataset manifest: a device, its knobs and its recordings, in one TOML file.
//!
//! ```toml
//! [device]
//! name = "SoX overdrive"
//! sample_rate_hz = 48000        # model rate; optional, default 48000
//!
//! [[knobs]]                     # zero or more, see dsp::knob::KnobSpec
//! name = "gain"
//! unit = "dB"
//! min = 0.0
//! max = 100.0
//! default = 20.0
//! taper = "linear"              # or "log"
//!
//! [[pairs]]
//! dry = "dry.wav"               # relative to the manifest's folder
//! wet = "wet__gain=20.wav"
//! knobs = { gain = 20.0 }       # every knob, in its unit
//! channel = 0                   # optional: channel of multi-channel files
//! capture = false               # optional: dry is fxtwin's stimulus, wet its recording
//! latency_samples = 0           # optional: known latency of wet behind dry
//!
//! [validation]                  # optional
//! holdout_fraction = 0.15       # tail of every pair kept for validation
//! holdout_knobs = [{ gain = 40.0 }]   # settings kept out of training entirely
//! ```
//!
//! [`Manifest::load`] parses and checks everything a user can get wrong, and each
//! [`DatasetError`] names the manifest and the entry at fault. [`init_from_dir`] writes a
//! first manifest from file names such as `wet__gain=20__tone=5.wav`.

mod error;
mod init;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audio::probe_audio;
use crate::fsutil::write_atomic;
use crate::knob::{KnobError, KnobSpec};

pub use error::DatasetError;
pub use init::init_from_dir;

/// File name that [`init_from_dir`] gives a new manifest.
pub const MANIFEST_FILE_NAME: &str = "manifest.toml";

/// Model sample rate when the manifest gives none, in Hz.
pub const DEFAULT_SAMPLE_RATE_HZ: u32 = 48_000;

/// Lowest model sample rate a manifest may declare, in Hz.
pub const MIN_SAMPLE_RATE_HZ: u32 = 8_000;

/// Highest model sample rate a manifest may declare, in Hz.
pub const MAX_SAMPLE_RATE_HZ: u32 = 384_000;

/// Fraction of every pair's tail held out for validation when the manifest gives none.
pub const DEFAULT_HOLDOUT_FRACTION: f64 = 0.15;

/// Largest allowed holdout fraction (the fraction must lie in `(0, MAX_HOLDOUT_FRACTION]`).
pub const MAX_HOLDOUT_FRACTION: f64 = 0.5;

/// Knob values closer than this (relative to their size, at least 1) count as the same
/// setting when matching holdout settings to pairs.
const SAME_VALUE_TOLERANCE: f64 = 1e-9;

/// A device, its knobs and its recordings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The device that was recorded.
    pub device: DeviceSpec,
    /// The device's knobs, in the order models see them.
    #[serde(default)]
    pub knobs: Vec<KnobSpec>,
    /// Recordings: dry input and wet output at one knob setting each.
    #[serde(default)]
    pub pairs: Vec<PairSpec>,
    /// How data is held out for validation.
    #[serde(default)]
    pub validation: ValidationSpec,
    /// The manifest file; its folder anchors the pairs' relative paths. Set by
    /// [`Manifest::load`] and [`init_from_dir`]; not stored in the file.
    #[serde(skip)]
    pub path: PathBuf,
}

/// The device that was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Name shown to the user and stored in model files.
    pub name: String,
    /// Rate at which models of this device run, in Hz; recordings at other rates are
    /// resampled. Default [`DEFAULT_SAMPLE_RATE_HZ`].
    #[serde(default = "default_sample_rate_hz")]
    pub sample_rate_hz: u32,
}

/// One recording of the device: the signal that went in and the one that came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSpec {
    /// Input signal, relative to the manifest's folder (or absolute).
    pub dry: PathBuf,
    /// Output signal, relative to the manifest's folder (or absolute).
    pub wet: PathBuf,
    /// Channel to read from multi-channel files, from 0; default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub channel: usize,
    /// `true` when `dry` is fxtwin's profiling stimulus and `wet` a recording of the device
    /// playing it: the latency is unknown and sync markers are present. Default `false`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub capture: bool,
    /// Known latency of `wet` behind `dry`, in samples at the files' rate (negative when wet
    /// leads); skips latency estimation. Default: estimate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_samples: Option<i64>,
    /// Knob values during the recording, by knob name, in each knob's unit.
    #[serde(default)]
    pub knobs: BTreeMap<String, f64>,
}

/// How data is held out for validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSpec {
    /// Fraction of the end of every pair kept for validation, in `(0, 0.5]`.
    #[serde(default = "default_holdout_fraction")]
    pub holdout_fraction: f64,
    /// Settings kept out of training entirely: a pair is held out when its values match every
    /// knob named in one entry (knobs not named may take any value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holdout_knobs: Vec<BTreeMap<String, f64>>,
}

impl Default for ValidationSpec {
    fn default() -> Self {
        Self {
            holdout_fraction: DEFAULT_HOLDOUT_FRACTION,
            holdout_knobs: Vec::new(),
        }
    }
}

fn default_sample_rate_hz() -> u32 {
    DEFAULT_SAMPLE_RATE_HZ
}

fn default_holdout_fraction() -> f64 {
    DEFAULT_HOLDOUT_FRACTION
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn same_value(a: f64, b: f64) -> bool {
    (a - b).abs() <= SAME_VALUE_TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

/// `gain=20, tone=5` for messages.
fn format_setting(setting: &BTreeMap<String, f64>) -> String {
    setting
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PairSpec {
    /// The pair's knob values in the order of `knobs`, in each knob's unit. A knob the pair
    /// does not set takes its default ([`Manifest::load`] guarantees that none is missing).
    pub fn knob_values(&self, knobs: &[KnobSpec]) -> Vec<f64> {
        knobs
            .iter()
            .map(|k| self.knobs.get(&k.name).copied().unwrap_or(k.default))
            .collect()
    }
}

impl Manifest {
    /// Reads, parses and validates the manifest at `path` (see [`Manifest::validate`]).
    pub fn load(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates manifest text as if read from `path` (which anchors relative
    /// paths and is named in errors).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, DatasetError> {
        // Syntax, types and unknown keys outside [[knobs]].
        let mut manifest: Manifest =
            toml::from_str(text).map_err(|e| syntax_error(path, text, &e))?;
        manifest.path = path.to_path_buf();

        // KnobSpec is shared with model files, which stay open to new keys; here a key the
        // spec does not know is a typo. The spec's own serialisation lists every key it knows.
        let raw: toml::Table = toml::from_str(text).map_err(|e| syntax_error(path, text, &e))?;
        if let Some(toml::Value::Array(entries)) = raw.get("knobs") {
            for (index, (entry, spec)) in entries.iter().zip(&manifest.knobs).enumerate() {
                let known = toml::Table::try_from(spec).map_err(|e| DatasetError::Encode {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                let Some(entry) = entry.as_table() else {
                    continue;
                };
                if let Some(key) = entry.keys().find(|key| !known.contains_key(*key)) {
                    return Err(DatasetError::UnknownKnobKey {
                        path: path.to_path_buf(),
                        index,
                        key: key.clone(),
                        known: known.keys().cloned().collect::<Vec<_>>().join(", "),
                    });
                }
            }
        }

        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the device, the knob declarations, every pair's knob values and files, and the
    /// validation settings. Audio files must exist; their contents are checked by
    /// [`Manifest::check_audio`].
    pub fn validate(&self) -> Result<(), DatasetError> {
        let path = || self.path.clone();

        // Device.
        if self.device.name.trim().is_empty() {
            return Err(DatasetError::EmptyDeviceName { path: path() });
        }
        if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&self.device.sample_rate_hz) {
            return Err(DatasetError::BadSampleRate {
                path: path(),
                value: self.device.sample_rate_hz,
            });
        }

        // Knob declarations.
        for (index, knob) in self.knobs.iter().enumerate() {
            knob.validate().map_err(|source| DatasetError::Knob {
                path: path(),
                index,
                source,
            })?;
            if let Some(first) = self.knobs[..index].iter().position(|k| k.name == knob.name) {
                return Err(DatasetError::DuplicateKnob {
                    path: path(),
                    name: knob.name.clone(),
                    first,
                    second: index,
                });
            }
        }

        // Pairs: knob values, then files.
        if self.pairs.is_empty() {
            return Err(DatasetError::NoPairs { path: path() });
        }
        for (index, pair) in self.pairs.iter().enumerate() {
            self.check_setting(&pair.knobs)
                .map_err(|source| DatasetError::PairKnob {
                    path: path(),
                    index,
                    wet: pair.wet.clone(),
                    source,
                })?;
            if let Some(knob) = self
                .knobs
                .iter()
                .find(|k| !pair.knobs.contains_key(&k.name))
            {
                return Err(DatasetError::PairKnobMissing {
                    path: path(),
                    index,
                    wet: pair.wet.clone(),
                    name: knob.name.clone(),
                });
            }
            let (dry, wet) = self.pair_paths(index);
            for (role, file) in [("dry", dry), ("wet", wet)] {
                if !file.is_file() {
                    return Err(DatasetError::MissingAudio {
                        path: path(),
                        index,
                        role,
                        file,
                    });
                }
            }
        }

        // Validation settings.
        let fraction = self.validation.holdout_fraction;
        if !(fraction > 0.0 && fraction <= MAX_HOLDOUT_FRACTION) {
            return Err(DatasetError::HoldoutFraction {
                path: path(),
                value: fraction,
            });
        }
        for (index, setting) in self.validation.holdout_knobs.iter().enumerate() {
            if setting.is_empty() {
                return Err(DatasetError::HoldoutEmpty {
                    path: path(),
                    index,
                });
            }
            self.check_setting(setting)
                .map_err(|source| DatasetError::HoldoutKnob {
                    path: path(),
                    index,
                    source,
                })?;
            if !self.pairs.iter().any(|pair| matches_setting(pair, setting)) {
                return Err(DatasetError::HoldoutMatchesNothing {
                    path: path(),
                    index,
                    setting: format_setting(setting),
                });
            }
        }
        if (0..self.pairs.len()).all(|i| self.is_held_out(i)) {
            return Err(DatasetError::NothingToTrainOn { path: path() });
        }
        Ok(())
    }

    /// Every name in `setting` is a declared knob and every value lies in its range.
    fn check_setting(&self, setting: &BTreeMap<String, f64>) -> Result<(), KnobError> {
        for (name, &value) in setting {
            let knob =
                self.knobs
                    .iter()
                    .find(|k| &k.name == name)
                    .ok_or_else(|| KnobError::Unknown {
                        name: name.clone(),
                        known: self
                            .knobs
                            .iter()
                            .map(|k| k.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
            knob.check(value)?;
        }
        Ok(())
    }

    /// Opens the header of every pair's files: each must be a readable WAV or FLAC file holding the
    /// pair's channel. Slower than [`Manifest::validate`] (it opens every file) but reads no
    /// sample data.
    pub fn check_audio(&self) -> Result<(), DatasetError> {
        for (index, pair) in self.pairs.iter().enumerate() {
            let (dry, wet) = self.pair_paths(index);
            for (role, file) in [("dry", dry), ("wet", wet)] {
                let audio_error = |source| DatasetError::Audio {
                    path: self.path.clone(),
                    index,
                    role,
                    source,
                };
                let info = probe_audio(&file).map_err(audio_error)?;
                if pair.channel >= info.channels {
                    return Err(audio_error(crate::audio::AudioError::ChannelOutOfRange {
                        path: file,
                        channel: pair.channel,
                        channels: info.channels,
                    }));
                }
            }
        }
        Ok(())
    }

    /// Writes the manifest as TOML to `path`, atomically. Pair paths are written as they are
    /// stored, so relative paths stay right only when `path` is in the same folder as
    /// [`Manifest::path`].
    pub fn save(&self, path: &Path) -> Result<(), DatasetError> {
        let text = toml::to_string_pretty(self).map_err(|e| DatasetError::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_atomic(path, text.as_bytes()).map_err(|source| DatasetError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Folder of the manifest file, against which the pairs' relative paths are resolved.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// Dry and wet files of pair `index`, resolved against [`Manifest::dir`].
    ///
    /// # Panics
    /// When `index` is not below `pairs.len()`.
    pub fn pair_paths(&self, index: usize) -> (PathBuf, PathBuf) {
        let pair = &self.pairs[index];
        (self.dir().join(&pair.dry), self.dir().join(&pair.wet))
    }

    /// Whether pair `index` matches one of `validation.holdout_knobs` and so is kept out of
    /// training entirely.
    ///
    /// # Panics
    /// When `index` is not below `pairs.len()`.
    pub fn is_held_out(&self, index: usize) -> bool {
        let pair = &self.pairs[index];
        self.validation
            .holdout_knobs
            .iter()
            .any(|setting| matches_setting(pair, setting))
    }
}

/// The pair's values agree with every knob named in `setting`.
fn matches_setting(pair: &PairSpec, setting: &BTreeMap<String, f64>) -> bool {
    !setting.is_empty()
        && setting.iter().all(|(name, &value)| {
            pair.knobs
                .get(name)
                .is_some_and(|&pair_value| same_value(pair_value, value))
        })
}

/// A TOML error with the line and column of its start.
fn syntax_error(path: &Path, text: &str, error: &toml::de::Error) -> DatasetError {
    let start = error.span().map_or(0, |span| span.start).min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    DatasetError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message: error.message().to_string(),
    }
}
