//! The block's configuration: sizes from the weights, options from the user.

use crate::error::{Error, Result};
use crate::ops::Activation;

/// How one residual block is built. The default is the PyTorch module of the
/// spec: post-norm, ReLU, eps 1e-5, no causal mask, seq-first input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockConfig {
    /// E, the embed dim.
    pub embed: usize,
    /// H, attention heads; E must be a multiple of H.
    pub heads: usize,
    /// F, the feed-forward dim.
    pub ff: usize,
    /// x + attn(LN(x)) instead of LN(x + attn(x)).
    pub pre_norm: bool,
    /// FFN activation: ReLU (the spec) or GELU (erf).
    pub activation: Activation,
    /// LayerNorm eps.
    pub eps: f32,
    /// Hide keys after each query.
    pub causal: bool,
    /// Input is (batch, seq, E) instead of (seq, batch, E).
    pub batch_first: bool,
    /// Number format of the matmul weights (see [`Precision`]).
    pub precision: Precision,
}

/// The number format a stack computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 everywhere (the default).
    #[default]
    F32,
    /// The f16 mode: the matmul weights are stored and read as f16 (half their memory and
    /// traffic); activations, accumulation and layernorm statistics stay f32 in this version.
    /// On the host paths the weights are rounded to f16 the same way, so every backend computes
    /// the same function; against the f32 model it is within [`Precision::F16_TOL`].
    F16,
}

impl Precision {
    /// The f16 mode against the f32 model, absolute, on the parity fixtures (1 to 3 blocks, E
    /// up to 96, outputs O(1) after LayerNorm): f16 weights carry 11 bits (2^-12 relative per
    /// weight); measured 7.7e-4 at worst (tests/block_parity.rs), so 2e-3.
    pub const F16_TOL: f32 = 2e-3;
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            o => Err(Error::InvalidArgument { op: "precision", what: format!("expected f32 or f16, got {o:?}") }),
        }
    }
}

impl BlockConfig {
    /// PyTorch's `nn.LayerNorm` default eps, the spec's.
    pub const DEFAULT_EPS: f32 = 1e-5;

    /// The spec's block with these sizes.
    pub fn new(embed: usize, heads: usize, ff: usize) -> BlockConfig {
        BlockConfig {
            embed,
            heads,
            ff,
            pre_norm: false,
            activation: Activation::Relu,
            eps: Self::DEFAULT_EPS,
            causal: false,
            batch_first: false,
            precision: Precision::F32,
        }
    }

    /// D = E / H.
    pub fn head_dim(&self) -> usize {
        self.embed / self.heads.max(1)
    }

    /// Checks that the sizes make a valid block.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument { op: "block", what });
        if self.heads == 0 {
            return bad("heads must be at least 1, got 0".into());
        }
        if self.embed == 0 || self.ff == 0 {
            return bad(format!("embed and ff must be at least 1, got embed {} ff {}", self.embed, self.ff));
        }
        if !self.embed.is_multiple_of(self.heads) {
            return bad(format!("heads {} do not divide embed {}", self.heads, self.embed));
        }
        if self.head_dim() > crate::ops::MAX_HEAD_DIM {
            return bad(format!(
                "head dim {} (embed {} / heads {}) exceeds {}",
                self.head_dim(),
                self.embed,
                self.heads,
                crate::ops::MAX_HEAD_DIM
            ));
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad(format!("eps must be finite and >= 0, got {}", self.eps));
        }
        Ok(())
    }
}
