//! The `resformer` command line: parses arguments, calls the library, prints.

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: resformer <command>\n\
     commands:\n\
     \x20 devices    list every adapter wgpu sees and mark the one resformer would use\n\
     environment: WGPU_BACKEND (vulkan, gl, metal, dx12) limits the backends searched;\n\
     \x20 WGPU_ADAPTER_NAME picks an adapter by a case-insensitive part of its name"
}

fn devices() -> resformer::Result<()> {
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
            println!("* = chosen: {}", adapters[i].label());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("devices") => devices(),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{}", usage());
            Ok(())
        }
        other => {
            eprintln!("error: unknown command {:?}\n{}", other.unwrap_or(""), usage());
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
