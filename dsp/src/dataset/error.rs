//! What can be wrong with a dataset manifest or a folder of recordings.

use std::path::PathBuf;

use crate::audio::AudioError;
use crate::knob::KnobError;

use super::{MAX_HOLDOUT_FRACTION, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ};

/// A manifest that cannot be read, parsed, validated or written, or a folder from which no
/// manifest can be built.
///
/// Manifest errors name the manifest file (`path`) and the entry at fault; pairs, knobs and
/// holdout settings are numbered from 1 in messages, in the order of the file (the `index`
/// fields count from 0).
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: cannot read the manifest: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
        message: String,
    },
    #[error("{}: knob #{}: unknown key `{key}` (known keys: {known})", path.display(), index + 1)]
    UnknownKnobKey {
        path: PathBuf,
        index: usize,
        key: String,
        known: String,
    },
    #[error("{}: knob #{}: {source}", path.display(), index + 1)]
    Knob {
        path: PathBuf,
        index: usize,
        #[source]
        source: KnobError,
    },
    #[error(
        "{}: knob {name:?} is declared twice (knobs #{} and #{})",
        path.display(), first + 1, second + 1
    )]
    DuplicateKnob {
        path: PathBuf,
        name: String,
        first: usize,
        second: usize,
    },
    #[error("{}: [device] name is empty", path.display())]
    EmptyDeviceName { path: PathBuf },
    #[error(
        "{}: [device] sample_rate_hz = {value} is outside {MIN_SAMPLE_RATE_HZ}..={MAX_SAMPLE_RATE_HZ} Hz",
        path.display()
    )]
    BadSampleRate { path: PathBuf, value: u32 },
    #[error("{}: the manifest lists no [[pairs]]", path.display())]
    NoPairs { path: PathBuf },
    #[error("{}: pair #{} (wet = {}): {source}", path.display(), index + 1, wet.display())]
    PairKnob {
        path: PathBuf,
        index: usize,
        wet: PathBuf,
        #[source]
        source: KnobError,
    },
    #[error(
        "{}: pair #{} (wet = {}): no value for knob {name:?} (every pair sets every knob)",
        path.display(), index + 1, wet.display()
    )]
    PairKnobMissing {
        path: PathBuf,
        index: usize,
        wet: PathBuf,
        name: String,
    },
    #[error(
        "{}: pair #{}: {role} file {} does not exist (paths are relative to the manifest's folder)",
        path.display(), index + 1, file.display()
    )]
    MissingAudio {
        path: PathBuf,
        index: usize,
        /// `"dry"` or `"wet"`.
        role: &'static str,
        /// The file as resolved against the manifest's folder.
        file: PathBuf,
    },
    #[error("{}: pair #{} ({role} file): {source}", path.display(), index + 1)]
    Audio {
        path: PathBuf,
        index: usize,
        /// `"dry"` or `"wet"`.
        role: &'static str,
        #[source]
        source: AudioError,
    },
    #[error(
        "{}: [validation] holdout_fraction = {value} is outside (0, {MAX_HOLDOUT_FRACTION}]",
        path.display()
    )]
    HoldoutFraction { path: PathBuf, value: f64 },
    #[error("{}: [validation] holdout_knobs #{}: {source}", path.display(), index + 1)]
    HoldoutKnob {
        path: PathBuf,
        index: usize,
        #[source]
        source: KnobError,
    },
    #[error(
        "{}: [validation] holdout_knobs #{} ({setting}) matches no pair",
        path.display(), index + 1
    )]
    HoldoutMatchesNothing {
        path: PathBuf,
        index: usize,
        setting: String,
    },
    #[error(
        "{}: [validation] holdout_knobs #{} is empty: name at least one knob",
        path.display(), index + 1
    )]
    HoldoutEmpty { path: PathBuf, index: usize },
    #[error(
        "{}: [validation] holdout_knobs hold out every pair; none is left for training",
        path.display()
    )]
    NothingToTrainOn { path: PathBuf },
    #[error("{}: cannot write the manifest: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot encode the manifest as TOML: {message}", path.display())]
    Encode { path: PathBuf, message: String },
    #[error("{}: cannot list the folder: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: no dry file: expected dry.wav, one dry*.wav or stimulus*.wav, or a \
         dry__NAME=VALUE.wav for each wet file",
        dir.display()
    )]
    NoDryFile { dir: PathBuf },
    #[error(
        "{}: no dry file for this wet file: no dry.wav (or single dry*.wav / stimulus*.wav) \
         and no dry file with the same knob values",
        file.display()
    )]
    NoDryFor { file: PathBuf },
    #[error(
        "{}: several files could be the dry signal ({candidates}); keep one, or name it dry.wav",
        dir.display()
    )]
    AmbiguousDry { dir: PathBuf, candidates: String },
    #[error(
        "{}: no wet file: expected recordings named like wet__gain=20.wav (or wet.wav for a \
         device without knobs)",
        dir.display()
    )]
    NoWetFile { dir: PathBuf },
    #[error(
        "{}: file name field {field:?} {reason} (fields are separated by `__`, e.g. \
         wet__gain=20__tone=5.wav)",
        file.display()
    )]
    BadFileName {
        file: PathBuf,
        field: String,
        reason: String,
    },
    #[error(
        "{}: carries knobs [{found}] but {} carries [{expected}]; all files must carry the same knobs",
        file.display(), reference.display()
    )]
    KnobsDisagree {
        file: PathBuf,
        found: String,
        reference: PathBuf,
        expected: String,
    },
}
