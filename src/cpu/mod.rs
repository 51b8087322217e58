//! The fast host kernels: the CPU backend for machines without a GPU.
//!
//! Same stems and contracts as [`crate::reference`], built for speed:
//! matmuls (and attention's two products per head) through `matrixmultiply`'s
//! threaded sgemm, attention parallel over (batch, head), layernorm and the
//! residual add parallel over rows (rayon). Sums accumulate in f32 inside
//! sgemm; each kernel's tests hold it to the reference within a named tolerance.

/// Attention: per (batch, head) q·kᵀ and p·v through sgemm.
pub mod attention;
/// LayerNorm, optionally of x + residual, rows in parallel.
pub mod layernorm;
/// matmul with fused bias and activation through sgemm.
pub mod matmul;
/// Elementwise add in parallel chunks.
pub mod residual_add;

/// Rows (or elements) handed to one rayon task: enough to amortise the task, small enough to
/// keep two cores busy at the shapes of the tests.
pub(crate) const ROWS_PER_TASK: usize = 16;
