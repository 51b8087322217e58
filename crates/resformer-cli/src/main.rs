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
use resformer::{Device, Engine, EngineOptions, Error};

const ENVIRONMENT: &str = "\
environment (read once, at start; an unknown value is an error):
  WGPU_BACKEND         vulkan, metal, dx12 or gl (comma-separated): limits the backends searched
  WGPU_ADAPTER_NAME    picks an adapter by a case-insensitive part of its name
  RESFORMER_MATMUL     subgroup8, coop, tiled or a tile such as 128x64x16/8x4: every matmul
  RESFORMER_ATTENTION  tiled, flash or subgroup8: every attention
  RESFORMER_LAYERNORM  tiled, subgroup8 or rows: every layernorm
  RESFORMER_COOP       auto, on or off: the split-f16 cooperative-matrix matmul
  RESFORMER_TUNE       auto, on or off: the matmul tuner";

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
    /// Sentence embeddings with a BERT sentence-transformers model (all-MiniLM-L6-v2: scripts/fetch-minilm.sh)
    Embed(embed::Args),
    /// Classify the handwritten digits' test split with the Vision Transformer; or show one digit
    Classify(classify::Args),
    /// Time every kernel, the block and the stack against the CPU backend and the reference
    Bench(bench::Args),
    /// Time every matmul tile per shape class on this adapter and cache the fastest
    Tune(tune::Args),
    /// Run PyTorch's parity fixtures (scripts/make_fixtures.py) on this machine's device
    Parity(parity::Args),
    /// List every adapter wgpu sees and what each device choice would use
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
        match e {
            // a value the user gave (a variable, a device name) that the engine does not know
            Error::BadSetting { .. } => CliError::Usage(e.to_string()),
            e => CliError::Engine(e),
        }
    }
}

/// A usage error, for argument combinations clap cannot express.
pub(crate) fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Where a subcommand runs: `--device` (alias `--backend`).
#[derive(clap::Args)]
pub(crate) struct DeviceArgs {
    /// auto (a hardware GPU, else the CPU backend), cpu, reference, gpu (the best adapter) or gpu:N
    #[arg(long, visible_alias = "backend", default_value = "auto", value_parser = parse_device)]
    pub device: Device,
}

impl DeviceArgs {
    /// The engine on this device, with the environment's adapter search and kernel policy.
    pub fn engine(&self) -> Result<Engine, CliError> {
        engine_on(self.device)
    }
}

/// The environment's adapter search and kernel policy ([`EngineOptions::from_env`]), read
/// once per process: `main` reads it before any command runs, so a bad value stops the
/// program before it prints or allocates anything.
pub(crate) fn env_options() -> Result<EngineOptions, CliError> {
    static OPTIONS: std::sync::OnceLock<Result<EngineOptions, String>> = std::sync::OnceLock::new();
    OPTIONS.get_or_init(|| EngineOptions::from_env().map_err(|e| e.to_string())).clone().map_err(CliError::Usage)
}

/// An engine on `device`, with the environment's adapter search and kernel policy.
pub(crate) fn engine_on(device: Device) -> Result<Engine, CliError> {
    Ok(Engine::new_blocking(env_options()?.with_device(device))?)
}

/// [`engine_on`] with the CPU backend on `threads` threads of its own when given.
pub(crate) fn engine_with(device: Device, threads: Option<usize>) -> Result<Engine, CliError> {
    let options = env_options()?.with_device(device);
    Ok(Engine::new_blocking(match threads {
        Some(n) => options.with_threads(n),
        None => options,
    })?)
}

/// The device options of a subcommand that times GPU kernels (`bench`, `tune`): `gpu` (the
/// best adapter) or `gpu:N`; the host devices have no GPU kernels to time.
pub(crate) fn gpu_options(device: Device) -> Result<resformer::GpuOptions, CliError> {
    let mut gpu = env_options()?.gpu;
    match device {
        Device::Gpu => {}
        Device::GpuAt(n) => gpu.adapter = resformer::AdapterChoice::Index(n),
        other => return Err(usage(format!("--device {other}: this command times GPU kernels; give gpu or gpu:N"))),
    }
    Ok(gpu)
}

/// clap's parser for `--device`.
pub(crate) fn parse_device(s: &str) -> Result<Device, String> {
    s.parse().map_err(|_| format!("expected {}", Device::SPELLINGS))
}

/// clap's parser for counts and sizes: a positive integer, with that said when it is not.
pub(crate) fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if v >= 1 && v <= usize::MAX as i128 => Ok(v as usize),
        Ok(_) => Err("must be a positive integer (1 or more)".into()),
        Err(_) => Err("must be a positive integer".into()),
    }
}

/// clap's parser for seeds and indices: zero or more.
pub(crate) fn non_negative(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if v >= 0 && v <= u64::MAX as i128 => Ok(v as u64),
        _ => Err("must be a non-negative integer".into()),
    }
}

/// clap's message on one line: its first paragraph and any `tip:` (clap's "a similar
/// argument exists" suggestions), whitespace collapsed, without "error: ".
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = text.split("\n\n");
    let mut out = vec![parts.next().unwrap_or("").to_string()];
    out.extend(parts.filter(|p| p.trim_start().starts_with("tip:")).map(str::to_string));
    let words: Vec<&str> = out.iter().flat_map(|p| p.split_whitespace()).collect();
    words.join(" ").trim_start_matches("error: ").to_string()
}

/// Writing to a closed pipe (`resformer devices | head -1`) ends the program quietly, as
/// every Unix filter does, instead of panicking in `println!`.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts; Rust's
    // runtime set it to "ignore", which turns a closed pipe into a panic in `println!`.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
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
    if let Err(CliError::Usage(m)) = env_options() {
        eprintln!("error: {m}");
        return ExitCode::from(2);
    }
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
