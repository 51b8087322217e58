//! The vocabulary every backend shares: what a matmul's epilogue applies, the shape of a
//! matmul, the shape and masking of an attention call. The GPU kernels, the CPU backend and
//! the reference all take these; none of them owns them.

/// Activation fused into the matmul epilogue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    /// No activation.
    None,
    /// max(0, v).
    Relu,
    /// GELU in its exact erf form (PyTorch's default `nn.GELU()`).
    Gelu,
}

/// The shape of one matmul: out (batch, m, n) = x (batch, m, k) · wᵀ, w (n, k) shared by the
/// batch or, when `w_batched`, one (n, k) per batch element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    /// Batch elements.
    pub batch: usize,
    /// Rows of x and out.
    pub m: usize,
    /// Columns of out (rows of w).
    pub n: usize,
    /// Reduction depth.
    pub k: usize,
    /// w is (batch, n, k) instead of (n, k).
    pub w_batched: bool,
}

impl MatmulShape {
    /// One (m, n, k) product with a shared w: what every Linear layer is.
    pub fn linear(m: usize, n: usize, k: usize) -> MatmulShape {
        MatmulShape { batch: 1, m, n, k, w_batched: false }
    }
}

/// Shape and masking of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionConfig {
    /// Batch elements.
    pub batch: usize,
    /// Sequence length (queries = keys).
    pub seq: usize,
    /// Heads.
    pub heads: usize,
    /// Head dim D.
    pub head_dim: usize,
    /// Token rows are batch-major (`b * seq + s`) instead of PyTorch's default seq-major.
    pub batch_first: bool,
    /// Hide keys after the query (a query at s sees keys 0..=s).
    pub causal: bool,
}

impl AttentionConfig {
    /// E = heads · head_dim.
    pub fn embed(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Number of token rows, seq · batch.
    pub fn tokens(&self) -> usize {
        self.seq * self.batch
    }

    /// Row of (batch b, position s) in qkv and out.
    pub fn row(&self, b: usize, s: usize) -> usize {
        if self.batch_first {
            b * self.seq + s
        } else {
            s * self.batch + b
        }
    }

    /// 1/√head_dim, the scale of `nn.MultiheadAttention`.
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}
