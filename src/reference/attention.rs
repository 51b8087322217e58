use crate::ops::AttentionConfig;

/// Attention probabilities of one (batch b, head h): row s is softmax over keys of
/// q_s · k_j · scale, with hidden keys at probability 0. A query with no visible
/// key gets a row of NaN, as PyTorch's softmax over all -inf does.
/// Returns a (seq, seq) row-major matrix.
pub fn attention_weights(qkv: &[f32], key_pad: Option<&[u32]>, cfg: &AttentionConfig, b: usize, h: usize) -> Vec<f64> {
    let (e, d, seq) = (cfg.embed(), cfg.head_dim, cfg.seq);
    let at = |row: usize, part: usize, i: usize| qkv[row * 3 * e + part * e + h * d + i] as f64;
    let mut p = vec![0.0f64; seq * seq];
    for s in 0..seq {
        let qs = cfg.row(b, s);
        // 1. scores of visible keys
        let mut scores = vec![None; seq];
        for (j, score) in scores.iter_mut().enumerate() {
            let hidden = (cfg.causal && j > s) || key_pad.is_some_and(|m| m[b * seq + j] != 0);
            if !hidden {
                let kj = cfg.row(b, j);
                let dot: f64 = (0..d).map(|i| at(qs, 0, i) * at(kj, 1, i)).sum();
                *score = Some(dot * cfg.scale() as f64);
            }
        }
        // 2. softmax with the max subtracted
        let max = scores.iter().flatten().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().flatten().map(|v| (v - max).exp()).sum();
        for j in 0..seq {
            p[s * seq + j] = match scores[j] {
                Some(v) => (v - max).exp() / sum,
                None if sum == 0.0 => f64::NAN,
                None => 0.0,
            };
        }
    }
    p
}

/// out (tokens, E) = softmax(q · kᵀ · scale + masks) · v for every (batch, head), reading
/// the packed qkv (tokens, 3E) described in [`crate::kernels::attention`].
pub fn attention(out: &mut [f32], qkv: &[f32], key_pad: Option<&[u32]>, cfg: &AttentionConfig) {
    let (e, d, seq) = (cfg.embed(), cfg.head_dim, cfg.seq);
    for b in 0..cfg.batch {
        for h in 0..cfg.heads {
            let p = attention_weights(qkv, key_pad, cfg, b, h);
            for s in 0..seq {
                let row = cfg.row(b, s);
                for i in 0..d {
                    let mut acc = 0.0f64;
                    for j in 0..seq {
                        acc += p[s * seq + j] * qkv[cfg.row(b, j) * 3 * e + 2 * e + h * d + i] as f64;
                    }
                    out[row * e + h * d + i] = acc as f32;
                }
            }
        }
    }
}
