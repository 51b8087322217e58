//! `resformer bench`: every kernel and the block and stack, timed on the GPU
//! (timestamp queries when the adapter has them, else the wall clock around a
//! device sync) against the CPU backend, the plain CPU reference, and for
//! matmul a bare sgemm (the `matrixmultiply` crate). Rows carry the adapter,
//! GFLOP/s or GB/s, and % of the device's peak.
//!
//! The cases live in benches/cases.json, which scripts/torch_baseline.py reads
//! too; rows are matched by (kernel, shape) for `--compare`.

mod cases;
mod peak;
mod run;
mod table;
mod timing;

pub use cases::{cases, Case, Sizes, KERNELS};
pub use peak::{peak, Peak};
pub use run::run_case;
pub use table::{compare, table, Row};
pub use timing::{median, time_gpu};
