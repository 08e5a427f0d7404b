//! `fxtwin bench`: throughput figures for the README, measured here and now.

use anyhow::Result;
use clap::{Args, Subcommand};
use models::bench::{train_throughput, BenchSpec};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training throughput in samples per second (batches of 4 x 1 s at 48 kHz).
    Train(TrainBenchArgs),
}

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Presets to measure (repeatable).
    #[arg(long = "arch", default_values_t = ["lstm-32".to_string(), "tcn-45".to_string()])]
    pub archs: Vec<String>,
    /// Timed batches per preset (one more runs untimed first).
    #[arg(long, default_value_t = 3)]
    pub batches: usize,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Truncated-BPTT chunk for recurrent presets, in samples.
    #[arg(long, default_value_t = 4800)]
    pub tbptt: usize,
    /// Knobs the models are sized for (0: plain models, like the PyTorch reference).
    #[arg(long, default_value_t = 0)]
    pub knobs: usize,
    /// CPU threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object per preset instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Train(args) => train(&args),
    }
}

fn train(args: &TrainBenchArgs) -> Result<()> {
    crate::cli_train::set_threads(args.threads);
    if !args.json {
        println!(
            "{:<10} {:>8} {:>16} {:>8}",
            "preset", "params", "samples/s", "steps"
        );
    }
    for arch in &args.archs {
        let preset = models::presets::find(arch)?;
        let spec = BenchSpec {
            network: preset.network.clone(),
            knob_count: args.knobs,
            batch: args.batch_size,
            item_samples: 48_000,
            tbptt_samples: args.tbptt,
            batches: args.batches.max(1),
        };
        let t = train_throughput(&spec)?;
        let params = preset.network.parameter_count(args.knobs);
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "engine": "fxtwin", "preset": arch, "parameters": params,
                    "samples_per_s": t.samples_per_s, "optimiser_steps": t.optimiser_steps,
                    "seconds": t.seconds,
                })
            );
        } else {
            println!(
                "{:<10} {:>8} {:>16.0} {:>8}",
                arch, params, t.samples_per_s, t.optimiser_steps
            );
        }
    }
    Ok(())
}
