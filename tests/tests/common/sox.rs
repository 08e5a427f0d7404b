//! SoX-rendered devices for the end-to-end profiling tests: dry music, wet renders through SoX
//! effects at a grid of knob settings, and the dataset manifest that describes them.
//!
//! The datasets are the ones `scripts/make_sox_datasets.sh` writes (same dry signal, same SoX
//! command lines, same manifests), so a longer training by hand sees exactly what the test sees.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use dsp::stimulus::{self, SegmentKind};

/// Rate of every file and model, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 48_000;

/// The SoX executable; the tests fail (rather than skip) without it.
const SOX: &str = "sox";

/// Overdrive colour argument (SoX's default is 20).
pub const OVERDRIVE_COLOUR: u32 = 20;

/// Compressor attack and release times of the envelope follower, in seconds.
pub const COMPAND_ATTACK_S: f64 = 0.01;
pub const COMPAND_RELEASE_S: f64 = 0.1;

/// Soft-knee width of the compressor's transfer function, in dB.
pub const COMPAND_KNEE_DB: f64 = 6.0;

/// A directory under cargo's per-target temporary folder, emptied when created. It is removed
/// when dropped, except while a test is panicking, so a failing run leaves its files to inspect.
pub struct WorkDir {
    pub path: PathBuf,
}

impl WorkDir {
    /// `CARGO_TARGET_TMPDIR/label`, fresh.
    pub fn new(label: &str) -> Self {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(label);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("{}: cannot create: {e}", path.display()));
        Self { path }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs `sox -D -R INPUT -e floating-point -b 32 OUTPUT EFFECT...` (no dither, repeatable,
/// 32-bit float output).
///
/// # Panics
/// When SoX is missing or fails; the message names the command.
pub fn sox_render(input: &Path, output: &Path, effect: &[String]) {
    let mut command = Command::new(SOX);
    command
        .args(["-D", "-R"])
        .arg(input)
        .args(["-e", "floating-point", "-b", "32"])
        .arg(output)
        .args(effect);
    let result = command.output().unwrap_or_else(|e| {
        panic!("cannot run {SOX} ({e}): install SoX (scripts/test.sh installs it on Debian)")
    });
    assert!(
        result.status.success(),
        "{command:?} failed ({}): {}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The dry material: the profiling stimulus' 20 s music section followed by the 4 s validation
/// passage that comes after it (another seed), 24 s at [`SAMPLE_RATE_HZ`]. Bars of the music
/// peak from -33 to -1 dBFS; the validation passage, which ends up in every pair's held-out
/// tail, peaks at -9 and -3 dBFS and is music the model never trains on.
pub fn dry_music() -> Vec<f32> {
    let stim = stimulus::generate(SAMPLE_RATE_HZ);
    let music = stim
        .find(|kind| matches!(kind, SegmentKind::Music { .. }))
        .expect("the stimulus has a music section");
    let passage = stim
        .validation_copy(1)
        .expect("the stimulus has a second validation copy");
    assert_eq!(
        passage.start_samples,
        music.range().end,
        "the validation passage follows the music section"
    );
    stim.samples[music.start_samples..passage.range().end].to_vec()
}

/// One knob declaration of a manifest.
pub struct KnobDecl {
    pub name: &'static str,
    pub unit: &'static str,
    pub min: f64,
    pub max: f64,
    pub default: f64,
    pub taper: &'static str,
}

/// A device rendered by SoX: its knobs, the settings recorded, and how one setting maps onto
/// SoX's effect arguments.
pub struct SoxDevice {
    pub name: &'static str,
    /// Folder name of the dataset, as in `scripts/make_sox_datasets.sh`.
    pub folder: &'static str,
    /// First line(s) of the manifest's comment: the SoX command line.
    pub comment: &'static str,
    pub knobs: Vec<KnobDecl>,
    /// Knob values of each recorded setting, in the order of `knobs`.
    pub settings: Vec<Vec<f64>>,
    /// Settings held out of training, in the order of `knobs`.
    pub holdout: Vec<Vec<f64>>,
    /// SoX effect arguments for one setting.
    pub effect: fn(&[f64]) -> Vec<String>,
}

/// SoX `overdrive GAIN 20` with gain 10, 20, 25, 30 and 40 dB; 25 dB is held out.
pub fn overdrive() -> SoxDevice {
    SoxDevice {
        name: "SoX overdrive",
        folder: "sox-overdrive",
        comment:
            "SoX overdrive: sox -D -R dry.wav -e floating-point -b 32 wet.wav overdrive GAIN 20",
        knobs: vec![KnobDecl {
            name: "gain",
            unit: "dB",
            min: 0.0,
            max: 50.0,
            default: 25.0,
            taper: "linear",
        }],
        settings: [10.0, 20.0, 25.0, 30.0, 40.0].map(|g| vec![g]).to_vec(),
        holdout: vec![vec![25.0]],
        effect: |values| {
            vec![
                "overdrive".into(),
                values[0].to_string(),
                OVERDRIVE_COLOUR.to_string(),
            ]
        },
    }
}

/// The `compand` arguments for threshold `threshold_db` and ratio `ratio`: attack
/// [`COMPAND_ATTACK_S`], release [`COMPAND_RELEASE_S`], a [`COMPAND_KNEE_DB`] soft knee, unity
/// gain below the threshold, slope `1/ratio` above it up to 0 dBFS, no make-up gain, an initial
/// level of -90 dB and no look-ahead.
pub fn compand_effect(threshold_db: f64, ratio: f64) -> Vec<String> {
    let out_at_full_scale_db = threshold_db - threshold_db / ratio;
    vec![
        "compand".into(),
        format!("{COMPAND_ATTACK_S},{COMPAND_RELEASE_S}"),
        format!("{COMPAND_KNEE_DB}:-90,-90,{threshold_db},{threshold_db},0,{out_at_full_scale_db}"),
        "0".into(),
        "-90".into(),
        "0".into(),
    ]
}

/// SoX `compand` with threshold -40, -30, -20 dB and ratio 2, 4, 8 (nine settings);
/// threshold -30 dB with ratio 4 is held out.
pub fn compand() -> SoxDevice {
    let mut settings = Vec::new();
    for threshold_db in [-40.0, -30.0, -20.0] {
        for ratio in [2.0, 4.0, 8.0] {
            settings.push(vec![threshold_db, ratio]);
        }
    }
    SoxDevice {
        name: "SoX compand",
        folder: "sox-compand",
        comment: "SoX compand: sox -D -R dry.wav -e floating-point -b 32 wet.wav\n\
                  #   compand 0.01,0.1 6:-90,-90,T,T,0,T-T/R 0 -90 0",
        knobs: vec![
            KnobDecl {
                name: "threshold",
                unit: "dB",
                min: -50.0,
                max: 0.0,
                default: -30.0,
                taper: "linear",
            },
            KnobDecl {
                name: "ratio",
                unit: "",
                min: 1.0,
                max: 10.0,
                default: 4.0,
                taper: "log",
            },
        ],
        settings,
        holdout: vec![vec![-30.0, 4.0]],
        effect: |values| compand_effect(values[0], values[1]),
    }
}

/// `NAME=VALUE` parts of a wet file name, e.g. `threshold=-20__ratio=4`.
fn setting_label(device: &SoxDevice, values: &[f64]) -> String {
    device
        .knobs
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{}={v}", k.name))
        .collect::<Vec<_>>()
        .join("__")
}

/// `{ threshold = -20.0, ratio = 4.0 }`.
fn setting_table(device: &SoxDevice, values: &[f64]) -> String {
    let entries: Vec<String> = device
        .knobs
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{} = {v:?}", k.name))
        .collect();
    format!("{{ {} }}", entries.join(", "))
}

/// Writes `dir/FOLDER/{dry.wav, wet__SETTING.wav..., manifest.toml}` for `device` with `dry`
/// as input and returns the manifest's path.
pub fn write_dataset(device: &SoxDevice, dry: &[f32], dir: &Path) -> PathBuf {
    let folder = dir.join(device.folder);
    std::fs::create_dir_all(&folder)
        .unwrap_or_else(|e| panic!("{}: cannot create: {e}", folder.display()));
    let dry_path = folder.join("dry.wav");
    dsp::audio::write_wav_f32(&dry_path, SAMPLE_RATE_HZ, dry)
        .unwrap_or_else(|e| panic!("cannot write the dry file: {e}"));

    // Header, knobs and validation.
    let mut toml = format!(
        "# {}\n# Made by tests/tests/pipeline_sox.rs.\n\n[device]\nname = \"{}\"\n\
         sample_rate_hz = {SAMPLE_RATE_HZ}\n",
        device.comment, device.name
    );
    for k in &device.knobs {
        write!(
            toml,
            "\n[[knobs]]\nname = \"{}\"\nunit = \"{}\"\nmin = {:?}\nmax = {:?}\ndefault = {:?}\n\
             taper = \"{}\"\n",
            k.name, k.unit, k.min, k.max, k.default, k.taper
        )
        .expect("write to String");
    }
    let holdout: Vec<String> = device
        .holdout
        .iter()
        .map(|values| setting_table(device, values))
        .collect();
    write!(
        toml,
        "\n[validation]\nholdout_fraction = 0.15\nholdout_knobs = [{}]\n",
        holdout.join(", ")
    )
    .expect("write to String");

    // One wet render and one pair per setting.
    for values in &device.settings {
        let wet = format!("wet__{}.wav", setting_label(device, values));
        sox_render(&dry_path, &folder.join(&wet), &(device.effect)(values));
        write!(
            toml,
            "\n[[pairs]]\ndry = \"dry.wav\"\nwet = \"{wet}\"\nknobs = {}\n",
            setting_table(device, values)
        )
        .expect("write to String");
    }
    let manifest = folder.join("manifest.toml");
    std::fs::write(&manifest, toml)
        .unwrap_or_else(|e| panic!("{}: cannot write: {e}", manifest.display()));
    manifest
}

/// Knob values of `device`'s settings by name, as the manifest and `holdout_knobs` hold them.
pub fn setting_map(device: &SoxDevice, values: &[f64]) -> BTreeMap<String, f64> {
    device
        .knobs
        .iter()
        .zip(values)
        .map(|(k, &v)| (k.name.to_string(), v))
        .collect()
}

/// RMS of `samples`, in dBFS.
pub fn rms_dbfs(samples: &[f32]) -> f64 {
    let power = samples.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / samples.len() as f64;
    10.0 * power.log10()
}

/// Steady-state gain of the compressor at `(threshold_db, ratio)` for a 1 kHz sine whose peak
/// is `level_dbfs`, in dB: the sine runs 1 s through SoX and the last 0.5 s are compared.
pub fn compand_tone_gain_db(dir: &Path, threshold_db: f64, ratio: f64, level_dbfs: f64) -> f64 {
    let len = SAMPLE_RATE_HZ as usize;
    let amplitude = 10f64.powf(level_dbfs / 20.0);
    let tone: Vec<f32> = (0..len)
        .map(|n| {
            let t = n as f64 / f64::from(SAMPLE_RATE_HZ);
            (amplitude * (2.0 * std::f64::consts::PI * 1_000.0 * t).sin()) as f32
        })
        .collect();
    let (input, output) = (dir.join("tone.wav"), dir.join("tone_wet.wav"));
    dsp::audio::write_wav_f32(&input, SAMPLE_RATE_HZ, &tone)
        .unwrap_or_else(|e| panic!("cannot write the tone: {e}"));
    sox_render(&input, &output, &compand_effect(threshold_db, ratio));
    let wet = dsp::audio::read_wav(&output, 0)
        .unwrap_or_else(|e| panic!("cannot read the compressed tone: {e}"))
        .samples;
    assert_eq!(wet.len(), len, "SoX changed the tone's length");
    rms_dbfs(&wet[len / 2..]) - rms_dbfs(&tone[len / 2..])
}
