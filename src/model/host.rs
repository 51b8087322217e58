//! The whole stack on the host: on the fast kernels of [`crate::cpu`] (the CPU
//! backend, for machines without a GPU) or on the plain-loop reference kernels
//! (the oracle for every other path). Both walk the block's one step list.

use super::block::{Act, Step};
use super::config::BlockConfig;
use super::steps::{Edge, ModelStep};
use super::weights::{block_tensor_names, is_matmul_weight, BlockWeights, StackWeights};
use crate::cpu::packed::PackedLinear;
use crate::ops::{Activation, AttentionConfig, MatmulShape};
use crate::{cpu, reference};

/// Which host kernels run a stack on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKernels {
    /// [`crate::cpu`]: packed AVX-512 / AVX2 kernels (sgemm without them), in parallel.
    Fast,
    /// [`crate::reference`]: plain loops, f64 sums; the definition of correctness.
    Reference,
}

type MatmulFn = fn(&mut [f32], &[f32], &[f32], Option<&[f32]>, Activation, MatmulShape);
type AttentionFn = fn(&mut [f32], &[f32], Option<&[u32]>, &AttentionConfig);
type LayernormFn = fn(&mut [f32], &[f32], Option<&[f32]>, &[f32], &[f32], usize, usize, f32);
type AddFn = fn(&mut [f32], &[f32], &[f32]);

/// (T, n) = act((T, k) · (n, k)ᵀ + bias): on the packed micro-kernel when the weight was packed
/// at load, else on the set's `matmul`.
#[allow(clippy::too_many_arguments)]
fn linear(
    matmul: MatmulFn,
    out: &mut [f32],
    x: &[f32],
    (w, packed): (&[f32], Option<&PackedLinear>),
    bias: &[f32],
    act: Activation,
    t: usize,
    (n, k): (usize, usize),
) {
    match packed {
        Some(p) => cpu::packed::linear(out, x, p, Some(bias), act, t),
        None => matmul(out, x, w, Some(bias), act, MatmulShape::linear(t, n, k)),
    }
}

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

/// The CPU backend's linear weights packed once, at load, for its own micro-kernel
/// ([`cpu::packed`]): each block's matmul weights and each linear edge's. Empty where the CPU
/// has no packed kernel (no AVX2 + FMA, wasm32): the forward then runs every product through
/// sgemm, which packs the weights itself at every call. It also keeps the activation buffers
/// of its last forward for the next ([`Spare`]).
#[derive(Clone, Debug, Default)]
pub struct HostPacks {
    /// Per block, per tensor in [`block_tensor_names`] order: the matmul weights' packings.
    blocks: Vec<Vec<Option<PackedLinear>>>,
    /// Per edge in [`StackWeights::edges`] order: the linear edges' packings.
    edges: Vec<Option<PackedLinear>>,
    /// The last forward's buffers.
    spare: Spare,
}

/// Most bytes of activation buffers [`Spare`] keeps between forwards: MiniLM's at batch 32 of
/// 128 tokens (82 MB) fit. Larger forwards allocate theirs each time, and give them back.
const SPARE_MAX_BYTES: usize = 128 << 20;

/// The activation buffers a forward on the CPU backend leaves for the next on the same packs
/// (one set: a forward that finds it taken allocates its own), so that a forward allocates
/// only the output it returns. Fresh buffers cost a page fault per 4 KB: on this project's
/// 2-core VM the bench's one-block case took 8-9 ms with them and 5.6-6.4 ms without
/// (PERFORMANCE.md entry 19). Each step writes all of its output before any step reads it, so
/// what a buffer held before is never read (tested against fresh buffers).
#[derive(Default)]
struct Spare(std::sync::Mutex<Vec<Vec<f32>>>);

impl Spare {
    fn take(&self) -> Vec<Vec<f32>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn keep(&self, bufs: Vec<Vec<f32>>) {
        if bufs.iter().map(|b| b.capacity() * 4).sum::<usize>() <= SPARE_MAX_BYTES {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = bufs;
        }
    }
}

impl Clone for Spare {
    /// A clone starts with no buffers of its own.
    fn clone(&self) -> Spare {
        Spare::default()
    }
}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |b| b.len());
        write!(f, "Spare({n} buffers)")
    }
}

impl HostPacks {
    /// Packs every linear weight of `weights` for this CPU (none where it has no packed kernel).
    pub fn new(weights: &StackWeights) -> HostPacks {
        if cpu::packed::Isa::detect().is_none() {
            return HostPacks::default();
        }
        let names = block_tensor_names(weights.embed, weights.ff);
        let blocks = weights
            .blocks
            .iter()
            .map(|b| {
                let tensors = b.tensors();
                (0..tensors.len())
                    .map(|i| match is_matmul_weight(i) {
                        true => PackedLinear::new(tensors[i], names[i].1[0], names[i].1[1]),
                        false => None,
                    })
                    .collect()
            })
            .collect();
        let edges = weights
            .edges()
            .iter()
            .map(|e| match e {
                Edge::Linear { weight, n, k, .. } => PackedLinear::new(weight, *n, *k),
                _ => None,
            })
            .collect();
        HostPacks { blocks, edges, spare: Spare::default() }
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
    forward_with(HostKernels::Reference, weights, None, cfg, x, seq, batch, key_pad)
}

/// [`forward`] on the chosen host kernels: the model's whole step list ([`super::steps::Layout`]), its
/// edges included; the input is (T, in) and the output (T, out). The buffers are allocated
/// once per call and reused by every block. On [`HostKernels::Fast`], `packs` (from
/// [`HostPacks::new`] of these `weights`) run the linear layers on the packed micro-kernel;
/// without them every product goes through sgemm. The reference ignores them.
#[allow(clippy::too_many_arguments)]
pub fn forward_with(
    kernels: HostKernels,
    weights: &StackWeights,
    packs: Option<&HostPacks>,
    cfg: &BlockConfig,
    x: &[f32],
    seq: usize,
    batch: usize,
    key_pad: Option<&[u32]>,
) -> Vec<f32> {
    run_rows(kernels, weights, packs, cfg, x, Rows::Grid { att: attention_config(cfg, seq, batch), key_pad })
}

/// [`forward_with`] of sequences packed back to back without padding (`lens` their lengths,
/// `x` their `Σ lens` rows): every token-wise step runs on real tokens only and attention on
/// each sequence's own length. The rows it returns are the padded forward's real rows. The
/// model must have no position-table edge (those index the padded grid).
pub fn forward_packed(
    kernels: HostKernels,
    weights: &StackWeights,
    packs: Option<&HostPacks>,
    cfg: &BlockConfig,
    x: &[f32],
    lens: &[usize],
) -> Vec<f32> {
    run_rows(kernels, weights, packs, cfg, x, Rows::Packed { att: attention_config(cfg, 0, 1), lens })
}

fn run_rows(
    kernels: HostKernels,
    weights: &StackWeights,
    packs: Option<&HostPacks>,
    cfg: &BlockConfig,
    x: &[f32],
    rows: Rows<'_>,
) -> Vec<f32> {
    let layout = weights.layout(cfg);
    let t = rows.tokens();
    // the CPU backend's forward reuses the last one's buffers (what they held is overwritten
    // before it is read); the reference allocates its own
    let spare = packs.filter(|_| kernels == HostKernels::Fast).map(|p| &p.spare);
    let mut bufs = spare.map(Spare::take).unwrap_or_default();
    bufs.resize_with(layout.cols.len(), Vec::new);
    for (b, c) in bufs.iter_mut().zip(&layout.cols) {
        match b.len() < t * c {
            true => b.resize(t * c, 0.0),
            false => b.truncate(t * c),
        }
    }
    bufs[layout.input].copy_from_slice(x);
    let edges = weights.edges();
    for step in &layout.steps {
        run_model_step(kernels, step, weights, packs, &edges, cfg, &rows, &mut bufs);
    }
    let out = std::mem::take(&mut bufs[layout.output]);
    if let Some(spare) = spare {
        spare.keep(bufs);
    }
    out
}

/// How a host forward's token rows are laid out.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rows<'a> {
    /// `att`'s (seq, batch) grid, padded positions hidden by the key-padding mask.
    Grid { att: AttentionConfig, key_pad: Option<&'a [u32]> },
    /// Sequences back to back, no padding, of these lengths (`att` gives heads and masks).
    Packed { att: AttentionConfig, lens: &'a [usize] },
}

impl Rows<'_> {
    /// Token rows.
    pub(crate) fn tokens(&self) -> usize {
        match self {
            Rows::Grid { att, .. } => att.tokens(),
            Rows::Packed { lens, .. } => lens.iter().sum(),
        }
    }
}

/// Runs one step of the model's list on the host (`packs` only on the CPU backend).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_model_step(
    kernels: HostKernels,
    step: &ModelStep,
    weights: &StackWeights,
    packs: Option<&HostPacks>,
    edges: &[&Edge],
    cfg: &BlockConfig,
    rows: &Rows<'_>,
    bufs: &mut [Vec<f32>],
) {
    // the packed micro-kernel is the CPU backend's: the reference runs its own loops
    let packs = packs.filter(|_| kernels == HostKernels::Fast);
    match *step {
        ModelStep::Block { block, step } => {
            let packed = packs.and_then(|p| p.blocks.get(block)).map(|b| &b[..]).unwrap_or(&[]);
            run_step(kernels, &step, &weights.blocks[block], packed, cfg, rows, bufs)
        }
        ModelStep::Edge { edge, x, out } => {
            let mut o = std::mem::take(&mut bufs[out]);
            let packed = packs.and_then(|p| p.edges.get(edge)).and_then(Option::as_ref);
            run_edge(kernels, edges[edge], packed, cfg, rows, &bufs[x], &mut o);
            bufs[out] = o;
        }
    }
}

/// One edge step on the host: `out` from `x`, both (T, cols); `packed`, the edge's packed
/// weight if it is a linear one on the CPU backend.
pub(crate) fn run_edge(
    kernels: HostKernels,
    edge: &Edge,
    packed: Option<&PackedLinear>,
    cfg: &BlockConfig,
    rows: &Rows<'_>,
    x: &[f32],
    out: &mut [f32],
) {
    let (matmul, _, layernorm, residual_add) = kernels.table();
    let t = rows.tokens();
    match edge {
        Edge::Layernorm { gamma, beta, .. } => layernorm(out, x, None, gamma, beta, t, gamma.len(), cfg.eps),
        // (T, n) = (T, k) · (n, k)ᵀ
        Edge::Linear { weight, bias, n, k, .. } => {
            linear(matmul, out, x, (weight, packed), bias, Activation::None, t, (*n, *k))
        }
        Edge::AddPositions { table, width, .. } => match rows {
            Rows::Grid { att, .. } => residual_add(out, x, &Edge::expand_positions(table, *width, att)),
            Rows::Packed { .. } => panic!("forward_packed: a position-table edge needs the padded grid"),
        },
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
/// `packed` holds the block's packed matmul weights by tensor index (empty: none packed).
pub(crate) fn run_step(
    kernels: HostKernels,
    step: &Step,
    block: &BlockWeights,
    packed: &[Option<PackedLinear>],
    cfg: &BlockConfig,
    rows: &Rows<'_>,
    bufs: &mut [Vec<f32>],
) {
    let (matmul, attention, layernorm, residual_add) = kernels.table();
    let p = block.tensors();
    let t = rows.tokens();
    let out_act = step.out();
    // steps never read the buffer they write
    let mut out = std::mem::take(&mut bufs[out_act as usize]);
    let b = |a: Act| &bufs[a as usize][..];
    match *step {
        Step::Matmul { x, w, b: bias, act, .. } => {
            let (n, k) = (p[bias as usize].len(), x.cols(cfg));
            // (T, N) = (T, K) · (N, K)ᵀ
            let pw = packed.get(w as usize).and_then(Option::as_ref);
            linear(matmul, &mut out, b(x), (p[w as usize], pw), p[bias as usize], act, t, (n, k))
        }
        Step::Attention { qkv, .. } => match *rows {
            Rows::Grid { att, key_pad } => attention(&mut out, b(qkv), key_pad, &att),
            Rows::Packed { att, lens } => packed_attention(kernels, &mut out, b(qkv), lens, &att),
        },
        Step::Layernorm { x, residual, gamma, beta, .. } => {
            layernorm(&mut out, b(x), residual.map(b), p[gamma as usize], p[beta as usize], t, cfg.embed, cfg.eps)
        }
        Step::ResidualAdd { a, b: bb, .. } => residual_add(&mut out, b(a), b(bb)),
    }
    bufs[out_act as usize] = out;
}

/// Attention of packed sequences: the CPU backend's variable-length kernel, or each sequence
/// alone through the reference.
fn packed_attention(kernels: HostKernels, out: &mut [f32], qkv: &[f32], lens: &[usize], att: &AttentionConfig) {
    match kernels {
        HostKernels::Fast => cpu::attention::attention_packed(out, qkv, lens, att),
        HostKernels::Reference => {
            let (e, mut start) = (att.embed(), 0);
            for &l in lens {
                let one = AttentionConfig { batch: 1, seq: l, batch_first: true, ..*att };
                let rows = start..start + l;
                reference::attention::attention(
                    &mut out[rows.start * e..rows.end * e],
                    &qkv[rows.start * 3 * e..rows.end * 3 * e],
                    None,
                    &one,
                );
                start += l;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{assert_close, Tol};
    use crate::rng::Rng;

    /// Sums in a different order (packed rows, other GEMM blocking) over two blocks.
    const PACKED_TOL: Tol = Tol { atol: 2e-5, rtol: 1e-4 };

    /// Forwards on packs whose spare buffers larger and smaller forwards left behind (every
    /// buffer holding another shape's values) give the same bits as forwards on fresh packs,
    /// padded and packed rows alike: no step reads a value it did not write first.
    #[test]
    fn a_forward_on_reused_buffers_is_the_forward_on_fresh_ones() {
        let mut rng = Rng::new(44);
        let cfg = BlockConfig { batch_first: true, ..BlockConfig::new(24, 3, 40) };
        let mut weights = StackWeights::random(43, 2, 24, 40);
        weights.before = vec![Edge::layernorm("embeddings.LayerNorm", rng.vec(24, 0.8, 1.2), rng.vec(24, -0.2, 0.2))];
        let reused = HostPacks::new(&weights);
        for (seq, batch, padded) in [(19, 3, true), (7, 2, false), (23, 4, true), (1, 1, false), (11, 2, true)] {
            let x = rng.vec(seq * batch * 24, -1.0, 1.0);
            // sequence b hides its last b keys (every sequence keeps one)
            let pad: Vec<u32> = (0..seq * batch).map(|i| (padded && i % seq + i / seq >= seq) as u32).collect();
            let mask = padded.then_some(&pad[..]);
            let fresh = HostPacks::new(&weights);
            let got = forward_with(HostKernels::Fast, &weights, Some(&reused), &cfg, &x, seq, batch, mask);
            let want = forward_with(HostKernels::Fast, &weights, Some(&fresh), &cfg, &x, seq, batch, mask);
            assert!(got.iter().all(|v| v.is_finite()), "s{seq} b{batch}");
            let first_gap = |a: &[f32], b: &[f32]| a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits());
            assert!(
                got.len() == want.len() && first_gap(&got, &want).is_none(),
                "padded s{seq} b{batch}: {:?}",
                first_gap(&got, &want)
            );
            let lens: Vec<usize> = (0..batch).map(|b| seq - b.min(seq - 1)).collect();
            let rows = &x[..lens.iter().sum::<usize>() * 24];
            let got = forward_packed(HostKernels::Fast, &weights, Some(&reused), &cfg, rows, &lens);
            let want = forward_packed(HostKernels::Fast, &weights, Some(&HostPacks::new(&weights)), &cfg, rows, &lens);
            assert!(
                got.len() == want.len() && first_gap(&got, &want).is_none(),
                "packed {lens:?}: {:?}",
                first_gap(&got, &want)
            );
        }
    }

    /// The packed forward of sequences of different lengths (GELU, pre-norm and causal variants,
    /// an edge before the blocks) gives the real rows of the padded, masked forward on the
    /// same kernels, and the CPU backend's packed rows match the reference's padded ones.
    #[test]
    fn packed_forward_is_the_padded_forward_without_its_padding() {
        let mut rng = Rng::new(41);
        for (pre_norm, causal, act) in
            [(false, false, Activation::Gelu), (true, false, Activation::Relu), (false, true, Activation::GeluTanh)]
        {
            let cfg =
                BlockConfig { pre_norm, causal, activation: act, batch_first: true, ..BlockConfig::new(24, 3, 40) };
            let mut weights = StackWeights::random(42, 2, 24, 40);
            weights.before =
                vec![Edge::layernorm("embeddings.LayerNorm", rng.vec(24, 0.8, 1.2), rng.vec(24, -0.2, 0.2))];
            let lens = [7usize, 1, 19, 12];
            let seq = *lens.iter().max().unwrap();
            let packed_x = rng.vec(lens.iter().sum::<usize>() * 24, -1.0, 1.0);
            // the same rows on the (batch, seq) grid, padded rows poisoned with large values
            let (mut grid, mut pad) = (vec![1e3f32; lens.len() * seq * 24], vec![1u32; lens.len() * seq]);
            let mut start = 0;
            for (b, &l) in lens.iter().enumerate() {
                grid[b * seq * 24..(b * seq + l) * 24].copy_from_slice(&packed_x[start * 24..(start + l) * 24]);
                pad[b * seq..b * seq + l].fill(0);
                start += l;
            }
            let packs = HostPacks::new(&weights);
            for kernels in [HostKernels::Fast, HostKernels::Reference] {
                let got = forward_packed(kernels, &weights, Some(&packs), &cfg, &packed_x, &lens);
                let padded =
                    forward_with(HostKernels::Reference, &weights, None, &cfg, &grid, seq, lens.len(), Some(&pad));
                let mut start = 0;
                for (b, &l) in lens.iter().enumerate() {
                    assert_close(
                        &format!("{kernels:?} pre_norm={pre_norm} causal={causal} sequence {b} of {l}"),
                        &got[start * 24..(start + l) * 24],
                        &padded[b * seq * 24..(b * seq + l) * 24],
                        PACKED_TOL,
                    );
                    start += l;
                }
            }
        }
    }
}
