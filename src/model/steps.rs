//! The whole model as data: the steps before the blocks, every block's steps and the steps
//! after them, over numbered buffers. The GPU plan builder ([`super::gpu`]), the host
//! interpreter ([`super::host`]) and `--check-ops` ([`super::check`]) all walk this one list,
//! so a model is defined once and every path runs the same thing.
//!
//! ```text
//! BERT:                 input (embedding rows) -> embeddings.LayerNorm -> X -> blocks -> X
//! nn.TransformerEncoder:                    input = X -> blocks -> X -> norm -> output
//! ViT: tokens (T, P+1) -> patch_embed matmul -> + pos_embed -> X -> blocks -> X -> norm -> head -> logits (T, C)
//! ```
//!
//! What lies outside the list is the model's own host-side front and back: turning text into
//! embedding rows (a table lookup) or an image into patch rows, and pooling token rows or
//! picking class-token rows; each is one function that every path shares.

use super::block::{block_steps, Act, Step};
use super::config::BlockConfig;
use crate::ops::AttentionConfig;

/// A step outside the blocks, on the model's own parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Edge {
    /// x = LN(x) · γ + β over rows of `gamma.len()` values (the model's eps).
    Layernorm {
        /// The tensors' name stem in the model file, for reports (`norm`, `embeddings.LayerNorm`).
        name: String,
        /// γ.
        gamma: Vec<f32>,
        /// β.
        beta: Vec<f32>,
    },
    /// (T, n) = (T, k) · Wᵀ + b, W (n, k).
    Linear {
        /// Name stem (`head`, `patch_embed`).
        name: String,
        /// W, (n, k) row-major.
        weight: Vec<f32>,
        /// b, (n).
        bias: Vec<f32>,
        /// Output columns.
        n: usize,
        /// Input columns.
        k: usize,
    },
    /// x += table[s], where s is the row's sequence position; table (positions, width).
    AddPositions {
        /// Name stem (`pos_embed`).
        name: String,
        /// (positions, width) row-major.
        table: Vec<f32>,
        /// Columns.
        width: usize,
    },
}

impl Edge {
    /// A LayerNorm edge.
    pub fn layernorm(name: &str, gamma: Vec<f32>, beta: Vec<f32>) -> Edge {
        Edge::Layernorm { name: name.into(), gamma, beta }
    }

    /// Columns this step reads.
    pub fn in_cols(&self) -> usize {
        match self {
            Edge::Layernorm { gamma, .. } => gamma.len(),
            Edge::Linear { k, .. } => *k,
            Edge::AddPositions { width, .. } => *width,
        }
    }

    /// Columns this step writes.
    pub fn out_cols(&self) -> usize {
        match self {
            Edge::Linear { n, .. } => *n,
            other => other.in_cols(),
        }
    }

    /// Sequence positions it has a row for (`None`: any length).
    pub fn max_seq(&self) -> Option<usize> {
        match self {
            Edge::AddPositions { table, width, .. } => Some(table.len() / (*width).max(1)),
            _ => None,
        }
    }

    /// Its name stem.
    pub fn name(&self) -> &str {
        match self {
            Edge::Layernorm { name, .. } | Edge::Linear { name, .. } | Edge::AddPositions { name, .. } => name,
        }
    }

    /// What a report calls it, with its shapes for `t` rows.
    pub fn label(&self, t: usize) -> String {
        let name = self.name();
        match self {
            Edge::Layernorm { gamma, .. } => format!("{name} layernorm ({t}, {})", gamma.len()),
            Edge::Linear { n, k, .. } => format!("{name} matmul ({t}, {n}) = ({t}, {k}) x ({n}, {k})^T"),
            Edge::AddPositions { width, .. } => format!("{name} add ({t}, {width})"),
        }
    }

    /// Checks its tensors hold the values its shape says.
    pub fn check(&self) -> Result<(), String> {
        let name = self.name();
        match self {
            Edge::Layernorm { gamma, beta, .. } if gamma.len() != beta.len() || gamma.is_empty() => {
                Err(format!("{name}: γ has {} values and β {}", gamma.len(), beta.len()))
            }
            Edge::Linear { weight, bias, n, k, .. } if weight.len() != n * k || bias.len() != *n || n * k == 0 => {
                Err(format!(
                    "{name}: weight has {} values and bias {}, expected ({n}, {k}) and ({n})",
                    weight.len(),
                    bias.len()
                ))
            }
            Edge::AddPositions { table, width, .. } if *width == 0 || table.is_empty() || table.len() % width != 0 => {
                Err(format!("{name}: {} values are not rows of {width}", table.len()))
            }
            _ => Ok(()),
        }
    }

    /// The (T, width) table of a (seq, batch) forward in token-row order: row r gets
    /// table[s] for its position s.
    pub fn expand_positions(table: &[f32], width: usize, att: &AttentionConfig) -> Vec<f32> {
        let mut out = Vec::with_capacity(att.tokens() * width);
        for r in 0..att.tokens() {
            let s = if att.batch_first { r % att.seq } else { r / att.batch };
            out.extend_from_slice(&table[s * width..(s + 1) * width]);
        }
        out
    }
}

/// One step of the whole model, over buffer numbers: buffers `0..Act::ALL.len()` are the
/// blocks' activations ([`Act`] as usize), later ones belong to the edges.
#[derive(Clone, Copy, Debug)]
pub enum ModelStep {
    /// Edge `edge` of `before ++ after`, reading buffer `x` and writing buffer `out`.
    Edge {
        /// Index into `before ++ after` ([`super::weights::StackWeights::edges`]).
        edge: usize,
        /// Input buffer.
        x: usize,
        /// Output buffer.
        out: usize,
    },
    /// Step `step` of block `block`.
    Block {
        /// Block index.
        block: usize,
        /// The step, over the activations.
        step: Step,
    },
}

impl ModelStep {
    /// The buffers it reads.
    pub fn inputs(&self) -> Vec<usize> {
        match self {
            ModelStep::Edge { x, .. } => vec![*x],
            ModelStep::Block { step, .. } => step.inputs().into_iter().map(|a| a as usize).collect(),
        }
    }

    /// The buffer it writes.
    pub fn out(&self) -> usize {
        match self {
            ModelStep::Edge { out, .. } => *out,
            ModelStep::Block { step, .. } => step.out() as usize,
        }
    }
}

/// The model's step list and its buffers.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Columns of each buffer (rows are always the T token rows).
    pub cols: Vec<usize>,
    /// Every step, in order.
    pub steps: Vec<ModelStep>,
    /// Where the input goes.
    pub input: usize,
    /// Where the output is read.
    pub output: usize,
}

impl Layout {
    /// The steps of a model with edges `before` and `after` and `layers` blocks of `cfg`
    /// (the GPU stack keeps no host copy of its blocks, hence the parts apart).
    pub fn new(cfg: &BlockConfig, before: &[Edge], after: &[Edge], layers: usize) -> Layout {
        let mut cols: Vec<usize> = Act::ALL.iter().map(|a| a.cols(cfg)).collect();
        let mut steps = Vec::new();
        let fresh = |c: usize, cols: &mut Vec<usize>| {
            cols.push(c);
            cols.len() - 1
        };
        // before the blocks: a chain from the input into X (no step writes what it reads)
        let input = match before.first() {
            Some(first) => fresh(first.in_cols(), &mut cols),
            None => Act::X as usize,
        };
        let mut x = input;
        for (i, edge) in before.iter().enumerate() {
            let out = if i + 1 == before.len() { Act::X as usize } else { fresh(edge.out_cols(), &mut cols) };
            steps.push(ModelStep::Edge { edge: i, x, out });
            x = out;
        }
        let block = block_steps(cfg);
        for b in 0..layers {
            steps.extend(block.iter().map(|&step| ModelStep::Block { block: b, step }));
        }
        let mut x = Act::X as usize;
        for (i, edge) in after.iter().enumerate() {
            let out = fresh(edge.out_cols(), &mut cols);
            steps.push(ModelStep::Edge { edge: before.len() + i, x, out });
            x = out;
        }
        Layout { cols, steps, input, output: x }
    }

    /// Input columns.
    pub fn in_cols(&self) -> usize {
        self.cols[self.input]
    }

    /// Output columns.
    pub fn out_cols(&self) -> usize {
        self.cols[self.output]
    }

    /// The widest buffer's columns.
    pub fn widest(&self) -> usize {
        self.cols.iter().copied().max().unwrap_or(0)
    }
}

/// Checks that the edges chain: `before` from its input into E, `after` from E on.
pub(crate) fn check_edges(before: &[Edge], after: &[Edge], embed: usize) -> Result<(), String> {
    for e in before.iter().chain(after) {
        e.check()?;
    }
    let chain = |edges: &[Edge], start: Option<usize>, end: Option<usize>, side: &str| {
        let mut cols = start.or(edges.first().map(Edge::in_cols));
        for e in edges {
            if let Some(c) = cols {
                if e.in_cols() != c {
                    return Err(format!("{side} the blocks, {} reads {} columns but gets {c}", e.name(), e.in_cols()));
                }
            }
            cols = Some(e.out_cols());
        }
        match (cols, end) {
            (Some(c), Some(want)) if c != want && !edges.is_empty() => {
                Err(format!("{side} the blocks, the last step gives {c} columns, the blocks take embed {want}"))
            }
            _ => Ok(()),
        }
    };
    chain(before, None, Some(embed), "before")?;
    chain(after, Some(embed), None, "after")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_chains_edges_into_and_out_of_the_stream_without_writing_what_it_reads() {
        let cfg = BlockConfig::new(8, 2, 16);
        let lin = |name: &str, n: usize, k: usize| Edge::Linear {
            name: name.into(),
            weight: vec![0.0; n * k],
            bias: vec![0.0; n],
            n,
            k,
        };
        let pos = Edge::AddPositions { name: "pos".into(), table: vec![0.0; 5 * 8], width: 8 };
        let norm = Edge::layernorm("norm", vec![1.0; 8], vec![0.0; 8]);
        let before = [lin("patch", 8, 3), pos];
        let after = [norm, lin("head", 4, 8)];
        check_edges(&before, &after, 8).unwrap();
        let l = Layout::new(&cfg, &before, &after, 2);
        assert_eq!((l.in_cols(), l.out_cols()), (3, 4));
        assert_eq!(l.steps.len(), 2 + 2 * block_steps(&cfg).len() + 2);
        for s in &l.steps {
            assert!(!s.inputs().contains(&s.out()), "{s:?} reads what it writes");
        }
        // the stream between the edges is X
        assert!(matches!(l.steps[1], ModelStep::Edge { out, .. } if out == Act::X as usize));
        assert!(matches!(l.steps[l.steps.len() - 2], ModelStep::Edge { x, .. } if x == Act::X as usize));
        // no edges: in and out of X
        let plain = Layout::new(&cfg, &[], &[], 1);
        assert_eq!((plain.input, plain.output), (Act::X as usize, Act::X as usize));
        // a chain that does not meet E is refused, by name
        let err = check_edges(&[lin("patch", 6, 3)], &[], 8).unwrap_err();
        assert!(err.contains("embed 8"), "{err}");
        let err = check_edges(&[], &[lin("head", 4, 6)], 8).unwrap_err();
        assert!(err.contains("head reads 6"), "{err}");
    }
}
