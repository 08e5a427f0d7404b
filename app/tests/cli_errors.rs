//! Bad input through the real `fxtwin` binary: every case must fail with exit status 1 and one
//! line on stderr that starts with `error: `, names the file (or value) at fault and says what
//! is wrong, without a panic and without creating or touching an output file. Two positive
//! render tests pin what a good run produces.

mod common;

use common::*;
use dsp::engine::Player;

/// Bytes of a WAV file cut to half its length, so the data chunk ends mid-way.
fn truncate_to_half(path: &std::path::Path) {
    let bytes = std::fs::read(path).expect("read fixture WAV");
    // Cut one byte past the middle so that the cut also splits a sample.
    std::fs::write(path, &bytes[..bytes.len() / 2 + 1]).expect("cut fixture WAV");
}

/// Seeded pseudo-random bytes (64-bit LCG, top byte of each state).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

#[test]
fn dataset_check_refuses_a_truncated_wet_file() {
    let dir = TempDir::new("trunc-check");
    write_wav(
        &dir,
        "dry.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 1),
    );
    let wet = write_wav(
        &dir,
        "wet.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 2),
    );
    truncate_to_half(&wet);
    let manifest = write_manifest(&dir, "dry.wav", "wet.wav", 20.0);

    let out = fxtwin(&["dataset".as_ref(), "check".as_ref(), manifest.as_os_str()]);
    assert_one_line_error(&out, &[&shown(&wet), "truncated"]);
    assert!(out.stdout.is_empty(), "no report for a failed check");
}

#[test]
fn render_refuses_a_truncated_input_and_keeps_the_existing_output() {
    let dir = TempDir::new("trunc-render");
    let (_, model) = write_model(&dir, "m.fxtwin.json");
    let input = write_wav(
        &dir,
        "in.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 3),
    );
    truncate_to_half(&input);
    let output = write_wav(
        &dir,
        "out.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 0.1, 4),
    );
    let before = std::fs::read(&output).unwrap();

    let out = fxtwin(&[
        "render".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
    ]);
    assert_one_line_error(&out, &[&shown(&input), "truncated"]);
    assert_eq!(
        std::fs::read(&output).unwrap(),
        before,
        "existing output must keep its bytes"
    );
    assert_eq!(stray_temp_files(&dir), Vec::<String>::new());
}

#[test]
fn dataset_check_refuses_a_text_file_named_wav() {
    let dir = TempDir::new("corrupt-check");
    write_wav(
        &dir,
        "dry.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 5),
    );
    let wet = write_text(
        &dir,
        "wet.wav",
        "this is a note about the session, not audio\n",
    );
    let manifest = write_manifest(&dir, "dry.wav", "wet.wav", 20.0);

    let out = fxtwin(&["dataset".as_ref(), "check".as_ref(), manifest.as_os_str()]);
    assert_one_line_error(&out, &[&shown(&wet), "not a WAV file"]);
}

#[test]
fn render_refuses_random_bytes_and_creates_no_output() {
    let dir = TempDir::new("corrupt-render");
    let (_, model) = write_model(&dir, "m.fxtwin.json");
    let input = dir.join("in.wav");
    std::fs::write(&input, random_bytes(4096, 11)).unwrap();
    let output = dir.join("out.wav");

    let out = fxtwin(&[
        "render".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
    ]);
    assert_one_line_error(&out, &[&shown(&input), "not a WAV file"]);
    assert!(!output.exists(), "no output for unreadable input");
    assert_eq!(stray_temp_files(&dir), Vec::<String>::new());
}

#[test]
fn dataset_check_refuses_dry_and_wet_of_different_lengths() {
    let dir = TempDir::new("length");
    let dry = write_wav(
        &dir,
        "dry.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 10.0, 6),
    );
    let wet = write_wav(
        &dir,
        "wet.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 5.0, 7),
    );
    let manifest = write_manifest(&dir, "dry.wav", "wet.wav", 20.0);

    let out = fxtwin(&["dataset".as_ref(), "check".as_ref(), manifest.as_os_str()]);
    assert_one_line_error(
        &out,
        &[&shown(&dry), &shown(&wet), "10.00 s", "5.00 s", "same take"],
    );
}

#[test]
fn dataset_check_refuses_a_silent_wet_file() {
    let dir = TempDir::new("silent");
    write_wav(
        &dir,
        "dry.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 2.0, 8),
    );
    let wet = write_wav(
        &dir,
        "wet.wav",
        MODEL_RATE_HZ,
        &vec![0.0; 2 * MODEL_RATE_HZ as usize],
    );
    let manifest = write_manifest(&dir, "dry.wav", "wet.wav", 20.0);

    let out = fxtwin(&["dataset".as_ref(), "check".as_ref(), manifest.as_os_str()]);
    assert_one_line_error(&out, &[&shown(&wet), "is silent"]);
}

#[test]
fn dataset_check_refuses_dry_and_wet_at_different_rates() {
    let dir = TempDir::new("rate");
    let dry = write_wav(&dir, "dry.wav", 48_000, &test_signal(48_000, 2.0, 9));
    let wet = write_wav(&dir, "wet.wav", 44_100, &test_signal(44_100, 2.0, 10));
    let manifest = write_manifest(&dir, "dry.wav", "wet.wav", 20.0);

    let out = fxtwin(&["dataset".as_ref(), "check".as_ref(), manifest.as_os_str()]);
    assert_one_line_error(
        &out,
        &[
            &shown(&dry),
            "48000 Hz",
            &shown(&wet),
            "44100 Hz",
            "one sample rate",
        ],
    );
}

#[test]
fn render_refuses_a_knob_out_of_range_and_keeps_the_existing_output() {
    let dir = TempDir::new("knob-range");
    let (_, model) = write_model(&dir, "m.fxtwin.json");
    let input = write_wav(
        &dir,
        "in.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 0.5, 12),
    );
    let output = write_wav(
        &dir,
        "out.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 0.1, 13),
    );
    let before = std::fs::read(&output).unwrap();

    let out = fxtwin(&[
        "render".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
        "--knob".as_ref(),
        "gain=500".as_ref(),
    ]);
    assert_one_line_error(
        &out,
        &[&shown(&model), "\"gain\"", "500", "outside its range 0..50"],
    );
    assert_eq!(
        std::fs::read(&output).unwrap(),
        before,
        "existing output must keep its bytes"
    );
    assert_eq!(stray_temp_files(&dir), Vec::<String>::new());
}

#[test]
fn render_refuses_an_unknown_knob() {
    let dir = TempDir::new("knob-unknown");
    let (_, model) = write_model(&dir, "m.fxtwin.json");
    let input = write_wav(
        &dir,
        "in.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 0.5, 14),
    );
    let output = dir.join("out.wav");

    let out = fxtwin(&[
        "render".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
        "--knob".as_ref(),
        "colour=3".as_ref(),
    ]);
    assert_one_line_error(
        &out,
        &[&shown(&model), "unknown knob \"colour\"", "has: gain"],
    );
    assert!(!output.exists());
}

#[test]
fn train_refuses_an_unknown_architecture_before_writing_anything() {
    let dir = TempDir::new("arch");
    write_wav(
        &dir,
        "dry.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 15),
    );
    write_wav(
        &dir,
        "wet.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 16),
    );
    let manifest = write_manifest(&dir, "dry.wav", "wet.wav", 20.0);
    let out_dir = dir.join("run");

    let out = fxtwin(&[
        "train".as_ref(),
        manifest.as_os_str(),
        "--arch".as_ref(),
        "lstm-33".as_ref(),
        "--out".as_ref(),
        out_dir.as_os_str(),
    ]);
    let line = assert_one_line_error(&out, &["unknown architecture \"lstm-33\"", "lstm-32"]);
    assert!(
        line.contains("tcn-45"),
        "the known presets are listed: {line}"
    );
    assert!(!out_dir.exists(), "no output folder for a refused run");
}

/// Major version of [`write_newer_model`]'s file: one past what this build reads.
const NEWER_MAJOR: u32 = dsp::model::SCHEMA_MAJOR + 1;

/// The fixture model saved with `schema_version` raised to `[NEWER_MAJOR, 0]`.
fn write_newer_model(dir: &TempDir) -> std::path::PathBuf {
    let mut json: serde_json::Value = serde_json::from_str(&fixture_model().to_json()).unwrap();
    json["schema_version"] = serde_json::json!([NEWER_MAJOR, 0]);
    write_text(dir, "future.fxtwin.json", &json.to_string())
}

#[test]
fn render_refuses_a_model_from_a_newer_schema() {
    let dir = TempDir::new("schema-render");
    let model = write_newer_model(&dir);
    let input = write_wav(
        &dir,
        "in.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 0.5, 17),
    );
    let output = dir.join("out.wav");

    let out = fxtwin(&[
        "render".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
    ]);
    assert_one_line_error(
        &out,
        &[
            &shown(&model),
            &format!("schema {NEWER_MAJOR}.0 is newer"),
            "update fxtwin",
        ],
    );
    assert!(!output.exists());
}

#[test]
fn eval_refuses_a_model_from_a_newer_schema() {
    let dir = TempDir::new("schema-eval");
    let model = write_newer_model(&dir);
    write_wav(
        &dir,
        "dry.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 18),
    );
    write_wav(
        &dir,
        "wet.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 19),
    );
    let manifest = write_manifest(&dir, "dry.wav", "wet.wav", 20.0);

    let out = fxtwin(&["eval".as_ref(), model.as_os_str(), manifest.as_os_str()]);
    assert_one_line_error(
        &out,
        &[&shown(&model), &format!("schema {NEWER_MAJOR}.0 is newer")],
    );
}

#[test]
fn eval_refuses_a_manifest_at_another_rate_than_the_model() {
    let dir = TempDir::new("eval-rate");
    let (_, model) = write_model(&dir, "m.fxtwin.json");
    write_wav(&dir, "dry.wav", 44_100, &test_signal(44_100, 1.0, 20));
    write_wav(&dir, "wet.wav", 44_100, &test_signal(44_100, 1.0, 21));
    write_manifest(&dir, "dry.wav", "wet.wav", 20.0);
    let text = std::fs::read_to_string(dir.join("manifest.toml"))
        .unwrap()
        .replace("sample_rate_hz = 48000", "sample_rate_hz = 44100");
    let manifest = write_text(&dir, "manifest.toml", &text);

    let out = fxtwin(&["eval".as_ref(), model.as_os_str(), manifest.as_os_str()]);
    assert_one_line_error(
        &out,
        &[
            &shown(&manifest),
            "44100 Hz",
            "\"fixture drive\" runs at 48000 Hz",
        ],
    );
}

#[test]
fn render_refuses_a_missing_model_file() {
    let dir = TempDir::new("model-missing");
    let model = dir.join("nowhere.fxtwin.json");
    let input = write_wav(
        &dir,
        "in.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 0.5, 26),
    );
    let output = dir.join("out.wav");

    let out = fxtwin(&[
        "render".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
    ]);
    assert_one_line_error(&out, &[&shown(&model), "cannot read model file"]);
    assert!(!output.exists());
}

#[test]
fn render_refuses_an_output_in_a_missing_folder() {
    let dir = TempDir::new("out-folder");
    let (_, model) = write_model(&dir, "m.fxtwin.json");
    let input = write_wav(
        &dir,
        "in.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 0.5, 27),
    );
    let output = dir.join("missing").join("out.wav");

    let out = fxtwin(&[
        "render".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
    ]);
    assert_one_line_error(&out, &[&shown(&output), "cannot write"]);
    assert!(!dir.join("missing").exists(), "no folder is created");
}

#[test]
fn dataset_check_refuses_a_pair_knob_out_of_range() {
    let dir = TempDir::new("manifest-knob");
    write_wav(
        &dir,
        "dry.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 22),
    );
    write_wav(
        &dir,
        "wet.wav",
        MODEL_RATE_HZ,
        &test_signal(MODEL_RATE_HZ, 1.0, 23),
    );
    let manifest = write_manifest(&dir, "dry.wav", "wet.wav", 500.0);

    let out = fxtwin(&["dataset".as_ref(), "check".as_ref(), manifest.as_os_str()]);
    assert_one_line_error(
        &out,
        &[
            &shown(&manifest),
            "pair #1",
            "wet.wav",
            "\"gain\"",
            "500",
            "outside its range",
        ],
    );
}

#[test]
fn dataset_check_names_the_line_of_a_manifest_syntax_error() {
    let dir = TempDir::new("manifest-syntax");
    let manifest = write_text(
        &dir,
        "manifest.toml",
        "[device]\nname = \"fixture drive\"\nsample_rate_hz = = 48000\n",
    );

    let out = fxtwin(&["dataset".as_ref(), "check".as_ref(), manifest.as_os_str()]);
    assert_one_line_error(&out, &[&format!("{}:3:", shown(&manifest))]);
}

#[test]
fn render_at_44k1_keeps_the_input_rate_and_length() {
    let dir = TempDir::new("render-44k1");
    let (_, model) = write_model(&dir, "m.fxtwin.json");
    let rate_hz = 44_100;
    let signal = test_signal(rate_hz, 2.0, 24);
    let input = write_wav(&dir, "in.wav", rate_hz, &signal);
    let output = dir.join("out.wav");

    let out = fxtwin(&[
        "render".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = dsp::audio::read_wav(&output, 0).unwrap();
    assert_eq!(rendered.sample_rate_hz, rate_hz);
    let diff = rendered.samples.len().abs_diff(signal.len());
    assert!(
        diff <= 2,
        "{} samples in, {} out",
        signal.len(),
        rendered.samples.len()
    );
    // The model has an input skip, so its output carries the input's energy: not silence.
    let rms = (rendered.samples.iter().map(|x| x * x).sum::<f32>() / signal.len() as f32).sqrt();
    assert!(rms > 0.01, "rendered RMS {rms}");
    assert_eq!(stray_temp_files(&dir), Vec::<String>::new());
}

#[test]
fn render_at_the_model_rate_equals_the_engine() {
    let dir = TempDir::new("render-48k");
    let (model, model_path) = write_model(&dir, "m.fxtwin.json");
    // Longer than one render block (8192 samples) so block boundaries are crossed.
    let signal = test_signal(MODEL_RATE_HZ, 1.0, 25);
    let input = write_wav(&dir, "in.wav", MODEL_RATE_HZ, &signal);
    let output = dir.join("out.wav");

    let out = fxtwin(&[
        "render".as_ref(),
        model_path.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
        "--knob".as_ref(),
        "gain=30".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = dsp::audio::read_wav(&output, 0).unwrap();
    assert_eq!(rendered.sample_rate_hz, MODEL_RATE_HZ);
    assert_eq!(rendered.samples.len(), signal.len());

    let mut player = Player::new(&model, signal.len()).unwrap();
    player.set_knob_values(&[30.0]).unwrap();
    player.reset();
    let mut expected = vec![0.0; signal.len()];
    player.process(&signal, &mut expected);
    let worst = rendered
        .samples
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "largest difference from the engine: {worst}");
    // The knob reached the model: the default setting (10 dB) gives another output.
    player.set_knob_values(&[10.0]).unwrap();
    player.reset();
    let mut at_default = vec![0.0; signal.len()];
    player.process(&signal, &mut at_default);
    let moved = expected
        .iter()
        .zip(&at_default)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        moved > 1e-4,
        "gain=30 and gain=10 differ by at most {moved}"
    );
}
