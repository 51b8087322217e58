//! `resformer bench`: every kernel, the block and the stack, GPU against the CPU backend and the
//! reference, with PyTorch beside them from a `--compare` file.

use std::path::PathBuf;
use std::time::Instant;

use resformer::bench;
use resformer::Error;
use resformer_cli::table;

use crate::{positive, progress, usage, CliError, CliResult};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// matmul, attention, layernorm, residual_add, block, stack or all
    #[arg(long, default_value = "all")]
    kernel: String,
    /// small, medium or large (for real GPUs)
    #[arg(long, default_value = "small")]
    sizes: bench::Sizes,
    /// Write the rows as JSON here
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// A baseline in the same JSON form (scripts/torch_baseline.py) to set beside each row
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// Timed runs per case, after a warm-up
    #[arg(long, default_value_t = 10, value_parser = positive)]
    runs: usize,
    /// What is timed: gpu (the best adapter), gpu:N, or cpu (the CPU backend alone, no GPU opened)
    #[arg(long, visible_alias = "backend", default_value = "gpu", value_parser = crate::parse_device)]
    device: resformer::Device,
    /// Skip the plain CPU reference above this many FLOP (or bytes)
    #[arg(long, default_value_t = 2e10)]
    cpu_budget: f64,
}

pub fn run(a: Args) -> CliResult {
    if a.kernel != "all" && !bench::KERNELS.contains(&a.kernel.as_str()) {
        return Err(usage(format!("--kernel {:?}: expected one of {:?} or all", a.kernel, bench::KERNELS)));
    }
    let other = match &a.compare {
        Some(p) => {
            let path = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io { path: path.clone(), source })?;
            let rows: Vec<bench::Row> = serde_json::from_str(&text)
                .map_err(|e| Error::File { path, reason: format!("not a bench JSON array: {e}") })?;
            Some(rows)
        }
        None => None,
    };
    let options = crate::env_options()?;
    // the GPU and its peak, or none: `--device cpu` times the CPU backend alone
    let gpu = match a.device {
        resformer::Device::Cpu => None,
        device @ (resformer::Device::Gpu | resformer::Device::GpuAt(_)) => {
            let gpu = std::sync::Arc::new(resformer::Gpu::with_options(crate::gpu_options(device)?)?);
            options.policy.check(&gpu)?;
            println!("adapter: {} (kernels: {})", gpu.adapter().label(), options.policy.describe());
            let peak = bench::peak(&gpu)?;
            println!("peak: {:.1} GFLOP/s f32, {:.1} GB/s ({})", peak.gflops, peak.gbps, peak.source);
            Some((gpu, peak))
        }
        other => {
            return Err(usage(format!(
                "--device {other}: bench times gpu, gpu:N or cpu (the CPU backend alone; the reference runs beside \
                 every row)"
            )))
        }
    };
    let target = match &gpu {
        Some((gpu, peak)) => bench::Target::Gpu { gpu, policy: &options.policy, peak },
        None => {
            println!("adapter: {} (no GPU opened)", bench::cpu_adapter());
            bench::Target::Cpu
        }
    };
    let cases = bench::cases(&a.kernel, a.sizes);
    let start = Instant::now();
    let bar = progress(cases.len(), "");
    let mut rows = Vec::new();
    for case in &cases {
        bar.set_message(format!("{} {}", case.kernel(), case.shape()));
        rows.push(bench::run_case(target, case, a.runs, a.cpu_budget)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!("{} cases in {:.1} s", cases.len(), start.elapsed().as_secs_f64());
    if let Some(other) = &other {
        table::compare(&mut rows, other);
    }
    print!("{}", table::table(&rows));
    let timed = match gpu {
        Some(_) => format!(
            "gpu ms: median of {} runs after a warm-up ({} clock); cpu ms: the CPU backend (every core)",
            a.runs,
            rows.first().map_or("", |r| r.gpu_clock.as_str())
        ),
        None => format!("cpu ms: the CPU backend, median of {} runs after a warm-up (no GPU timed)", a.runs),
    };
    println!(
        "{timed}; x ref / x fast: the reference's / sgemm's time over the timed device's; cpu_ref '-': over \
         the {:.0e} FLOP budget (--cpu-budget)",
        a.cpu_budget
    );
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| CliError::Failed(format!("writing JSON: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        println!("wrote {} rows to {}", rows.len(), path.display());
    }
    Ok(())
}
