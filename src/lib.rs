#![warn(missing_docs)]
//! # resformer
//!
//! Stacks of residual Transformer blocks on the GPU through WebGPU compute
//! shaders, with a plain CPU reference for every kernel.
//!
//! ## Dimensions
//! - `M, N, K`: matmul rows, output columns, reduction depth (w is (N, K), PyTorch's Linear layout)
//! - `T`: tokens = seq · batch, the rows of every activation
//! - `E`: embed dim; `H`: heads; `D = E / H`: head dim; `F`: feed-forward dim
//!
//! ## Layers (each uses only the ones before it; `tests/layers.rs` checks it)
//! 1. [`ops`]: the vocabulary every backend shares (activation, matmul and attention shapes,
//!    tolerances, switches); [`rng`]: seeded data; [`error`]; [`metrics`]: classification
//!    reports.
//! 2. [`reference`](mod@reference): the CPU definition of each kernel, plain loops; above it
//!    [`cpu`]: the same kernels made fast (packed SIMD kernels), the CPU backend, tested against it.
//! 3. [`shaders`]: how WGSL reaches the device (the prelude of constants, the generated
//!    matmul family); [`device`]: adapter choice, device, pipelines built once, GPU timing;
//!    [`tensor`]: buffer + shape; [`testing`]: test helpers.
//! 4. [`kernels`]: one op per shader family, each owning its variants, constants, WGSL and
//!    dispatch size; checked, bound and recorded into the caller's encoder; the
//!    [`KernelPolicy`].
//! 5. [`tune`]: which matmul variant runs a shape on this adapter.
//! 6. [`model`]: the block's step list run by the GPU plan, the CPU backend and the reference;
//!    weights, fixtures, `check_ops`, MiniLM, the ViT; [`model::Placement`].
//! 7. [`engine`]: what an app holds (a device and its kernel policy, or the host, and why),
//!    which loads stacks and models; [`bench`](mod@bench): the kernel and stack benchmarks.
//!
//! The command line, its drawing and its tables live in `crates/resformer-cli`.
//!
//! ```
//! use resformer::{kernels::residual_add::residual_add, Gpu, Tensor};
//! # fn main() -> resformer::Result<()> {
//! let Ok(gpu) = Gpu::new() else { return Ok(()) }; // no adapter on this machine
//! println!("on {}", gpu.adapter().label());
//! let a = Tensor::from_f32(&gpu, &[3], &[1.0, 2.0, 3.0])?;
//! let b = Tensor::from_f32(&gpu, &[3], &[10.0, 20.0, 30.0])?;
//! let out = Tensor::empty(&gpu, &[3], resformer::DType::F32)?;
//! let mut enc = gpu.encoder("add");
//! residual_add(&gpu, &mut enc, &a, &b, &out)?;
//! gpu.submit_and_wait(enc)?;
//! assert_eq!(out.read(&gpu)?, vec![11.0, 22.0, 33.0]);
//! # Ok(()) }
//! ```

pub mod bench;
pub mod cpu;
pub mod device;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod reference;
pub mod rng;
pub mod shaders;
pub mod tensor;
pub mod testing;
pub mod tune;

pub use device::{list_adapters, AdapterChoice, AdapterSummary, Gpu, GpuOptions};
pub use engine::{Device, Engine, EngineOptions};
pub use error::{Error, Result};
pub use kernels::KernelPolicy;
pub use model::ModelFiles;
pub use tensor::{DType, Tensor};

/// The README's Rust examples compile as doc tests, so the README shows the real API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
