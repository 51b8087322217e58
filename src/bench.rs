//! `resformer bench`: every kernel and the block and stack, timed on the GPU
//! (timestamp queries when the adapter has them, else the wall clock around a
//! device sync) against the plain CPU reference, and for matmul against an
//! optimised CPU sgemm (the `matrixmultiply` crate). Rows carry the adapter,
//! GFLOP/s or GB/s, and % of the device's peak.
//!
//! The sizes here and in scripts/torch_baseline.py are the same table; rows
//! are matched by (kernel, shape) for `--compare`.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::kernels::attention::{prepare_attention, AttentionConfig};
use crate::kernels::layernorm::prepare_layernorm;
use crate::kernels::matmul::{prepare_matmul, Activation, MatmulShape};
use crate::kernels::residual_add::prepare_residual_add;
use crate::kernels::{record_all_timed, Dispatch};
use crate::model::cpu::HostKernels;
use crate::model::{cpu, BlockConfig, GpuStack, StackWeights};
use crate::reference;
use crate::rng::Rng;
use crate::tensor::{read_mapped_bytes, Tensor};

/// What `--sizes` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// Seconds on lavapipe.
    Small,
    /// Includes matmul 512³.
    Medium,
    /// For real GPUs: matmul 4096³, attention 4 x 16 x 2048 x 64, the d768 12-layer stack.
    Large,
}

impl std::str::FromStr for Sizes {
    type Err = Error;
    fn from_str(s: &str) -> Result<Sizes> {
        match s {
            "small" => Ok(Sizes::Small),
            "medium" => Ok(Sizes::Medium),
            "large" => Ok(Sizes::Large),
            o => {
                Err(Error::InvalidArgument { op: "sizes", what: format!("expected small, medium or large, got {o:?}") })
            }
        }
    }
}

/// The kernels `--kernel` can name.
pub const KERNELS: [&str; 6] = ["matmul", "attention", "layernorm", "residual_add", "block", "stack"];

/// One benchmark case.
#[derive(Clone, Debug, PartialEq)]
pub enum Case {
    /// out (m, n) = x (m, k) · wᵀ + bias
    Matmul {
        /// Output rows.
        m: usize,
        /// Output columns.
        n: usize,
        /// Reduction depth.
        k: usize,
    },
    /// Fused attention over packed QKV.
    Attention {
        /// Batch elements.
        batch: usize,
        /// Heads.
        heads: usize,
        /// Sequence length.
        seq: usize,
        /// Head dim.
        head_dim: usize,
    },
    /// out = LN(x + residual), rows x cols
    Layernorm {
        /// Rows.
        rows: usize,
        /// Columns (the normalised dimension).
        cols: usize,
    },
    /// out = a + b.
    ResidualAdd {
        /// Elements.
        len: usize,
    },
    /// `layers` blocks (block: 1) of embed / heads / ff on seq x batch tokens
    Stack {
        /// Blocks (1 for `block`).
        layers: usize,
        /// E.
        embed: usize,
        /// H.
        heads: usize,
        /// F.
        ff: usize,
        /// Sequence length.
        seq: usize,
        /// Batch.
        batch: usize,
    },
}

impl Case {
    /// The kernel stem of the row.
    pub fn kernel(&self) -> &'static str {
        match self {
            Case::Matmul { .. } => "matmul",
            Case::Attention { .. } => "attention",
            Case::Layernorm { .. } => "layernorm",
            Case::ResidualAdd { .. } => "residual_add",
            Case::Stack { layers: 1, .. } => "block",
            Case::Stack { .. } => "stack",
        }
    }

    /// The shape as a string, identical in scripts/torch_baseline.py.
    pub fn shape(&self) -> String {
        match *self {
            Case::Matmul { m, n, k } => format!("{m}x{n}x{k}"),
            Case::Attention { batch, heads, seq, head_dim } => format!("b{batch}h{heads}s{seq}d{head_dim}"),
            Case::Layernorm { rows, cols } => format!("{rows}x{cols}"),
            Case::ResidualAdd { len } => format!("{len}"),
            Case::Stack { layers, embed, heads, ff, seq, batch } => {
                format!("L{layers}e{embed}h{heads}f{ff}s{seq}b{batch}")
            }
        }
    }

    /// Floating-point operations (2 per multiply-add), for the compute-bound cases.
    pub fn flops(&self) -> Option<f64> {
        match *self {
            Case::Matmul { m, n, k } => Some(2.0 * (m * n * k) as f64),
            Case::Attention { batch, heads, seq, head_dim } => {
                Some(4.0 * (batch * heads * seq * seq * head_dim) as f64)
            }
            Case::Stack { layers, embed: e, heads: _, ff: f, seq, batch } => {
                let t = (seq * batch) as f64;
                let (e, f) = (e as f64, f as f64);
                let linear = 2.0 * t * (4.0 * e * e + 2.0 * e * f);
                let attention = 4.0 * batch as f64 * (seq * seq) as f64 * e;
                Some(layers as f64 * (linear + attention))
            }
            _ => None,
        }
    }

    /// Bytes that must cross memory at least once, for the memory-bound cases.
    pub fn bytes(&self) -> Option<f64> {
        match *self {
            // read x and residual, write out (gamma and beta are negligible)
            Case::Layernorm { rows, cols } => Some(12.0 * (rows * cols) as f64),
            Case::ResidualAdd { len } => Some(12.0 * len as f64),
            _ => None,
        }
    }

    /// Roughly how much CPU reference work the case is, in FLOP-equivalents.
    fn cpu_cost(&self) -> f64 {
        self.flops().or(self.bytes()).unwrap_or(0.0)
    }
}

/// The cases of `sizes` for `kernel` ("all" for every kernel).
pub fn cases(kernel: &str, sizes: Sizes) -> Vec<Case> {
    use Case::*;
    let all = match sizes {
        Sizes::Small => vec![
            Matmul { m: 128, n: 128, k: 128 },
            Matmul { m: 256, n: 384, k: 256 },
            Attention { batch: 1, heads: 4, seq: 64, head_dim: 32 },
            Layernorm { rows: 256, cols: 256 },
            ResidualAdd { len: 1 << 16 },
            Stack { layers: 1, embed: 128, heads: 4, ff: 512, seq: 32, batch: 2 },
            Stack { layers: 2, embed: 128, heads: 4, ff: 512, seq: 32, batch: 2 },
        ],
        Sizes::Medium => vec![
            Matmul { m: 512, n: 512, k: 512 },
            Matmul { m: 512, n: 1024, k: 256 },
            Attention { batch: 2, heads: 8, seq: 128, head_dim: 64 },
            Layernorm { rows: 2048, cols: 1024 },
            ResidualAdd { len: 1 << 20 },
            Stack { layers: 1, embed: 256, heads: 8, ff: 1024, seq: 128, batch: 4 },
            Stack { layers: 6, embed: 256, heads: 8, ff: 1024, seq: 128, batch: 4 },
        ],
        Sizes::Large => vec![
            Matmul { m: 1024, n: 1024, k: 1024 },
            Matmul { m: 4096, n: 4096, k: 4096 },
            Attention { batch: 4, heads: 16, seq: 2048, head_dim: 64 },
            Layernorm { rows: 16384, cols: 1024 },
            ResidualAdd { len: 16384 * 1024 },
            Stack { layers: 1, embed: 768, heads: 12, ff: 3072, seq: 512, batch: 8 },
            Stack { layers: 12, embed: 768, heads: 12, ff: 3072, seq: 512, batch: 8 },
        ],
    };
    all.into_iter().filter(|c| kernel == "all" || c.kernel() == kernel).collect()
}

/// One result row; the JSON form of `--json` and of scripts/torch_baseline.py.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Row {
    /// Kernel stem, or `block` / `stack`.
    pub kernel: String,
    /// The case's shape string ([`Case::shape`]).
    pub shape: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// matmul rows.
    pub m: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// matmul columns.
    pub n: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// matmul depth.
    pub k: Option<usize>,
    /// Adapter name.
    pub adapter: String,
    /// Backend (Vulkan, Metal, ...).
    pub backend: String,
    /// Median GPU time of one call.
    pub gpu_ms: Option<f64>,
    /// "timestamp" (GPU timestamp queries) or "wall" (host clock around a device sync).
    #[serde(default)]
    pub gpu_clock: String,
    /// The plain CPU reference; None when over the CPU budget.
    pub cpu_ref_ms: Option<f64>,
    /// matmul only: matrixmultiply's sgemm on every core.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cpu_fast_ms: Option<f64>,
    /// The CPU backend ([`crate::cpu`], every core); None when over 50x the CPU budget.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cpu_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// Achieved GFLOP/s (compute-bound cases).
    pub gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// Achieved GB/s (memory-bound cases).
    pub gbps: Option<f64>,
    /// Achieved over the device's peak FLOP/s (compute-bound) or bandwidth (memory-bound).
    pub peak_pct: Option<f64>,
    /// Filled by `--compare`: the other run's time for the same (kernel, shape), and ours over it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub torch_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// `gpu_ms / torch_ms`: below 1 is faster than the baseline.
    pub ours_over_torch: Option<f64>,
}

/// The device's peak: FLOP/s (f32 FMA) and bytes/s, and where the numbers come from.
#[derive(Clone, Debug)]
pub struct Peak {
    /// f32 FMA peak, GFLOP/s.
    pub gflops: f64,
    /// Memory bandwidth, GB/s.
    pub gbps: f64,
    /// Where the numbers come from.
    pub source: String,
}

/// Published f32 (non-tensor-core) peaks and memory bandwidth of known GPUs.
const KNOWN: &[(&str, f64, f64)] = &[
    ("H200", 66_900.0, 4_800.0),
    ("H100 80GB HBM3", 66_900.0, 3_350.0),
    ("H100 PCIe", 51_200.0, 2_000.0),
    ("H100", 66_900.0, 3_350.0),
    ("A100-SXM4-80GB", 19_500.0, 2_039.0),
    ("A100", 19_500.0, 1_555.0),
    ("L4", 30_300.0, 300.0),
    ("RTX 4090", 82_600.0, 1_008.0),
];

/// Times `dispatches` in one compute pass, `runs` times after one warm-up; milliseconds each.
pub fn time_gpu(gpu: &Gpu, dispatches: &[Dispatch], runs: usize) -> Result<(Vec<f64>, &'static str)> {
    if gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("resformer.bench"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resformer.bench.resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let period_ns = gpu.queue.get_timestamp_period() as f64;
        let mut out = Vec::with_capacity(runs);
        for i in 0..=runs {
            let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resformer.bench.read"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = gpu.encoder("resformer.bench");
            let writes = wgpu::ComputePassTimestampWrites {
                query_set: &qs,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            };
            record_all_timed(&mut enc, dispatches, Some(writes));
            enc.resolve_query_set(&qs, 0..2, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
            gpu.queue.submit([enc.finish()]);
            let t: Vec<u64> = bytemuck::pod_collect_to_vec(&read_mapped_bytes(gpu, &read)?);
            if i > 0 {
                out.push(t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6);
            }
        }
        Ok((out, "timestamp"))
    } else {
        let mut out = Vec::with_capacity(runs);
        for i in 0..=runs {
            let t = Instant::now();
            let mut enc = gpu.encoder("resformer.bench");
            record_all_timed(&mut enc, dispatches, None);
            gpu.submit_and_wait(enc)?;
            if i > 0 {
                out.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok((out, "wall"))
    }
}

/// Median of `v` (not empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// Times `f` until 3 runs or about a second have passed; the median in ms.
fn time_cpu(mut f: impl FnMut()) -> f64 {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 && (times.is_empty() || start.elapsed().as_secs_f64() < 1.0) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(&times)
}

/// The peak of `gpu`: from the table of known GPUs, else measured with an FMA
/// and a copy microbenchmark on the device.
pub fn peak(gpu: &Gpu) -> Result<Peak> {
    let name = &gpu.adapter().name;
    if let Some((n, gf, gb)) = KNOWN.iter().find(|(n, _, _)| name.contains(n)) {
        return Ok(Peak { gflops: *gf, gbps: *gb, source: format!("published figures for {n}") });
    }
    // FMA: WG invocations each run 8 independent FMA chains ITERS times
    const FMA: &str = "
        struct P { iters: u32, _a: u32, _b: u32, _c: u32 }
        @group(0) @binding(0) var<storage, read_write> out: array<f32>;
        @group(0) @binding(1) var<uniform> p: P;
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3<u32>) {
            var a = vec4<f32>(f32(id.x) * 1e-7); var b = a + 1e-3;
            let m = vec4<f32>(0.999999); let c = vec4<f32>(1e-7);
            for (var i = 0u; i < p.iters; i++) { a = fma(a, m, c); b = fma(b, m, c); }
            out[id.x] = a.x + a.y + a.z + a.w + b.x + b.y + b.z + b.w;
        }";
    const COPY: &str = "
        @group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
        @group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
        @compute @workgroup_size(256)
        fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
            let i = id.x + id.y * n.x * 256u;
            if (i < arrayLength(&dst)) { dst[i] = src[i]; }
        }";
    let pipeline = |src: &str| {
        let m = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("resformer.peak"),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("resformer.peak"),
            layout: None,
            module: &m,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        })
    };
    let software = gpu.adapter().is_software();
    let (threads, iters) = if software { (64 * 64u32, 4096u32) } else { (64 * 8192u32, 8192u32) };
    let fma = pipeline(FMA);
    let out = Tensor::empty(gpu, &[threads as usize], crate::DType::F32)?;
    let p = wgpu::util::DeviceExt::create_buffer_init(
        &gpu.device,
        &wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&[iters, 0, 0, 0]),
            usage: wgpu::BufferUsages::UNIFORM,
        },
    );
    let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &fma.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: out.buffer().as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: p.as_entire_binding() },
        ],
    });
    let run = |pl: &wgpu::ComputePipeline, bg: &wgpu::BindGroup, groups: (u32, u32)| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut enc = gpu.encoder("resformer.peak");
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(pl);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, 1);
            }
            gpu.submit_and_wait(enc)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let secs = run(&fma, &bg, (threads / 64, 1))?;
    // 2 chains x 4 lanes x 2 FLOP per FMA
    let gflops = threads as f64 * iters as f64 * 16.0 / secs / 1e9;
    let copy = pipeline(COPY);
    let len = if software { 4usize << 20 } else { 64 << 20 }; // f32 elements
    let max = gpu.limits().max_storage_buffer_binding_size as usize / 4;
    let len = len.min(max) / 4 * 4;
    let (src, dst) = (Tensor::empty(gpu, &[len], crate::DType::F32)?, Tensor::empty(gpu, &[len], crate::DType::F32)?);
    let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &copy.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: src.buffer().as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: dst.buffer().as_entire_binding() },
        ],
    });
    let groups = (len / 4).div_ceil(256) as u32;
    let gx = groups.min(gpu.limits().max_compute_workgroups_per_dimension);
    let secs = run(&copy, &bg, (gx, groups.div_ceil(gx)))?;
    let gbps = 8.0 * len as f64 / secs / 1e9;
    Ok(Peak { gflops, gbps, source: "measured: FMA and copy microbenchmarks on this device".into() })
}

fn rng_tensor(gpu: &Gpu, rng: &mut Rng, shape: &[usize]) -> Result<(Tensor, Vec<f32>)> {
    let data = rng.vec(shape.iter().product(), -1.0, 1.0);
    Ok((Tensor::from_f32(gpu, shape, &data)?, data))
}

/// Runs one case: GPU, CPU reference (when its cost is under `cpu_budget` FLOP), fast CPU (matmul).
pub fn run_case(gpu: &Arc<Gpu>, case: &Case, runs: usize, cpu_budget: f64, peak: &Peak) -> Result<Row> {
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
            let d = prepare_matmul(gpu, &x, &w, Some(&b), Activation::None, &out)?;
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
            let d = prepare_attention(gpu, &qkv, None, &cfg, &out)?;
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
            let d = prepare_layernorm(gpu, &x, Some(&r), &g, &b, BlockConfig::DEFAULT_EPS, &out)?;
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
            let stack = GpuStack::new(gpu.clone(), &weights, cfg)?;
            let x = rng.vec(seq * batch * embed, -1.0, 1.0);
            stack.forward(&x, seq, batch, None)?; // builds the plan
            let (t, clock) = stack.with_plan(seq, batch, false, |d| time_gpu(gpu, d, runs))??;
            backend_ms = with_backend
                .then(|| time_cpu(|| drop(cpu::forward_with(HostKernels::Fast, &weights, &cfg, &x, seq, batch, None))));
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

/// Adds the other run's time and ours over it to each row with the same (kernel, shape).
pub fn compare(rows: &mut [Row], other: &[Row]) {
    for r in rows {
        if let Some(o) = other.iter().find(|o| o.kernel == r.kernel && o.shape == r.shape) {
            r.torch_ms = o.gpu_ms;
            if let (Some(a), Some(b)) = (r.gpu_ms, o.gpu_ms) {
                r.ours_over_torch = Some(a / b);
            }
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| if v >= 100.0 { format!("{v:.1}") } else { format!("{v:.3}") })
}

/// The human-readable table.
pub fn table(rows: &[Row]) -> String {
    let has_torch = rows.iter().any(|r| r.torch_ms.is_some());
    let mut s = format!(
        "{:<13} {:<28} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>12} {:>7}",
        "kernel", "shape", "gpu ms", "cpu ms", "cpu_ref ms", "cpu_fast ms", "x ref", "x fast", "rate", "% peak"
    );
    if has_torch {
        s += &format!(" {:>10} {:>9}", "torch ms", "ours/torch");
    }
    s.push('\n');
    for r in rows {
        let speedup = |cpu: Option<f64>| match (cpu, r.gpu_ms) {
            (Some(c), Some(g)) => format!("{:.2}", c / g),
            _ => "-".into(),
        };
        let rate = match (r.gflops, r.gbps) {
            (Some(g), _) => format!("{g:.2} GFLOP/s"),
            (_, Some(b)) => format!("{b:.2} GB/s"),
            _ => "-".into(),
        };
        s += &format!(
            "{:<13} {:<28} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>12} {:>7}",
            r.kernel,
            r.shape,
            ms(r.gpu_ms),
            ms(r.cpu_ms),
            ms(r.cpu_ref_ms),
            ms(r.cpu_fast_ms),
            speedup(r.cpu_ref_ms),
            speedup(r.cpu_fast_ms),
            rate,
            r.peak_pct.map_or("-".into(), |p| format!("{p:.1}"))
        );
        if has_torch {
            s += &format!(" {:>10} {:>9}", ms(r.torch_ms), r.ours_over_torch.map_or("-".into(), |v| format!("{v:.2}")));
        }
        s.push('\n');
    }
    s
}
