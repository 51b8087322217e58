//! The block as data: one list of steps over named activations and
//! parameters, run by both the GPU plan and the CPU path, so the two cannot
//! drift apart.
//!
//! Post-norm (the spec's module):     Pre-norm:
//!   qkv = x · in_projᵀ + b             n   = LN1(x)
//!   a   = attention(qkv)               qkv = n · in_projᵀ + b
//!   y   = a · out_projᵀ + b            a   = attention(qkv); y = a · out_projᵀ + b
//!   xb  = LN1(x + y)   (fused)         xb  = x + y
//!   h   = act(xb · ffn.0ᵀ + b)         n   = LN2(xb); h = act(n · ffn.0ᵀ + b)
//!   y   = h · ffn.2ᵀ + b               y   = h · ffn.2ᵀ + b
//!   x   = LN2(xb + y)  (fused)         x   = xb + y

use super::config::BlockConfig;
use crate::ops::Activation;

/// Activation buffers of a forward pass; all (T, E) but `Qkv` (T, 3E) and `H` (T, F).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Act {
    /// The stream: block input and output.
    X,
    /// The stream after the first residual.
    Xb,
    /// Packed q, k, v (T, 3E).
    Qkv,
    /// Attention output (T, E).
    Attn,
    /// Projection output (T, E).
    Y,
    /// Feed-forward hidden (T, F).
    H,
    /// Pre-norm: the normalised stream.
    Norm,
}

impl Act {
    /// Every buffer, in discriminant order.
    pub const ALL: [Act; 7] = [Act::X, Act::Xb, Act::Qkv, Act::Attn, Act::Y, Act::H, Act::Norm];

    /// Columns of this buffer for a block of `cfg`.
    pub fn cols(self, cfg: &BlockConfig) -> usize {
        match self {
            Act::Qkv => 3 * cfg.embed,
            Act::H => cfg.ff,
            _ => cfg.embed,
        }
    }
}

/// A block parameter; the discriminant indexes [`super::weights::BlockWeights::tensors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// attn.in_proj_weight
    InProjW,
    /// attn.in_proj_bias
    InProjB,
    /// attn.out_proj.weight
    OutProjW,
    /// attn.out_proj.bias
    OutProjB,
    /// ffn.0.weight
    Ff1W,
    /// ffn.0.bias
    Ff1B,
    /// ffn.2.weight
    Ff2W,
    /// ffn.2.bias
    Ff2B,
    /// norm1.weight
    Norm1W,
    /// norm1.bias
    Norm1B,
    /// norm2.weight
    Norm2W,
    /// norm2.bias
    Norm2B,
}

/// One kernel call of the block.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// out = act(x · wᵀ + b)
    Matmul {
        /// Input activation.
        x: Act,
        /// Weight (N, K).
        w: Param,
        /// Bias (N).
        b: Param,
        /// Fused activation.
        act: Activation,
        /// Output activation.
        out: Act,
    },
    /// out = attention(qkv)
    Attention {
        /// Packed q, k, v.
        qkv: Act,
        /// Output (T, E).
        out: Act,
    },
    /// out = LN(x [+ residual]) · γ + β
    Layernorm {
        /// Input.
        x: Act,
        /// Added to x before normalising (the fused residual), if any.
        residual: Option<Act>,
        /// γ.
        gamma: Param,
        /// β.
        beta: Param,
        /// Output.
        out: Act,
    },
    /// out = a + b
    ResidualAdd {
        /// First operand.
        a: Act,
        /// Second operand.
        b: Act,
        /// Output.
        out: Act,
    },
}

impl Step {
    /// The buffer this step writes.
    pub fn out(&self) -> Act {
        match *self {
            Step::Matmul { out, .. }
            | Step::Attention { out, .. }
            | Step::Layernorm { out, .. }
            | Step::ResidualAdd { out, .. } => out,
        }
    }
}

impl Step {
    /// The activations this step reads.
    pub fn inputs(&self) -> Vec<Act> {
        match *self {
            Step::Matmul { x, .. } => vec![x],
            Step::Attention { qkv, .. } => vec![qkv],
            Step::Layernorm { x, residual, .. } => std::iter::once(x).chain(residual).collect(),
            Step::ResidualAdd { a, b, .. } => vec![a, b],
        }
    }

    /// What a report calls this step, with its shapes for `tokens` rows:
    /// `ffn.0 matmul (512, 1024) = (512, 256) x (1024, 256)^T`.
    pub fn label(&self, cfg: &BlockConfig, tokens: usize) -> String {
        let param = |p: Param| match p {
            Param::InProjW | Param::InProjB => "in_proj",
            Param::OutProjW | Param::OutProjB => "out_proj",
            Param::Ff1W | Param::Ff1B => "ffn.0",
            Param::Ff2W | Param::Ff2B => "ffn.2",
            Param::Norm1W | Param::Norm1B => "norm1",
            Param::Norm2W | Param::Norm2B => "norm2",
        };
        let (t, e) = (tokens, cfg.embed);
        match *self {
            Step::Matmul { x, w, act, out, .. } => {
                let (k, n) = (x.cols(cfg), out.cols(cfg));
                let act = if act == Activation::None { String::new() } else { format!(" + {act:?}") };
                format!("{} matmul{act} ({t}, {n}) = ({t}, {k}) x ({n}, {k})^T", param(w))
            }
            Step::Attention { .. } => {
                format!("attention ({t}, {e}) from qkv ({t}, {}), {} heads of {}", 3 * e, cfg.heads, cfg.head_dim())
            }
            Step::Layernorm { residual: Some(_), gamma, .. } => format!("residual + {} ({t}, {e})", param(gamma)),
            Step::Layernorm { gamma, .. } => format!("{} ({t}, {e})", param(gamma)),
            Step::ResidualAdd { .. } => format!("residual add ({t}, {e})"),
        }
    }
}

/// The steps of one block; it reads and leaves its result in [`Act::X`].
pub fn block_steps(cfg: &BlockConfig) -> Vec<Step> {
    use Act::*;
    use Param::*;
    let mm = |x, w, b, act, out| Step::Matmul { x, w, b, act, out };
    let ln = |x, residual, gamma, beta, out| Step::Layernorm { x, residual, gamma, beta, out };
    if cfg.pre_norm {
        vec![
            ln(X, None, Norm1W, Norm1B, Norm),
            mm(Norm, InProjW, InProjB, Activation::None, Qkv),
            Step::Attention { qkv: Qkv, out: Attn },
            mm(Attn, OutProjW, OutProjB, Activation::None, Y),
            Step::ResidualAdd { a: X, b: Y, out: Xb },
            ln(Xb, None, Norm2W, Norm2B, Norm),
            mm(Norm, Ff1W, Ff1B, cfg.activation, H),
            mm(H, Ff2W, Ff2B, Activation::None, Y),
            Step::ResidualAdd { a: Xb, b: Y, out: X },
        ]
    } else {
        vec![
            mm(X, InProjW, InProjB, Activation::None, Qkv),
            Step::Attention { qkv: Qkv, out: Attn },
            mm(Attn, OutProjW, OutProjB, Activation::None, Y),
            ln(X, Some(Y), Norm1W, Norm1B, Xb),
            mm(Xb, Ff1W, Ff1B, cfg.activation, H),
            mm(H, Ff2W, Ff2B, Activation::None, Y),
            ln(Xb, Some(Y), Norm2W, Norm2B, X),
        ]
    }
}
