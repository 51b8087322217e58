use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use resformer::model::bert::SentenceEmbedder;
use resformer::Device;

use crate::{engine_with, parse_device, positive, progress, usage, CliError, CliResult};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// A sentence-transformers BERT directory (bash scripts/fetch-minilm.sh fetches all-MiniLM-L6-v2)
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Sentences to embed; `-` reads them from standard input, one per line
    sentences: Vec<String>,
    /// Read the sentences from this file, one per line (empty lines skipped)
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
    /// auto, cpu, reference, gpu or gpu:N (with --speed: both gpu and cpu unless given)
    #[arg(long, visible_alias = "backend", value_parser = parse_device)]
    device: Option<Device>,
    /// The CPU backend's threads (a pool of its own); default: RAYON_NUM_THREADS, else every core
    #[arg(long, value_name = "N", value_parser = positive)]
    threads: Option<usize>,
    /// Print the result as JSON (the embeddings; with --speed, the timings)
    #[arg(long)]
    json: bool,
    /// Sentences/s on ~128-token sentences instead: the median of --repeats batches after a warm-up
    /// of the same shape, the GPU kernels' time and the host's share
    #[arg(long)]
    speed: bool,
    /// With --speed: sentences per batch
    #[arg(long, default_value_t = 32, value_parser = positive)]
    batch: usize,
    /// With --speed: timed batches
    #[arg(long, default_value_t = 3, value_parser = positive)]
    repeats: usize,
    /// With --speed: the model's shapes on seeded weights; only DIR/tokenizer.json is read
    #[arg(long)]
    random_weights: bool,
    /// With --speed: a mixed-length batch, its sentences spread evenly from this many tokens
    /// to 128 (what a server sees), instead of all ~128
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(3..=128))]
    min_tokens: Option<u64>,
    /// Check every step of the model (embedding LayerNorm, every block) on these sentences
    /// against the reference, on the reference's inputs
    #[arg(long, conflicts_with_all = ["speed", "json"])]
    check_ops: bool,
}

/// What `embed --json` prints (non-finite values become null).
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    model: &'a str,
    adapter: String,
    dim: usize,
    embeddings: &'a [Vec<f32>],
}

/// Above this many sentences the closest pairs are printed instead of the N x N matrix.
const MATRIX_MAX: usize = 8;
/// Pairs printed for many sentences.
const PAIRS: usize = 10;
/// Characters of a sentence echoed before it is shortened.
const ECHO_CHARS: usize = 60;

pub fn run(a: Args) -> CliResult {
    let dir =
        a.model.as_deref().ok_or_else(|| usage("--model DIR is required (bash scripts/fetch-minilm.sh fetches it)"))?;
    if a.speed {
        if !a.sentences.is_empty() || a.file.is_some() {
            return Err(usage(
                "--speed times its own ~128-token sentences; give sentences (or --file) without --speed",
            ));
        }
        let devices = match a.device {
            Some(d) => vec![d],
            None => vec![Device::Gpu, Device::Cpu],
        };
        let mut results = Vec::new();
        for d in devices {
            match speed(dir, d, &a) {
                Err(CliError::Engine(resformer::Error::NoAdapter { detail })) if a.device.is_none() => {
                    if !a.json {
                        println!("GPU path: skipped, no adapter ({detail})");
                    }
                }
                other => results.push(other?),
            }
        }
        if a.json {
            let text = serde_json::to_string(&results).map_err(|e| CliError::Failed(format!("writing JSON: {e}")))?;
            println!("{text}");
        }
        return Ok(());
    }
    if a.random_weights {
        return Err(usage(
            "--random-weights is for --speed (its embeddings mean nothing); drop it to embed with the model",
        ));
    }
    let sentences = read_sentences(&a)?;
    if sentences.is_empty() {
        return Err(usage("give at least one sentence (as arguments, `-` for standard input, or --file F)"));
    }
    let t = Instant::now();
    let engine = engine_with(a.device.unwrap_or(Device::Auto), a.threads)?;
    let model = engine.load_minilm(dir)?;
    let load = t.elapsed();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    if a.check_ops {
        println!("model: {} on {}", model.name(), model.describe());
        let t = Instant::now();
        let file = resformer::model::bert::weights_file(dir)?;
        let (weights, _) = resformer::model::bert::load_weights(&file, model.config())?;
        let checks = model.check_ops(&weights, &refs)?;
        return crate::run::report_check_ops(&checks, t);
    }
    let t = Instant::now();
    let emb = model.embed(&refs)?;
    let took = t.elapsed();
    if a.json {
        let out = JsonOut { model: model.name(), adapter: model.describe(), dim: model.dim(), embeddings: &emb };
        let text = serde_json::to_string(&out).map_err(|e| CliError::Failed(format!("writing JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    println!("model: {} ({}-dim, loaded in {:.0} ms)", model.name(), model.dim(), load.as_secs_f64() * 1e3);
    println!("backend: {}", model.describe());
    println!("embedded {} sentences in {:.1} ms", refs.len(), took.as_secs_f64() * 1e3);
    for (i, (s, e)) in refs.iter().zip(&emb).enumerate() {
        let head: Vec<String> = e.iter().take(4).map(|v| format!("{v:+.4}")).collect();
        let (kept, full) = (model.tokenize(s)?.len(), model.count_tokens(s)?);
        println!("[{i}] {kept} tokens  [{}, ...]  {}", head.join(", "), echo(s));
        if full > kept {
            println!("    note: [{i}] has {full} tokens; truncated to the model's first {kept}");
        }
    }
    let cos = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    if emb.len() > MATRIX_MAX {
        let mut pairs: Vec<(f32, usize, usize)> = (0..emb.len())
            .flat_map(|i| (i + 1..emb.len()).map(move |j| (i, j)))
            .map(|(i, j)| (cos(&emb[i], &emb[j]), i, j))
            .collect();
        pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
        let n = pairs.len().min(PAIRS);
        println!("closest pairs (cosine similarity; {n} of {}):", pairs.len());
        for (c, i, j) in pairs.into_iter().take(n) {
            println!("  {c:.4}  [{i}] {}  ~  [{j}] {}", echo_short(refs[i]), echo_short(refs[j]));
        }
    } else if emb.len() >= 2 {
        println!("cosine similarity:");
        print!("     ");
        for j in 0..emb.len() {
            print!("{:>8}", format!("[{j}]"));
        }
        println!();
        for (i, x) in emb.iter().enumerate() {
            print!("{:>5}", format!("[{i}]"));
            for y in &emb {
                print!("{:>8.4}", cos(x, y));
            }
            println!();
        }
    }
    Ok(())
}

/// The sentences of the arguments (`-` reads standard input) and of `--file`, one per line;
/// empty lines are skipped.
fn read_sentences(a: &Args) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    let lines = |reader: &mut dyn BufRead, what: &str, out: &mut Vec<String>| -> Result<(), CliError> {
        for line in reader.lines() {
            let line = line.map_err(|e| CliError::Failed(format!("reading {what}: {e}")))?;
            if !line.trim().is_empty() {
                out.push(line);
            }
        }
        Ok(())
    };
    for s in &a.sentences {
        if s == "-" {
            lines(&mut std::io::stdin().lock(), "standard input", &mut out)?;
        } else {
            out.push(s.clone());
        }
    }
    if let Some(path) = &a.file {
        let file = std::fs::File::open(path)
            .map_err(|source| resformer::Error::Io { path: path.display().to_string(), source })?;
        lines(&mut std::io::BufReader::new(file), &path.display().to_string(), &mut out)?;
    }
    Ok(out)
}

/// A sentence on one line for the echo: whitespace (newlines, tabs) collapsed, and past
/// `max` characters cut with an ellipsis and its length.
fn shorten(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let n = one.chars().count();
    if n <= max {
        return one;
    }
    let cut: String = one.chars().take(max).collect();
    format!("{}... ({n} characters)", cut.trim_end())
}

fn echo(s: &str) -> String {
    shorten(s, ECHO_CHARS)
}

fn echo_short(s: &str) -> String {
    shorten(s, ECHO_CHARS / 2)
}

/// The text `--speed` rotates through (scripts/torch_baseline.py's SPEED_TEXT is the same).
const TEXT: &str = "Attention lets every token look at every other token of the sentence, weigh how much each \
    one matters, and mix their values into a new representation; stacking such layers with residual \
    connections, layer normalisation and feed-forward networks gives the encoder that turns a sentence \
    into a single vector whose direction captures its meaning, so that similar sentences point the same way";

/// One `--speed` measurement (`--json` prints a list of them).
#[derive(serde::Serialize)]
struct Speed {
    model: String,
    backend: String,
    batch: usize,
    min_tokens: usize,
    max_tokens: usize,
    /// Token rows the forward ran: batch × longest padded, the real tokens on the CPU backend.
    forward_tokens: usize,
    repeats: usize,
    batch_ms: f64,
    sentences_per_s: f64,
    forward_ms: f64,
    gpu_kernels_ms: Option<f64>,
    tokenize_ms: f64,
    inputs_ms: f64,
    pool_ms: f64,
}

/// sentences/s of the model on `device` on a batch of sentences of about 128 tokens.
fn speed(dir: &Path, device: Device, a: &Args) -> Result<Speed, CliError> {
    let (batch, repeats) = (a.batch, a.repeats);
    let engine = engine_with(device, a.threads)?;
    let model = match a.random_weights {
        true => SentenceEmbedder::random(dir, 0, engine.placement())?,
        false => engine.load_minilm(dir)?,
    };
    let words: Vec<&str> = TEXT.split_whitespace().collect();
    // sentence i: the text rotated by i words, as many words as fit in its length with [CLS] and
    // [SEP]: 128 tokens, or spread evenly from --min-tokens to 128
    let mut sentences = Vec::with_capacity(batch);
    for i in 0..batch {
        let most = match a.min_tokens {
            Some(min) if batch > 1 => min as usize + (128 - min as usize) * i / (batch - 1),
            _ => 128,
        };
        let mut s = String::new();
        for w in words.iter().cycle().skip(i % words.len()) {
            let longer = if s.is_empty() { w.to_string() } else { format!("{s} {w}") };
            if model.tokenize(&longer)?.len() > most {
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
    let bar = progress(repeats, "batches");
    let mut runs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        runs.push(model.embed_timed(&refs)?.1);
        bar.inc(1);
    }
    bar.finish_and_clear();
    runs.sort_by(|x, y| x.total_ms().total_cmp(&y.total_ms()));
    let t = runs[runs.len() / 2];
    let gpu = model.gpu_ms(t.seq, t.batch, repeats);
    let out = Speed {
        model: model.name().to_string(),
        backend: model.describe(),
        batch,
        min_tokens: lens.iter().copied().min().unwrap_or(0),
        max_tokens: lens.iter().copied().max().unwrap_or(0),
        forward_tokens: t.tokens,
        repeats,
        batch_ms: t.total_ms(),
        sentences_per_s: batch as f64 / (t.total_ms() / 1e3),
        forward_ms: t.forward_ms,
        gpu_kernels_ms: gpu.as_ref().and_then(|g| g.as_ref().ok().copied()),
        tokenize_ms: t.tokenize_ms,
        inputs_ms: t.inputs_ms,
        pool_ms: t.pool_ms,
    };
    if a.json {
        return Ok(out);
    }
    println!(
        "{} on {}: batch {batch} of {}-{} tokens: {:.1} ms (median of {repeats} after a warm-up of the same \
         shape): {:.1} sentences/s",
        out.model, out.backend, out.min_tokens, out.max_tokens, out.batch_ms, out.sentences_per_s
    );
    let gpu = match gpu {
        Some(Ok(ms)) => format!(
            "forward {:.1} ms (upload, kernels, readback), of which GPU kernels {ms:.1} ms ({:.0}% of the \
             batch, timed apart by timestamps); ",
            t.forward_ms,
            100.0 * ms / t.total_ms()
        ),
        Some(Err(e)) => format!("GPU kernels not timed ({e}); forward {:.1} ms; ", t.forward_ms),
        None => format!("forward (CPU) {:.1} ms; ", t.forward_ms),
    };
    let real: usize = lens.iter().sum();
    let rows = match t.tokens == real {
        true => format!("{real} token rows, no padding"),
        false => format!("{} token rows padded, {real} real", t.tokens),
    };
    println!(
        "  {gpu}host: tokenise {:.1} ms, embeddings + padding {:.1} ms, pooling {:.1} ms; {rows}",
        t.tokenize_ms, t.inputs_ms, t.pool_ms
    );
    Ok(out)
}
