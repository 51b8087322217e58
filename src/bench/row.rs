//! Result rows: the JSON of `resformer bench --json` and of scripts/torch_baseline.py.

use serde::{Deserialize, Serialize};

/// One result row; the JSON form of `--json` and of scripts/torch_baseline.py.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Row {
    /// Kernel stem, or `block` / `stack`.
    pub kernel: String,
    /// The case's shape string ([`super::Case::shape`]).
    pub shape: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// matmul rows.
    pub m: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// matmul columns.
    pub n: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// matmul depth.
    pub k: Option<usize>,
    /// Adapter name, or the CPU backend's label ([`super::cpu_adapter`]) when it ran alone.
    pub adapter: String,
    /// Backend (Vulkan, Metal, ...), or `cpu`.
    pub backend: String,
    /// Median GPU time of one call; None when the CPU backend ran alone (`--device cpu`).
    pub gpu_ms: Option<f64>,
    /// "timestamp" (GPU timestamp queries) or "wall" (host clock around a device sync).
    #[serde(default)]
    pub gpu_clock: String,
    /// The plain CPU reference; None when over the CPU budget.
    pub cpu_ref_ms: Option<f64>,
    /// matmul only: matrixmultiply's sgemm on every core.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cpu_fast_ms: Option<f64>,
    /// The CPU backend ([`crate::cpu`], every core); None when over 50x the CPU budget on a GPU.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cpu_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// Achieved GFLOP/s (compute-bound cases).
    pub gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// Achieved GB/s (memory-bound cases).
    pub gbps: Option<f64>,
    /// Achieved over the device's peak FLOP/s (compute-bound) or bandwidth (memory-bound).
    pub peak_pct: Option<f64>,
    /// Filled by `--compare`: the other run's time for the same (kernel, shape), and ours over it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub torch_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    /// The timed device's time over `torch_ms` (`gpu_ms`, or `cpu_ms` when no GPU ran): below 1
    /// is faster than the baseline.
    pub ours_over_torch: Option<f64>,
}
