//! `resformer attention`: the attention walk-through, one head's weights over a sentence.

use std::path::PathBuf;

use resformer::kernels::attention::MAX_HEAD_DIM;
use resformer::ops::{compare, Tol};
use resformer_cli::walkthrough::{self, Walkthrough};

use crate::{positive, usage, CliResult, DeviceArgs};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// The sentence (its words may be separate arguments)
    #[arg(required = true)]
    sentence: Vec<String>,
    /// The token whose attention row is printed
    #[arg(long)]
    focus: Option<String>,
    /// Write the heatmap here (.png or .svg)
    #[arg(long, value_name = "attn.png|attn.svg")]
    out: Option<PathBuf>,
    /// Embedding and head dim of the random example (at most the kernels' largest head dim, 128) [default: 16]
    #[arg(long, value_parser = positive)]
    dim: Option<usize>,
    /// Seed of the random embeddings and weights [default: 0]
    #[arg(long, value_parser = crate::non_negative)]
    seed: Option<u64>,
    #[command(flatten)]
    device: DeviceArgs,
    /// A real MiniLM head instead of random weights (scripts/fetch-minilm.sh)
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// With --model: which head of layer 0 [default: 0]
    #[arg(long, value_parser = crate::non_negative)]
    head: Option<u64>,
}

pub fn run(a: Args) -> CliResult {
    let sentence = a.sentence.join(" ");
    if sentence.trim().is_empty() {
        return Err(usage("give a sentence, e.g. resformer attention \"I love deep learning\" --focus love"));
    }
    let w = match &a.model {
        Some(dir) => {
            if a.dim.is_some() || a.seed.is_some() {
                return Err(usage("--dim and --seed shape the random example; with --model the head is MiniLM's"));
            }
            let head = a.head.unwrap_or(0) as usize;
            let w = walkthrough::minilm(dir, &sentence, head)?;
            println!(
                "tokens: {:?} (MiniLM embeddings after its embedding LayerNorm; layer 0, head {head}, d = {})",
                w.tokens, w.dim
            );
            w
        }
        None => {
            if a.head.is_some() {
                return Err(usage("--head picks a head of a real model: give --model DIR too"));
            }
            let dim = a.dim.unwrap_or(16);
            if dim > MAX_HEAD_DIM {
                return Err(usage(format!(
                    "--dim {dim}: the attention kernels hold head dims up to {MAX_HEAD_DIM}; give --dim {MAX_HEAD_DIM} or less"
                )));
            }
            let w = Walkthrough::random(&sentence, dim, a.seed.unwrap_or(0))?;
            println!("tokens: {:?} (seeded random embeddings, d = {})", w.tokens, w.dim);
            w
        }
    };
    let focus = match &a.focus {
        Some(word) => {
            w.find(word).ok_or_else(|| usage(format!("--focus {word:?} is not a token of {:?}", w.tokens)))?
        }
        None => 0,
    };
    let reference = w.weights_cpu();
    let engine = a.device.engine()?;
    let p = match engine.gpu() {
        Some(gpu) => {
            println!("backend: {} (matmul and attention kernels)", engine.choice());
            let p = w.weights_gpu(gpu, engine.policy())?;
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
    if let Some(out) = &a.out {
        w.save_heatmap(&p, Some(focus), out)?;
        println!("wrote the {0}x{0} attention heatmap to {1}", w.tokens.len(), out.display());
    }
    Ok(())
}
