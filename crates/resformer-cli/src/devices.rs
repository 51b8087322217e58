//! `resformer devices`: every adapter wgpu sees, the numbers `--device gpu:N` takes, and what
//! each device choice would use.

use resformer::device::list_adapters;
use resformer::Gpu;

use crate::CliResult;

pub fn run() -> CliResult {
    let options = crate::env_options()?;
    let list = list_adapters(&options.gpu);
    if list.adapters.is_empty() {
        println!("no adapters found");
    }
    for (i, a) in list.adapters.iter().enumerate() {
        let mark = if list.chosen.as_ref().ok() == Some(&i) { "*" } else { " " };
        let number = match list.numbered.iter().position(|&n| n == i) {
            Some(n) => format!("gpu:{n}"),
            None => "-".into(),
        };
        println!(
            "{mark} [{i}] {number:<6} {}  backend={:?} type={:?} driver={} {}",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
    }
    match &list.chosen {
        Ok(i) => {
            println!("* = chosen for --device gpu: {}", list.adapters[*i].label());
            let gpu = Gpu::with_options(options.gpu.clone())?;
            println!("  {}", resformer::kernels::matmul::coop_status(&gpu).describe());
        }
        Err(e) => println!("--device gpu: none usable ({e})"),
    }
    println!("gpu:N numbers the hardware adapters of the best backend (software ones when there are none)");
    let engine = resformer::Engine::new_blocking(options)?;
    println!("--device auto (the default): {}", engine.choice());
    Ok(())
}
