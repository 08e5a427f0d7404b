//! A capture made the way a user makes one: fxtwin's stimulus played through a real
//! third-party effect (SoX overdrive, polarity inverted, with a known latency and trailing
//! silence), then checked with the same code `fxtwin dataset check` and training use.

use std::path::{Path, PathBuf};
use std::process::Command;

use dsp::check::prepare_pair;
use dsp::dataset::Manifest;

/// Latency the "interface" adds, in samples at 48 kHz.
const LATENCY_SAMPLES: i64 = 220;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("fxtwin-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sox(args: &[&str]) {
    let status = Command::new("sox")
        .args(args)
        .status()
        .expect("sox must be installed (scripts/test.sh installs it)");
    assert!(status.success(), "sox {args:?} failed");
}

fn write_manifest(dir: &Path, wet: &str) -> Manifest {
    let text = format!(
        "[device]\nname = \"sox overdrive capture\"\n\n[[pairs]]\ndry = \"stimulus.wav\"\n\
         wet = \"{wet}\"\ncapture = true\n"
    );
    let path = dir.join("manifest.toml");
    std::fs::write(&path, text).unwrap();
    Manifest::load(&path).unwrap()
}

#[test]
fn capture_through_sox_is_aligned_exactly_and_replicates() {
    let dir = TempDir::new("capture");
    let stim = dsp::stimulus::generate(48_000);
    let stim_path = dir.0.join("stimulus.wav");
    dsp::audio::write_wav_f32(&stim_path, 48_000, &stim.samples).unwrap();

    // Overdrive, inverted (vol -1), delayed by padding the start: a recording interface with
    // 220 samples of round-trip latency and a polarity-flipping cable.
    let pad = format!("{LATENCY_SAMPLES}s");
    let wet = dir.0.join("recording.wav");
    sox(&[
        "-D",
        "-R",
        stim_path.to_str().unwrap(),
        "-e",
        "floating-point",
        "-b",
        "32",
        wet.to_str().unwrap(),
        "overdrive",
        "20",
        "20",
        "vol",
        "-1",
        "pad",
        &pad,
        "0",
    ]);

    let manifest = write_manifest(&dir.0, "recording.wav");
    let pair = prepare_pair(&manifest, 0).unwrap();
    let r = &pair.report;
    assert_eq!(r.latency_samples, LATENCY_SAMPLES);
    assert!(r.inverted, "SoX's vol -1 inverts polarity");
    assert!(r.confidence > 0.5, "confidence {}", r.confidence);
    assert!(r.drift_ppm.unwrap().abs() < 1.0, "drift {:?}", r.drift_ppm);
    // SoX overdrive is deterministic: the two copies of the validation segment match.
    assert!(
        r.replicate_esr.unwrap() < 1e-6,
        "replicate ESR {:?}",
        r.replicate_esr
    );

    // After alignment, a segment of the aligned recording correlates with overdriven dry.
    let n = pair.dry.len().min(pair.wet.len());
    let music = stim
        .find(|k| matches!(k, dsp::stimulus::SegmentKind::Music { .. }))
        .unwrap();
    let range = music.range();
    assert!(range.end <= n);
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for i in range {
        let (x, y) = (pair.dry[i] as f64, pair.wet[i] as f64);
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    let corr = xy / (xx * yy).sqrt();
    assert!(corr > 0.8, "aligned music correlation {corr}");
}

#[test]
fn capture_of_unrelated_audio_says_what_to_do() {
    let dir = TempDir::new("nosync");
    let stim = dsp::stimulus::generate(48_000);
    dsp::audio::write_wav_f32(&dir.0.join("stimulus.wav"), 48_000, &stim.samples).unwrap();
    // A "recording" of something else: plucked-string music with no sync blocks.
    let other = dsp::stimulus::music(48_000, stim.samples.len(), 99, -6.0);
    dsp::audio::write_wav_f32(&dir.0.join("other.wav"), 48_000, &other).unwrap();

    let manifest = write_manifest(&dir.0, "other.wav");
    let err = match prepare_pair(&manifest, 0) {
        Ok(_) => panic!("a capture without sync blocks was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("other.wav"), "{err}");
    assert!(err.contains("sync"), "{err}");
    assert!(err.contains("raise the return level"), "{err}");
}
