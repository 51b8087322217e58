//! The block and the stack against PyTorch: every fixture written by
//! scripts/make_fixtures.py, on the CPU path and on the GPU path.

use std::path::{Path, PathBuf};

use resformer::kernels::matmul::Activation;
use resformer::model::io::TensorFile;
use resformer::model::{cpu, BlockConfig, GpuStack, InputShape, StackWeights};
use resformer::testing::{assert_close, compare, shared_gpu, Tol};

/// PyTorch computed the fixtures in f64; f32 kernels over up to 3 blocks stay within this.
const PYTORCH_TOL: Tol = Tol { atol: 1e-4, rtol: 0.0 };

struct Fixture {
    name: String,
    file: TensorFile,
    cfg: BlockConfig,
    shape: InputShape,
    input: Vec<f32>,
    output: Vec<f32>,
    key_pad: Option<Vec<u32>>,
    layers: usize,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/block")
}

fn fixtures() -> Vec<Fixture> {
    let manifest = std::fs::read_to_string(dir().join("manifest.txt")).expect("manifest.txt");
    let fixtures: Vec<Fixture> = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| f[i].parse::<usize>().unwrap();
            let flag = |i: usize| f[i] == "1";
            let mut cfg = BlockConfig::new(n(3), n(4), n(5));
            cfg.pre_norm = flag(7);
            cfg.activation = if flag(8) { Activation::Gelu } else { Activation::Relu };
            cfg.causal = flag(9);
            cfg.batch_first = flag(11);
            cfg.eps = f[12].parse().unwrap();
            let file = TensorFile::open(&dir().join(format!("{}.safetensors", f[0]))).unwrap();
            let input = file.get("input").unwrap();
            let shape = InputShape::from_shape(&input.shape, cfg.batch_first).unwrap();
            assert_eq!((shape.seq, shape.batch.max(1)), (n(1), n(2).max(1)), "{}", f[0]);
            let key_pad =
                flag(10).then(|| file.get("key_padding_mask").unwrap().data.iter().map(|&v| v as u32).collect());
            Fixture {
                name: f[0].to_string(),
                cfg,
                shape,
                input: input.data,
                output: file.get("output").unwrap().data,
                key_pad,
                layers: n(6),
                file,
            }
        })
        .collect();
    assert!(fixtures.len() >= 10, "expected every fixture of make_fixtures.py");
    fixtures
}

fn weights(f: &Fixture) -> StackWeights {
    let w = StackWeights::from_file(&f.file, "").unwrap();
    assert_eq!((w.layers(), w.embed, w.ff), (f.layers, f.cfg.embed, f.cfg.ff), "{}", f.name);
    w
}

#[test]
fn stack_cpu_path_matches_pytorch_fixtures() {
    for f in fixtures() {
        let got = cpu::forward(&weights(&f), &f.cfg, &f.input, f.shape.seq, f.shape.batch, f.key_pad.as_deref());
        assert_close(&format!("cpu {}", f.name), &got, &f.output, PYTORCH_TOL);
    }
}

#[test]
fn stack_gpu_path_matches_pytorch_fixtures() {
    let Some(gpu) = shared_gpu() else { return };
    for f in fixtures() {
        let stack = GpuStack::new(gpu.clone(), &weights(&f), f.cfg).unwrap();
        let got = stack.forward(&f.input, f.shape.seq, f.shape.batch, f.key_pad.as_deref()).unwrap();
        let d = compare(&got, &f.output, PYTORCH_TOL);
        eprintln!("gpu {}: max abs error {:.2e}", f.name, d.max_abs);
        assert_close(&format!("gpu {}", f.name), &got, &f.output, PYTORCH_TOL);
    }
}
