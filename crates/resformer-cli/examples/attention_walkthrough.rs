//! The attention walk-through in a few lines of the engine and the command line's drawing:
//! `cargo run --release -p resformer-cli --example attention_walkthrough -- "I love deep learning" love`
//!
//! Embeds the words (seeded random embeddings), computes one head's q, k, v
//! with the matmul kernel and the attention weights with the fused attention
//! kernel, prints the focus word's row and writes attention.png.

fn main() -> resformer::Result<()> {
    let mut args = std::env::args().skip(1);
    let sentence = args.next().unwrap_or_else(|| "I love deep learning".into());
    let focus = args.next().unwrap_or_else(|| "love".into());

    let walk = resformer_cli::walkthrough::Walkthrough::random(&sentence, 16, 0)?;
    let focus = walk.find(&focus).unwrap_or(0);
    let weights = match resformer::Gpu::new() {
        Ok(gpu) => {
            println!("adapter: {}", gpu.adapter().label());
            walk.weights_gpu(&gpu, &Default::default())?
        }
        Err(e) => {
            println!("no adapter ({e}); using the CPU reference");
            walk.weights_cpu()
        }
    };
    print!("{}", walk.table(&weights, focus));
    walk.save_heatmap(&weights, Some(focus), "attention.png".as_ref())?;
    println!("wrote attention.png");
    Ok(())
}
