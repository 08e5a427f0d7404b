//! `fxtwin models`, `train`, `profile` and `batch`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use dsp::dataset::Manifest;
use dsp::model::ModelFile;
use indicatif::{ProgressBar, ProgressStyle};
use models::data::Dataset;
use models::train::{self, RunOptions, TrainConfig, TrainEvent};

/// Set by the Ctrl-C handler; the training loop checkpoints and ends after the current step.
static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Dataset manifest (TOML).
    pub manifest: PathBuf,
    /// Output folder for the model, checkpoint and report.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub options: TrainOptions,
}

/// The training recipe, shared by `train`, `profile` and `batch`.
#[derive(Args, Clone)]
pub struct TrainOptions {
    /// Architecture preset (see `fxtwin models`).
    #[arg(long, default_value = "lstm-16")]
    pub arch: String,
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Wall-clock budget in minutes (per device for `batch`); training ends cleanly with the
    /// best model so far.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads for training (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Samples per training segment seen by the loss.
    #[arg(long)]
    pub segment: Option<usize>,
    /// Samples run before each segment of a recurrent model to settle its state.
    #[arg(long)]
    pub burn_in: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimiser steps per epoch (default: one pass over the data).
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Add the input to the output (learn the difference from a wire).
    #[arg(long)]
    pub skip: Option<bool>,
    /// Weight of the multi-resolution STFT loss added to the ESR (default 0).
    #[arg(long)]
    pub mr_stft: Option<f32>,
    /// ESR pre-emphasis coefficient (0 turns it off; default 0.85).
    #[arg(long)]
    pub pre_emphasis: Option<f32>,
}

#[derive(Args)]
pub struct BatchArgs {
    /// Folder searched recursively for manifest.toml files.
    pub dir: PathBuf,
    /// Output root; each device gets a sub-folder named after its manifest's folder.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub options: TrainOptions,
}

pub fn list_models(knobs: usize) -> Result<()> {
    println!(
        "{:<10} {:>8} {:>14} {:>12} {:>10}  description",
        "preset", "params", "receptive ms", "ns/sample", "x realtime"
    );
    for p in models::presets::all() {
        let rf = p
            .network
            .receptive_field_samples()
            .map(|s| format!("{:.1}", s as f64 / 48.0))
            .unwrap_or_else(|| "recurrent".into());
        let ns = crate::report::measure_ns_per_sample(&p.network, knobs, 512, 0.5)?;
        println!(
            "{:<10} {:>8} {:>14} {:>12.0} {:>10.0}  {}",
            p.name,
            p.network.parameter_count(knobs),
            rf,
            ns,
            1e9 / (ns * 48_000.0),
            p.summary
        );
    }
    println!(
        "cost measured here with the real-time engine (kernels compiled for {:?}), single thread, \
         48 kHz, 512-sample blocks; `fxtwin bench engine` measures other block sizes",
        dsp::engine::Isa::detect()
    );
    Ok(())
}

/// Prints a line above the progress bar, or plainly when there is no terminal to draw it on.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

pub(crate) fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads {
        // candle's CPU kernels and the fused recurrent ops read this before their pools start.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
}

fn config(args: &TrainOptions) -> Result<TrainConfig> {
    let preset = models::presets::find(&args.arch)?;
    let mut network = preset.network.clone();
    if let Some(skip) = args.skip {
        network.set_skip(skip);
    }
    let mut cfg = TrainConfig::new(&preset.name, network);
    cfg.seed = args.seed;
    cfg.max_epochs = args.epochs;
    cfg.max_minutes = args.max_minutes;
    if let Some(b) = args.batch_size {
        cfg.batch_size = b.max(1);
    }
    if let Some(s) = args.segment {
        cfg.segment_samples = s.max(64);
    }
    if let Some(b) = args.burn_in {
        cfg.burn_in_samples = b;
    }
    if let Some(lr) = args.lr {
        cfg.learning_rate = lr;
    }
    cfg.steps_per_epoch = args.steps_per_epoch;
    if let Some(w) = args.mr_stft {
        cfg.loss.mr_stft = w;
    }
    if let Some(p) = args.pre_emphasis {
        cfg.loss.esr_pre_emphasis = (p > 0.0).then_some(p);
    }
    cfg.loss.validate()?;
    Ok(cfg)
}

/// Trains and writes `model.fxtwin.json` in `--out`; returns the model and its path.
pub fn train(args: &TrainArgs) -> Result<(ModelFile, PathBuf)> {
    set_threads(args.options.threads);
    let cfg = config(&args.options)?;
    let manifest = Manifest::load(&args.manifest)?;
    println!(
        "loading and aligning {} pairs of {:?}",
        manifest.pairs.len(),
        manifest.device.name
    );
    let data = Dataset::load(&manifest)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create output folder", args.out.display()))?;
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed));

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix:>3} [{bar:30}] {pos}/{len} loss {msg} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut on_event = |e: &TrainEvent| match e {
        TrainEvent::Step {
            epoch,
            step,
            steps_per_epoch,
            loss,
            ..
        } => {
            bar.set_length(*steps_per_epoch as u64);
            bar.set_prefix(epoch.to_string());
            bar.set_position(*step as u64);
            bar.set_message(format!("{loss:.5}"));
        }
        TrainEvent::Epoch(r) => say(
            &bar,
            format!(
                "epoch {:>3}: train loss {:.5}, validation ESR {:.5}{}{} ({:.0} s)",
                r.epoch,
                r.train_loss,
                r.validation_esr,
                r.holdout_knob_esr
                    .map(|k| format!(", held-out knob ESR {k:.5}"))
                    .unwrap_or_default(),
                if r.best { " *" } else { "" },
                r.elapsed_s
            ),
        ),
        TrainEvent::Resumed { epoch, step } => {
            say(&bar, format!("resumed at epoch {epoch}, step {step}"))
        }
    };
    let outcome = train::train(
        &data,
        &cfg,
        &RunOptions {
            out_dir: &args.out,
            resume: args.resume,
            stop: Some(&STOP),
        },
        &mut on_event,
    )?;
    bar.finish_and_clear();
    let path = args.out.join(format!("model.{}", dsp::model::EXTENSION));
    outcome.model.save(&path)?;
    let m = outcome.model.metrics.clone().unwrap_or_default();
    println!(
        "stopped ({:?}) after {} epochs; best validation ESR {:.5}; model written to {}",
        outcome.stop_reason,
        outcome.history.len(),
        m.validation_esr,
        path.display()
    );
    Ok((outcome.model, path))
}

/// Check, train, evaluate, and write `report.json` and `report.txt` beside the model.
pub fn profile(args: &TrainArgs) -> Result<crate::report::ProfileReport> {
    let started = Instant::now();
    let manifest = Manifest::load(&args.manifest)?;
    let checks = crate::cli_dataset::check_all(&manifest)?;
    crate::cli_dataset::print_reports(&manifest, &checks);
    let (model, model_path) = train(args)?;
    let eval = crate::cli_render::evaluate(&model, &manifest)?;
    crate::cli_render::print_eval(&eval);
    let report = crate::report::ProfileReport {
        device: manifest.device.name.clone(),
        manifest: args.manifest.clone(),
        model_path,
        architecture: model.network.describe(),
        preset: args.options.arch.clone(),
        parameters: model.parameter_count(),
        training: model.training.clone(),
        metrics: model.metrics.clone(),
        checks,
        evaluation: eval,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&args.out)?;
    Ok(report)
}

fn find_manifests(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            find_manifests(&p, found)?;
        } else if p.file_name().is_some_and(|n| n == "manifest.toml") {
            found.push(p);
        }
    }
    Ok(())
}

pub fn batch(args: &BatchArgs) -> Result<()> {
    let mut manifests = Vec::new();
    find_manifests(&args.dir, &mut manifests)?;
    if manifests.is_empty() {
        anyhow::bail!(
            "{}: no manifest.toml found below this folder",
            args.dir.display()
        );
    }
    let mut rows = Vec::new();
    for manifest in &manifests {
        let name = manifest
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "device".into());
        let targs = TrainArgs {
            manifest: manifest.clone(),
            out: args.out.join(&name),
            resume: false,
            options: args.options.clone(),
        };
        println!("== {name} ({})", manifest.display());
        match profile(&targs) {
            Ok(r) => rows.push((
                name,
                Ok(r.metrics.map(|m| m.validation_esr).unwrap_or(f64::NAN)),
            )),
            Err(e) => {
                eprintln!("error: {}", crate::error_line(&e));
                rows.push((name, Err(crate::error_line(&e))));
            }
        }
        if STOP.load(Ordering::Relaxed) {
            break;
        }
    }
    println!("\n{:<24} result", "device");
    let mut failed = 0;
    for (name, r) in &rows {
        match r {
            Ok(esr) => println!("{name:<24} validation ESR {esr:.5}"),
            Err(e) => {
                failed += 1;
                println!("{name:<24} FAILED: {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} devices failed", rows.len());
    }
    Ok(())
}
