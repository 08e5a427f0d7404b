//! `fxtwin stimulus` and `fxtwin dataset init|check`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use dsp::check::{prepare_pair, PairReport};
use dsp::dataset::{self, Manifest};

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Build manifest.toml from WAV or FLAC file names like `wet__gain=20__colour=60.wav` and
    /// `dry.wav`.
    Init {
        dir: PathBuf,
        /// Where to write the manifest (default DIR/manifest.toml); never overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Report levels, clipping, latency, polarity and alignment confidence per pair.
    Check {
        manifest: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn stimulus(out: &Path, rate: u32) -> Result<()> {
    let stim = dsp::stimulus::generate(rate);
    dsp::audio::write_wav_f32(out, rate, &stim.samples)?;
    let layout_path = out.with_extension("layout.json");
    let layout = serde_json::to_string_pretty(&stim.layout)?;
    dsp::fsutil::write_atomic(&layout_path, layout.as_bytes())
        .with_context(|| format!("{}: cannot write layout", layout_path.display()))?;
    println!(
        "wrote {} ({:.1} s at {rate} Hz) and its layout {}",
        out.display(),
        stim.samples.len() as f64 / rate as f64,
        layout_path.display()
    );
    Ok(())
}

pub fn run(command: DatasetCommand) -> Result<()> {
    match command {
        DatasetCommand::Init { dir, out } => {
            let manifest = dataset::init_from_dir(&dir)?;
            let out = out.unwrap_or_else(|| dir.join("manifest.toml"));
            if out.exists() {
                anyhow::bail!("{}: already exists; remove it or pass --out", out.display());
            }
            manifest.save(&out)?;
            println!(
                "wrote {} with {} pairs and knobs: {}",
                out.display(),
                manifest.pairs.len(),
                manifest
                    .knobs
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        DatasetCommand::Check { manifest, json } => {
            let m = Manifest::load(&manifest)?;
            let reports = check_all(&m)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print_reports(&m, &reports);
            }
            Ok(())
        }
    }
}

/// Checks every pair; the first unusable pair ends the check with its error.
pub fn check_all(m: &Manifest) -> Result<Vec<PairReport>> {
    (0..m.pairs.len())
        .map(|i| {
            prepare_pair(m, i)
                .map(|p| p.report)
                .map_err(anyhow::Error::from)
        })
        .collect()
}

pub fn print_reports(m: &Manifest, reports: &[PairReport]) {
    println!(
        "{:<28} {:>7} {:>8} {:>8} {:>6} {:>10} {:>5} {:>5}",
        "pair (wet)", "dur s", "peak dB", "rms dB", "clip", "latency", "pol", "conf"
    );
    for r in reports {
        let name = r.wet_path.file_name().unwrap_or_default().to_string_lossy();
        println!(
            "{:<28} {:>7.2} {:>8.1} {:>8.1} {:>6} {:>10.2} {:>5} {:>5.2}",
            name,
            r.wet_levels.duration_s,
            r.wet_levels.peak_dbfs,
            r.wet_levels.rms_dbfs,
            r.wet_levels.clipped_samples,
            r.latency_fine_samples,
            if r.inverted { "inv" } else { "+" },
            r.confidence
        );
        if let Some(esr) = r.replicate_esr {
            println!("    replicate ESR {esr:.5}");
        }
        for w in &r.warnings {
            println!("    warning: {w}");
        }
    }
    println!("{} pairs of {:?} checked", reports.len(), m.device.name);
}
