//! Timing on the device: recorded passes timed with timestamp queries where the adapter has
//! them, else with the wall clock around a device sync; and host closures. The tuner, the
//! benches and `embed --speed` all time through here.

use web_time::Instant;

use super::{read_mapped_bytes, Gpu};
use crate::error::{Error, Result};
use crate::ops::median;

/// Records one compute pass into the encoder, with the timestamp writes it is given (`None`
/// when the wall clock times it): `kernels::record_all_timed` over a dispatch list.
pub type RecordPass<'a> = dyn Fn(&mut wgpu::CommandEncoder, Option<wgpu::ComputePassTimestampWrites<'_>>) + 'a;

/// Times the pass `record` writes, `runs` times after one warm-up; milliseconds each, and the
/// clock used (`"timestamp"` or `"wall"`). `runs` must be at least 1. A reading of zero or less
/// (a clock that did not advance) is an error, never a time.
pub fn time_pass(gpu: &Gpu, runs: usize, record: &RecordPass<'_>) -> Result<(Vec<f64>, &'static str)> {
    if runs == 0 {
        return Err(Error::InvalidArgument { op: "timing", what: "runs must be at least 1".into() });
    }
    let (out, clock) = if gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("resformer.timing"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resformer.timing.resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let period_ns = gpu.queue.get_timestamp_period() as f64;
        let mut out = Vec::with_capacity(runs);
        for i in 0..=runs {
            let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resformer.timing.read"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = gpu.encoder("resformer.timing");
            let writes = wgpu::ComputePassTimestampWrites {
                query_set: &qs,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            };
            record(&mut enc, Some(writes));
            enc.resolve_query_set(&qs, 0..2, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
            gpu.queue.submit([enc.finish()]);
            let t: Vec<u64> = bytemuck::pod_collect_to_vec(&read_mapped_bytes(gpu, &read)?);
            if i > 0 {
                out.push((t[1] as f64 - t[0] as f64) * period_ns / 1e6);
            }
        }
        (out, "timestamp")
    } else {
        let mut out = Vec::with_capacity(runs);
        for i in 0..=runs {
            let t = Instant::now();
            let mut enc = gpu.encoder("resformer.timing");
            record(&mut enc, None);
            gpu.submit_and_wait(enc)?;
            if i > 0 {
                out.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        (out, "wall")
    };
    if let Some(bad) = out.iter().find(|&&ms| ms.is_nan() || ms <= 0.0) {
        return Err(Error::Gpu(format!("the {clock} clock read {bad} ms for a pass: not a time")));
    }
    Ok((out, clock))
}

/// Times `f`: a first call that counts only when it took over a second (the plain-loop
/// reference on big cases), else a warm-up (thread pools started, buffers faulted in) and then
/// at least 3 runs, more until 15 or about a second has passed; the median in ms.
pub fn time_cpu(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let first = t.elapsed().as_secs_f64() * 1e3;
    if first > 1e3 {
        return first;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (times.len() < 15 && start.elapsed().as_secs_f64() < 1.0) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(&times)
}
