//! Criterion benches of the block and the stack at the small sizes of
//! benches/cases.json: the GPU plan (timed with a device sync inside the measured
//! region) against the CPU reference path. `cargo bench --bench stack -- --quick`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use resformer::bench::{cases, Case, Sizes};
use resformer::kernels::record_all;
use resformer::model::{host as cpu, BlockConfig, GpuStack, StackWeights};
use resformer::testing::{shared_gpu, Rng};
use resformer::Gpu;

fn bench_layers(c: &mut Criterion, group: &str) {
    let Some(gpu) = shared_gpu() else { return };
    let mut g = c.benchmark_group(group);
    let Some(Case::Stack { layers, embed, heads, ff, seq, batch }) = cases(group, Sizes::Small).pop() else {
        unreachable!("benches/cases.json has a small {group} case")
    };
    let cfg = BlockConfig::new(embed, heads, ff);
    let weights = StackWeights::random(1, layers, embed, ff);
    let stack = GpuStack::new(Arc::clone(gpu), &weights, cfg).unwrap();
    let x = Rng::new(2).vec(seq * batch * embed, -1.0, 1.0);
    stack.forward(&x, seq, batch, None).unwrap();
    let id = format!("L{layers}e{embed}s{seq}b{batch}");
    // tokens per forward
    g.throughput(Throughput::Elements((seq * batch) as u64));
    g.bench_function(BenchmarkId::new("gpu", &id), |b| {
        b.iter_custom(|iters| {
            stack
                .with_plan(seq, batch, false, |d| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut enc = gpu.encoder("bench");
                        record_all(&mut enc, d);
                        gpu.queue.submit([enc.finish()]);
                    }
                    sync(gpu);
                    start.elapsed()
                })
                .unwrap()
        })
    });
    g.bench_function(BenchmarkId::new("cpu_ref", &id), |b| {
        b.iter(|| cpu::forward(&weights, &cfg, &x, seq, batch, None))
    });
}

fn sync(gpu: &Gpu) {
    gpu.device.poll(wgpu::PollType::wait_indefinitely()).expect("device poll");
}

fn block(c: &mut Criterion) {
    bench_layers(c, "block");
}

fn stack(c: &mut Criterion) {
    bench_layers(c, "stack");
}

criterion_group! {
    name = stack_benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(10);
    targets = block, stack
}
criterion_main!(stack_benches);
