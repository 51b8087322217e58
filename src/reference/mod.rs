//! The CPU definition of correctness: one plain-loop function per kernel,
//! same stem as the shader. No SIMD, no threads; sums accumulate in f64.

/// Attention (and its probabilities).
pub mod attention;
/// LayerNorm, optionally of x + residual.
pub mod layernorm;
/// matmul with fused bias and activation.
pub mod matmul;
/// Elementwise add.
pub mod residual_add;
