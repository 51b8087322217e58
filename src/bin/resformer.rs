//! The `resformer` command line: parses arguments, calls the library, prints.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use resformer::kernels::matmul::Activation;
use resformer::model::io::{write_f32, TensorFile};
use resformer::model::minilm::SentenceEmbedder;
use resformer::model::{cpu, Backend, BlockConfig, InputShape, StackWeights};
use resformer::rng::Rng;
use resformer::testing::{compare, Tol};
use resformer::walkthrough::Walkthrough;
use resformer::{Engine, EngineOptions, Error};

const USAGE: &str = "\
usage: resformer <command> [options]

commands:
  run        run a stack of residual Transformer blocks
             resformer run --weights W.safetensors --heads H --input X.safetensors --output Y.safetensors
                 [--prefix P] [--pre-norm] [--gelu] [--causal] [--eps E] [--batch-first]
                 [--backend auto|gpu|cpu|reference] [--check] [--check-ops] [--runs N]
             without --weights and --input: seeded random weights and input from
                 --layers 6 --embed 256 --heads 8 --ff 1024 --seq 128 --batch 4 [--seed 0]
  attention  the attention walk-through: one head's weights over a sentence
             resformer attention \"I love deep learning\" [--focus love] [--out attn.png|attn.svg] [--dim 16] [--seed 0]
                 [--backend auto|gpu|cpu|reference] [--model DIR [--head H]]  (a real MiniLM head instead of random weights)
  embed      sentence embeddings with all-MiniLM-L6-v2 (fetch it with scripts/fetch-minilm.sh)
             resformer embed --model models/all-MiniLM-L6-v2 [--json] [--backend auto|gpu|cpu|reference] SENTENCE...
             resformer embed --model DIR --speed [--batch 32] [--repeats 3] [--backend B]: sentences/s on
                 ~128-token sentences (median of the repeats after a warm-up of the same shape), the GPU
                 kernels' time and the host's share; GPU path then CPU path unless --backend picks one;
                 --random-weights: the model's shapes, seeded weights, only DIR/tokenizer.json read
  bench      time every kernel, the block and the stack on the GPU against the CPU reference
             resformer bench [--kernel matmul|attention|layernorm|residual_add|block|stack|all]
                 [--sizes small|medium|large] [--json FILE] [--compare FILE] [--runs 10] [--cpu-budget 2e10]
  tune       time every matmul tile configuration on this adapter, per shape class, and cache the
             fastest (done on first use on hardware GPUs anyway; RESFORMER_TUNE=off|on|auto)
             resformer tune [--sizes small|large] [--runs 5]   (large: the L12 e768 stack's shapes, 1024^3, 4096^3)
  parity     run PyTorch's parity fixtures (scripts/make_fixtures.py) on this machine's backend
             resformer parity [--dir tests/fixtures/block] [--backend auto|gpu|cpu|reference]   (exit 1 on a miss)
  devices    list every adapter wgpu sees and mark the one resformer would use

environment: WGPU_BACKEND (vulkan, gl, metal, dx12) limits the backends searched;
  WGPU_ADAPTER_NAME picks an adapter by a case-insensitive part of its name";

/// A command-line problem: printed as one line, exit code 2.
struct Usage(String);

type CliResult = Result<(), CliError>;

enum CliError {
    Usage(String),
    Engine(Error),
    /// The command ran and its check failed (exit 1).
    Failed(String),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Engine(e)
    }
}

impl From<Usage> for CliError {
    fn from(u: Usage) -> Self {
        CliError::Usage(u.0)
    }
}

/// Parsed options: `--name value` pairs, `--switch`es and positional words.
struct Opts {
    values: HashMap<String, String>,
    switches: HashSet<String>,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], valued: &[&str], switches: &[&str]) -> Result<Opts, Usage> {
        let mut o = Opts { values: HashMap::new(), switches: HashSet::new(), positional: Vec::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if valued.contains(&name) {
                    let v = it.next().ok_or_else(|| Usage(format!("--{name} needs a value")))?;
                    o.values.insert(name.to_string(), v.clone());
                } else if switches.contains(&name) {
                    o.switches.insert(name.to_string());
                } else {
                    return Err(Usage(format!("unknown option --{name}")));
                }
            } else {
                o.positional.push(a.clone());
            }
        }
        Ok(o)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn has(&self, name: &str) -> bool {
        self.switches.contains(name)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, Usage> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| Usage(format!("--{name}: {v:?} is not a valid number"))),
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run(args: &[String]) -> CliResult {
    let o = Opts::parse(
        args,
        &[
            "weights", "input", "output", "heads", "prefix", "backend", "eps", "layers", "embed", "ff", "seq", "batch",
            "seed", "runs",
        ],
        &["pre-norm", "gelu", "causal", "batch-first", "check", "check-ops"],
    )?;
    if let Some(p) = o.positional.first() {
        return Err(Usage(format!("unexpected argument {p:?}")).into());
    }
    let backend: Backend = o.get("backend").unwrap_or("auto").parse()?;
    let configure = |cfg: &mut BlockConfig| -> Result<(), Usage> {
        cfg.pre_norm = o.has("pre-norm");
        cfg.activation = if o.has("gelu") { Activation::Gelu } else { Activation::Relu };
        cfg.causal = o.has("causal");
        cfg.batch_first = o.has("batch-first");
        cfg.eps = o.num("eps", 1e-5)?;
        Ok(())
    };

    // 1. weights, input and config: from files, or seeded random
    let (weights, cfg, input, shape, key_pad) = match (o.get("weights"), o.get("input")) {
        (Some(w), Some(x)) => {
            let heads: usize = o
                .get("heads")
                .ok_or_else(|| Usage("--heads is required with --weights".into()))?
                .parse()
                .map_err(|_| Usage("--heads: not a number".into()))?;
            let wfile = TensorFile::open(Path::new(w))?;
            let weights = StackWeights::from_file(&wfile, o.get("prefix").unwrap_or(""))?;
            if !wfile.converted_dtypes().is_empty() {
                println!("weights: converted {} to F32", wfile.converted_dtypes().join(", "));
            }
            let mut cfg = BlockConfig::new(weights.embed, heads, weights.ff);
            configure(&mut cfg)?;
            let xfile = TensorFile::open(Path::new(x))?;
            if !xfile.contains("input") {
                return Err(Error::File { path: x.into(), reason: "no tensor named `input`".into() }.into());
            }
            let input = xfile.get("input")?;
            let shape = InputShape::from_shape(&input.shape, cfg.batch_first)?;
            if shape.embed != weights.embed {
                return Err(Error::File {
                    path: x.into(),
                    reason: format!(
                        "`input` has embed {} (shape {:?}) but the weights have embed {}",
                        shape.embed, input.shape, weights.embed
                    ),
                }
                .into());
            }
            let key_pad = if xfile.contains("key_padding_mask") {
                let m = xfile.get_shaped("key_padding_mask", &[shape.batch, shape.seq])?;
                println!(
                    "input: using key_padding_mask ({} padded keys)",
                    m.data.iter().filter(|&&v| v != 0.0).count()
                );
                Some(m.data.iter().map(|&v| (v != 0.0) as u32).collect::<Vec<u32>>())
            } else {
                None
            };
            println!(
                "weights: {w}: {} blocks, embed {}, ff {}, heads {heads}",
                weights.layers(),
                weights.embed,
                weights.ff
            );
            (weights, cfg, input, shape, key_pad)
        }
        (None, None) => {
            let (layers, embed, heads, ff) =
                (o.num("layers", 6)?, o.num("embed", 256)?, o.num("heads", 8)?, o.num("ff", 1024)?);
            let (seq, batch, seed) = (o.num("seq", 128)?, o.num("batch", 4)?, o.num("seed", 0u64)?);
            let mut cfg = BlockConfig::new(embed, heads, ff);
            configure(&mut cfg)?;
            cfg.validate()?;
            let weights = StackWeights::random(seed, layers, embed, ff);
            let dims = if cfg.batch_first { vec![batch, seq, embed] } else { vec![seq, batch, embed] };
            let data = Rng::new(seed + 1).vec(seq * batch * embed, -1.0, 1.0);
            println!("random weights (seed {seed}): {layers} blocks, embed {embed}, heads {heads}, ff {ff}; input seq {seq} x batch {batch}");
            let input = resformer::model::io::HostTensor { shape: dims, data };
            (weights, cfg, input, InputShape { seq, batch, embed }, None)
        }
        _ => return Err(Usage("--weights and --input go together (or neither, for random ones)".into()).into()),
    };
    let tokens = shape.seq * shape.batch;

    // 2. the stack on the chosen backend
    let t = Instant::now();
    let engine = Engine::new_blocking(EngineOptions { backend, ..Default::default() })?;
    println!("backend: {}", engine.choice());
    let stack = engine.load_stack(weights.clone(), cfg)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "block: {}, {:?}, eps {}, {}{}",
        if cfg.pre_norm { "pre-norm" } else { "post-norm" },
        cfg.activation,
        cfg.eps,
        if cfg.batch_first { "batch-first" } else { "seq-first" },
        if cfg.causal { ", causal" } else { "" }
    );

    // 3. warm-up, then timed runs (at least 3, at most --runs, about 10 s of them)
    let max_runs: usize = o.num("runs", 5)?;
    let t0 = Instant::now();
    let mut output = stack.forward(&input.data, shape.seq, shape.batch, key_pad.as_deref())?;
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
    let mut times = Vec::new();
    let budget = Instant::now();
    while times.len() < max_runs.max(1) && (times.len() < 3 || budget.elapsed() < Duration::from_secs(10)) {
        let t = Instant::now();
        output = stack.forward(&input.data, shape.seq, shape.batch, key_pad.as_deref())?;
        times.push(t.elapsed());
        eprint!("\rrun {}/{}: {:.1} ms   ", times.len(), max_runs, times.last().unwrap().as_secs_f64() * 1e3);
    }
    eprintln!();
    let med = median(times.clone());
    println!(
        "forward: {:.2} ms (median of {} runs after a warm-up), {:.0} tokens/s ({} tokens, {} blocks)",
        med.as_secs_f64() * 1e3,
        times.len(),
        tokens as f64 / med.as_secs_f64(),
        tokens,
        weights.layers()
    );

    // 4. optional check against the CPU path
    if o.has("check") {
        let t = Instant::now();
        let want = cpu::forward(&weights, &cfg, &input.data, shape.seq, shape.batch, key_pad.as_deref());
        let d = compare(&output, &want, Tol { atol: 0.0, rtol: 0.0 });
        println!(
            "check against the CPU reference path ({:.0} ms): max abs diff {:.3e}, max rel diff {:.3e}",
            t.elapsed().as_secs_f64() * 1e3,
            d.max_abs,
            d.max_rel
        );
    }
    if let Some(path) = o.get("output") {
        write_f32(Path::new(path), &[("output", &input.shape, &output)])?;
        println!("wrote `output` {:?} to {path}", input.shape);
    }
    if o.has("check-ops") {
        check_ops(&stack, &weights, &input.data, shape, key_pad.as_deref())?;
    }
    Ok(())
}

/// `run --check-ops`: every step against the reference on the reference's inputs.
fn check_ops(
    stack: &resformer::model::Stack,
    weights: &StackWeights,
    x: &[f32],
    shape: InputShape,
    key_pad: Option<&[u32]>,
) -> CliResult {
    use resformer::model::check::OPS_TOL;
    let t = Instant::now();
    let checks = stack.check_ops(weights, x, shape.seq, shape.batch, key_pad)?;
    println!(
        "check-ops: each step on the reference's inputs against the reference step (atol {:.0e}, rtol {:.0e}), {:.0} ms:",
        OPS_TOL.atol,
        OPS_TOL.rtol,
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("{:>5}  {:<64} {:>10} {:>10}  result", "block", "step", "max abs", "max rel");
    for c in &checks {
        let block = c.block.map_or("in".to_string(), |b| b.to_string());
        let result = if c.ok() { "ok".to_string() } else { format!("OVER ({} elements)", c.bad) };
        println!("{block:>5}  {:<64} {:>10.2e} {:>10.2e}  {result}", c.step, c.max_abs, c.max_rel);
    }
    match checks.iter().find(|c| !c.ok()) {
        None => {
            println!("all {} steps within tolerance", checks.len());
            Ok(())
        }
        Some(c) => {
            let block = c.block.map_or("the input norm".to_string(), |b| format!("block {b}"));
            println!(
                "first step over tolerance: {block}, {} (max abs {:.2e} at element {})",
                c.step, c.max_abs, c.worst
            );
            Err(CliError::Failed(format!("{block}, {} is over the tolerance", c.step)))
        }
    }
}

fn attention_walkthrough(args: &[String]) -> CliResult {
    let o = Opts::parse(args, &["focus", "out", "dim", "seed", "backend", "model", "head"], &[])?;
    let sentence = o.positional.join(" ");
    if sentence.trim().is_empty() {
        return Err(
            Usage("give a sentence, e.g. resformer attention \"I love deep learning\" --focus love".into()).into()
        );
    }
    let w = match o.get("model") {
        Some(dir) => {
            let head = o.num("head", 0)?;
            let w = resformer::model::minilm::walkthrough(Path::new(dir), &sentence, head)?;
            println!(
                "tokens: {:?} (MiniLM embeddings after its embedding LayerNorm; layer 0, head {head}, d = {})",
                w.tokens, w.dim
            );
            w
        }
        None => {
            let w = Walkthrough::random(&sentence, o.num("dim", 16)?, o.num("seed", 0u64)?)?;
            println!("tokens: {:?} (seeded random embeddings, d = {})", w.tokens, w.dim);
            w
        }
    };
    let focus = match o.get("focus") {
        Some(word) => {
            w.find(word).ok_or_else(|| Usage(format!("--focus {word:?} is not a token of {:?}", w.tokens)))?
        }
        None => 0,
    };
    let backend: Backend = o.get("backend").unwrap_or("auto").parse()?;
    let reference = w.weights_cpu();
    let engine = Engine::new_blocking(EngineOptions { backend, ..Default::default() })?;
    let p = match engine.gpu() {
        Some(gpu) => {
            println!("backend: {} (matmul and attention kernels)", engine.choice());
            let p = w.weights_gpu(gpu)?;
            let d = compare(&p, &reference, Tol { atol: 0.0, rtol: 0.0 });
            println!("check against the CPU reference: max abs diff {:.2e}", d.max_abs);
            p
        }
        None => {
            println!("backend: {} (the walk-through's weights come from the reference kernels)", engine.choice());
            reference
        }
    };
    print!("{}", w.table(&p, focus));
    if let Some(out) = o.get("out") {
        w.save_heatmap(&p, Some(focus), Path::new(out))?;
        println!("wrote the {0}x{0} attention heatmap to {out}", w.tokens.len());
    }
    Ok(())
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}

/// sentences/s of `model` on a batch of `batch` sentences of about 128 tokens.
fn embed_speed(dir: &Path, backend: Backend, batch: usize, repeats: usize, random: bool) -> CliResult {
    let model = match random {
        true => SentenceEmbedder::random(dir, 0, backend)?,
        false => SentenceEmbedder::from_dir(dir, backend)?,
    };
    const TEXT: &str = "Attention lets every token look at every other token of the sentence, weigh how much each \
        one matters, and mix their values into a new representation; stacking such layers with residual \
        connections, layer normalisation and feed-forward networks gives the encoder that turns a sentence \
        into a single vector whose direction captures its meaning, so that similar sentences point the same way";
    let words: Vec<&str> = TEXT.split_whitespace().collect();
    // sentence i: the text rotated by i words, as many words as fit in 128 tokens with [CLS] and [SEP]
    let mut sentences = Vec::with_capacity(batch);
    for i in 0..batch {
        let mut s = String::new();
        for w in words.iter().cycle().skip(i % words.len()) {
            let longer = if s.is_empty() { w.to_string() } else { format!("{s} {w}") };
            if model.tokenize(&longer)?.len() > 128 {
                break;
            }
            s = longer;
        }
        sentences.push(s);
    }
    let mut lens = Vec::with_capacity(batch);
    for s in &sentences {
        lens.push(model.tokenize(s)?.len());
    }
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    eprintln!("{}: a warm-up batch of {batch}, then {repeats} timed", model.describe());
    model.embed(&refs)?; // the same shape: compiles pipelines, builds the plan, tunes on a GPU
    let mut runs = Vec::with_capacity(repeats);
    for i in 0..repeats {
        eprint!("\r  batch {}/{repeats}", i + 1);
        runs.push(model.embed_timed(&refs)?.1);
    }
    eprintln!();
    runs.sort_by(|a, b| a.total_ms().total_cmp(&b.total_ms()));
    let t = runs[runs.len() / 2];
    let secs = t.total_ms() / 1e3;
    println!(
        "{} on {}: batch {batch} of {}-{} tokens: {:.1} ms (median of {repeats} after a warm-up of the same \
         shape): {:.1} sentences/s",
        model.name(),
        model.describe(),
        lens.iter().min().unwrap_or(&0),
        lens.iter().max().unwrap_or(&0),
        t.total_ms(),
        batch as f64 / secs
    );
    let gpu = match model.gpu_ms(t.seq, t.batch, repeats) {
        Some(Ok(ms)) => format!(
            "forward {:.1} ms (upload, kernels, readback), of which GPU kernels {ms:.1} ms ({:.0}% of the \
             batch, timed apart by timestamps); ",
            t.forward_ms,
            100.0 * ms / t.total_ms()
        ),
        Some(Err(e)) => format!("GPU kernels not timed ({e}); forward {:.1} ms; ", t.forward_ms),
        None => format!("forward (CPU) {:.1} ms; ", t.forward_ms),
    };
    println!(
        "  {gpu}host: tokenise {:.1} ms, embeddings + padding {:.1} ms, pooling {:.1} ms",
        t.tokenize_ms, t.inputs_ms, t.pool_ms
    );
    Ok(())
}

fn embed(args: &[String]) -> CliResult {
    let o = Opts::parse(args, &["model", "backend", "batch", "repeats"], &["json", "speed", "random-weights"])?;
    let dir = o
        .get("model")
        .ok_or_else(|| Usage("--model DIR is required (bash scripts/fetch-minilm.sh fetches it)".into()))?;
    if o.has("speed") {
        let (batch, repeats, random) = (o.num("batch", 32)?, o.num("repeats", 3)?, o.has("random-weights"));
        if batch == 0 || repeats == 0 {
            return Err(Usage("--batch and --repeats must be at least 1".into()).into());
        }
        return match o.get("backend") {
            Some(b) => embed_speed(Path::new(dir), b.parse()?, batch, repeats, random),
            None => {
                embed_speed(Path::new(dir), Backend::Gpu, batch, repeats, random)?;
                embed_speed(Path::new(dir), Backend::Cpu, batch, repeats, random)
            }
        };
    }
    if o.positional.is_empty() {
        return Err(Usage("give at least one sentence".into()).into());
    }
    let backend: Backend = o.get("backend").unwrap_or("auto").parse()?;
    let t = Instant::now();
    let model = SentenceEmbedder::from_dir(Path::new(dir), backend)?;
    let load = t.elapsed();
    let sentences: Vec<&str> = o.positional.iter().map(String::as_str).collect();
    let t = Instant::now();
    let emb = model.embed(&sentences)?;
    let took = t.elapsed();
    if o.has("json") {
        let rows: Vec<String> = emb
            .iter()
            .map(|e| {
                let v: Vec<String> =
                    e.iter().map(|x| if x.is_finite() { format!("{x}") } else { "null".into() }).collect();
                format!("[{}]", v.join(","))
            })
            .collect();
        println!(
            "{{\"model\":{},\"adapter\":{},\"dim\":{},\"embeddings\":[{}]}}",
            json_str(model.name()),
            json_str(&model.describe()),
            model.dim(),
            rows.join(",")
        );
        return Ok(());
    }
    println!("model: {} ({}-dim, loaded in {:.0} ms)", model.name(), model.dim(), load.as_secs_f64() * 1e3);
    println!("backend: {}", model.describe());
    println!("embedded {} sentences in {:.1} ms", sentences.len(), took.as_secs_f64() * 1e3);
    for (i, (s, e)) in sentences.iter().zip(&emb).enumerate() {
        let head: Vec<String> = e.iter().take(4).map(|v| format!("{v:+.4}")).collect();
        println!("[{i}] {} tokens  [{}, ...]  {s}", model.tokenize(s)?.len(), head.join(", "));
    }
    if emb.len() >= 2 {
        println!("cosine similarity:");
        print!("     ");
        for j in 0..emb.len() {
            print!("{:>8}", format!("[{j}]"));
        }
        println!();
        for (i, a) in emb.iter().enumerate() {
            print!("{:>5}", format!("[{i}]"));
            for b in &emb {
                print!("{:>8.4}", a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>());
            }
            println!();
        }
    }
    Ok(())
}

fn bench(args: &[String]) -> CliResult {
    use resformer::bench;
    let o = Opts::parse(args, &["kernel", "sizes", "json", "compare", "runs", "cpu-budget"], &[])?;
    let kernel = o.get("kernel").unwrap_or("all");
    if kernel != "all" && !bench::KERNELS.contains(&kernel) {
        return Err(Usage(format!("--kernel {kernel:?}: expected one of {:?} or all", bench::KERNELS)).into());
    }
    let sizes: bench::Sizes = o.get("sizes").unwrap_or("small").parse()?;
    let runs: usize = o.num("runs", 10)?;
    // the plain CPU reference is skipped above this many FLOP (or bytes): it would take minutes
    let budget: f64 = o.num("cpu-budget", 2e10)?;
    let other = match o.get("compare") {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io { path: p.into(), source })?;
            let rows: Vec<bench::Row> = serde_json::from_str(&text)
                .map_err(|e| Error::File { path: p.into(), reason: format!("not a bench JSON array: {e}") })?;
            Some(rows)
        }
        None => None,
    };
    let gpu = std::sync::Arc::new(resformer::Gpu::new()?);
    println!("adapter: {}", gpu.adapter().label());
    let peak = bench::peak(&gpu)?;
    println!("peak: {:.1} GFLOP/s f32, {:.1} GB/s ({})", peak.gflops, peak.gbps, peak.source);
    let cases = bench::cases(kernel, sizes);
    let mut rows = Vec::new();
    let start = Instant::now();
    for (i, case) in cases.iter().enumerate() {
        let done = "#".repeat(20 * i / cases.len());
        eprint!("\r[{done:<20}] {}/{} {} {}          ", i + 1, cases.len(), case.kernel(), case.shape());
        rows.push(bench::run_case(&gpu, case, runs, budget, &peak)?);
    }
    eprintln!("\r[{}] {} cases in {:.1} s{:40}", "#".repeat(20), cases.len(), start.elapsed().as_secs_f64(), "");
    if let Some(other) = &other {
        bench::compare(&mut rows, other);
    }
    print!("{}", bench::table(&rows));
    println!(
        "gpu ms: median of {runs} runs after a warm-up ({} clock); cpu ms: the CPU backend (every core); \
         x ref / x fast: CPU time over GPU time; cpu_ref '-': over the {budget:.0e} FLOP budget (--cpu-budget)",
        rows.first().map_or("", |r| r.gpu_clock.as_str())
    );
    if let Some(path) = o.get("json") {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::Gpu(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|source| Error::Io { path: path.into(), source })?;
        println!("wrote {} rows to {path}", rows.len());
    }
    Ok(())
}

fn tune(args: &[String]) -> CliResult {
    use resformer::tune;
    let o = Opts::parse(args, &["sizes", "runs"], &[])?;
    let gpu = resformer::Gpu::new()?;
    let default = if gpu.adapter().is_software() { "small" } else { "large" };
    let shapes: Vec<(usize, usize, usize)> = match o.get("sizes").unwrap_or(default) {
        "large" => tune::TUNE_SHAPES.to_vec(),
        "small" => vec![(128, 128, 128), (256, 96, 64), (65, 257, 36)],
        other => return Err(Usage(format!("--sizes {other:?}: expected small or large")).into()),
    };
    let runs: usize = o.num("runs", 5)?;
    println!("adapter: {}", gpu.adapter().label());
    let start = Instant::now();
    let tables = tune::tune(&gpu, &shapes, runs)?;
    for ((m, n, k), rows) in &tables {
        println!("{m}x{n}x{k} ({}):", tune::matmul_class(*m, *n, *k));
        for (i, r) in rows.iter().enumerate() {
            let mark = if i == 0 { "  <- chosen" } else { "" };
            println!("  {:<14} {:>10.3} ms {:>10.1} GFLOP/s{mark}", r.tile.name(), r.ms, r.gflops);
        }
    }
    match tune::cache_path() {
        Some(p) => println!("cached in {} ({:.1} s)", p.display(), start.elapsed().as_secs_f64()),
        None => println!("not cached: no HOME, XDG_CACHE_HOME or RESFORMER_CACHE_DIR"),
    }
    Ok(())
}

fn parity(args: &[String]) -> CliResult {
    use resformer::model::fixture::{load_dir, PYTORCH_ATOL};
    let o = Opts::parse(args, &["dir", "backend"], &[])?;
    let dir = o.get("dir").unwrap_or("tests/fixtures/block");
    let backend: Backend = o.get("backend").unwrap_or("auto").parse()?;
    let fixtures = load_dir(Path::new(dir))?;
    let engine = Engine::new_blocking(EngineOptions { backend, ..Default::default() })?;
    let on = engine.choice();
    let tol = Tol { atol: PYTORCH_ATOL, rtol: 0.0 };
    let mut misses = 0;
    let mut worst = 0.0f32;
    println!(
        "{:<18} {:>12}  result (max abs error against PyTorch f64, tolerance {PYTORCH_ATOL:.0e})",
        "fixture", "error"
    );
    for f in &fixtures {
        let stack = engine.load_stack(f.weights.clone(), f.cfg)?;
        let got = stack.forward(&f.input, f.shape.seq, f.shape.batch, f.key_pad.as_deref())?;
        let d = compare(&got, &f.output, tol);
        let ok = d.bad == 0 && got.len() == f.output.len();
        misses += usize::from(!ok);
        worst = worst.max(d.max_abs);
        println!("{:<18} {:>12.3e}  {}", f.name, d.max_abs, if ok { "ok" } else { "MISS" });
    }
    println!(
        "parity on {on}: {} of {} fixtures within {PYTORCH_ATOL:.0e}, largest error {worst:.2e}",
        fixtures.len() - misses,
        fixtures.len()
    );
    if misses > 0 {
        return Err(CliError::Failed(format!("{misses} fixture(s) outside the PyTorch tolerance")));
    }
    Ok(())
}

fn devices() -> CliResult {
    let (adapters, chosen) = resformer::list_adapters();
    if adapters.is_empty() {
        println!("no adapters found");
    }
    for (i, a) in adapters.iter().enumerate() {
        let mark = if chosen.as_ref().ok() == Some(&i) { "*" } else { " " };
        println!(
            "{mark} [{i}] {}  backend={:?} type={:?} driver={} {}",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
    }
    match chosen {
        Ok(i) => println!("* = chosen for --backend gpu: {}", adapters[i].label()),
        Err(e) => println!("--backend gpu: none usable ({e})"),
    }
    let engine = Engine::new_blocking(EngineOptions::default())?;
    println!("--backend auto (the default): {}", engine.choice());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match args.first().map(String::as_str) {
        Some("run") => run(rest),
        Some("attention") => attention_walkthrough(rest),
        Some("embed") => embed(rest),
        Some("bench") => bench(rest),
        Some("tune") => tune(rest),
        Some("parity") => parity(rest),
        Some("devices") => devices(),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(CliError::Usage(format!("unknown command {other:?} (try --help)"))),
        None => Err(CliError::Usage("no command given (try --help)".into())),
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
