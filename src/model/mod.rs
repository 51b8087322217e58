//! Blocks and stacks: configuration, weights, the block's steps, and the ways to run them
//! (the GPU plan, the host stack on the CPU backend or the reference kernels); the real models
//! built from them; and [`Placement`], where a model's weights go.

pub mod bert;
pub mod block;
pub mod budget;
pub mod check;
pub mod config;
pub mod files;
pub mod fixture;
pub mod gpu;
pub mod host;
pub mod io;
pub mod steps;
pub mod vit;
pub mod weights;

pub use config::{BlockConfig, Precision};
pub use files::ModelFiles;
pub use gpu::GpuStack;
pub use weights::{BlockWeights, StackWeights};

use std::sync::Arc;

use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::kernels::KernelPolicy;
use host::{HostKernels, HostPacks};

/// Where a model's weights go and what runs it: a device and the kernel policy its plans
/// bind, or (without a device) a set of host kernels. [`crate::Engine`] holds one; models
/// load onto it.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The device, or `None` for the host.
    pub gpu: Option<Arc<Gpu>>,
    /// The host kernels when there is no device.
    pub host: HostKernels,
    /// The kernels a device's plans bind.
    pub policy: KernelPolicy,
    /// The threads the host kernels run on.
    pub pool: HostPool,
}

/// The threads of the CPU backend: a pool of its own with a set number of threads (an
/// engine's [`crate::EngineOptions::threads`], so that several engines in one process, or
/// several processes on one machine, do not oversubscribe the cores), or rayon's global pool
/// (`RAYON_NUM_THREADS`, else every core). The GEMM, the attention heads and the row passes
/// all run on it.
#[derive(Clone, Debug, Default)]
pub struct HostPool(Option<Arc<rayon::ThreadPool>>);

impl HostPool {
    /// A pool of its own with `threads` threads (at least 1).
    pub fn with_threads(threads: usize) -> Result<HostPool> {
        if threads == 0 {
            return Err(Error::InvalidArgument {
                op: "threads",
                what: "the CPU backend needs at least 1 thread".into(),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("resformer-cpu-{i}"))
            .build()
            .map_err(|e| Error::InvalidArgument {
                op: "threads",
                what: format!("could not start {threads} threads: {e}"),
            })?;
        Ok(HostPool(Some(Arc::new(pool))))
    }

    /// How many threads run the host kernels.
    pub fn threads(&self) -> usize {
        match &self.0 {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// Runs `f` on this pool's threads: on one of them, so that the kernels' parallel loops
    /// inside it start and join among the pool's threads instead of each waking the calling
    /// thread at its end (about 25 us apiece here). On this project's 2-core VM that made
    /// forwards on the global pool 1-6% faster (PERFORMANCE.md entry 19).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(p) => p.install(f),
            // in place when the caller is a pool thread already
            None => rayon::scope(|_| f()),
        }
    }
}

impl Placement {
    /// On `gpu`, with the device's automatic kernel choice.
    pub fn gpu(gpu: Arc<Gpu>) -> Placement {
        Placement {
            gpu: Some(gpu),
            host: HostKernels::Fast,
            policy: KernelPolicy::default(),
            pool: HostPool::default(),
        }
    }

    /// On the host kernels.
    pub fn host(host: HostKernels) -> Placement {
        Placement { gpu: None, host, policy: KernelPolicy::default(), pool: HostPool::default() }
    }

    /// Uploads `weights` (or keeps them on the host) and returns the stack, ready to run.
    pub fn load_stack(&self, weights: StackWeights, cfg: BlockConfig) -> Result<Stack> {
        cfg.validate()?;
        check_weights(&weights, &cfg)?;
        match &self.gpu {
            Some(g) => Ok(Stack::Gpu(GpuStack::with_policy(g.clone(), &weights, cfg, self.policy.clone())?)),
            // the f16 mode computes with f16-rounded matmul weights on every backend
            None => {
                let weights = if cfg.precision == Precision::F16 { weights.rounded_to_f16() } else { weights };
                // the CPU backend's weights packed once, here, for its micro-kernel
                let packs = match self.host {
                    HostKernels::Fast => HostPacks::new(&weights),
                    HostKernels::Reference => HostPacks::default(),
                };
                Ok(Stack::Cpu { weights, packs, cfg, kernels: self.host, pool: self.pool.clone() })
            }
        }
    }

    /// The adapter, or the host path, for reports.
    pub fn describe(&self) -> String {
        match &self.gpu {
            Some(g) => g.adapter().label(),
            None => cpu_label(self.host, self.pool.threads()),
        }
    }
}

/// A stack ready to run on the backend that was chosen.
// one per loaded model, never in a hot collection: the GPU variant's size costs nothing
#[allow(clippy::large_enum_variant)]
pub enum Stack {
    /// On a wgpu device.
    Gpu(GpuStack),
    /// On the host: the CPU backend or the reference kernels.
    Cpu {
        /// The weights, on the host.
        weights: StackWeights,
        /// The CPU backend's linear weights, packed at load (empty for the reference).
        packs: HostPacks,
        /// The block configuration.
        cfg: BlockConfig,
        /// Which host kernels.
        kernels: HostKernels,
        /// The threads they run on.
        pool: HostPool,
    },
}

impl Stack {
    /// The GPU stack, for recording forwards into an app's own encoder
    /// ([`GpuStack::record_forward`]); `None` on the CPU path.
    pub fn gpu(&self) -> Option<&GpuStack> {
        match self {
            Stack::Gpu(s) => Some(s),
            Stack::Cpu { .. } => None,
        }
    }

    /// The block configuration.
    pub fn config(&self) -> &BlockConfig {
        match self {
            Stack::Gpu(s) => s.config(),
            Stack::Cpu { cfg, .. } => cfg,
        }
    }

    /// Number of blocks.
    pub fn layers(&self) -> usize {
        match self {
            Stack::Gpu(s) => s.layers(),
            Stack::Cpu { weights, .. } => weights.layers(),
        }
    }

    /// Which path runs, for reports: the adapter, or "CPU reference path".
    pub fn describe(&self) -> String {
        match self {
            Stack::Gpu(s) => {
                let a = s.gpu().adapter();
                let kind = if a.is_software() { "software adapter, no GPU" } else { "GPU" };
                format!("{} [{kind}]", a.label())
            }
            Stack::Cpu { kernels, pool, .. } => cpu_label(*kernels, pool.threads()),
        }
    }

    /// Runs the model on `x` (T, in) in token-row order; returns (T, out). For a plain stack
    /// in = out = E; edges ([`StackWeights::before`], [`StackWeights::after`]) change them.
    pub fn forward(&self, x: &[f32], seq: usize, batch: usize, key_pad: Option<&[u32]>) -> Result<Vec<f32>> {
        match self {
            Stack::Gpu(s) => s.forward(x, seq, batch, key_pad),
            Stack::Cpu { weights, packs, cfg, kernels, pool } => {
                pool.run(|| forward_host(weights, packs, cfg, *kernels, x, seq, batch, key_pad))
            }
        }
    }

    /// [`Stack::forward`] without blocking, for the browser ([`GpuStack::forward_async`]); the
    /// host path runs as it is.
    pub async fn forward_async(
        &self,
        x: &[f32],
        seq: usize,
        batch: usize,
        key_pad: Option<&[u32]>,
    ) -> Result<Vec<f32>> {
        match self {
            Stack::Gpu(s) => s.forward_async(x, seq, batch, key_pad).await,
            Stack::Cpu { weights, packs, cfg, kernels, pool } => {
                pool.run(|| forward_host(weights, packs, cfg, *kernels, x, seq, batch, key_pad))
            }
        }
    }
}

impl Stack {
    /// Whether [`Stack::forward_packed`] runs here: on the CPU backend, for a model without a
    /// position-table edge. Elsewhere a batch runs padded.
    pub fn runs_packed(&self) -> bool {
        match self {
            Stack::Cpu { weights, kernels: HostKernels::Fast, .. } => {
                weights.edges().iter().all(|e| e.max_seq().is_none())
            }
            _ => false,
        }
    }

    /// Runs sequences packed back to back without padding: `x` holds their `Σ lens` token
    /// rows, sequence i the `lens[i]` rows after the ones before it, and each attends only to
    /// itself. Returns their output rows, packed the same way: the real rows of the padded
    /// [`Stack::forward`] with a key-padding mask, without computing the padding. Only where
    /// [`Stack::runs_packed`].
    pub fn forward_packed(&self, x: &[f32], lens: &[usize]) -> Result<Vec<f32>> {
        let bad = |what: String| Err(Error::InvalidArgument { op: "forward_packed", what });
        if !self.runs_packed() {
            return bad(format!("{} runs batches padded, not packed", self.describe()));
        }
        let Stack::Cpu { weights, packs, cfg, kernels, pool } = self else {
            unreachable!("runs_packed is the CPU backend")
        };
        let cols = InputSpec::new(&weights.layout(cfg), &weights.edges()).cols;
        let t: usize = lens.iter().sum();
        if lens.is_empty() || lens.contains(&0) {
            return bad(format!("every sequence needs at least one token, got lengths {lens:?}"));
        }
        if x.len() != t * cols {
            return bad(format!("input has {} values, expected {t} tokens x {cols} columns = {}", x.len(), t * cols));
        }
        Ok(pool.run(|| host::forward_packed(*kernels, weights, Some(packs), cfg, x, lens)))
    }
}

/// The host path of [`Stack::forward`]: the input checked against the model's steps, then the
/// interpreter.
#[allow(clippy::too_many_arguments)]
fn forward_host(
    weights: &StackWeights,
    packs: &HostPacks,
    cfg: &BlockConfig,
    kernels: HostKernels,
    x: &[f32],
    seq: usize,
    batch: usize,
    key_pad: Option<&[u32]>,
) -> Result<Vec<f32>> {
    check_input(InputSpec::new(&weights.layout(cfg), &weights.edges()), x, seq, batch, key_pad)?;
    Ok(host::forward_with(kernels, weights, Some(packs), cfg, x, seq, batch, key_pad))
}

/// How reports name a host path (the CPU backend, with its thread count, or the reference).
pub fn cpu_label(kernels: HostKernels, threads: usize) -> String {
    match kernels {
        HostKernels::Fast => {
            // the instruction set the packed kernels run on; without one, sgemm and portable loops
            let isa = crate::cpu::packed::Isa::detect().map_or("portable", |isa| isa.name());
            format!("CPU backend ({isa} kernels, {threads} thread{})", if threads == 1 { "" } else { "s" })
        }
        HostKernels::Reference => "CPU reference path (plain loops)".into(),
    }
}

/// Checks that `weights` match the sizes of `cfg`.
pub(crate) fn check_weights(weights: &StackWeights, cfg: &BlockConfig) -> Result<()> {
    if weights.embed != cfg.embed || weights.ff != cfg.ff {
        return Err(Error::InvalidArgument {
            op: "stack",
            what: format!(
                "config has embed {} ff {}, weights have embed {} ff {}",
                cfg.embed, cfg.ff, weights.embed, weights.ff
            ),
        });
    }
    steps::check_edges(&weights.before, &weights.after, cfg.embed)
        .map_err(|what| Error::InvalidArgument { op: "stack", what })?;
    let names = weights::block_tensor_names(cfg.embed, cfg.ff);
    for (i, b) in weights.blocks.iter().enumerate() {
        for ((name, shape), data) in names.iter().zip(b.tensors()) {
            if data.len() != shape.iter().product::<usize>() {
                return Err(Error::InvalidArgument {
                    op: "stack",
                    what: format!("block {i} {name}: {} values, expected shape {shape:?}", data.len()),
                });
            }
        }
    }
    Ok(())
}

/// What a model's input must be: its columns (E for a plain stack) and, when a step has a
/// row per position (the ViT's position embedding), the longest sequence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InputSpec {
    pub cols: usize,
    pub max_seq: Option<usize>,
}

impl InputSpec {
    pub fn new(layout: &steps::Layout, edges: &[&steps::Edge]) -> InputSpec {
        InputSpec { cols: layout.in_cols(), max_seq: edges.iter().filter_map(|e| e.max_seq()).min() }
    }
}

/// Checks an input (T, cols) and its key-padding mask (batch, seq).
pub(crate) fn check_input(spec: InputSpec, x: &[f32], seq: usize, batch: usize, key_pad: Option<&[u32]>) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument { op: "forward", what });
    if seq == 0 || batch == 0 {
        return bad(format!("seq and batch must be at least 1, got seq {seq} batch {batch}"));
    }
    if let Some(max) = spec.max_seq.filter(|&m| seq > m) {
        return bad(format!("seq {seq} is longer than the model's {max} positions"));
    }
    let cols = spec.cols;
    if x.len() != seq * batch * cols {
        return bad(format!(
            "input has {} values, expected seq {seq} x batch {batch} x {cols} columns = {}",
            x.len(),
            seq * batch * cols
        ));
    }
    if let Some(m) = key_pad {
        if m.len() != batch * seq {
            return bad(format!("key padding mask has {} values, expected batch {batch} x seq {seq}", m.len()));
        }
    }
    Ok(())
}

/// How an input tensor's shape maps to (seq, batch, embed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    /// Sequence length.
    pub seq: usize,
    /// Batch elements (1 for unbatched input).
    pub batch: usize,
    /// Embed dim E.
    pub embed: usize,
}

impl InputShape {
    /// (seq, batch, E), or (batch, seq, E) when `batch_first`, or unbatched (seq, E).
    pub fn from_shape(shape: &[usize], batch_first: bool) -> Result<InputShape> {
        match *shape {
            [s, e] => Ok(InputShape { seq: s, batch: 1, embed: e }),
            [a, b, e] if batch_first => Ok(InputShape { seq: b, batch: a, embed: e }),
            [s, b, e] => Ok(InputShape { seq: s, batch: b, embed: e }),
            _ => Err(Error::InvalidArgument {
                op: "input",
                what: format!(
                    "expected shape (seq, batch, embed){} or (seq, embed), found {shape:?}",
                    if batch_first { " with batch_first: (batch, seq, embed)" } else { "" }
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_label_names_the_instruction_set_and_the_threads() {
        let isa = crate::cpu::packed::Isa::detect().map_or("portable", |isa| isa.name());
        assert_eq!(cpu_label(HostKernels::Fast, 1), format!("CPU backend ({isa} kernels, 1 thread)"));
        assert_eq!(cpu_label(HostKernels::Fast, 3), format!("CPU backend ({isa} kernels, 3 threads)"));
        assert_eq!(cpu_label(HostKernels::Reference, 2), "CPU reference path (plain loops)");
    }
}
