//! The device's peak FLOP/s and bandwidth: published figures for known GPUs, else an FMA and a
//! copy microbenchmark run on the device.

use web_time::Instant;

use crate::device::Gpu;
use crate::error::Result;
use crate::tensor::Tensor;

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
