//! A first manifest from a folder of recordings whose names carry their knob values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::knob::{parse_setting, KnobSpec, Taper};

use super::{
    DatasetError, DeviceSpec, Manifest, PairSpec, ValidationSpec, DEFAULT_SAMPLE_RATE_HZ,
    MANIFEST_FILE_NAME,
};

/// An audio file (`*.wav` or `*.flac`) and what its name says.
struct NamedFile {
    /// File name within the folder.
    name: String,
    /// Lower-case text before the first `__` (empty when the name starts with a field).
    role: String,
    /// `NAME=VALUE` fields, in file-name order.
    setting: Vec<(String, f64)>,
}

impl NamedFile {
    /// Dry signal (`dry*`) or fxtwin's stimulus (`stimulus*`).
    fn is_dry(&self) -> bool {
        self.role.starts_with("dry") || self.is_stimulus()
    }

    fn is_stimulus(&self) -> bool {
        self.role.starts_with("stimulus")
    }

    fn knob_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.setting.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    fn same_setting(&self, other: &NamedFile) -> bool {
        self.knob_names() == other.knob_names()
            && self.setting.iter().all(|(name, value)| {
                other
                    .setting
                    .iter()
                    .any(|(n, v)| n == name && super::same_value(*v, *value))
            })
    }
}

/// Builds a manifest from the audio files (`*.wav`, `*.flac`) in `dir` (not its subfolders),
/// reading knob values from their names.
///
/// Naming rules:
/// - Wet files carry `NAME=VALUE` fields separated by `__`: `wet__gain=20__tone=5.wav`
///   (the text before the first `__` is free). A lone `wet.wav` makes a device without knobs.
/// - The dry file is `dry.wav` (or `dry.flac`), or else the only file whose name starts with
///   `dry` and carries no fields. A dry file named `stimulus*.wav` marks every pair as a capture of fxtwin's
///   profiling stimulus.
/// - When each setting has its own dry file, `dry__gain=20.wav` pairs with
///   `wet__gain=20.wav`; a wet file without its own dry file uses the shared one.
///
/// Every file must carry the same knob names. Each knob's range is the span of the observed
/// values, its default the most common value (the median observed value when several are
/// equally common), its unit empty and its taper linear; edit the manifest to correct them.
/// A knob seen at a single value gets the range `value ..= value + max(|value|, 1)`, since a
/// range must not be empty.
///
/// The device is named after the folder; the manifest's path is `dir/manifest.toml`
/// ([`MANIFEST_FILE_NAME`]), not yet written: call [`Manifest::save`].
pub fn init_from_dir(dir: &Path) -> Result<Manifest, DatasetError> {
    // List and parse the audio files, in name order so that results are reproducible.
    let read_dir_error = |source| DatasetError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_error)? {
        let entry = entry.map_err(read_dir_error)?;
        let path = entry.path();
        if crate::audio::is_audio_file_name(&path) && path.is_file() {
            files.push(parse_name(&path)?);
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));

    // Sort the files into shared dry, per-setting dry and wet.
    let (dry_files, wet_files): (Vec<&NamedFile>, Vec<&NamedFile>) =
        files.iter().partition(|f| f.is_dry());
    let (shared_dry, per_setting_dry): (Vec<&NamedFile>, Vec<&NamedFile>) =
        dry_files.into_iter().partition(|f| f.setting.is_empty());
    let shared_dry = match shared_dry.as_slice() {
        [] => None,
        [only] => Some(*only),
        several => match several.iter().find(|f| {
            let lower = f.name.to_ascii_lowercase();
            lower == "dry.wav" || lower == "dry.flac"
        }) {
            Some(dry) => Some(*dry),
            None => {
                return Err(DatasetError::AmbiguousDry {
                    dir: dir.to_path_buf(),
                    candidates: several
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        },
    };
    if wet_files.is_empty() {
        return Err(DatasetError::NoWetFile {
            dir: dir.to_path_buf(),
        });
    }
    if shared_dry.is_none() && per_setting_dry.is_empty() {
        return Err(DatasetError::NoDryFile {
            dir: dir.to_path_buf(),
        });
    }

    // Every file with fields carries the same knobs as the first wet file.
    let reference = wet_files[0];
    for file in wet_files.iter().chain(&per_setting_dry) {
        if file.knob_names() != reference.knob_names() {
            return Err(DatasetError::KnobsDisagree {
                file: dir.join(&file.name),
                found: file.knob_names().join(", "),
                reference: dir.join(&reference.name),
                expected: reference.knob_names().join(", "),
            });
        }
    }

    // Pairs: each wet file with the dry file of its setting, or the shared one.
    let mut pairs = Vec::with_capacity(wet_files.len());
    for wet in &wet_files {
        let dry = per_setting_dry
            .iter()
            .find(|dry| dry.same_setting(wet))
            .copied()
            .or(shared_dry)
            .ok_or_else(|| DatasetError::NoDryFor {
                file: dir.join(&wet.name),
            })?;
        pairs.push(PairSpec {
            dry: PathBuf::from(&dry.name),
            wet: PathBuf::from(&wet.name),
            channel: 0,
            capture: dry.is_stimulus(),
            latency_samples: None,
            knobs: wet.setting.iter().cloned().collect(),
        });
    }

    // Knobs, in the order the first wet file names them.
    let knobs = reference
        .setting
        .iter()
        .map(|(name, _)| {
            let values: Vec<f64> = wet_files
                .iter()
                .filter_map(|f| f.setting.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
                .collect();
            observed_knob(name, &values)
        })
        .collect();

    let device_name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "device".to_string());
    let manifest = Manifest {
        device: DeviceSpec {
            name: device_name,
            sample_rate_hz: DEFAULT_SAMPLE_RATE_HZ,
        },
        knobs,
        pairs,
        validation: ValidationSpec::default(),
        path: dir.join(MANIFEST_FILE_NAME),
    };
    manifest.validate()?;
    Ok(manifest)
}

/// Reads role and `NAME=VALUE` fields from a file name.
fn parse_name(path: &Path) -> Result<NamedFile, DatasetError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bad = |field: &str, reason: &str| DatasetError::BadFileName {
        file: path.to_path_buf(),
        field: field.to_string(),
        reason: reason.to_string(),
    };

    let mut fields: Vec<&str> = stem.split("__").collect();
    let role = if fields[0].contains('=') {
        String::new()
    } else {
        fields.remove(0).to_ascii_lowercase()
    };
    let mut setting: Vec<(String, f64)> = Vec::with_capacity(fields.len());
    for field in fields {
        let (knob, value) =
            parse_setting(field).map_err(|_| bad(field, "is not NAME=VALUE with a number"))?;
        if !value.is_finite() {
            return Err(bad(field, "has a value that is not a finite number"));
        }
        // The knob's own rules for names, checked on a placeholder declaration.
        let probe = KnobSpec {
            name: knob.clone(),
            unit: String::new(),
            min: 0.0,
            max: 1.0,
            default: 0.0,
            taper: Taper::Linear,
        };
        if probe.validate().is_err() {
            return Err(bad(
                field,
                "has a knob name that is not letters, digits, '_' and '-'",
            ));
        }
        if setting.iter().any(|(n, _)| n == &knob) {
            return Err(bad(field, "names a knob a second time"));
        }
        setting.push((knob, value));
    }
    Ok(NamedFile {
        name,
        role,
        setting,
    })
}

/// A linear, unit-less knob spanning `values` (not empty), defaulting to the most common value.
fn observed_knob(name: &str, values: &[f64]) -> KnobSpec {
    let mut distinct: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
    for &v in values {
        // Order-preserving key for finite floats (+0 and -0 merged).
        let v = if v == 0.0 { 0.0 } else { v };
        let key = if v >= 0.0 {
            v.to_bits() | (1 << 63)
        } else {
            !v.to_bits()
        };
        distinct.entry(key).or_insert((v, 0)).1 += 1;
    }
    let sorted: Vec<(f64, usize)> = distinct.into_values().collect();
    let (min, mut max) = (sorted[0].0, sorted[sorted.len() - 1].0);
    if max == min {
        max = min + min.abs().max(1.0);
    }
    let top_count = sorted.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let most_common: Vec<f64> = sorted
        .iter()
        .filter(|(_, c)| *c == top_count)
        .map(|(v, _)| *v)
        .collect();
    let default = if most_common.len() == 1 {
        most_common[0]
    } else {
        // Lower median of the observed values, so the default is a recorded setting.
        sorted[(sorted.len() - 1) / 2].0
    };
    KnobSpec {
        name: name.to_string(),
        unit: String::new(),
        min,
        max,
        default,
        taper: Taper::Linear,
    }
}
