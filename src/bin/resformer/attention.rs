//! `resformer attention`: the attention walk-through, one head's weights over a sentence.

use std::path::PathBuf;

use resformer::model::Backend;
use resformer::testing::{compare, Tol};
use resformer::walkthrough::Walkthrough;
use resformer::{Engine, EngineOptions};

use crate::{usage, CliResult};

#[derive(clap::Args)]
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
    /// Embedding and head dim of the random example
    #[arg(long, default_value_t = 16)]
    dim: usize,
    /// Seed of the random embeddings and weights
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, gpu, cpu or reference
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// A real MiniLM head instead of random weights (scripts/fetch-minilm.sh)
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// With --model: which head of layer 0
    #[arg(long, default_value_t = 0)]
    head: usize,
}

pub fn run(a: Args) -> CliResult {
    let sentence = a.sentence.join(" ");
    if sentence.trim().is_empty() {
        return Err(usage("give a sentence, e.g. resformer attention \"I love deep learning\" --focus love"));
    }
    let w = match &a.model {
        Some(dir) => {
            let w = resformer::model::minilm::walkthrough(dir, &sentence, a.head)?;
            println!(
                "tokens: {:?} (MiniLM embeddings after its embedding LayerNorm; layer 0, head {}, d = {})",
                w.tokens, a.head, w.dim
            );
            w
        }
        None => {
            let w = Walkthrough::random(&sentence, a.dim, a.seed)?;
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
    let engine = Engine::new_blocking(EngineOptions { backend: a.backend, ..Default::default() })?;
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
    if let Some(out) = &a.out {
        w.save_heatmap(&p, Some(focus), out)?;
        println!("wrote the {0}x{0} attention heatmap to {1}", w.tokens.len(), out.display());
    }
    Ok(())
}
