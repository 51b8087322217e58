//! The benchmark cases: what each measures, its FLOP and bytes, and the size table.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::error::{Error, Result};

/// What `--sizes` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// Seconds on lavapipe.
    Small,
    /// Includes matmul 512³.
    Medium,
    /// For real GPUs: matmul 4096³, attention 4 x 16 x 2048 x 64, the d768 12-layer stack.
    Large,
}

impl std::str::FromStr for Sizes {
    type Err = Error;
    fn from_str(s: &str) -> Result<Sizes> {
        match s {
            "small" => Ok(Sizes::Small),
            "medium" => Ok(Sizes::Medium),
            "large" => Ok(Sizes::Large),
            o => {
                Err(Error::InvalidArgument { op: "sizes", what: format!("expected small, medium or large, got {o:?}") })
            }
        }
    }
}

/// The kernels `--kernel` can name.
pub const KERNELS: [&str; 6] = ["matmul", "attention", "layernorm", "residual_add", "block", "stack"];

/// One benchmark case (a row of benches/cases.json, tagged by `case`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "case", rename_all = "snake_case")]
pub enum Case {
    /// out (m, n) = x (m, k) · wᵀ + bias
    Matmul {
        /// Output rows.
        m: usize,
        /// Output columns.
        n: usize,
        /// Reduction depth.
        k: usize,
    },
    /// Fused attention over packed QKV.
    Attention {
        /// Batch elements.
        batch: usize,
        /// Heads.
        heads: usize,
        /// Sequence length.
        seq: usize,
        /// Head dim.
        head_dim: usize,
    },
    /// out = LN(x + residual), rows x cols
    Layernorm {
        /// Rows.
        rows: usize,
        /// Columns (the normalised dimension).
        cols: usize,
    },
    /// out = a + b.
    ResidualAdd {
        /// Elements.
        len: usize,
    },
    /// `layers` blocks (block: 1) of embed / heads / ff on seq x batch tokens
    Stack {
        /// Blocks (1 for `block`).
        layers: usize,
        /// E.
        embed: usize,
        /// H.
        heads: usize,
        /// F.
        ff: usize,
        /// Sequence length.
        seq: usize,
        /// Batch.
        batch: usize,
    },
}

impl Case {
    /// The kernel stem of the row.
    pub fn kernel(&self) -> &'static str {
        match self {
            Case::Matmul { .. } => "matmul",
            Case::Attention { .. } => "attention",
            Case::Layernorm { .. } => "layernorm",
            Case::ResidualAdd { .. } => "residual_add",
            Case::Stack { layers: 1, .. } => "block",
            Case::Stack { .. } => "stack",
        }
    }

    /// The shape as a string, as scripts/torch_baseline.py writes it.
    pub fn shape(&self) -> String {
        match *self {
            Case::Matmul { m, n, k } => format!("{m}x{n}x{k}"),
            Case::Attention { batch, heads, seq, head_dim } => format!("b{batch}h{heads}s{seq}d{head_dim}"),
            Case::Layernorm { rows, cols } => format!("{rows}x{cols}"),
            Case::ResidualAdd { len } => format!("{len}"),
            Case::Stack { layers, embed, heads, ff, seq, batch } => {
                format!("L{layers}e{embed}h{heads}f{ff}s{seq}b{batch}")
            }
        }
    }

    /// Floating-point operations (2 per multiply-add), for the compute-bound cases.
    pub fn flops(&self) -> Option<f64> {
        match *self {
            Case::Matmul { m, n, k } => Some(2.0 * (m * n * k) as f64),
            Case::Attention { batch, heads, seq, head_dim } => {
                Some(4.0 * (batch * heads * seq * seq * head_dim) as f64)
            }
            Case::Stack { layers, embed: e, heads: _, ff: f, seq, batch } => {
                let t = (seq * batch) as f64;
                let (e, f) = (e as f64, f as f64);
                let linear = 2.0 * t * (4.0 * e * e + 2.0 * e * f);
                let attention = 4.0 * batch as f64 * (seq * seq) as f64 * e;
                Some(layers as f64 * (linear + attention))
            }
            _ => None,
        }
    }

    /// Bytes that must cross memory at least once, for the memory-bound cases.
    pub fn bytes(&self) -> Option<f64> {
        match *self {
            // read x and residual, write out (gamma and beta are negligible)
            Case::Layernorm { rows, cols } => Some(12.0 * (rows * cols) as f64),
            Case::ResidualAdd { len } => Some(12.0 * len as f64),
            _ => None,
        }
    }

    /// Roughly how much CPU reference work the case is, in FLOP-equivalents.
    pub(crate) fn cpu_cost(&self) -> f64 {
        self.flops().or(self.bytes()).unwrap_or(0.0)
    }
}

/// The cases of `sizes` for `kernel` ("all" for every kernel), from benches/cases.json: the one
/// table the CLI bench, the criterion benches and scripts/torch_baseline.py all read.
pub fn cases(kernel: &str, sizes: Sizes) -> Vec<Case> {
    #[derive(Deserialize)]
    struct Table {
        small: Vec<Case>,
        medium: Vec<Case>,
        large: Vec<Case>,
    }
    static TABLE: OnceLock<Table> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        serde_json::from_str(include_str!("../../benches/cases.json")).expect("benches/cases.json parses (tested)")
    });
    let all = match sizes {
        Sizes::Small => &table.small,
        Sizes::Medium => &table.medium,
        Sizes::Large => &table.large,
    };
    all.iter().filter(|c| kernel == "all" || c.kernel() == kernel).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_table_parses_and_every_size_has_every_kernel() {
        for sizes in [Sizes::Small, Sizes::Medium, Sizes::Large] {
            let kernels: Vec<&str> = cases("all", sizes).iter().map(Case::kernel).collect();
            assert_eq!(kernels.len(), 7, "{sizes:?}");
            for k in KERNELS {
                assert!(kernels.contains(&k), "{sizes:?} has no {k} case");
            }
        }
        assert_eq!(cases("matmul", Sizes::Large)[1], Case::Matmul { m: 4096, n: 4096, k: 4096 });
    }
}
