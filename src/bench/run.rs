//! One case run: the GPU kernel (or the CPU backend alone), the CPU backend, the reference,
//! and for matmul a bare sgemm.

use std::sync::Arc;
use std::time::Instant;

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

/// Where a case is timed.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// On a GPU, the kernels `policy` picks (as an engine would), with the CPU backend, the
    /// reference and for matmul a bare sgemm beside it; % of `peak` from the GPU's time.
    Gpu {
        /// The adapter.
        gpu: &'a Arc<Gpu>,
        /// Which kernels run.
        policy: &'a KernelPolicy,
        /// The adapter's peak, for the % column.
        peak: &'a Peak,
    },
    /// The CPU backend alone (no GPU opened), each case's median of `runs` calls after a
    /// warm-up of [`WARM_UP_S`], with the reference and sgemm beside it as on a GPU; no % of
    /// peak.
    Cpu,
}

/// The CPU backend as the rows of [`Target::Cpu`] name it: its kernels and rayon's threads.
pub fn cpu_adapter() -> String {
    crate::model::cpu_label(HostKernels::Fast, rayon::current_num_threads())
}

/// A case's host inputs, each with its shape, in the order its kernel takes them; for the
/// stack, its input x (its weights come from [`StackWeights::random`]).
fn inputs(case: &Case) -> Vec<(Vec<usize>, Vec<f32>)> {
    let shapes = match *case {
        Case::Matmul { m, n, k } => vec![vec![m, k], vec![n, k], vec![n]],
        Case::Attention { batch, heads, seq, head_dim } => vec![vec![batch * seq, 3 * heads * head_dim]],
        Case::Layernorm { rows, cols } => vec![vec![rows, cols], vec![rows, cols], vec![cols], vec![cols]],
        Case::ResidualAdd { len } => vec![vec![len], vec![len]],
        Case::Stack { embed, seq, batch, .. } => vec![vec![seq * batch, embed]],
    };
    let mut rng = Rng::new(7);
    shapes
        .into_iter()
        .map(|s| {
            let data = rng.vec(s.iter().product(), -1.0, 1.0);
            (s, data)
        })
        .collect()
}

/// The attention case's shape.
fn attention_config(batch: usize, heads: usize, seq: usize, head_dim: usize) -> AttentionConfig {
    AttentionConfig { batch, seq, heads, head_dim, batch_first: false, causal: false }
}

/// Runs one case on `target`: the CPU reference too when its cost is under `cpu_budget` FLOP,
/// the CPU backend (and matmul's bare sgemm) under 50x that. `runs` must be at least 1.
pub fn run_case(target: Target<'_>, case: &Case, runs: usize, cpu_budget: f64) -> Result<Row> {
    if runs == 0 {
        return Err(Error::InvalidArgument { op: "bench", what: "runs must be at least 1".into() });
    }
    let inputs = inputs(case);
    let weights = match *case {
        Case::Stack { layers, embed, ff, .. } => Some(StackWeights::random(3, layers, embed, ff)),
        _ => None,
    };
    let mut row = Row { kernel: case.kernel().into(), shape: case.shape(), ..Default::default() };
    if let Case::Matmul { m, n, k } = *case {
        (row.m, row.n, row.k) = (Some(m), Some(n), Some(k));
    }
    let timed_ms = match target {
        Target::Gpu { gpu, policy, .. } => {
            row.adapter = gpu.adapter().name.clone();
            row.backend = format!("{:?}", gpu.adapter().backend);
            let (times, clock) = time_on_gpu(gpu, policy, case, &inputs, weights.as_ref(), runs)?;
            row.gpu_ms = Some(median(&times));
            row.gpu_clock = clock.into();
            row.gpu_ms
        }
        Target::Cpu => {
            row.adapter = cpu_adapter();
            row.backend = "cpu".into();
            None
        }
    };
    // the CPU backend is ~50x the reference's speed: it gets 50x the budget
    let with_backend = timed_ms.is_none() || case.cpu_cost() <= cpu_budget * 50.0;
    let on_host = |kernels, f: &mut dyn FnMut()| match (kernels, timed_ms) {
        // timed as the GPU is when it is the device measured: `runs` after a warm-up
        (HostKernels::Fast, None) => time_runs(runs, f),
        _ => time_cpu(f),
    };
    let host = host_case(case, &inputs, weights.as_ref());
    row.cpu_ms = with_backend.then(|| on_host(HostKernels::Fast, &mut *host(HostKernels::Fast)));
    row.cpu_ref_ms =
        (case.cpu_cost() <= cpu_budget).then(|| on_host(HostKernels::Reference, &mut *host(HostKernels::Reference)));
    if let Case::Matmul { m, n, k } = *case {
        row.cpu_fast_ms = with_backend.then(|| time_cpu(bare_sgemm(m, n, k, &inputs)));
    }
    let ms = timed_ms.or(row.cpu_ms);
    if let (Some(f), Some(ms)) = (case.flops(), ms) {
        row.gflops = Some(f / (ms * 1e-3) / 1e9);
    }
    if let (Some(b), Some(ms)) = (case.bytes(), ms) {
        row.gbps = Some(b / (ms * 1e-3) / 1e9);
    }
    if let Target::Gpu { peak, .. } = target {
        row.peak_pct = match (row.gflops, row.gbps) {
            (Some(g), _) => Some(100.0 * g / peak.gflops),
            (_, Some(b)) => Some(100.0 * b / peak.gbps),
            _ => None,
        };
    }
    Ok(row)
}

/// How long [`time_runs`] warms up for at least: after the previous case's single-threaded
/// reference (seconds of it), the CPU backend's first calls ran up to 2x slow on this
/// project's 2-core VM (its other core and rayon's threads asleep).
const WARM_UP_S: f64 = 0.2;

/// The median ms of `runs` calls of `f` after a warm-up: calls until [`WARM_UP_S`] has
/// passed, at least one.
fn time_runs(runs: usize, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    f();
    while start.elapsed().as_secs_f64() < WARM_UP_S {
        f();
    }
    let times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&times)
}

/// The case's GPU dispatches, timed `runs` times after a warm-up: the times and their clock.
fn time_on_gpu(
    gpu: &Arc<Gpu>,
    policy: &KernelPolicy,
    case: &Case,
    inputs: &[(Vec<usize>, Vec<f32>)],
    weights: Option<&StackWeights>,
    runs: usize,
) -> Result<(Vec<f64>, &'static str)> {
    let t: Vec<Tensor> = inputs.iter().map(|(s, d)| Tensor::from_f32(gpu, s, d)).collect::<Result<_>>()?;
    let d = match *case {
        Case::Matmul { m, n, .. } => {
            let out = Tensor::empty(gpu, &[m, n], crate::DType::F32)?;
            prepare_matmul(gpu, policy, &t[0], &t[1], Some(&t[2]), Activation::None, &out)?
        }
        Case::Attention { batch, heads, seq, head_dim } => {
            let cfg = attention_config(batch, heads, seq, head_dim);
            let out = Tensor::empty(gpu, &[cfg.tokens(), cfg.embed()], crate::DType::F32)?;
            let v = AttentionVariant::choose(gpu, policy.attention)?;
            prepare_attention_variant(gpu, v, &t[0], None, &cfg, &out)?
        }
        Case::Layernorm { rows, cols } => {
            let out = Tensor::empty(gpu, &[rows, cols], crate::DType::F32)?;
            let v = LayernormVariant::choose(gpu, policy.layernorm, cols)?;
            prepare_layernorm_variant(gpu, v, &t[0], Some(&t[1]), &t[2], &t[3], BlockConfig::DEFAULT_EPS, &out)?
        }
        Case::ResidualAdd { len } => {
            let out = Tensor::empty(gpu, &[len], crate::DType::F32)?;
            prepare_residual_add(gpu, &t[0], &t[1], &out)?
        }
        Case::Stack { embed, heads, ff, seq, batch, .. } => {
            let weights = weights.expect("a stack case comes with its weights");
            let stack =
                GpuStack::with_policy(gpu.clone(), weights, BlockConfig::new(embed, heads, ff), policy.clone())?;
            stack.forward(&inputs[0].1, seq, batch, None)?; // builds the plan
            return stack.with_plan(seq, batch, false, |d| time_gpu(gpu, d, runs))?;
        }
    };
    time_gpu(gpu, std::slice::from_ref(&d), runs)
}

/// A call of the case on the host kernels given, its output into a buffer of its own.
fn host_case<'a>(
    case: &Case,
    inputs: &'a [(Vec<usize>, Vec<f32>)],
    weights: Option<&'a StackWeights>,
) -> impl Fn(HostKernels) -> Box<dyn FnMut() + 'a> {
    let case = case.clone();
    // the CPU backend as a loaded stack runs it: its weights packed once, outside the timing
    let packs = weights.map(|w| Arc::new(cpu::HostPacks::new(w)));
    move |kernels| {
        let d = |i: usize| &inputs[i].1[..];
        let fast = kernels == HostKernels::Fast;
        match case {
            Case::Matmul { m, n, k } => {
                let mut o = vec![0.0; m * n];
                let f = if fast { crate::cpu::matmul::matmul } else { reference::matmul::matmul };
                Box::new(move || f(&mut o, d(0), d(1), Some(d(2)), Activation::None, MatmulShape::linear(m, n, k)))
            }
            Case::Attention { batch, heads, seq, head_dim } => {
                let cfg = attention_config(batch, heads, seq, head_dim);
                let mut o = vec![0.0; cfg.tokens() * cfg.embed()];
                let f = if fast { crate::cpu::attention::attention } else { reference::attention::attention };
                Box::new(move || f(&mut o, d(0), None, &cfg))
            }
            Case::Layernorm { rows, cols } => {
                let mut o = vec![0.0; rows * cols];
                let f = if fast { crate::cpu::layernorm::layernorm } else { reference::layernorm::layernorm };
                Box::new(move || f(&mut o, d(0), Some(d(1)), d(2), d(3), rows, cols, BlockConfig::DEFAULT_EPS))
            }
            Case::ResidualAdd { len } => {
                let mut o = vec![0.0; len];
                let f =
                    if fast { crate::cpu::residual_add::residual_add } else { reference::residual_add::residual_add };
                Box::new(move || f(&mut o, d(0), d(1)))
            }
            Case::Stack { embed, heads, ff, seq, batch, .. } => {
                let (cfg, weights) = (BlockConfig::new(embed, heads, ff), weights.expect("a stack case has weights"));
                let packs = packs.clone().filter(|_| fast);
                // on a pool thread, as an engine runs its forwards
                let pool = crate::model::HostPool::default();
                Box::new(move || {
                    pool.run(|| {
                        drop(cpu::forward_with(kernels, weights, packs.as_deref(), &cfg, d(0), seq, batch, None))
                    })
                })
            }
        }
    }
}

/// matrixmultiply's sgemm of the matmul case on every core, then the bias: out = x · wᵀ + b.
fn bare_sgemm(m: usize, n: usize, k: usize, inputs: &[(Vec<usize>, Vec<f32>)]) -> impl FnMut() + '_ {
    let (xd, wd, bd) = (&inputs[0].1, &inputs[1].1, &inputs[2].1);
    let mut o = vec![0.0; m * n];
    move || {
        // w (n, k) row-major read as (k, n) with strides (1, k)
        // SAFETY: x is m × k, w n × k and o m × n, as the strides say.
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
            for (v, bias) in r.iter_mut().zip(bd) {
                *v += bias;
            }
        }
    }
}
