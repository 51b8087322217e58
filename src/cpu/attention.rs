use rayon::prelude::*;

use crate::ops::AttentionConfig;

/// e^x for x <= 0 (softmax's x - max), within 2 ulp of `f32::exp`; exactly 0 below -87 and for
/// -inf; NaN for NaN. Branch-free (Cephes' expf: x = n·ln2 + r, a degree-6 polynomial for e^r, 2^n from the
/// exponent bits), so a loop over a row vectorises; the rounding uses the 1.5·2^23 trick
/// because `f32::round` is a libm call on baseline x86-64.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23
    let xc = x.max(-87.0);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which f32 rounds to 0.5
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    // selects, not branches: NaN stays NaN (as in PyTorch), far below is exactly 0
    if x.is_nan() {
        x
    } else if x < -87.0 {
        0.0
    } else {
        er * scale
    }
}

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
            let masked = cfg.causal || key_pad.is_some();
            for (i, row) in s.chunks_mut(seq).enumerate() {
                if masked {
                    for (j, v) in row.iter_mut().enumerate() {
                        if (cfg.causal && j > i) || key_pad.is_some_and(|m| m[b * seq + j] != 0) {
                            *v = f32::NEG_INFINITY;
                        }
                    }
                }
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                if max == f32::NEG_INFINITY {
                    row.fill(f32::NAN);
                    continue;
                }
                row.iter_mut().for_each(|v| *v = fast_exp(*v - max));
                let inv = 1.0 / row.iter().sum::<f32>();
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
    use crate::ops::{assert_close, Tol};
    use crate::rng::Rng;

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
    fn fast_exp_is_within_two_ulp_of_exp_and_zero_far_below() {
        let mut worst = 0.0f32;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (got, want) = (fast_exp(x), x.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst <= 2.0 * f32::EPSILON, "max relative error {worst:e}");
        assert_eq!(fast_exp(-87.5), 0.0);
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(f32::NAN).is_nan());
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
