//! The `resformer` command line: parses arguments (clap), calls the library, prints.
//! One module per subcommand; each holds its `Args` and its `run`.

mod attention;
mod bench;
mod classify;
mod devices;
mod embed;
mod parity;
mod run;
mod tune;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use resformer::Error;

const ENVIRONMENT: &str = "\
environment:
  WGPU_BACKEND       vulkan, metal, dx12 or gl: limits the backends searched
  WGPU_ADAPTER_NAME  picks an adapter by a case-insensitive part of its name
  RESFORMER_TUNE     off, on or auto (default): the matmul tuner
  RESFORMER_MATMUL, RESFORMER_ATTENTION, RESFORMER_LAYERNORM: force a kernel variant";

/// Stacks of residual Transformer blocks on the GPU (wgpu), a fast CPU backend, and a
/// plain CPU reference for every kernel.
#[derive(Parser)]
#[command(name = "resformer", version, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a stack of residual Transformer blocks (random weights unless --weights and --input)
    Run(run::Args),
    /// The attention walk-through: one head's weights over a sentence, as a table and a heatmap
    Attention(attention::Args),
    /// Sentence embeddings with all-MiniLM-L6-v2 (scripts/fetch-minilm.sh fetches it)
    Embed(embed::Args),
    /// Classify the handwritten digits' test split with the Vision Transformer; or show one digit
    Classify(classify::Args),
    /// Time every kernel, the block and the stack against the CPU backend and the reference
    Bench(bench::Args),
    /// Time every matmul tile per shape class on this adapter and cache the fastest
    Tune(tune::Args),
    /// Run PyTorch's parity fixtures (scripts/make_fixtures.py) on this machine's backend
    Parity(parity::Args),
    /// List every adapter wgpu sees and what each backend choice would use
    Devices,
}

/// How a command fails: a bad argument (one line, exit 2), an engine error (exit 1), or a
/// check that ran and failed (exit 1).
pub(crate) enum CliError {
    Usage(String),
    Engine(Error),
    Failed(String),
}

pub(crate) type CliResult = Result<(), CliError>;

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Engine(e)
    }
}

/// A usage error, for argument combinations clap cannot express.
pub(crate) fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// clap's message on one line: its first paragraph, whitespace collapsed, without "error: ".
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or("");
    let words: Vec<&str> = first.split_whitespace().collect();
    words.join(" ").trim_start_matches("error: ").to_string()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            use clap::error::ErrorKind::{DisplayHelpOnMissingArgumentOrSubcommand, MissingSubcommand};
            let msg = match e.kind() {
                MissingSubcommand | DisplayHelpOnMissingArgumentOrSubcommand => "no command given".to_string(),
                _ => one_line(&e),
            };
            eprintln!("error: {msg} (try --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Attention(a) => attention::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Parity(a) => parity::run(a),
        Command::Devices => devices::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(CliError::Engine(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(CliError::Failed(m)) => {
            eprintln!("error: {m}");
            ExitCode::FAILURE
        }
    }
}

/// A progress bar on stderr (drawn only on a terminal).
pub(crate) fn progress(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template("[{bar:20}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("#>-");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}
