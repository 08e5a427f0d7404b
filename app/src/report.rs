//! The profile report, and the real-time cost figure shown by `fxtwin models`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use dsp::check::PairReport;
use dsp::engine::Player;
use dsp::knob::{KnobSpec, Taper};
use dsp::model::{Metrics, ModelFile, Network, TrainingInfo};
use serde::Serialize;

use crate::cli_render::EvalReport;

/// What `fxtwin profile` leaves beside the model.
#[derive(Serialize)]
pub struct ProfileReport {
    pub device: String,
    pub manifest: PathBuf,
    pub model_path: PathBuf,
    pub preset: String,
    pub architecture: String,
    pub parameters: usize,
    pub training: Option<TrainingInfo>,
    pub metrics: Option<Metrics>,
    pub checks: Vec<PairReport>,
    pub evaluation: EvalReport,
    pub total_seconds: f64,
}

impl ProfileReport {
    /// Writes `report.json` and a readable `report.txt` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json_path = dir.join("report.json");
        dsp::fsutil::write_atomic(&json_path, serde_json::to_string_pretty(self)?.as_bytes())
            .with_context(|| format!("{}: cannot write report", json_path.display()))?;
        let txt_path = dir.join("report.txt");
        dsp::fsutil::write_atomic(&txt_path, self.summary().as_bytes())
            .with_context(|| format!("{}: cannot write report", txt_path.display()))?;
        println!(
            "report written to {} and {}",
            json_path.display(),
            txt_path.display()
        );
        Ok(())
    }

    /// A readable summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "fxtwin profile of {:?}\nmodel: {} ({}, {} parameters)\n",
            self.device,
            self.model_path.display(),
            self.architecture,
            self.parameters
        );
        if let Some(t) = &self.training {
            s += &format!(
                "training: preset {}, seed {}, {} epochs, {} steps, {:.0} s\n",
                t.preset, t.seed, t.epochs, t.steps, t.train_seconds
            );
        }
        if let Some(m) = &self.metrics {
            s += &format!(
                "validation ESR (held-out time segments): {:.5}\n",
                m.validation_esr
            );
            if let Some(k) = m.holdout_knob_esr {
                s += &format!("validation ESR (held-out knob settings): {k:.5}\n");
            }
        }
        s += "\nper knob setting (whole recordings):\n";
        for row in &self.evaluation.settings {
            s += &format!(
                "  {:<30} ESR {:.5}  MR-STFT {:.4}  L1 {:.5}\n",
                row.label, row.esr, row.mr_stft, row.l1
            );
        }
        for c in &self.checks {
            for w in &c.warnings {
                s += &format!("warning ({}): {w}\n", c.wet_path.display());
            }
        }
        s += &format!("total time {:.0} s\n", self.total_seconds);
        s
    }
}

/// Measures the real-time engine's cost for `network` with seeded random weights, in ns per
/// sample: single thread, blocks of `block` samples, `seconds` of a tone at 48 kHz, after one
/// untimed second to warm caches and branch predictors.
pub fn measure_ns_per_sample(
    network: &Network,
    knob_count: usize,
    block: usize,
    seconds: f64,
) -> Result<f64> {
    let device = candle_core::Device::Cpu;
    let net = models::net::TrainableNet::init(network, knob_count, 1, &device)?;
    let knobs = (0..knob_count)
        .map(|i| KnobSpec {
            name: format!("k{i}"),
            unit: String::new(),
            min: 0.0,
            max: 1.0,
            default: 0.5,
            taper: Taper::Linear,
        })
        .collect();
    let model = ModelFile::new("cost", 48_000, knobs, network.clone(), net.to_weights()?);
    let block = block.max(1);
    let mut player = Player::new(&model, block)?;
    let len = ((seconds * 48_000.0) as usize).max(block);
    let input: Vec<f32> = (0..len).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    let mut output = vec![0.0; block];
    for chunk in input.chunks(block).cycle().take(48_000 / block + 1) {
        player.process(chunk, &mut output[..chunk.len()]);
    }
    let start = Instant::now();
    for chunk in input.chunks(block) {
        player.process(chunk, &mut output[..chunk.len()]);
    }
    Ok(start.elapsed().as_nanos() as f64 / input.len() as f64)
}
