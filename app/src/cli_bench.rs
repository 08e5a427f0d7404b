//! `fxtwin bench`: throughput figures for the README, measured here and now.

use anyhow::Result;
use clap::{Args, Subcommand};
use models::bench::{train_throughput, BenchSpec};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training throughput in samples per second (batches of 4 x 1 s at 48 kHz).
    Train(TrainBenchArgs),
    /// Real-time engine cost in ns per sample and times real time, single thread, at several
    /// block sizes.
    Engine(EngineBenchArgs),
}

#[derive(Args)]
pub struct EngineBenchArgs {
    /// Presets to measure (repeatable).
    #[arg(long = "arch", default_values_t = [
        "lstm-16", "lstm-24", "lstm-32", "lstm-64", "gru-32", "tcn-45", "gcn-250",
        "wavenet-standard", "wavenet-lite",
    ].map(String::from))]
    pub archs: Vec<String>,
    /// Block sizes in samples (repeatable).
    #[arg(long = "block", default_values_t = [16, 64, 512, 4096])]
    pub blocks: Vec<usize>,
    /// Seconds of audio timed per preset and block size.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Knobs the models are sized for.
    #[arg(long, default_value_t = 0)]
    pub knobs: usize,
    /// Print one JSON object per measurement instead of a table.
    #[arg(long)]
    pub json: bool,
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
        BenchCommand::Engine(args) => engine(&args),
    }
}

fn engine(args: &EngineBenchArgs) -> Result<()> {
    let isa = dsp::engine::Isa::detect();
    if !args.json {
        println!(
            "CPU: {}; kernels compiled for {isa:?}; single thread, 48 kHz",
            cpu_model()
        );
        println!(
            "{:<18} {:>8} {:>7} {:>10} {:>11}",
            "preset", "params", "block", "ns/sample", "x realtime"
        );
    }
    for arch in &args.archs {
        let preset = models::presets::find(arch)?;
        let params = preset.network.parameter_count(args.knobs);
        for &block in &args.blocks {
            let ns = crate::report::measure_ns_per_sample(
                &preset.network,
                args.knobs,
                block,
                args.seconds,
            )?;
            let realtime = 1e9 / (ns * 48_000.0);
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "preset": arch, "parameters": params, "block": block,
                        "ns_per_sample": ns, "x_realtime": realtime,
                        "isa": format!("{isa:?}"),
                    })
                );
            } else {
                println!("{arch:<18} {params:>8} {block:>7} {ns:>10.0} {realtime:>11.1}");
            }
        }
    }
    Ok(())
}

/// The processor's model name from /proc/cpuinfo, or "unknown".
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
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
