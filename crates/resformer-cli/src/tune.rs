//! `resformer tune`: time every matmul tile per shape class on this adapter, cache the fastest.

use std::time::Instant;

use resformer::tune;

use crate::{positive, usage, CliResult};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// small, or large (the L12 e768 stack's shapes, 1024³, 4096³); default: large on a
    /// hardware GPU, small on a software adapter
    #[arg(long)]
    sizes: Option<String>,
    /// Timed runs per tile, after a warm-up
    #[arg(long, default_value_t = 5, value_parser = positive)]
    runs: usize,
    /// The GPU tuned: gpu (the best adapter) or gpu:N
    #[arg(long, visible_alias = "backend", default_value = "gpu", value_parser = crate::parse_device)]
    device: resformer::Device,
}

pub fn run(a: Args) -> CliResult {
    let gpu = resformer::Gpu::with_options(crate::gpu_options(a.device)?)?;
    let default = if gpu.adapter().is_software() { "small" } else { "large" };
    let shapes: Vec<(usize, usize, usize)> = match a.sizes.as_deref().unwrap_or(default) {
        "large" => tune::TUNE_SHAPES.to_vec(),
        "small" => vec![(128, 128, 128), (256, 96, 64), (65, 257, 36)],
        other => return Err(usage(format!("--sizes {other:?}: expected small or large"))),
    };
    println!("adapter: {}", gpu.adapter().label());
    let start = Instant::now();
    for ((m, n, k), rows) in tune::tune(&gpu, &shapes, a.runs)? {
        println!("{m}x{n}x{k} ({}):", tune::matmul_class(m, n, k, resformer::DType::F32));
        for (i, r) in rows.iter().enumerate() {
            let mark = if i == 0 { "  <- chosen" } else { "" };
            println!("  {:<24} {:>10.3} ms {:>10.1} GFLOP/s{mark}", r.variant.name(), r.ms, r.gflops);
        }
    }
    match tune::cache_path() {
        Some(p) => println!("cached in {} ({:.1} s)", p.display(), start.elapsed().as_secs_f64()),
        None => println!("not cached: no HOME, XDG_CACHE_HOME or RESFORMER_CACHE_DIR"),
    }
    Ok(())
}
