//! Fixtures for tests that drive the `fxtwin` binary: a self-removing temporary folder, WAV and
//! manifest writers, a small model file, and checks on how the binary failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::Device;
use dsp::knob::{KnobSpec, Taper};
use dsp::model::{ModelFile, Network, RecurrentNet};

/// Sample rate of the fixture model and of most fixture recordings, in Hz.
pub const MODEL_RATE_HZ: u32 = 48_000;
/// Range of the fixture model's one knob, `gain`, in dB.
pub const GAIN_MIN_DB: f64 = 0.0;
pub const GAIN_MAX_DB: f64 = 50.0;

/// A fresh folder under the system temporary folder, removed with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `fxtwin-cli-LABEL-PID-N` under the system temporary folder.
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("fxtwin-cli-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create test folder");
        Self { path }
    }

    /// `name` inside the folder.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Names of the files in the folder, sorted.
    pub fn file_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .expect("list test folder")
            .map(|e| {
                e.expect("folder entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs the `fxtwin` binary built for this test with `args`.
pub fn fxtwin<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fxtwin"))
        .args(args)
        .output()
        .expect("start the fxtwin binary")
}

/// Asserts that `out` is a clean failure: exit status 1, stderr exactly one line that starts
/// with `error: ` and contains every one of `needles`, and no panic anywhere. Returns the line.
pub fn assert_one_line_error(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status; stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(
        !stderr.contains("panicked") && !stdout.contains("panicked"),
        "panic:\n{stderr}"
    );
    assert!(
        stderr.ends_with('\n'),
        "stderr must end with a newline: {stderr:?}"
    );
    let line = stderr.trim_end_matches('\n');
    assert!(
        !line.contains('\n'),
        "stderr must be one line, got:\n{stderr}"
    );
    assert!(
        line.starts_with("error: "),
        "stderr must start with `error: `: {line}"
    );
    for needle in needles {
        assert!(
            line.contains(needle),
            "stderr should contain {needle:?}: {line}"
        );
    }
    // A cause printed twice (once inside its parent's message, once as the next link of the
    // chain) shows as a repeated `: `-separated part.
    let parts: Vec<&str> = line.split(": ").filter(|p| p.len() >= 12).collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} is repeated: {line}"
        );
    }
    line.to_string()
}

/// Temporary files that an atomic writer left behind in `dir` (`.NAME.PID.N.tmp`).
pub fn stray_temp_files(dir: &TempDir) -> Vec<String> {
    dir.file_names()
        .into_iter()
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

/// A deterministic test signal: three sines (110, 440 and 1760 Hz) at 0.3 peak in total, plus
/// seeded white noise at 0.02 peak from a 64-bit linear congruential generator.
pub fn test_signal(sample_rate_hz: u32, duration_s: f64, seed: u64) -> Vec<f32> {
    let len = (duration_s * f64::from(sample_rate_hz)).round() as usize;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            let t = i as f64 / f64::from(sample_rate_hz);
            let tones: f64 = [110.0, 440.0, 1760.0]
                .iter()
                .map(|f| 0.1 * (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0;
            (tones + 0.02 * noise) as f32
        })
        .collect()
}

/// Writes `samples` as a mono float WAV file `name` in `dir` and returns its path.
pub fn write_wav(dir: &TempDir, name: &str, sample_rate_hz: u32, samples: &[f32]) -> PathBuf {
    let path = dir.join(name);
    dsp::audio::write_wav_f32(&path, sample_rate_hz, samples).expect("write fixture WAV");
    path
}

/// The fixture model's knob: `gain`, 0..50 dB, default 10 dB.
pub fn gain_knob() -> KnobSpec {
    KnobSpec {
        name: "gain".into(),
        unit: "dB".into(),
        min: GAIN_MIN_DB,
        max: GAIN_MAX_DB,
        default: 10.0,
        taper: Taper::Linear,
    }
}

/// A small LSTM model (8 hidden units, input skip) with seeded random weights and the `gain`
/// knob, at [`MODEL_RATE_HZ`].
pub fn fixture_model() -> ModelFile {
    let network = Network::Recurrent(RecurrentNet {
        cell: dsp::model::Cell::Lstm,
        hidden_size: 8,
        skip: true,
        gain_head: false,
        level_inputs: Vec::new(),
    });
    let net = models::net::TrainableNet::init(&network, 1, 7, &Device::Cpu)
        .expect("initialise fixture network");
    ModelFile::new(
        "fixture drive",
        MODEL_RATE_HZ,
        vec![gain_knob()],
        network,
        net.to_weights().expect("export fixture weights"),
    )
}

/// Writes [`fixture_model`] as `name` in `dir` and returns the model and its path.
pub fn write_model(dir: &TempDir, name: &str) -> (ModelFile, PathBuf) {
    let model = fixture_model();
    let path = dir.join(name);
    model.save(&path).expect("write fixture model");
    (model, path)
}

/// A manifest for the fixture device with the `gain` knob and one pair, `dry` and `wet` at
/// gain `gain_db`, written as `manifest.toml` in `dir`.
pub fn write_manifest(dir: &TempDir, dry: &str, wet: &str, gain_db: f64) -> PathBuf {
    let text = format!(
        "[device]\n\
         name = \"fixture drive\"\n\
         sample_rate_hz = {MODEL_RATE_HZ}\n\
         \n\
         [[knobs]]\n\
         name = \"gain\"\n\
         unit = \"dB\"\n\
         min = {GAIN_MIN_DB:?}\n\
         max = {GAIN_MAX_DB:?}\n\
         default = 10.0\n\
         \n\
         [[pairs]]\n\
         dry = \"{dry}\"\n\
         wet = \"{wet}\"\n\
         knobs = {{ gain = {gain_db:?} }}\n"
    );
    write_text(dir, "manifest.toml", &text)
}

/// Writes `text` as `name` in `dir` and returns its path.
pub fn write_text(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture text");
    path
}

/// The path as the binary prints it.
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}
