//! `resformer run`: a stack on file or random weights, timed, optionally checked.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use resformer::model::budget::{activation_values, check_host, stack_values};
use resformer::model::io::{write_f32, HostTensor, TensorFile};
use resformer::model::weights::Naming;
use resformer::model::{host, BlockConfig, InputShape, Precision, Stack, StackWeights};
use resformer::ops::{compare, median, Activation, Tol};
use resformer::rng::Rng;
use resformer::Error;

use crate::{positive, progress, usage, CliError, CliResult, DeviceArgs};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Weights with PyTorch's state_dict names (block i under {prefix}{i}.); needs --input
    #[arg(long, value_name = "W.safetensors")]
    weights: Option<PathBuf>,
    /// Input file with `input` (seq, batch, E) and maybe `key_padding_mask` (batch, seq)
    #[arg(long, value_name = "X.safetensors")]
    input: Option<PathBuf>,
    /// Write the result as `output` here
    #[arg(long, value_name = "Y.safetensors")]
    output: Option<PathBuf>,
    /// Attention heads (required with --weights; 8 for random weights)
    #[arg(long, value_parser = positive)]
    heads: Option<usize>,
    /// Tensor name prefix of block 0 in the weights file
    #[arg(long, default_value = "")]
    prefix: String,
    /// Pre-norm blocks (LN before attention and FFN; nn.TransformerEncoderLayer's norm_first)
    #[arg(long, visible_alias = "norm-first")]
    pre_norm: bool,
    /// GELU (erf) in the FFN instead of ReLU
    #[arg(long)]
    gelu: bool,
    /// Causal attention mask
    #[arg(long)]
    causal: bool,
    /// LayerNorm eps (nn.TransformerEncoderLayer's layer_norm_eps)
    #[arg(long, visible_alias = "layer-norm-eps", default_value_t = BlockConfig::DEFAULT_EPS)]
    eps: f32,
    /// Input is (batch, seq, E)
    #[arg(long)]
    batch_first: bool,
    #[command(flatten)]
    device: DeviceArgs,
    /// Also run the reference path and print the largest differences
    #[arg(long)]
    check: bool,
    /// Check every step of the model (blocks, and the norm around them) against the reference on the reference's inputs
    #[arg(long)]
    check_ops: bool,
    /// f32, or f16: matmul weights stored and read as f16 (activations and accumulation f32)
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Timed forwards after the warm-up; past 3 of them, the runs stop once about 10 s have passed
    #[arg(long, default_value_t = 5, value_parser = positive)]
    runs: usize,
    /// Random weights: blocks [default: 6]
    #[arg(long, value_parser = positive)]
    layers: Option<usize>,
    /// Random weights: embed dim E [default: 256]
    #[arg(long, value_parser = positive)]
    embed: Option<usize>,
    /// Random weights: feed-forward dim F [default: 1024]
    #[arg(long, value_parser = positive)]
    ff: Option<usize>,
    /// Random input: sequence length [default: 128]
    #[arg(long, value_parser = positive)]
    seq: Option<usize>,
    /// Random input: batch [default: 4]
    #[arg(long, value_parser = positive)]
    batch: Option<usize>,
    /// Random weights and input: seed [default: 0]
    #[arg(long, value_parser = crate::non_negative)]
    seed: Option<u64>,
}

impl Args {
    fn configure(&self, cfg: &mut BlockConfig) {
        cfg.pre_norm = self.pre_norm;
        cfg.activation = if self.gelu { Activation::Gelu } else { Activation::Relu };
        cfg.causal = self.causal;
        cfg.batch_first = self.batch_first;
        cfg.eps = self.eps;
        cfg.precision = self.precision;
    }
}

/// Weights, config, input and mask from the files the user named.
type Loaded = (StackWeights, BlockConfig, HostTensor, InputShape, Option<Vec<u32>>);

fn from_files(a: &Args, w: &Path, x: &Path) -> Result<Loaded, CliError> {
    let heads = a.heads.ok_or_else(|| usage("--heads is required with --weights"))?;
    let random_only = [
        ("--layers", a.layers.is_some()),
        ("--embed", a.embed.is_some()),
        ("--ff", a.ff.is_some()),
        ("--seq", a.seq.is_some()),
        ("--batch", a.batch.is_some()),
        ("--seed", a.seed.is_some()),
    ];
    let given: Vec<&str> = random_only.iter().filter(|(_, set)| *set).map(|(f, _)| *f).collect();
    if !given.is_empty() {
        return Err(usage(format!(
            "{} set(s) the random stack's sizes; with --weights and --input the sizes come from the files",
            given.join(", ")
        )));
    }
    let wfile = TensorFile::open(w)?;
    // the library names the parameter; the command line names its flag
    let weights = StackWeights::from_file(&wfile, &a.prefix).map_err(|e| match e {
        Error::File { path, reason } if reason.ends_with("is the prefix right?") => {
            Error::File { path, reason: format!("{reason} (--prefix)") }
        }
        e => e,
    })?;
    if !wfile.converted_dtypes().is_empty() {
        println!("weights: converted {} to F32", wfile.converted_dtypes().join(", "));
    }
    let mut cfg = BlockConfig::new(weights.embed, heads, weights.ff);
    a.configure(&mut cfg);
    let xfile = TensorFile::open(x)?;
    let path = x.display().to_string();
    if !xfile.contains("input") {
        return Err(Error::File { path, reason: "no tensor named `input`".into() }.into());
    }
    let input = xfile.get("input")?;
    let shape = InputShape::from_shape(&input.shape, cfg.batch_first)?;
    if shape.embed != weights.embed {
        let reason = format!(
            "`input` has embed {} (shape {:?}) but the weights have embed {}",
            shape.embed, input.shape, weights.embed
        );
        return Err(Error::File { path, reason }.into());
    }
    let key_pad = if xfile.contains("key_padding_mask") {
        let m = xfile.get_mask("key_padding_mask", &[shape.batch, shape.seq])?;
        println!("input: using key_padding_mask ({} padded keys)", m.iter().filter(|&&v| v != 0).count());
        Some(m)
    } else {
        None
    };
    let (layers, e, f) = (weights.layers(), weights.embed, weights.ff);
    let naming = match StackWeights::naming_of(&wfile, &a.prefix) {
        Some(Naming::TransformerEncoder) if weights.output_norm().is_some() => {
            "nn.TransformerEncoder names, with its final norm"
        }
        Some(Naming::TransformerEncoder) => "nn.TransformerEncoder names",
        _ => "block names",
    };
    println!("weights: {}: {layers} blocks, embed {e}, ff {f}, heads {heads} ({naming})", w.display());
    Ok((weights, cfg, input, shape, key_pad))
}

fn random(a: &Args) -> Result<Loaded, CliError> {
    let heads = a.heads.unwrap_or(8);
    let (layers, embed, ff) = (a.layers.unwrap_or(6), a.embed.unwrap_or(256), a.ff.unwrap_or(1024));
    let (seq, batch, seed) = (a.seq.unwrap_or(128), a.batch.unwrap_or(4), a.seed.unwrap_or(0));
    let mut cfg = BlockConfig::new(embed, heads, ff);
    a.configure(&mut cfg);
    cfg.validate().map_err(|e| usage(format!("{e} (--embed, --heads)")))?;
    // before anything is allocated: the weights (kept twice: the engine's and the check's),
    // the input and output, and one forward's activations
    let tokens = seq as u128 * batch as u128;
    let values = 2 * stack_values(layers, embed, ff)
        + 2 * tokens * embed as u128
        + activation_values(&cfg, tokens.min(usize::MAX as u128) as usize);
    check_host(
        || format!("a random stack of {layers} blocks (embed {embed}, ff {ff}) on seq {seq} x batch {batch}"),
        4 * values,
        "lower --layers, --embed or --ff for the weights, --seq or --batch for the input",
    )?;
    let weights = StackWeights::random(seed, layers, embed, ff);
    let dims = if cfg.batch_first { vec![batch, seq, embed] } else { vec![seq, batch, embed] };
    let data = Rng::new(seed + 1).vec(seq * batch * embed, -1.0, 1.0);
    println!(
        "random weights (seed {seed}): {layers} blocks, embed {embed}, heads {heads}, ff {ff}; input seq {seq} x batch {batch}"
    );
    Ok((weights, cfg, HostTensor { shape: dims, data }, InputShape { seq, batch, embed }, None))
}

pub fn run(a: Args) -> CliResult {
    // 1. weights, input and config: from files, or seeded random
    let (weights, cfg, input, shape, key_pad) = match (&a.weights, &a.input) {
        (Some(w), Some(x)) => from_files(&a, w, x)?,
        (None, None) => random(&a)?,
        _ => return Err(usage("--weights and --input go together (or neither, for random ones)")),
    };
    let tokens = shape.seq * shape.batch;

    // 2. the stack on the chosen backend
    let t = Instant::now();
    let engine = a.device.engine()?;
    println!("backend: {}", engine.choice());
    // a device limit names the limit and the size; the command line adds which flag to change
    let hint = |e: Error| match e {
        Error::LimitExceeded { .. } => {
            CliError::Failed(format!("{e} (lower --embed or --ff for the weights, --seq or --batch for the input)"))
        }
        e => e.into(),
    };
    let stack = engine.load_stack(weights.clone(), cfg).map_err(hint)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "block: {}, {:?}, eps {}, {}{}{}",
        if cfg.pre_norm { "pre-norm" } else { "post-norm" },
        cfg.activation,
        cfg.eps,
        if cfg.batch_first { "batch-first" } else { "seq-first" },
        if cfg.causal { ", causal" } else { "" },
        if cfg.precision == Precision::F16 { ", f16 matmul weights" } else { "" }
    );

    // 3. warm-up (pipelines, plan), then timed runs (at least 3, at most --runs, about 10 s of them)
    let t0 = Instant::now();
    let mut output = stack.forward(&input.data, shape.seq, shape.batch, key_pad.as_deref()).map_err(hint)?;
    let first_ms = t0.elapsed().as_secs_f64() * 1e3;
    match engine.gpu().map(|g| g.pipeline_stats()) {
        Some(p) => println!(
            "warm-up: load {load_ms:.0} ms (device, weights); first forward {first_ms:.0} ms, of which {} pipelines \
             compiled in {:.0} ms (pipeline cache: {})",
            p.compiled,
            p.ms,
            match p.cache_from_disk {
                Some(true) => "warm, from an earlier run",
                Some(false) => "new, saved for the next run",
                None => "not supported by this adapter",
            }
        ),
        None => println!("warm-up: load {load_ms:.0} ms; first forward {first_ms:.0} ms"),
    }
    let max_runs = a.runs;
    let bar = progress(max_runs, "forwards");
    let mut times = Vec::new();
    let budget = Instant::now();
    while times.len() < max_runs && (times.len() < 3 || budget.elapsed() < Duration::from_secs(10)) {
        let t = Instant::now();
        output = stack.forward(&input.data, shape.seq, shape.batch, key_pad.as_deref())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let med = median(&times);
    println!(
        "forward: {med:.2} ms (median of {} runs after a warm-up), {:.0} tokens/s ({tokens} tokens, {} blocks)",
        times.len(),
        tokens as f64 / (med / 1e3),
        weights.layers()
    );

    // 4. optional checks against the reference path
    if a.check {
        let t = Instant::now();
        // against the f32 model: in the f16 mode this is the mode's own error
        let want = host::forward(&weights, &cfg, &input.data, shape.seq, shape.batch, key_pad.as_deref());
        let d = compare(&output, &want, Tol { atol: 0.0, rtol: 0.0 });
        println!(
            "check against the CPU reference path ({:.0} ms): max abs diff {:.3e}, max rel diff {:.3e}",
            t.elapsed().as_secs_f64() * 1e3,
            d.max_abs,
            d.max_rel
        );
    }
    if let Some(path) = &a.output {
        write_f32(path, &[("output", &input.shape, &output)])?;
        println!("wrote `output` {:?} to {}", input.shape, path.display());
    }
    if a.check_ops {
        // step by step against the reference of the same function (f16-rounded weights in the f16 mode)
        let same = if cfg.precision == Precision::F16 { weights.rounded_to_f16() } else { weights.clone() };
        check_ops(&stack, &same, &input.data, shape, key_pad.as_deref())?;
    }
    Ok(())
}

/// `run --check-ops`: every step against the reference on the reference's inputs.
fn check_ops(
    stack: &Stack,
    weights: &StackWeights,
    x: &[f32],
    shape: InputShape,
    key_pad: Option<&[u32]>,
) -> CliResult {
    let t = Instant::now();
    let checks = stack.check_ops(weights, x, shape.seq, shape.batch, key_pad)?;
    report_check_ops(&checks, t)
}

/// Prints `--check-ops`' table (every step of the model's list: "-" in the block column
/// for a step before or after the blocks) and fails on the first step over the tolerance.
pub(crate) fn report_check_ops(checks: &[resformer::model::check::OpCheck], started: Instant) -> CliResult {
    use resformer::model::check::OPS_TOL;
    println!(
        "check-ops: each step on the reference's inputs against the reference step (atol {:.0e}, rtol {:.0e}), {:.0} ms:",
        OPS_TOL.atol,
        OPS_TOL.rtol,
        started.elapsed().as_secs_f64() * 1e3
    );
    println!("{:>5}  {:<64} {:>10} {:>10}  result", "block", "step", "max abs", "max rel");
    for c in checks {
        let block = c.block.map_or("-".to_string(), |b| b.to_string());
        let result = if c.ok() { "ok".to_string() } else { format!("OVER ({} elements)", c.bad) };
        println!("{block:>5}  {:<64} {:>10.2e} {:>10.2e}  {result}", c.step, c.max_abs, c.max_rel);
    }
    match checks.iter().find(|c| !c.ok()) {
        None => {
            println!("all {} steps within tolerance", checks.len());
            Ok(())
        }
        Some(c) => {
            let block = c.block.map_or("outside the blocks".to_string(), |b| format!("block {b}"));
            println!(
                "first step over tolerance: {block}, {} (max abs {:.2e} at element {})",
                c.step, c.max_abs, c.worst
            );
            Err(CliError::Failed(format!("{block}, {} is over the tolerance", c.step)))
        }
    }
}
