//! The whole stack on the host: on the fast kernels of [`crate::cpu`] (the CPU
//! backend, for machines without a GPU) or on the plain-loop reference kernels
//! (the oracle for every other path). Both walk the block's one step list.

use super::block::{Act, Step};
use super::config::BlockConfig;
use super::steps::{Edge, ModelStep};
use super::weights::{BlockWeights, StackWeights};
use crate::ops::{Activation, AttentionConfig, MatmulShape};
use crate::{cpu, reference};

/// Which host kernels run a stack on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKernels {
    /// [`crate::cpu`]: threaded sgemm, rows and heads in parallel.
    Fast,
    /// [`crate::reference`]: plain loops, f64 sums; the definition of correctness.
    Reference,
}

type MatmulFn = fn(&mut [f32], &[f32], &[f32], Option<&[f32]>, Activation, MatmulShape);
type AttentionFn = fn(&mut [f32], &[f32], Option<&[u32]>, &AttentionConfig);
type LayernormFn = fn(&mut [f32], &[f32], Option<&[f32]>, &[f32], &[f32], usize, usize, f32);
type AddFn = fn(&mut [f32], &[f32], &[f32]);

impl HostKernels {
    /// The four kernels of this set; both sets share every signature.
    fn table(self) -> (MatmulFn, AttentionFn, LayernormFn, AddFn) {
        match self {
            HostKernels::Fast => (
                cpu::matmul::matmul,
                cpu::attention::attention,
                cpu::layernorm::layernorm,
                cpu::residual_add::residual_add,
            ),
            HostKernels::Reference => (
                reference::matmul::matmul,
                reference::attention::attention,
                reference::layernorm::layernorm,
                reference::residual_add::residual_add,
            ),
        }
    }
}

/// Runs every block of `weights` on `x` (T, E) in token-row order (see
/// [`crate::kernels::attention`]) on the reference kernels and returns the output (T, E).
pub fn forward(
    weights: &StackWeights,
    cfg: &BlockConfig,
    x: &[f32],
    seq: usize,
    batch: usize,
    key_pad: Option<&[u32]>,
) -> Vec<f32> {
    forward_with(HostKernels::Reference, weights, cfg, x, seq, batch, key_pad)
}

/// [`forward`] on the chosen host kernels: the model's whole step list ([`super::steps::Layout`]), its
/// edges included; the input is (T, in) and the output (T, out). The buffers are allocated
/// once per call and reused by every block.
pub fn forward_with(
    kernels: HostKernels,
    weights: &StackWeights,
    cfg: &BlockConfig,
    x: &[f32],
    seq: usize,
    batch: usize,
    key_pad: Option<&[u32]>,
) -> Vec<f32> {
    let layout = weights.layout(cfg);
    let t = seq * batch;
    let mut bufs: Vec<Vec<f32>> = layout.cols.iter().map(|c| vec![0.0; t * c]).collect();
    bufs[layout.input].copy_from_slice(x);
    let att = attention_config(cfg, seq, batch);
    let edges = weights.edges();
    for step in &layout.steps {
        run_model_step(kernels, step, weights, &edges, cfg, &att, key_pad, &mut bufs);
    }
    std::mem::take(&mut bufs[layout.output])
}

/// Runs one step of the model's list on the host.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_model_step(
    kernels: HostKernels,
    step: &ModelStep,
    weights: &StackWeights,
    edges: &[&Edge],
    cfg: &BlockConfig,
    att: &AttentionConfig,
    key_pad: Option<&[u32]>,
    bufs: &mut [Vec<f32>],
) {
    match *step {
        ModelStep::Block { block, step } => run_step(kernels, &step, &weights.blocks[block], cfg, att, key_pad, bufs),
        ModelStep::Edge { edge, x, out } => {
            let mut o = std::mem::take(&mut bufs[out]);
            run_edge(kernels, edges[edge], cfg, att, &bufs[x], &mut o);
            bufs[out] = o;
        }
    }
}

/// One edge step on the host: `out` from `x`, both (T, cols).
pub(crate) fn run_edge(
    kernels: HostKernels,
    edge: &Edge,
    cfg: &BlockConfig,
    att: &AttentionConfig,
    x: &[f32],
    out: &mut [f32],
) {
    let (matmul, _, layernorm, residual_add) = kernels.table();
    let t = att.tokens();
    match edge {
        Edge::Layernorm { gamma, beta, .. } => layernorm(out, x, None, gamma, beta, t, gamma.len(), cfg.eps),
        // (T, n) = (T, k) · (n, k)ᵀ
        Edge::Linear { weight, bias, n, k, .. } => {
            matmul(out, x, weight, Some(bias), Activation::None, MatmulShape::linear(t, *n, *k))
        }
        Edge::AddPositions { table, width, .. } => residual_add(out, x, &Edge::expand_positions(table, *width, att)),
    }
}

/// The attention shape of a (seq, batch) forward of `cfg`.
pub(crate) fn attention_config(cfg: &BlockConfig, seq: usize, batch: usize) -> AttentionConfig {
    AttentionConfig {
        batch,
        seq,
        heads: cfg.heads,
        head_dim: cfg.head_dim(),
        batch_first: cfg.batch_first,
        causal: cfg.causal,
    }
}

/// Runs one step of a block on the host: reads its inputs from `bufs`, writes its output there.
pub(crate) fn run_step(
    kernels: HostKernels,
    step: &Step,
    block: &BlockWeights,
    cfg: &BlockConfig,
    att: &AttentionConfig,
    key_pad: Option<&[u32]>,
    bufs: &mut [Vec<f32>],
) {
    let (matmul, attention, layernorm, residual_add) = kernels.table();
    let p = block.tensors();
    let t = att.tokens();
    let out_act = step.out();
    // steps never read the buffer they write
    let mut out = std::mem::take(&mut bufs[out_act as usize]);
    let b = |a: Act| &bufs[a as usize][..];
    match *step {
        Step::Matmul { x, w, b: bias, act, .. } => {
            let (n, k) = (p[bias as usize].len(), x.cols(cfg));
            // (T, N) = (T, K) · (N, K)ᵀ
            matmul(&mut out, b(x), p[w as usize], Some(&p[bias as usize][..]), act, MatmulShape::linear(t, n, k))
        }
        Step::Attention { qkv, .. } => attention(&mut out, b(qkv), key_pad, att),
        Step::Layernorm { x, residual, gamma, beta, .. } => {
            layernorm(&mut out, b(x), residual.map(b), p[gamma as usize], p[beta as usize], t, cfg.embed, cfg.eps)
        }
        Step::ResidualAdd { a, b: bb, .. } => residual_add(&mut out, b(a), b(bb)),
    }
    bufs[out_act as usize] = out;
}
