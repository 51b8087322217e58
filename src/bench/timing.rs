//! Timing: GPU passes with timestamp queries (or the wall clock around a sync), host closures,
//! and the median every report uses.

use std::time::Instant;

use crate::device::Gpu;
use crate::error::Result;
use crate::kernels::{record_all_timed, Dispatch};
use crate::tensor::read_mapped_bytes;

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
pub(crate) fn time_cpu(mut f: impl FnMut()) -> f64 {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 && (times.is_empty() || start.elapsed().as_secs_f64() < 1.0) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(&times)
}
