//! Manifest parsing, validation errors, folder initialisation and save/load.

use super::*;
use crate::audio::testdir::TestDir;
use crate::audio::write_wav_f32;
use crate::knob::Taper;

const FULL: &str = r#"
[device]
name = "SoX overdrive"
sample_rate_hz = 44100

[[knobs]]
name = "gain"
unit = "dB"
min = 0.0
max = 100.0
default = 20.0
taper = "linear"

[[knobs]]
name = "tone"
min = 100.0
max = 10000.0
default = 1000.0
taper = "log"

[[pairs]]
dry = "dry.wav"
wet = "wet__gain=20.wav"
knobs = { gain = 20.0, tone = 1000.0 }

[[pairs]]
dry = "dry.wav"
wet = "wet__gain=40.wav"
knobs = { gain = 40.0, tone = 500.0 }
channel = 1
capture = true
latency_samples = 12

[validation]
holdout_fraction = 0.2
holdout_knobs = [{ gain = 40.0 }]
"#;

/// A folder holding the given (empty-signal) WAV files.
fn folder_with(label: &str, files: &[&str]) -> TestDir {
    let dir = TestDir::new(label);
    for name in files {
        write_wav_f32(&dir.path().join(name), 48_000, &[0.0; 16]).unwrap();
    }
    dir
}

/// The full manifest, edited by `edit`, parsed against a folder with its audio files.
fn parse_edited(edit: impl Fn(&str) -> String) -> Result<Manifest, DatasetError> {
    let dir = folder_with(
        "manifest",
        &["dry.wav", "wet__gain=20.wav", "wet__gain=40.wav"],
    );
    let path = dir.path().join("dataset.toml");
    std::fs::write(&path, edit(FULL)).unwrap();
    Manifest::load(&path)
}

/// The error message of an edited manifest, checked to name the manifest file.
fn error_of(edit: impl Fn(&str) -> String) -> String {
    let message = parse_edited(edit).unwrap_err().to_string();
    assert!(message.contains("dataset.toml"), "{message}");
    message
}

#[test]
fn parses_a_full_manifest() {
    let m = parse_edited(|t| t.to_string()).unwrap();
    assert_eq!(m.device.name, "SoX overdrive");
    assert_eq!(m.device.sample_rate_hz, 44_100);
    assert_eq!(m.knobs.len(), 2);
    assert_eq!(m.knobs[1].taper, Taper::Log);
    assert_eq!(m.knobs[1].unit, "");
    assert_eq!(m.pairs[0].knob_values(&m.knobs), vec![20.0, 1000.0]);
    assert_eq!(m.pairs[1].knob_values(&m.knobs), vec![40.0, 500.0]);
    assert_eq!((m.pairs[0].channel, m.pairs[0].capture), (0, false));
    assert_eq!(m.pairs[0].latency_samples, None);
    assert_eq!((m.pairs[1].channel, m.pairs[1].capture), (1, true));
    assert_eq!(m.pairs[1].latency_samples, Some(12));
    assert_eq!(m.validation.holdout_fraction, 0.2);
    assert!(!m.is_held_out(0));
    assert!(m.is_held_out(1));
    let (dry, wet) = m.pair_paths(1);
    assert_eq!(dry, m.dir().join("dry.wav"));
    assert_eq!(wet, m.dir().join("wet__gain=40.wav"));
}

#[test]
fn optional_sections_take_their_defaults() {
    let m = parse_edited(|t| {
        let t = t.replace("sample_rate_hz = 44100\n", "");
        t[..t.find("[validation]").unwrap()].to_string()
    })
    .unwrap();
    assert_eq!(m.device.sample_rate_hz, DEFAULT_SAMPLE_RATE_HZ);
    assert_eq!(m.validation, ValidationSpec::default());
    assert!(!m.is_held_out(1));
}

#[test]
fn syntax_error_gives_the_line() {
    let message = error_of(|t| t.replace("min = 100.0", "min = = 100.0"));
    let line = FULL.lines().position(|l| l == "min = 100.0").unwrap() + 1;
    assert!(
        message.contains(&format!("dataset.toml:{line}:")),
        "{message}"
    );
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    let message = error_of(|t| t.replace("channel = 1", "chanel = 1"));
    assert!(message.contains("chanel"), "{message}");
    let message = error_of(|t| t.replace("name = \"SoX overdrive\"", "name = \"x\"\nrate = 1"));
    assert!(message.contains("rate"), "{message}");
    let message = error_of(|t| t.replace("unit = \"dB\"", "units = \"dB\""));
    assert!(
        message.contains("knob #1") && message.contains("`units`"),
        "{message}"
    );
}

#[test]
fn knob_declaration_errors_name_the_knob() {
    let message = error_of(|t| t.replace("name = \"tone\"", "name = \"gain\""));
    assert!(
        message.contains("\"gain\" is declared twice (knobs #1 and #2)"),
        "{message}"
    );
    let message = error_of(|t| t.replace("max = 10000.0", "max = 50.0"));
    assert!(
        message.contains("knob #2") && message.contains("\"tone\""),
        "{message}"
    );
}

#[test]
fn pair_knob_errors_name_pair_knob_and_value() {
    let message =
        error_of(|t| t.replace("gain = 40.0, tone = 500.0", "gain = 140.0, tone = 500.0"));
    assert!(
        message.contains("pair #2") && message.contains("\"gain\"") && message.contains("140"),
        "{message}"
    );
    let message = error_of(|t| t.replace("gain = 40.0, tone = 500.0", "gain = 40.0"));
    assert!(
        message.contains("pair #2") && message.contains("\"tone\""),
        "{message}"
    );
    let message = error_of(|t| t.replace("tone = 500.0 }", "tone = 500.0, drive = 1.0 }"));
    assert!(
        message.contains("pair #2") && message.contains("unknown knob \"drive\""),
        "{message}"
    );
}

#[test]
fn missing_audio_file_is_named() {
    let message = error_of(|t| t.replace("wet__gain=40.wav", "wet__gain=41.wav"));
    assert!(
        message.contains("pair #2") && message.contains("wet file") && message.contains("gain=41"),
        "{message}"
    );
}

#[test]
fn validation_settings_are_checked() {
    for bad in ["0.0", "0.6", "-0.1", "nan"] {
        let message = error_of(|t| {
            t.replace(
                "holdout_fraction = 0.2",
                &format!("holdout_fraction = {bad}"),
            )
        });
        assert!(message.contains("holdout_fraction"), "{message}");
    }
    assert!(
        parse_edited(|t| t.replace("holdout_fraction = 0.2", "holdout_fraction = 0.5")).is_ok()
    );
    let message = error_of(|t| t.replace("[{ gain = 40.0 }]", "[{ gain = 30.0 }]"));
    assert!(
        message.contains("holdout_knobs #1 (gain=30) matches no pair"),
        "{message}"
    );
    let message =
        error_of(|t| t.replace("[{ gain = 40.0 }]", "[{ gain = 40.0 }, { tone = 1000.0 }]"));
    assert!(message.contains("none is left for training"), "{message}");
    let message = error_of(|t| t.replace("[{ gain = 40.0 }]", "[{ colour = 1.0 }]"));
    assert!(
        message.contains("holdout_knobs #1") && message.contains("\"colour\""),
        "{message}"
    );
}

#[test]
fn save_then_load_gives_the_same_manifest() {
    let original = parse_edited(|t| t.to_string()).unwrap();
    let dir = folder_with(
        "roundtrip",
        &["dry.wav", "wet__gain=20.wav", "wet__gain=40.wav"],
    );
    let path = dir.path().join("saved.toml");
    let mut moved = original.clone();
    moved.path = path.clone();
    moved.save(&path).unwrap();
    let loaded = Manifest::load(&path).unwrap();
    assert_eq!(loaded, moved);
}

#[test]
fn check_audio_catches_a_channel_the_files_lack() {
    // pair #2 asks for channel 1 of mono files.
    let dir = folder_with(
        "check-audio",
        &["dry.wav", "wet__gain=20.wav", "wet__gain=40.wav"],
    );
    let path = dir.path().join("dataset.toml");
    std::fs::write(&path, FULL).unwrap();
    let err = Manifest::load(&path).unwrap().check_audio().unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("pair #2")
            && message.contains("channel 1")
            && message.contains("1 channel"),
        "{message}"
    );
}

#[test]
fn init_reads_knobs_from_file_names() {
    let dir = folder_with(
        "init",
        &[
            "dry.wav",
            "wet__gain=20__colour=60.wav",
            "wet__gain=20__colour=30.wav",
            "wet__gain=50__colour=60.wav",
            "wet__gain=80__colour=90.wav",
        ],
    );
    let m = init_from_dir(dir.path()).unwrap();
    assert_eq!(m.path, dir.path().join(MANIFEST_FILE_NAME));
    assert!(m.device.name.starts_with("fxtwin-test-init"));
    assert_eq!(m.pairs.len(), 4);
    assert!(m
        .pairs
        .iter()
        .all(|p| p.dry == Path::new("dry.wav") && !p.capture));
    // Knob order follows the file names; ranges span the observed values.
    let names: Vec<&str> = m.knobs.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["gain", "colour"]);
    let gain = &m.knobs[0];
    assert_eq!((gain.min, gain.max, gain.default), (20.0, 80.0, 20.0));
    let colour = &m.knobs[1];
    assert_eq!((colour.min, colour.max, colour.default), (30.0, 90.0, 60.0));
    assert_eq!((colour.unit.as_str(), colour.taper), ("", Taper::Linear));
    let pair = m
        .pairs
        .iter()
        .find(|p| p.wet == Path::new("wet__gain=80__colour=90.wav"));
    assert_eq!(pair.unwrap().knob_values(&m.knobs), vec![80.0, 90.0]);

    // What init builds survives save and load.
    m.save(&m.path).unwrap();
    assert_eq!(Manifest::load(&m.path).unwrap(), m);
}

#[test]
fn init_defaults_to_the_median_when_no_value_is_most_common() {
    let dir = folder_with(
        "init-median",
        &[
            "dry.wav",
            "wet__gain=1.wav",
            "wet__gain=7.wav",
            "wet__gain=3.wav",
        ],
    );
    let m = init_from_dir(dir.path()).unwrap();
    assert_eq!(m.knobs[0].default, 3.0);
}

#[test]
fn init_pairs_per_setting_dry_files_and_detects_captures() {
    let dir = folder_with(
        "init-per-setting",
        &[
            "dry__gain=1.wav",
            "dry__gain=2.wav",
            "wet__gain=1.wav",
            "wet__gain=2.wav",
        ],
    );
    let m = init_from_dir(dir.path()).unwrap();
    for pair in &m.pairs {
        let dry = pair.dry.to_string_lossy().replace("dry", "wet");
        assert_eq!(Path::new(&dry), pair.wet);
    }

    let dir = folder_with(
        "init-capture",
        &["stimulus_v1.wav", "rec__drive=3.wav", "rec__drive=7.wav"],
    );
    let m = init_from_dir(dir.path()).unwrap();
    assert!(m
        .pairs
        .iter()
        .all(|p| p.capture && p.dry == Path::new("stimulus_v1.wav")));

    // A device without knobs.
    let dir = folder_with("init-no-knobs", &["dry.wav", "wet.wav"]);
    let m = init_from_dir(dir.path()).unwrap();
    assert!(m.knobs.is_empty());
    assert_eq!(m.pairs.len(), 1);
}

#[test]
fn init_errors_name_the_problem() {
    let dir = folder_with("init-no-dry", &["wet__gain=1.wav"]);
    assert!(matches!(
        init_from_dir(dir.path()),
        Err(DatasetError::NoDryFile { .. })
    ));

    let dir = folder_with("init-no-wet", &["dry.wav"]);
    assert!(matches!(
        init_from_dir(dir.path()),
        Err(DatasetError::NoWetFile { .. })
    ));

    let dir = folder_with(
        "init-two-dry",
        &["dry_a.wav", "dry_b.wav", "wet__gain=1.wav"],
    );
    let message = init_from_dir(dir.path()).unwrap_err().to_string();
    assert!(message.contains("dry_a.wav, dry_b.wav"), "{message}");

    let dir = folder_with(
        "init-disagree",
        &["dry.wav", "wet__gain=1.wav", "wet__gain=2__tone=3.wav"],
    );
    let message = init_from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("wet__gain=2__tone=3.wav") && message.contains("[gain, tone]"),
        "{message}"
    );

    let dir = folder_with("init-bad-field", &["dry.wav", "wet__gain=loud.wav"]);
    let message = init_from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("wet__gain=loud.wav") && message.contains("\"gain=loud\""),
        "{message}"
    );

    let dir = folder_with(
        "init-unmatched",
        &["dry__gain=1.wav", "wet__gain=1.wav", "wet__gain=2.wav"],
    );
    let message = init_from_dir(dir.path()).unwrap_err().to_string();
    assert!(message.contains("wet__gain=2.wav"), "{message}");
}
