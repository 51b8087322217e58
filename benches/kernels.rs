//! Criterion benches, one group per kernel stem: the GPU kernel (timed with a
//! device sync inside the measured region) against its CPU reference.
//! The shapes are the small cases of benches/cases.json (the table `resformer bench` reads).
//! `cargo bench --bench kernels -- --quick`; `cargo test --benches` runs each once.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use resformer::bench::{cases, Case, Sizes};
use resformer::kernels::attention::{prepare_attention, AttentionConfig};
use resformer::kernels::layernorm::prepare_layernorm;
use resformer::kernels::matmul::{prepare_matmul, Activation};
use resformer::kernels::residual_add::prepare_residual_add;
use resformer::kernels::{record_all, Dispatch};
use resformer::model::BlockConfig;
use resformer::reference;
use resformer::testing::{shared_gpu, Rng};
use resformer::{DType, Gpu, Tensor};

/// Times `iters` back-to-back dispatches and the wait for the device to finish them.
fn gpu_time(gpu: &Gpu, d: &Dispatch, iters: u64) -> Duration {
    let dispatches = std::slice::from_ref(d);
    let start = Instant::now();
    for _ in 0..iters {
        let mut enc = gpu.encoder("bench");
        record_all(&mut enc, dispatches);
        gpu.queue.submit([enc.finish()]);
    }
    gpu.device.poll(wgpu::PollType::wait_indefinitely()).expect("device poll");
    start.elapsed()
}

fn tensor(gpu: &Gpu, rng: &mut Rng, shape: &[usize]) -> (Tensor, Vec<f32>) {
    let data = rng.vec(shape.iter().product(), -1.0, 1.0);
    (Tensor::from_f32(gpu, shape, &data).unwrap(), data)
}

fn matmul(c: &mut Criterion) {
    let Some(gpu) = shared_gpu() else { return };
    let mut g = c.benchmark_group("matmul");
    let mut rng = Rng::new(1);
    for case in cases("matmul", Sizes::Small) {
        let Case::Matmul { m, n, k } = case else { unreachable!("matmul cases") };
        let (x, xd) = tensor(gpu, &mut rng, &[m, k]);
        let (w, wd) = tensor(gpu, &mut rng, &[n, k]);
        let (b, bd) = tensor(gpu, &mut rng, &[n]);
        let out = Tensor::empty(gpu, &[m, n], DType::F32).unwrap();
        let d = prepare_matmul(gpu, &x, &w, Some(&b), Activation::None, &out).unwrap();
        let id = format!("{m}x{n}x{k}");
        // one multiply-add per (m, n, k): elements = FMAs, not bytes
        g.throughput(Throughput::Elements((m * n * k) as u64));
        g.bench_function(BenchmarkId::new("gpu", &id), |bn| bn.iter_custom(|iters| gpu_time(gpu, &d, iters)));
        let mut o = vec![0.0; m * n];
        g.bench_function(BenchmarkId::new("cpu_ref", &id), |bn| {
            let shape = resformer::ops::MatmulShape::linear(m, n, k);
            bn.iter(|| reference::matmul::matmul(&mut o, &xd, &wd, Some(&bd), Activation::None, shape))
        });
    }
}

fn attention(c: &mut Criterion) {
    let Some(gpu) = shared_gpu() else { return };
    let mut g = c.benchmark_group("attention");
    let mut rng = Rng::new(2);
    for case in cases("attention", Sizes::Small) {
        let Case::Attention { batch, heads, seq, head_dim } = case else { unreachable!("attention cases") };
        let cfg = AttentionConfig { batch, seq, heads, head_dim, batch_first: false, causal: false };
        let (qkv, qd) = tensor(gpu, &mut rng, &[cfg.tokens(), 3 * cfg.embed()]);
        let out = Tensor::empty(gpu, &[cfg.tokens(), cfg.embed()], DType::F32).unwrap();
        let d = prepare_attention(gpu, &qkv, None, &cfg, &out).unwrap();
        let id = format!("b{batch}h{heads}s{seq}d{head_dim}");
        // score and value products: 2 · seq² · head_dim per (batch, head)
        g.throughput(Throughput::Elements((2 * batch * heads * seq * seq * head_dim) as u64));
        g.bench_function(BenchmarkId::new("gpu", &id), |bn| bn.iter_custom(|iters| gpu_time(gpu, &d, iters)));
        let mut o = vec![0.0; cfg.tokens() * cfg.embed()];
        g.bench_function(BenchmarkId::new("cpu_ref", &id), |bn| {
            bn.iter(|| reference::attention::attention(&mut o, &qd, None, &cfg))
        });
    }
}

fn layernorm(c: &mut Criterion) {
    let Some(gpu) = shared_gpu() else { return };
    let mut g = c.benchmark_group("layernorm");
    let mut rng = Rng::new(3);
    for case in cases("layernorm", Sizes::Small) {
        let Case::Layernorm { rows, cols } = case else { unreachable!("layernorm cases") };
        let (x, xd) = tensor(gpu, &mut rng, &[rows, cols]);
        let (r, rd) = tensor(gpu, &mut rng, &[rows, cols]);
        let (ga, gd) = tensor(gpu, &mut rng, &[cols]);
        let (be, bd) = tensor(gpu, &mut rng, &[cols]);
        let out = Tensor::empty(gpu, &[rows, cols], DType::F32).unwrap();
        let eps = BlockConfig::DEFAULT_EPS;
        let d = prepare_layernorm(gpu, &x, Some(&r), &ga, &be, eps, &out).unwrap();
        let id = format!("{rows}x{cols}+residual");
        // reads x and residual, writes out: 12 bytes per element
        g.throughput(Throughput::Bytes((rows * cols * 12) as u64));
        g.bench_function(BenchmarkId::new("gpu", &id), |bn| bn.iter_custom(|iters| gpu_time(gpu, &d, iters)));
        let mut o = vec![0.0; rows * cols];
        g.bench_function(BenchmarkId::new("cpu_ref", &id), |bn| {
            bn.iter(|| reference::layernorm::layernorm(&mut o, &xd, Some(&rd), &gd, &bd, rows, cols, eps))
        });
    }
}

fn residual_add(c: &mut Criterion) {
    let Some(gpu) = shared_gpu() else { return };
    let mut g = c.benchmark_group("residual_add");
    let mut rng = Rng::new(4);
    for case in cases("residual_add", Sizes::Small) {
        let Case::ResidualAdd { len } = case else { unreachable!("residual_add cases") };
        let (a, ad) = tensor(gpu, &mut rng, &[len]);
        let (b, bd) = tensor(gpu, &mut rng, &[len]);
        let out = Tensor::empty(gpu, &[len], DType::F32).unwrap();
        let d = prepare_residual_add(gpu, &a, &b, &out).unwrap();
        // two reads and one write of f32
        g.throughput(Throughput::Bytes((len * 12) as u64));
        g.bench_function(BenchmarkId::new("gpu", len), |bn| bn.iter_custom(|iters| gpu_time(gpu, &d, iters)));
        let mut o = vec![0.0; len];
        g.bench_function(BenchmarkId::new("cpu_ref", len), |bn| {
            bn.iter(|| reference::residual_add::residual_add(&mut o, &ad, &bd))
        });
    }
}

criterion_group! {
    name = kernels;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(10);
    targets = matmul, attention, layernorm, residual_add
}
criterion_main!(kernels);
