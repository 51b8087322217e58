//! Blocks and stacks: configuration, weights, the block's steps, and the two
//! ways to run them (GPU plan, CPU reference path).

pub mod block;
pub mod check;
pub mod config;
pub mod cpu;
pub mod fixture;
pub mod gpu;
pub mod io;
pub mod minilm;
pub mod vit;
pub mod weights;

pub use config::{BlockConfig, Precision};
pub use gpu::GpuStack;
pub use weights::{BlockWeights, StackWeights};

use crate::error::{Error, Result};

/// Where a stack runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A hardware GPU when one exists, else the CPU backend. Software adapters (lavapipe)
    /// only when asked for: `WGPU_ADAPTER_NAME`, or `RESFORMER_REQUIRE_GPU=1` (the tests).
    Auto,
    /// A wgpu adapter, a software one when no hardware GPU exists, or an error.
    Gpu,
    /// The CPU backend: the fast host kernels of [`crate::cpu`].
    Cpu,
    /// The plain-loop reference kernels: the oracle, slow.
    Reference,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "auto" => Ok(Backend::Auto),
            "gpu" => Ok(Backend::Gpu),
            "cpu" => Ok(Backend::Cpu),
            "reference" => Ok(Backend::Reference),
            other => Err(Error::InvalidArgument {
                op: "backend",
                what: format!("expected auto, gpu, cpu or reference, got {other:?}"),
            }),
        }
    }
}

/// A stack ready to run on the backend that was chosen.
pub enum Stack {
    /// On a wgpu device.
    Gpu(GpuStack),
    /// On the host: the CPU backend or the reference kernels.
    Cpu {
        /// The weights, on the host.
        weights: StackWeights,
        /// The block configuration.
        cfg: BlockConfig,
        /// Which host kernels.
        kernels: cpu::HostKernels,
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
            Stack::Cpu { kernels, .. } => cpu_label(*kernels),
        }
    }

    /// Runs the stack on `x` (T, E) in token-row order; returns (T, E).
    pub fn forward(&self, x: &[f32], seq: usize, batch: usize, key_pad: Option<&[u32]>) -> Result<Vec<f32>> {
        match self {
            Stack::Gpu(s) => s.forward(x, seq, batch, key_pad),
            Stack::Cpu { weights, cfg, kernels } => {
                check_input(cfg, x, seq, batch, key_pad)?;
                Ok(cpu::forward_with(*kernels, weights, cfg, x, seq, batch, key_pad))
            }
        }
    }
}

/// How reports name a host path (the CPU backend, with its thread count, or the reference).
pub fn cpu_label(kernels: cpu::HostKernels) -> String {
    match kernels {
        cpu::HostKernels::Fast => format!("CPU backend (threaded sgemm, {} threads)", rayon::current_num_threads()),
        cpu::HostKernels::Reference => "CPU reference path (plain loops)".into(),
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
    if let Some((g, b)) = &weights.input_norm {
        if g.len() != cfg.embed || b.len() != cfg.embed {
            return Err(Error::InvalidArgument {
                op: "stack",
                what: format!("input norm has {} and {} values, expected embed {}", g.len(), b.len(), cfg.embed),
            });
        }
    }
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

/// Checks an input (T, E) and its key-padding mask (batch, seq).
pub(crate) fn check_input(
    cfg: &BlockConfig,
    x: &[f32],
    seq: usize,
    batch: usize,
    key_pad: Option<&[u32]>,
) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument { op: "forward", what });
    if seq == 0 || batch == 0 {
        return bad(format!("seq and batch must be at least 1, got seq {seq} batch {batch}"));
    }
    if x.len() != seq * batch * cfg.embed {
        return bad(format!(
            "input has {} values, expected seq {seq} x batch {batch} x embed {} = {}",
            x.len(),
            cfg.embed,
            seq * batch * cfg.embed
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
