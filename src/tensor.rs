//! [`Tensor`]: a GPU storage buffer and the row-major shape of what it holds.

use crate::device::{Gpu, TrackedBuffer};
use crate::error::{Error, Result};

/// Element type of a [`Tensor`]. Activations and weights are f32; masks are u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer.
    U32,
    /// 16-bit float (matmul weights in the f16 mode; needs the device's SHADER_F16).
    F16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }
}

/// A row-major array on the device: a storage buffer plus its shape.
#[derive(Debug)]
pub struct Tensor {
    buffer: TrackedBuffer,
    shape: Vec<usize>,
    dtype: DType,
}

fn element_count(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor of `shape` with unspecified contents.
    pub fn empty(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        // a multiple of 4 bytes: what buffer copies and bindings need
        let bytes = ((element_count(shape) as u64).max(1) * dtype.size()).next_multiple_of(4);
        let limit = gpu.limits().max_buffer_size;
        if bytes > limit {
            return Err(Error::LimitExceeded {
                op: "tensor",
                what: "buffer",
                shape: shape.to_vec(),
                needed: bytes,
                limit_name: "max_buffer_size",
                limit,
            });
        }
        let buffer = gpu.buffer(&wgpu::BufferDescriptor {
            label: Some("resformer.tensor"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })?;
        Ok(Tensor { buffer, shape: shape.to_vec(), dtype })
    }

    /// Uploads `data` (row-major) as a tensor of `shape`.
    pub fn from_f32(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        check_len("tensor data", data.len(), shape)?;
        let t = Tensor::empty(gpu, shape, DType::F32)?;
        t.write(gpu, data)?;
        Ok(t)
    }

    /// Uploads a u32 tensor (masks).
    pub fn from_u32(gpu: &Gpu, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        check_len("tensor data", data.len(), shape)?;
        let t = Tensor::empty(gpu, shape, DType::U32)?;
        if !data.is_empty() {
            gpu.queue.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(t)
    }

    /// Uploads `data` (row-major) rounded to f16 (round to nearest even) as a tensor of `shape`.
    pub fn from_f16(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        check_len("tensor data", data.len(), shape)?;
        let t = Tensor::empty(gpu, shape, DType::F16)?;
        let mut halves: Vec<u16> = data.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        halves.resize(halves.len().next_multiple_of(2), 0);
        if !data.is_empty() {
            gpu.queue.write_buffer(&t.buffer, 0, bytemuck::cast_slice(&halves));
        }
        Ok(t)
    }

    /// Overwrites the whole tensor with `data` (queued; ordered before the next submit).
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        check_len("tensor write", data.len(), &self.shape)?;
        self.expect_words("tensor write")?;
        if !data.is_empty() {
            gpu.queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// f32 / u32 data moves through `write` and `read`; f16 tensors are made by `from_f16` only.
    fn expect_words(&self, op: &'static str) -> Result<()> {
        if self.dtype == DType::F16 {
            return Err(Error::InvalidArgument {
                op,
                what: "an f16 tensor is written by from_f16 and not read back".into(),
            });
        }
        Ok(())
    }

    /// Fills the tensor with NaN: tests poison outputs so an unwritten element fails.
    pub fn poison(&self, gpu: &Gpu) -> Result<()> {
        self.write(gpu, &vec![f32::NAN; self.len()])
    }

    /// Copies the tensor back to the host (submits and waits).
    pub fn read(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.expect_words("tensor read")?;
        let bytes = self.len() as u64 * 4;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resformer.readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = gpu.encoder("resformer.readback");
        enc.copy_buffer_to_buffer(&self.buffer, 0, &staging, 0, bytes);
        gpu.submit_and_wait(enc)?;
        read_mapped(gpu, &staging)
    }

    /// The row-major shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        element_count(&self.shape)
    }

    /// True when a dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size in bytes of its elements ([`DType::size`] each).
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * self.dtype.size()
    }

    /// The storage buffer (usage STORAGE | COPY_SRC | COPY_DST).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

/// Maps a MAP_READ buffer, copies its f32 contents out and unmaps it.
pub(crate) fn read_mapped(gpu: &Gpu, staging: &wgpu::Buffer) -> Result<Vec<f32>> {
    Ok(bytemuck::pod_collect_to_vec(&crate::device::read_mapped_bytes(gpu, staging)?))
}

fn check_len(what: &'static str, len: usize, shape: &[usize]) -> Result<()> {
    let expected = element_count(shape);
    if len != expected {
        return Err(Error::DataLength { what, len, shape: shape.to_vec(), expected });
    }
    Ok(())
}
