//! safetensors in and out: read named tensors as f32 (converting f16, bf16
//! and f64, and saying so), write f32 tensors. Every problem names the file,
//! the tensor, and what was expected against what was found.

use std::collections::BTreeSet;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// A safetensors file read into memory.
pub struct TensorFile {
    path: String,
    bytes: Vec<u8>,
    /// dtypes converted to f32 while reading, for the report.
    converted: std::sync::Mutex<BTreeSet<String>>,
}

/// A tensor read as f32, with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values, converted to f32.
    pub data: Vec<f32>,
}

impl TensorFile {
    /// Reads and parses the header of `path`.
    pub fn open(path: &Path) -> Result<TensorFile> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: p.clone(), source })?;
        let file = TensorFile { path: p, bytes, converted: Default::default() };
        file.parsed()?;
        Ok(file)
    }

    /// Wraps bytes already in memory (`name` is used in messages).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<TensorFile> {
        let file = TensorFile { path: name.to_string(), bytes, converted: Default::default() };
        file.parsed()?;
        Ok(file)
    }

    fn parsed(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| self.err(format!("not a valid safetensors file: {e}")))
    }

    fn err(&self, reason: String) -> Error {
        Error::File { path: self.path.clone(), reason }
    }

    /// The file's path, as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Tensor names in the file, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.parsed().map(|s| s.names().into_iter().map(String::from).collect()).unwrap_or_default();
        names.sort();
        names
    }

    /// True when the file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.parsed().is_ok_and(|s| s.tensor(name).is_ok())
    }

    /// Reads `name` as f32, whatever its float dtype.
    pub fn get(&self, name: &str) -> Result<HostTensor> {
        let st = self.parsed()?;
        let view = st.tensor(name).map_err(|_| self.err(format!("missing tensor `{name}`")))?;
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect(),
            other => {
                return Err(self.err(format!(
                    "tensor `{name}` has dtype {other:?}; expected a float (F32, or F16/BF16/F64, converted to F32)"
                )))
            }
        };
        if view.dtype() != Dtype::F32 {
            self.converted.lock().unwrap_or_else(|p| p.into_inner()).insert(format!("{:?}", view.dtype()));
        }
        Ok(HostTensor { shape: view.shape().to_vec(), data })
    }

    /// Reads the mask `name` of shape `expected` as u32, 1 where the value is nonzero (for a
    /// key-padding mask: that key is padded, PyTorch's `True`). PyTorch users save masks as
    /// bool, so bool, u8, i8, i32, i64 and every float dtype are read.
    pub fn get_mask(&self, name: &str, expected: &[usize]) -> Result<Vec<u32>> {
        let st = self.parsed()?;
        let view = st.tensor(name).map_err(|_| self.err(format!("missing tensor `{name}`")))?;
        if view.shape() != expected {
            return Err(self.err(format!("tensor `{name}` expected shape {expected:?}, found {:?}", view.shape())));
        }
        let raw = view.data();
        let nonzero = |width: usize| raw.chunks_exact(width).map(|c| c.iter().any(|&b| b != 0) as u32).collect();
        Ok(match view.dtype() {
            Dtype::BOOL | Dtype::U8 | Dtype::I8 => nonzero(1),
            Dtype::I32 | Dtype::U32 => nonzero(4),
            Dtype::I64 | Dtype::U64 => nonzero(8),
            // floats: -0.0 is zero too, so compare values rather than bytes
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64 => {
                self.get(name)?.data.iter().map(|&v| (v != 0.0) as u32).collect()
            }
            other => {
                return Err(self.err(format!(
                "tensor `{name}` has dtype {other:?}; a mask is bool, u8, i8, i32, i64 or a float (nonzero = padded)"
            )))
            }
        })
    }

    /// Reads `name` and checks its shape.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let t = self.get(name)?;
        if t.shape != expected {
            return Err(self.err(format!("tensor `{name}` expected shape {expected:?}, found {:?}", t.shape)));
        }
        Ok(t)
    }

    /// dtypes converted to f32 so far (empty when everything was f32).
    pub fn converted_dtypes(&self) -> Vec<String> {
        self.converted.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

/// Writes f32 tensors to a safetensors file.
pub fn write_f32(path: &Path, tensors: &[(&str, &[usize], &[f32])]) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(Dtype::F32, shape.to_vec(), bytemuck::cast_slice(data)).map_err(
                    |e| Error::File { path: path.display().to_string(), reason: format!("tensor `{name}`: {e}") },
                )?;
            Ok((name.to_string(), view))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, None, path)
        .map_err(|e| Error::File { path: path.display().to_string(), reason: format!("cannot write: {e}") })
}
