//! `resformer devices`: every adapter wgpu sees, and what each backend choice would use.

use resformer::{Engine, EngineOptions};

use crate::CliResult;

pub fn run() -> CliResult {
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
        Ok(i) => {
            println!("* = chosen for --backend gpu: {}", adapters[i].label());
            let gpu = resformer::Gpu::new()?;
            println!("  {}", resformer::kernels::matmul::coop_status(&gpu).describe());
        }
        Err(e) => println!("--backend gpu: none usable ({e})"),
    }
    let engine = Engine::new_blocking(EngineOptions::default())?;
    println!("--backend auto (the default): {}", engine.choice());
    Ok(())
}
