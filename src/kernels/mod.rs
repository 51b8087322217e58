//! Host side of the kernels: one op per shader. Each op checks its operands'
//! shapes and the device's limits, fills its params struct, binds, and records
//! a dispatch into the caller's command encoder.
//!
//! Every op comes in two forms: `prepare_<stem>` returns a [`Dispatch`] (bind
//! group and params made once, recorded any number of times: what a forward
//! plan stores), and `<stem>` prepares and records in one call.

pub mod attention;
pub mod layernorm;
pub mod matmul;
pub mod residual_add;

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::device::{Gpu, Kernel};
use crate::error::{Error, Result};
use crate::shaders::Shader;
use crate::tensor::{DType, Tensor};

/// Whether the device can run the `*_subgroup8.wgsl` kernels: subgroups exactly 8 wide (lavapipe).
/// They use no workgroup memory and share operands by subgroup broadcasts, which is much faster
/// where memory accesses are costly. Each op's variant enum offers them as `Subgroup8`.
pub fn has_subgroup8(gpu: &Gpu) -> bool {
    gpu.features().contains(wgpu::Features::SUBGROUP) && gpu.adapter().subgroup_sizes == (8, 8)
}

/// One bound kernel invocation, ready to record.
pub struct Dispatch {
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    name: &'static str,
}

impl Dispatch {
    /// Records this dispatch in a compute pass of its own.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder) {
        record_all(enc, std::slice::from_ref(self));
    }

    /// Records this dispatch into an open compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// The kernel stem, for labels and profiles.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Workgroups launched in (x, y, z).
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
}

/// Records `dispatches` in order, in one compute pass (wgpu orders their
/// storage accesses, so each sees the writes of the ones before it).
pub fn record_all(enc: &mut wgpu::CommandEncoder, dispatches: &[Dispatch]) {
    record_all_timed(enc, dispatches, None);
}

/// [`record_all`], with GPU timestamps written at the pass's start and end.
pub fn record_all_timed(
    enc: &mut wgpu::CommandEncoder,
    dispatches: &[Dispatch],
    timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("resformer"), timestamp_writes });
    for d in dispatches {
        d.encode(&mut pass);
    }
}

/// Builds the bind group `(buffers..., params)` for `shader` and wraps it as a [`Dispatch`].
fn dispatch(
    gpu: &Gpu,
    shader: Shader,
    buffers: &[&wgpu::Buffer],
    params: &[u8],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    let kernel = gpu.kernel(shader)?;
    let uniform = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(shader.name()),
        contents: params,
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let mut entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    entries.push(wgpu::BindGroupEntry { binding: buffers.len() as u32, resource: uniform.as_entire_binding() });
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(shader.name()),
        layout: &kernel.layout,
        entries: &entries,
    });
    Ok(Dispatch { kernel, bind_group, workgroups, name: shader.name() })
}

/// Checks that `t` has exactly `expected` as its shape.
fn expect_shape(op: &'static str, what: &'static str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.shape() != expected {
        return Err(Error::ShapeMismatch { op, what, expected: expected.to_vec(), got: t.shape().to_vec() });
    }
    Ok(())
}

/// Checks rank, non-zero dimensions, dtype and the storage binding limit of one operand.
fn check_operand(
    gpu: &Gpu,
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    ranks: &[usize],
    dtype: DType,
) -> Result<()> {
    if !ranks.contains(&t.shape().len()) {
        return Err(Error::InvalidArgument {
            op,
            what: format!("{what} must have rank {ranks:?}, got shape {:?}", t.shape()),
        });
    }
    if t.shape().contains(&0) {
        return Err(Error::ZeroSized { op, what, shape: t.shape().to_vec() });
    }
    if t.dtype() != dtype {
        return Err(Error::InvalidArgument { op, what: format!("{what} must be {dtype:?}, got {:?}", t.dtype()) });
    }
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if t.bytes() > limit {
        return Err(Error::LimitExceeded {
            op,
            what,
            shape: t.shape().to_vec(),
            needed: t.bytes(),
            limit_name: "max_storage_buffer_binding_size",
            limit,
        });
    }
    Ok(())
}

/// Checks one dispatch dimension against `max_compute_workgroups_per_dimension`.
fn check_groups(gpu: &Gpu, op: &'static str, what: &'static str, shape: &[usize], groups: u64) -> Result<u32> {
    let limit = gpu.limits().max_compute_workgroups_per_dimension as u64;
    if groups > limit {
        return Err(Error::LimitExceeded {
            op,
            what,
            shape: shape.to_vec(),
            needed: groups,
            limit_name: "max_compute_workgroups_per_dimension (workgroups)",
            limit,
        });
    }
    Ok(groups as u32)
}

/// Checks that a kernel's workgroup memory fits `max_compute_workgroup_storage_size`.
fn check_workgroup_memory(gpu: &Gpu, op: &'static str, shape: &[usize], bytes: u64) -> Result<()> {
    let limit = gpu.limits().max_compute_workgroup_storage_size as u64;
    if bytes > limit {
        return Err(Error::LimitExceeded {
            op,
            what: "workgroup memory",
            shape: shape.to_vec(),
            needed: bytes,
            limit_name: "max_compute_workgroup_storage_size",
            limit,
        });
    }
    Ok(())
}

/// Spreads `groups` workgroups over (x, y) so neither exceeds the per-dimension limit.
fn grid_2d(gpu: &Gpu, op: &'static str, shape: &[usize], groups: u64) -> Result<(u32, u32)> {
    let max = gpu.limits().max_compute_workgroups_per_dimension as u64;
    let x = groups.clamp(1, max);
    let y = groups.div_ceil(x);
    Ok((x as u32, check_groups(gpu, op, "grid", shape, y)?))
}
