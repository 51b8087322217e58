//! `resformer bench`: every kernel and the block and stack, timed on the GPU
//! (timestamp queries when the adapter has them, else the wall clock around a
//! device sync) against the CPU backend, the plain CPU reference, and for
//! matmul a bare sgemm (the `matrixmultiply` crate). Rows carry the adapter,
//! GFLOP/s or GB/s, and % of the device's peak. [`Target::Cpu`] times the CPU
//! backend alone, no GPU opened: its rows name the CPU backend as their adapter.
//!
//! The cases live in benches/cases.json, which scripts/torch_baseline.py reads
//! too; rows are matched by (kernel, shape) for `--compare`.

//!
//! The printed table and `--compare` belong to the command line (`crates/resformer-cli`).

mod cases;
mod peak;
mod row;
mod run;

pub use cases::{cases, Case, Sizes, KERNELS};
pub use peak::{peak, Peak};
pub use row::Row;
pub use run::{cpu_adapter, run_case, Target};
