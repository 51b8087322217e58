//! The CPU definition of correctness: one plain-loop function per kernel,
//! same stem as the shader. No SIMD, no threads; sums accumulate in f64.

pub mod attention;
pub mod layernorm;
pub mod matmul;
pub mod residual_add;
