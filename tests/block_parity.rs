//! The block and the stack against PyTorch: every fixture written by
//! scripts/make_fixtures.py, on the CPU path and on the GPU path.

use std::path::Path;

use resformer::model::fixture::{load_dir, Fixture, PYTORCH_ATOL};
use resformer::model::host::HostKernels;
use resformer::model::{host as cpu, BlockConfig, GpuStack, Precision};
use resformer::testing::{assert_close, compare, shared_gpu, Tol};
use resformer::{Device, Engine, EngineOptions};

/// PyTorch computed the fixtures in f64; f32 kernels over up to 3 blocks stay within this.
const PYTORCH_TOL: Tol = Tol { atol: PYTORCH_ATOL, rtol: 0.0 };
/// The CPU backend against the reference path: f32 sums in sgemm's order over up to 3 blocks.
const CPU_BACKEND_TOL: Tol = Tol { atol: 1e-5, rtol: 0.0 };

fn fixtures() -> Vec<Fixture> {
    let fixtures = load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/block")).unwrap();
    assert!(fixtures.len() >= 10, "expected every fixture of make_fixtures.py");
    fixtures
}

#[test]
fn stack_cpu_path_matches_pytorch_fixtures() {
    for f in fixtures() {
        let got = cpu::forward(&f.weights, &f.cfg, &f.input, f.shape.seq, f.shape.batch, f.key_pad.as_deref());
        assert_close(&format!("cpu {}", f.name), &got, &f.output, PYTORCH_TOL);
    }
}

#[test]
fn stack_cpu_backend_matches_pytorch_fixtures_and_the_reference() {
    // the fast host kernels: PyTorch's tolerance, and within 1e-5 of the reference path
    for f in fixtures() {
        let (seq, batch, pad) = (f.shape.seq, f.shape.batch, f.key_pad.as_deref());
        let want = cpu::forward(&f.weights, &f.cfg, &f.input, seq, batch, pad);
        // the weights packed for this CPU's micro-kernel (as a loaded stack runs), and sgemm's path
        let packs = cpu::HostPacks::new(&f.weights);
        for (how, packs) in [("packed", Some(&packs)), ("sgemm", None)] {
            let got = cpu::forward_with(HostKernels::Fast, &f.weights, packs, &f.cfg, &f.input, seq, batch, pad);
            assert_close(&format!("cpu backend ({how}) {}", f.name), &got, &f.output, PYTORCH_TOL);
            assert_close(&format!("cpu backend ({how}) vs reference {}", f.name), &got, &want, CPU_BACKEND_TOL);
        }
    }
}

#[test]
fn the_f16_mode_is_within_its_tolerance_of_pytorch_and_tight_to_its_own_reference() {
    let mut worst = (0.0f32, 0.0f32);
    for f in fixtures() {
        let (seq, batch, pad) = (f.shape.seq, f.shape.batch, f.key_pad.as_deref());
        let cfg = BlockConfig { precision: Precision::F16, ..f.cfg };
        // the f16 mode's definition: the reference with f16-rounded matmul weights
        let want = cpu::forward(&f.weights.rounded_to_f16(), &cfg, &f.input, seq, batch, pad);
        let tol16 = Tol { atol: Precision::F16_TOL, rtol: 0.0 };
        assert_close(&format!("f16 mode vs PyTorch f32 {}", f.name), &want, &f.output, tol16);
        worst.0 = worst.0.max(compare(&want, &f.output, tol16).max_abs);
        // the CPU backend and the GPU compute that function
        let engine = Engine::new_blocking(EngineOptions::on(Device::Cpu)).unwrap();
        let got = engine.load_stack(f.weights.clone(), cfg).unwrap().forward(&f.input, seq, batch, pad).unwrap();
        assert_close(&format!("cpu backend f16 {}", f.name), &got, &want, CPU_BACKEND_TOL);
        if let Some(gpu) = shared_gpu().filter(|g| g.features().contains(wgpu::Features::SHADER_F16)) {
            let got = GpuStack::new(gpu.clone(), &f.weights, cfg).unwrap().forward(&f.input, seq, batch, pad).unwrap();
            assert_close(&format!("gpu f16 {}", f.name), &got, &want, PYTORCH_TOL);
            worst.1 = worst.1.max(compare(&got, &want, PYTORCH_TOL).max_abs);
        }
    }
    eprintln!("f16 mode: max abs error against PyTorch f32 {:.2e}; GPU against its reference {:.2e}", worst.0, worst.1);
}

#[test]
fn stack_gpu_path_matches_pytorch_fixtures() {
    let Some(gpu) = shared_gpu() else { return };
    for f in fixtures() {
        let stack = GpuStack::new(gpu.clone(), &f.weights, f.cfg).unwrap();
        let got = stack.forward(&f.input, f.shape.seq, f.shape.batch, f.key_pad.as_deref()).unwrap();
        let d = compare(&got, &f.output, PYTORCH_TOL);
        eprintln!("gpu {}: max abs error {:.2e}", f.name, d.max_abs);
        assert_close(&format!("gpu {}", f.name), &got, &f.output, PYTORCH_TOL);
    }
}
