//! `fxtwin`: learn knob-aware digital twins of audio gear from recordings.
//!
//! Every subcommand reports failures as one line naming the file or value at fault and exits
//! with status 1 (2 for command-line usage errors).

mod cli_bench;
mod cli_dataset;
mod cli_render;
mod cli_train;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc, configured in `.cargo/config.toml` to keep freed pages and back them with huge
/// pages: a training step allocates and frees tensors of several megabytes, and with the system
/// allocator each one came back as fresh pages from the kernel (page faults were a fifth of a
/// TCN step; `fxtwin bench train` runs 1.6-2x faster with this).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "fxtwin",
    version,
    about = "Learn knob-aware digital twins of audio gear"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the profiling stimulus (a reamp signal) and its layout as JSON beside it.
    Stimulus {
        out: PathBuf,
        #[arg(long, default_value_t = 48_000)]
        rate: u32,
    },
    /// Build or check a dataset manifest.
    Dataset {
        #[command(subcommand)]
        command: cli_dataset::DatasetCommand,
    },
    /// List the architecture presets with size, receptive field and measured real-time cost.
    Models {
        /// Knob count to size the presets for.
        #[arg(long, default_value_t = 2)]
        knobs: usize,
    },
    /// Train a model on a dataset manifest.
    Train(cli_train::TrainArgs),
    /// Check, train and evaluate a dataset, writing the model and a report.
    Profile(cli_train::TrainArgs),
    /// Profile every manifest (manifest.toml) below a folder, going on past failures.
    Batch(cli_train::BatchArgs),
    /// Process a WAV file through a model, in constant memory.
    Render(cli_render::RenderArgs),
    /// Measure a model against a dataset: ESR, MR-STFT and L1 per pair and knob setting.
    Eval(cli_render::EvalArgs),
    /// Measure throughput (benchmarks for the README, not tests).
    Bench {
        #[command(subcommand)]
        command: cli_bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stimulus { out, rate } => cli_dataset::stimulus(&out, rate),
        Command::Dataset { command } => cli_dataset::run(command),
        Command::Models { knobs } => cli_train::list_models(knobs),
        Command::Train(args) => cli_train::train(&args).map(|_| ()),
        Command::Profile(args) => cli_train::profile(&args).map(|_| ()),
        Command::Batch(args) => cli_train::batch(&args),
        Command::Render(args) => cli_render::render(&args),
        Command::Eval(args) => cli_render::eval(&args),
        Command::Bench { command } => cli_bench::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `error` and its causes on one line, separated by `: `. A cause whose text is already part of
/// the line is left out: the library error types print their source inside their own message,
/// and anyhow's `{:#}` would repeat it. Line breaks inside a message become spaces.
pub(crate) fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(text.as_str()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
