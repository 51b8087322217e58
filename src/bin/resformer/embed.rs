//! `resformer embed`: sentence embeddings with all-MiniLM-L6-v2, and its speed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use resformer::model::minilm::SentenceEmbedder;
use resformer::model::Backend;

use crate::{progress, usage, CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// The model directory (bash scripts/fetch-minilm.sh fetches it)
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Sentences to embed
    sentences: Vec<String>,
    /// auto, gpu, cpu or reference (with --speed: both gpu and cpu unless given)
    #[arg(long)]
    backend: Option<Backend>,
    /// Print the embeddings as JSON
    #[arg(long)]
    json: bool,
    /// Sentences/s on ~128-token sentences instead: the median of --repeats batches after a warm-up
    /// of the same shape, the GPU kernels' time and the host's share
    #[arg(long)]
    speed: bool,
    /// With --speed: sentences per batch
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// With --speed: timed batches
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// With --speed: the model's shapes on seeded weights; only DIR/tokenizer.json is read
    #[arg(long)]
    random_weights: bool,
}

/// What `embed --json` prints (non-finite values become null).
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    model: &'a str,
    adapter: String,
    dim: usize,
    embeddings: &'a [Vec<f32>],
}

pub fn run(a: Args) -> CliResult {
    let dir =
        a.model.as_deref().ok_or_else(|| usage("--model DIR is required (bash scripts/fetch-minilm.sh fetches it)"))?;
    if a.speed {
        if a.batch == 0 || a.repeats == 0 {
            return Err(usage("--batch and --repeats must be at least 1"));
        }
        return match a.backend {
            Some(b) => speed(dir, b, &a),
            None => {
                match speed(dir, Backend::Gpu, &a) {
                    Err(CliError::Engine(resformer::Error::NoAdapter { detail })) => {
                        println!("GPU path: skipped, no adapter ({detail})")
                    }
                    other => other?,
                }
                speed(dir, Backend::Cpu, &a)
            }
        };
    }
    if a.sentences.is_empty() {
        return Err(usage("give at least one sentence"));
    }
    let t = Instant::now();
    let model = SentenceEmbedder::from_dir(dir, a.backend.unwrap_or(Backend::Auto))?;
    let load = t.elapsed();
    let sentences: Vec<&str> = a.sentences.iter().map(String::as_str).collect();
    let t = Instant::now();
    let emb = model.embed(&sentences)?;
    let took = t.elapsed();
    if a.json {
        let out = JsonOut { model: model.name(), adapter: model.describe(), dim: model.dim(), embeddings: &emb };
        let text = serde_json::to_string(&out).map_err(|e| CliError::Failed(format!("writing JSON: {e}")))?;
        println!("{text}");
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
        for (i, x) in emb.iter().enumerate() {
            print!("{:>5}", format!("[{i}]"));
            for y in &emb {
                print!("{:>8.4}", x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>());
            }
            println!();
        }
    }
    Ok(())
}

/// The text `--speed` rotates through (scripts/torch_baseline.py's SPEED_TEXT is the same).
const TEXT: &str = "Attention lets every token look at every other token of the sentence, weigh how much each \
    one matters, and mix their values into a new representation; stacking such layers with residual \
    connections, layer normalisation and feed-forward networks gives the encoder that turns a sentence \
    into a single vector whose direction captures its meaning, so that similar sentences point the same way";

/// sentences/s of the model on `backend` on a batch of sentences of about 128 tokens.
fn speed(dir: &Path, backend: Backend, a: &Args) -> CliResult {
    let (batch, repeats) = (a.batch, a.repeats);
    let engine = resformer::Engine::new_blocking(resformer::EngineOptions { backend, ..Default::default() })?;
    let model = match a.random_weights {
        true => SentenceEmbedder::random(dir, 0, &engine)?,
        false => engine.load_minilm(dir)?,
    };
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
    let bar = progress(repeats, "batches");
    let mut runs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        runs.push(model.embed_timed(&refs)?.1);
        bar.inc(1);
    }
    bar.finish_and_clear();
    runs.sort_by(|x, y| x.total_ms().total_cmp(&y.total_ms()));
    let t = runs[runs.len() / 2];
    println!(
        "{} on {}: batch {batch} of {}-{} tokens: {:.1} ms (median of {repeats} after a warm-up of the same \
         shape): {:.1} sentences/s",
        model.name(),
        model.describe(),
        lens.iter().min().unwrap_or(&0),
        lens.iter().max().unwrap_or(&0),
        t.total_ms(),
        batch as f64 / (t.total_ms() / 1e3)
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
