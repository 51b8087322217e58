use rayon::prelude::*;

use crate::kernels::attention::AttentionConfig;

/// out (tokens, E) = softmax(q · kᵀ · scale + masks) · v for every (batch, head), reading the
/// packed qkv (tokens, 3E): [`crate::reference::attention::attention`]'s contract (a query that
/// sees no key gets NaN). One rayon task per (batch, head): scores (seq, seq) = q · kᵀ and
/// (seq, D) = p · v are two sgemms on strided views of qkv, no copies.
pub fn attention(out: &mut [f32], qkv: &[f32], key_pad: Option<&[u32]>, cfg: &AttentionConfig) {
    let (e, d, seq) = (cfg.embed(), cfg.head_dim, cfg.seq);
    assert!(qkv.len() >= cfg.tokens() * 3 * e && out.len() >= cfg.tokens() * e, "attention: short operands");
    assert!(key_pad.is_none_or(|m| m.len() >= cfg.batch * seq), "attention: short key_pad");
    // consecutive positions of one batch element are this many token rows apart
    let (row_step, qkv_stride) = (if cfg.batch_first { 1 } else { cfg.batch }, 3 * e);
    let heads: Vec<Vec<f32>> = (0..cfg.batch * cfg.heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / cfg.heads, bh % cfg.heads);
            let base = cfg.row(b, 0) * qkv_stride + h * d;
            let rs = (row_step * qkv_stride) as isize;
            // 1. scores = scale · q kᵀ (seq, seq)
            let mut s = vec![0.0f32; seq * seq];
            // SAFETY: rows base + i·rs (i < seq) plus columns < 3E stay inside qkv (asserted above).
            unsafe {
                let q = qkv.as_ptr().add(base);
                let k = qkv.as_ptr().add(base + e);
                matrixmultiply::sgemm(
                    seq,
                    d,
                    seq,
                    cfg.scale(),
                    q,
                    rs,
                    1,
                    k,
                    1,
                    rs,
                    0.0,
                    s.as_mut_ptr(),
                    seq as isize,
                    1,
                );
            }
            // 2. masks and softmax per query row; no visible key -> NaN, as PyTorch
            for (i, row) in s.chunks_mut(seq).enumerate() {
                let visible = |j: usize| !(cfg.causal && j > i) && key_pad.is_none_or(|m| m[b * seq + j] == 0);
                let max = (0..seq).filter(|&j| visible(j)).map(|j| row[j]).fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if visible(j) { (*v - max).exp() } else { 0.0 };
                    sum += *v;
                }
                let inv = if sum > 0.0 { 1.0 / sum } else { f32::NAN };
                row.iter_mut().for_each(|v| *v *= inv);
            }
            // 3. (seq, D) = p · v
            let mut o = vec![0.0f32; seq * d];
            // SAFETY: as above for v's rows; p and o are the (seq, seq) and (seq, D) buffers here.
            unsafe {
                let v = qkv.as_ptr().add(base + 2 * e);
                matrixmultiply::sgemm(
                    seq,
                    seq,
                    d,
                    1.0,
                    s.as_ptr(),
                    seq as isize,
                    1,
                    v,
                    rs,
                    1,
                    0.0,
                    o.as_mut_ptr(),
                    d as isize,
                    1,
                );
            }
            o
        })
        .collect();
    // 4. scatter each head's (seq, D) into its columns of out
    for (bh, o) in heads.iter().enumerate() {
        let (b, h) = (bh / cfg.heads, bh % cfg.heads);
        for (i, orow) in o.chunks(d).enumerate() {
            let at = cfg.row(b, i) * e + h * d;
            out[at..at + d].copy_from_slice(orow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, Rng, Tol};

    /// f32 softmax and sums against the f64 reference.
    const ATTENTION_TOL: Tol = Tol { atol: 3e-5, rtol: 1e-4 };

    #[test]
    fn cpu_attention_matches_reference_every_mask_and_layout() {
        let mut rng = Rng::new(24);
        for (batch, seq, heads, d, causal, batch_first, padded) in [
            (1, 1, 1, 8, false, false, false),
            (2, 37, 3, 32, false, false, true),
            (3, 65, 2, 7, true, false, false),
            (2, 29, 2, 64, true, true, true),
            (1, 130, 1, 128, false, true, false),
        ] {
            let cfg = AttentionConfig { batch, seq, heads, head_dim: d, batch_first, causal };
            let qkv = rng.vec(cfg.tokens() * 3 * cfg.embed(), -1.0, 1.0);
            let pad: Vec<u32> = (0..batch * seq).map(|i| (padded && i % seq >= seq - i / seq) as u32).collect();
            let mask = padded.then_some(&pad[..]);
            let (mut got, mut want) =
                (vec![f32::NAN; cfg.tokens() * cfg.embed()], vec![0.0; cfg.tokens() * cfg.embed()]);
            attention(&mut got, &qkv, mask, &cfg);
            crate::reference::attention::attention(&mut want, &qkv, mask, &cfg);
            assert_close(&format!("cpu attention {cfg:?} padded={padded}"), &got, &want, ATTENTION_TOL);
        }
    }

    #[test]
    fn cpu_attention_fully_masked_query_is_nan_like_pytorch() {
        let cfg = AttentionConfig { batch: 2, seq: 5, heads: 1, head_dim: 8, batch_first: false, causal: false };
        let qkv = Rng::new(25).vec(cfg.tokens() * 3 * 8, -1.0, 1.0);
        let pad: Vec<u32> = (0..10).map(|i| (i < 5) as u32).collect(); // batch 0 sees no key
        let mut got = vec![0.0; cfg.tokens() * 8];
        attention(&mut got, &qkv, Some(&pad), &cfg);
        for s in 0..5 {
            assert!(got[cfg.row(0, s) * 8..][..8].iter().all(|v| v.is_nan()), "batch 0 row {s}");
            assert!(got[cfg.row(1, s) * 8..][..8].iter().all(|v| v.is_finite()), "batch 1 row {s}");
        }
    }
}
