//! One case run: the GPU kernel, the CPU backend, the reference, and for matmul a bare sgemm.

use std::sync::Arc;

use super::cases::Case;
use super::peak::Peak;
use super::row::Row;
use crate::device::timing::time_cpu;
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::kernels::attention::{prepare_attention_variant, AttentionConfig, AttentionVariant};
use crate::kernels::layernorm::{prepare_layernorm_variant, LayernormVariant};
use crate::kernels::matmul::{Activation, MatmulShape};
use crate::kernels::residual_add::prepare_residual_add;
use crate::kernels::{time_dispatches as time_gpu, KernelPolicy};
use crate::model::host::{self as cpu, HostKernels};
use crate::model::{BlockConfig, GpuStack, StackWeights};
use crate::ops::median;
use crate::reference;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::tune::prepare_matmul;

fn rng_tensor(gpu: &Gpu, rng: &mut Rng, shape: &[usize]) -> Result<(Tensor, Vec<f32>)> {
    let data = rng.vec(shape.iter().product(), -1.0, 1.0);
    Ok((Tensor::from_f32(gpu, shape, &data)?, data))
}

/// Runs one case: GPU (the kernels `policy` picks, as an engine would), CPU reference (when
/// its cost is under `cpu_budget` FLOP), fast CPU (matmul). `runs` must be at least 1.
pub fn run_case(
    gpu: &Arc<Gpu>,
    policy: &KernelPolicy,
    case: &Case,
    runs: usize,
    cpu_budget: f64,
    peak: &Peak,
) -> Result<Row> {
    if runs == 0 {
        return Err(Error::InvalidArgument { op: "bench", what: "runs must be at least 1".into() });
    }
    let mut rng = Rng::new(7);
    let with_cpu = case.cpu_cost() <= cpu_budget;
    // the CPU backend is ~50x the reference's speed: it gets 50x the budget
    let with_backend = case.cpu_cost() <= cpu_budget * 50.0;
    let backend_ms;
    let mut row = Row {
        kernel: case.kernel().into(),
        shape: case.shape(),
        adapter: gpu.adapter().name.clone(),
        backend: format!("{:?}", gpu.adapter().backend),
        ..Default::default()
    };
    let (times, clock, cpu_ref) = match *case {
        Case::Matmul { m, n, k } => {
            row.m = Some(m);
            row.n = Some(n);
            row.k = Some(k);
            let (x, xd) = rng_tensor(gpu, &mut rng, &[m, k])?;
            let (w, wd) = rng_tensor(gpu, &mut rng, &[n, k])?;
            let (b, bd) = rng_tensor(gpu, &mut rng, &[n])?;
            let out = Tensor::empty(gpu, &[m, n], crate::DType::F32)?;
            let d = prepare_matmul(gpu, policy, &x, &w, Some(&b), Activation::None, &out)?;
            let (t, clock) = time_gpu(gpu, std::slice::from_ref(&d), runs)?;
            let mut o = vec![0.0; m * n];
            if case.cpu_cost() <= cpu_budget * 50.0 {
                row.cpu_fast_ms = Some(time_cpu(|| {
                    // out = x · wᵀ: w (n, k) row-major read as (k, n) with strides (1, k)
                    unsafe {
                        matrixmultiply::sgemm(
                            m,
                            k,
                            n,
                            1.0,
                            xd.as_ptr(),
                            k as isize,
                            1,
                            wd.as_ptr(),
                            1,
                            k as isize,
                            0.0,
                            o.as_mut_ptr(),
                            n as isize,
                            1,
                        )
                    }
                    for r in o.chunks_mut(n) {
                        for (v, bias) in r.iter_mut().zip(&bd) {
                            *v += bias;
                        }
                    }
                }));
            }
            backend_ms = with_backend.then(|| {
                time_cpu(|| {
                    crate::cpu::matmul::matmul(
                        &mut o,
                        &xd,
                        &wd,
                        Some(&bd),
                        Activation::None,
                        MatmulShape::linear(m, n, k),
                    )
                })
            });
            let cpu = with_cpu.then(|| {
                let shape = MatmulShape::linear(m, n, k);
                time_cpu(|| reference::matmul::matmul(&mut o, &xd, &wd, Some(&bd), Activation::None, shape))
            });
            (t, clock, cpu)
        }
        Case::Attention { batch, heads, seq, head_dim } => {
            let cfg = AttentionConfig { batch, seq, heads, head_dim, batch_first: false, causal: false };
            let (qkv, qd) = rng_tensor(gpu, &mut rng, &[cfg.tokens(), 3 * cfg.embed()])?;
            let out = Tensor::empty(gpu, &[cfg.tokens(), cfg.embed()], crate::DType::F32)?;
            let v = AttentionVariant::choose(gpu, policy.attention)?;
            let d = prepare_attention_variant(gpu, v, &qkv, None, &cfg, &out)?;
            let (t, clock) = time_gpu(gpu, std::slice::from_ref(&d), runs)?;
            let mut o = vec![0.0; cfg.tokens() * cfg.embed()];
            backend_ms = with_backend.then(|| time_cpu(|| crate::cpu::attention::attention(&mut o, &qd, None, &cfg)));
            let cpu = with_cpu.then(|| time_cpu(|| reference::attention::attention(&mut o, &qd, None, &cfg)));
            (t, clock, cpu)
        }
        Case::Layernorm { rows, cols } => {
            let (x, xd) = rng_tensor(gpu, &mut rng, &[rows, cols])?;
            let (r, rd) = rng_tensor(gpu, &mut rng, &[rows, cols])?;
            let (g, gd) = rng_tensor(gpu, &mut rng, &[cols])?;
            let (b, bd) = rng_tensor(gpu, &mut rng, &[cols])?;
            let out = Tensor::empty(gpu, &[rows, cols], crate::DType::F32)?;
            let v = LayernormVariant::choose(gpu, policy.layernorm, cols)?;
            let d = prepare_layernorm_variant(gpu, v, &x, Some(&r), &g, &b, BlockConfig::DEFAULT_EPS, &out)?;
            let (t, clock) = time_gpu(gpu, std::slice::from_ref(&d), runs)?;
            let mut o = vec![0.0; rows * cols];
            backend_ms = with_backend.then(|| {
                time_cpu(|| {
                    crate::cpu::layernorm::layernorm(
                        &mut o,
                        &xd,
                        Some(&rd),
                        &gd,
                        &bd,
                        rows,
                        cols,
                        BlockConfig::DEFAULT_EPS,
                    )
                })
            });
            let cpu = with_cpu.then(|| {
                time_cpu(|| {
                    reference::layernorm::layernorm(
                        &mut o,
                        &xd,
                        Some(&rd),
                        &gd,
                        &bd,
                        rows,
                        cols,
                        BlockConfig::DEFAULT_EPS,
                    )
                })
            });
            (t, clock, cpu)
        }
        Case::ResidualAdd { len } => {
            let (a, ad) = rng_tensor(gpu, &mut rng, &[len])?;
            let (b, bd) = rng_tensor(gpu, &mut rng, &[len])?;
            let out = Tensor::empty(gpu, &[len], crate::DType::F32)?;
            let d = prepare_residual_add(gpu, &a, &b, &out)?;
            let (t, clock) = time_gpu(gpu, std::slice::from_ref(&d), runs)?;
            let mut o = vec![0.0; len];
            backend_ms = with_backend.then(|| time_cpu(|| crate::cpu::residual_add::residual_add(&mut o, &ad, &bd)));
            let cpu = with_cpu.then(|| time_cpu(|| reference::residual_add::residual_add(&mut o, &ad, &bd)));
            (t, clock, cpu)
        }
        Case::Stack { layers, embed, heads, ff, seq, batch } => {
            let cfg = BlockConfig::new(embed, heads, ff);
            let weights = StackWeights::random(3, layers, embed, ff);
            let stack = GpuStack::with_policy(gpu.clone(), &weights, cfg, policy.clone())?;
            let x = rng.vec(seq * batch * embed, -1.0, 1.0);
            stack.forward(&x, seq, batch, None)?; // builds the plan
            let (t, clock) = stack.with_plan(seq, batch, false, |d| time_gpu(gpu, d, runs))??;
            // the CPU backend as a loaded stack runs it: its weights packed once, outside the timing
            let packs = cpu::HostPacks::new(&weights);
            backend_ms = with_backend.then(|| {
                time_cpu(|| {
                    drop(cpu::forward_with(HostKernels::Fast, &weights, Some(&packs), &cfg, &x, seq, batch, None))
                })
            });
            let cpu = with_cpu.then(|| time_cpu(|| drop(cpu::forward(&weights, &cfg, &x, seq, batch, None))));
            (t, clock, cpu)
        }
    };
    let gpu_ms = median(&times);
    row.gpu_ms = Some(gpu_ms);
    row.gpu_clock = clock.into();
    row.cpu_ref_ms = cpu_ref;
    row.cpu_ms = backend_ms;
    if let Some(f) = case.flops() {
        let g = f / (gpu_ms * 1e-3) / 1e9;
        row.gflops = Some(g);
        row.peak_pct = Some(100.0 * g / peak.gflops);
    }
    if let Some(b) = case.bytes() {
        let g = b / (gpu_ms * 1e-3) / 1e9;
        row.gbps = Some(g);
        row.peak_pct = Some(100.0 * g / peak.gbps);
    }
    Ok(row)
}
