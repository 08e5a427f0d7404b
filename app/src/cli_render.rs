//! `fxtwin render` and `fxtwin eval`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use dsp::audio::{StreamingResampler, WavBlockReader, WavBlockWriter};
use dsp::check::prepare_pair;
use dsp::dataset::Manifest;
use dsp::engine::Player;
use dsp::knob::{parse_setting, resolve_settings};
use dsp::model::ModelFile;
use serde::Serialize;

/// Samples read, processed and written per block by `render`.
const RENDER_BLOCK: usize = 8192;

#[derive(Args)]
pub struct RenderArgs {
    pub model: PathBuf,
    pub input: PathBuf,
    pub output: PathBuf,
    /// Knob setting NAME=VALUE in the knob's unit; repeat for several knobs. Unset knobs take
    /// their defaults.
    #[arg(long = "knob")]
    pub knobs: Vec<String>,
    /// Channel of a multi-channel input (0-based).
    #[arg(long, default_value_t = 0)]
    pub channel: usize,
}

#[derive(Args)]
pub struct EvalArgs {
    pub model: PathBuf,
    pub manifest: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// Metrics of a model on one pair or one knob setting.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub label: String,
    pub esr: f64,
    pub mr_stft: f64,
    pub l1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub pairs: Vec<EvalRow>,
    pub settings: Vec<EvalRow>,
}

pub fn render(args: &RenderArgs) -> Result<()> {
    let model = ModelFile::load(&args.model)?;
    let settings = args
        .knobs
        .iter()
        .map(|s| parse_setting(s))
        .collect::<Result<Vec<_>, _>>()?;
    let values = resolve_settings(&model.knobs, &settings)
        .with_context(|| format!("{}", args.model.display()))?;
    if args.output.exists() && args.output.canonicalize().ok() == args.input.canonicalize().ok() {
        anyhow::bail!(
            "{}: output would overwrite the input",
            args.output.display()
        );
    }
    let mut reader = WavBlockReader::open(&args.input, args.channel)?;
    let in_rate = reader.sample_rate_hz();
    let model_rate = model.sample_rate_hz;
    let mut player = Player::new(&model, RENDER_BLOCK)?;
    player.set_knob_values(&values)?;
    player.reset();

    // Input rate -> model rate -> input rate, each block in constant memory.
    let mut to_model = (in_rate != model_rate)
        .then(|| StreamingResampler::new(in_rate, model_rate))
        .transpose()?;
    let mut to_out = (in_rate != model_rate)
        .then(|| StreamingResampler::new(model_rate, in_rate))
        .transpose()?;
    let mut writer = WavBlockWriter::create(&args.output, in_rate)?;
    let (mut block, mut at_model, mut processed, mut out) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut finished = false;
    while !finished {
        let n = reader.read_block(&mut block, RENDER_BLOCK)?;
        at_model.clear();
        match &mut to_model {
            Some(r) if n > 0 => r.process(&block[..n], &mut at_model)?,
            Some(r) => {
                r.finish(&mut at_model)?;
                finished = true;
            }
            None if n > 0 => at_model.extend_from_slice(&block[..n]),
            None => finished = true,
        }
        processed.resize(at_model.len(), 0.0);
        player.process(&at_model, &mut processed);
        out.clear();
        match &mut to_out {
            Some(r) => {
                r.process(&processed, &mut out)?;
                if finished {
                    r.finish(&mut out)?;
                }
            }
            None => out.extend_from_slice(&processed),
        }
        writer.write(&out)?;
    }
    let written = writer.len_samples();
    writer.finish()?;
    println!(
        "rendered {} samples at {in_rate} Hz through {:?} into {}",
        written,
        model.name,
        args.output.display()
    );
    Ok(())
}

fn metrics(pred: &[f32], target: &[f32]) -> (f64, f64, f64) {
    let esr = models::losses::esr_f64(pred, target);
    let l1 = pred
        .iter()
        .zip(target)
        .map(|(p, t)| (p - t).abs() as f64)
        .sum::<f64>()
        / pred.len().max(1) as f64;
    let mr = models::losses::mr_stft_f64(pred, target);
    (esr, mr, l1)
}

/// Runs the model over every pair of `manifest` with the real-time engine.
pub fn evaluate(model: &ModelFile, manifest: &Manifest) -> Result<EvalReport> {
    if manifest.device.sample_rate_hz != model.sample_rate_hz {
        anyhow::bail!(
            "{}: [device] sample_rate_hz is {} Hz but model {:?} runs at {} Hz; a model is \
             evaluated at the rate it was trained at",
            manifest.path.display(),
            manifest.device.sample_rate_hz,
            model.name,
            model.sample_rate_hz
        );
    }
    let mut pairs = Vec::new();
    let mut by_setting: BTreeMap<String, (Vec<f32>, Vec<f32>)> = BTreeMap::new();
    for i in 0..manifest.pairs.len() {
        let pair = prepare_pair(manifest, i)?;
        let values = &pair.report.knob_values;
        if model.knobs.len() != values.len() {
            anyhow::bail!(
                "{}: declares {} knobs but model {:?} has {}",
                manifest.path.display(),
                values.len(),
                model.name,
                model.knobs.len()
            );
        }
        let mut player = Player::new(model, RENDER_BLOCK)?;
        player.set_knob_values(values)?;
        player.reset();
        let mut pred = vec![0.0; pair.dry.len()];
        player.process(&pair.dry, &mut pred);
        let (esr, mr_stft, l1) = metrics(&pred, &pair.wet);
        let label = pair
            .report
            .wet_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        pairs.push(EvalRow {
            label,
            esr,
            mr_stft,
            l1,
        });
        let setting = model
            .knobs
            .iter()
            .zip(values)
            .map(|(k, v)| format!("{}={v}", k.name))
            .collect::<Vec<_>>()
            .join(" ");
        let entry = by_setting.entry(setting).or_default();
        entry.0.extend_from_slice(&pred);
        entry.1.extend_from_slice(&pair.wet);
    }
    let settings = by_setting
        .into_iter()
        .map(|(label, (p, t))| {
            let (esr, mr_stft, l1) = metrics(&p, &t);
            EvalRow {
                label: if label.is_empty() {
                    "(no knobs)".into()
                } else {
                    label
                },
                esr,
                mr_stft,
                l1,
            }
        })
        .collect();
    Ok(EvalReport { pairs, settings })
}

pub fn print_eval(report: &EvalReport) {
    for (title, rows) in [("pair", &report.pairs), ("knob setting", &report.settings)] {
        println!("{title:<32} {:>9} {:>9} {:>9}", "ESR", "MR-STFT", "L1");
        for r in rows {
            println!(
                "{:<32} {:>9.5} {:>9.4} {:>9.5}",
                r.label, r.esr, r.mr_stft, r.l1
            );
        }
    }
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let model = ModelFile::load(&args.model)?;
    let manifest = Manifest::load(&args.manifest)?;
    let report = evaluate(&model, &manifest)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_eval(&report);
    }
    Ok(())
}
