//! The whole stack on the reference kernels: the fallback when there is no
//! adapter, and the oracle for the GPU path.

use super::block::{block_steps, Act, Step};
use super::config::BlockConfig;
use super::weights::StackWeights;
use crate::kernels::attention::AttentionConfig;
use crate::reference;

/// Runs every block of `weights` on `x` (T, E) in token-row order (see
/// [`crate::kernels::attention`]) and returns the output (T, E).
pub fn forward(
    weights: &StackWeights,
    cfg: &BlockConfig,
    x: &[f32],
    seq: usize,
    batch: usize,
    key_pad: Option<&[u32]>,
) -> Vec<f32> {
    let t = seq * batch;
    let mut bufs: Vec<Vec<f32>> = Act::ALL.iter().map(|a| vec![0.0; t * a.cols(cfg)]).collect();
    match &weights.input_norm {
        Some((g, b)) => {
            reference::layernorm::layernorm(&mut bufs[Act::X as usize], x, None, g, b, t, cfg.embed, cfg.eps)
        }
        None => bufs[Act::X as usize].copy_from_slice(x),
    }
    let att = AttentionConfig {
        batch,
        seq,
        heads: cfg.heads,
        head_dim: cfg.head_dim(),
        batch_first: cfg.batch_first,
        causal: cfg.causal,
    };
    let steps = block_steps(cfg);
    for block in &weights.blocks {
        let p = block.tensors();
        for step in &steps {
            let out_act = step.out();
            // steps never read the buffer they write
            let mut out = std::mem::take(&mut bufs[out_act as usize]);
            let b = |a: Act| &bufs[a as usize][..];
            match *step {
                Step::Matmul { x, w, b: bias, act, .. } => {
                    let n = p[bias as usize].len();
                    let k = x.cols(cfg);
                    reference::matmul::matmul(
                        &mut out,
                        b(x),
                        p[w as usize],
                        Some(&p[bias as usize][..]),
                        act,
                        1,
                        t,
                        n,
                        k,
                        false,
                    )
                }
                Step::Attention { qkv, .. } => reference::attention::attention(&mut out, b(qkv), key_pad, &att),
                Step::Layernorm { x, residual, gamma, beta, .. } => reference::layernorm::layernorm(
                    &mut out,
                    b(x),
                    residual.map(b),
                    p[gamma as usize],
                    p[beta as usize],
                    t,
                    cfg.embed,
                    cfg.eps,
                ),
                Step::Add { a, b: bb, .. } => reference::residual_add::residual_add(&mut out, b(a), b(bb)),
            }
            bufs[out_act as usize] = out;
        }
    }
    std::mem::take(&mut bufs[Act::X as usize])
}
