use rayon::prelude::*;

use super::math::{fast_exp, madd};
use crate::ops::AttentionConfig;

/// out (tokens, E) = softmax(q · kᵀ · scale + masks) · v for every (batch, head), reading the
/// packed qkv (tokens, 3E): [`crate::reference::attention::attention`]'s contract (a query that
/// sees no key gets NaN). One rayon task per (batch, head), its queries four at a time:
/// scores against a contiguous Kᵀ, softmax, then p · v with each row's sums in registers ([`head`]).
pub fn attention(out: &mut [f32], qkv: &[f32], key_pad: Option<&[u32]>, cfg: &AttentionConfig) {
    let (e, seq) = (cfg.embed(), cfg.seq);
    assert!(qkv.len() >= cfg.tokens() * 3 * e && out.len() >= cfg.tokens() * e, "attention: short operands");
    assert!(key_pad.is_none_or(|m| m.len() >= cfg.batch * seq), "attention: short key_pad");
    // consecutive positions of one batch element are this many token rows apart
    let row_step = if cfg.batch_first { 1 } else { cfg.batch };
    let heads: Vec<Vec<f32>> = (0..cfg.batch * cfg.heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / cfg.heads, bh % cfg.heads);
            let pad = key_pad.map(|m| &m[b * seq..(b + 1) * seq]);
            head(qkv, Head { first_row: cfg.row(b, 0), row_step, seq, h }, pad, cfg)
        })
        .collect();
    for (bh, o) in heads.iter().enumerate() {
        let (b, h) = (bh / cfg.heads, bh % cfg.heads);
        scatter(out, o, h, cfg, |i| cfg.row(b, i));
    }
}

/// Writes one head's (seq, D) output `o` into its columns of `out` (tokens, E); `row(i)` is
/// the token row of its position i.
fn scatter(out: &mut [f32], o: &[f32], h: usize, cfg: &AttentionConfig, row: impl Fn(usize) -> usize) {
    let (e, d) = (cfg.embed(), cfg.head_dim);
    for (i, orow) in o.chunks(d).enumerate() {
        let at = row(i) * e + h * d;
        out[at..at + d].copy_from_slice(orow);
    }
}

/// [`attention`] of sequences packed back to back without padding: sequence i is the `lens[i]`
/// token rows after the ones before it, and attends only to itself (variable-length attention,
/// nothing spent on padding). `cfg` gives heads, head_dim and causal; its batch and seq are not read.
pub fn attention_packed(out: &mut [f32], qkv: &[f32], lens: &[usize], cfg: &AttentionConfig) {
    let e = cfg.embed();
    let tokens: usize = lens.iter().sum();
    assert!(qkv.len() >= tokens * 3 * e && out.len() >= tokens * e, "attention_packed: short operands");
    let starts: Vec<usize> = lens.iter().scan(0, |at, &l| Some(std::mem::replace(at, *at + l))).collect();
    // the longest sequences first, so the last tasks are short ones
    let mut order: Vec<usize> = (0..lens.len() * cfg.heads).collect();
    order.sort_by_key(|&sh| std::cmp::Reverse(lens[sh / cfg.heads]));
    let heads: Vec<(usize, Vec<f32>)> = order
        .into_par_iter()
        .map(|sh| {
            let (s, h) = (sh / cfg.heads, sh % cfg.heads);
            (sh, head(qkv, Head { first_row: starts[s], row_step: 1, seq: lens[s], h }, None, cfg))
        })
        .collect();
    for (sh, o) in &heads {
        let (s, h) = (sh / cfg.heads, sh % cfg.heads);
        scatter(out, o, h, cfg, |i| starts[s] + i);
    }
}

/// Where one (sequence, head) lives in qkv: its first token row, the rows between consecutive
/// positions, its length and the head.
#[derive(Clone, Copy)]
struct Head {
    first_row: usize,
    row_step: usize,
    seq: usize,
    h: usize,
}

/// One (sequence, head) of attention: its (seq, D) output. `pad` is the sequence's key-padding
/// mask (nonzero hides a key). Q (scaled), Kᵀ and V are first copied out of the strided qkv
/// into small contiguous tiles; every loop after that runs over contiguous rows, so it
/// vectorises, and the whole head is compiled for the widest vectors the CPU has.
fn head(qkv: &[f32], at: Head, pad: Option<&[u32]>, cfg: &AttentionConfig) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { head_avx512(qkv, at, pad, cfg) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { head_avx2(qkv, at, pad, cfg) };
        }
    }
    head_body::<false>(qkv, at, pad, cfg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn head_avx512(qkv: &[f32], at: Head, pad: Option<&[u32]>, cfg: &AttentionConfig) -> Vec<f32> {
    head_body::<true>(qkv, at, pad, cfg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn head_avx2(qkv: &[f32], at: Head, pad: Option<&[u32]>, cfg: &AttentionConfig) -> Vec<f32> {
    head_body::<true>(qkv, at, pad, cfg)
}

/// Queries whose score rows are computed together, sharing each load of Kᵀ.
const QUERIES: usize = 4;

/// `FMA`: the products' sums as fused multiply-adds (where the CPU has them).
#[inline(always)]
fn head_body<const FMA: bool>(qkv: &[f32], at: Head, pad: Option<&[u32]>, cfg: &AttentionConfig) -> Vec<f32> {
    let (e, d, seq) = (cfg.embed(), cfg.head_dim, at.seq);
    let row = |i: usize| (at.first_row + i * at.row_step) * 3 * e + at.h * d;
    // 1. the head's tiles: q · scale (seq, D), kᵀ (D, seq), v (seq, D)
    let scale = cfg.scale();
    let (mut q, mut kt, mut v) = (vec![0.0f32; seq * d], vec![0.0f32; d * seq], vec![0.0f32; seq * d]);
    for i in 0..seq {
        let r = row(i);
        q[i * d..(i + 1) * d].iter_mut().zip(&qkv[r..r + d]).for_each(|(o, &x)| *o = x * scale);
        v[i * d..(i + 1) * d].copy_from_slice(&qkv[r + 2 * e..r + 2 * e + d]);
        for (c, &x) in qkv[r + e..r + e + d].iter().enumerate() {
            kt[c * seq + i] = x;
        }
    }
    let mut o = vec![0.0f32; seq * d];
    let mut s = vec![0.0f32; QUERIES * seq];
    let mut maxes = [0.0f32; QUERIES];
    for i0 in (0..seq).step_by(QUERIES) {
        let nq = QUERIES.min(seq - i0);
        let s = &mut s[..nq * seq];
        // 2. scores of queries i0.. (nq, seq): every row of kᵀ read once for all of them
        match nq {
            QUERIES => scores::<QUERIES, FMA>(&q[i0 * d..], &kt, d, seq, s),
            _ => s
                .chunks_exact_mut(seq)
                .enumerate()
                .for_each(|(r, srow)| scores::<1, FMA>(&q[(i0 + r) * d..], &kt, d, seq, srow)),
        }
        // 3. masks and softmax per query row; no visible key -> NaN, as PyTorch
        for (r, srow) in s.chunks_exact_mut(seq).enumerate() {
            let i = i0 + r;
            if cfg.causal {
                srow[i + 1..].fill(f32::NEG_INFINITY);
            }
            if let Some(m) = pad {
                srow.iter_mut().zip(m).for_each(|(sv, &p)| *sv = if p != 0 { f32::NEG_INFINITY } else { *sv });
            }
            let max = lanes_max(srow);
            maxes[r] = max;
            if max == f32::NEG_INFINITY {
                srow.fill(0.0);
                continue;
            }
            srow.iter_mut().for_each(|sv| *sv = fast_exp::<FMA>(*sv - max));
            let inv = 1.0 / lanes_sum(srow);
            srow.iter_mut().for_each(|sv| *sv *= inv);
        }
        // 4. o rows i0.. = p · v, a row's D sums held in registers while the keys stream past
        let o_rows = &mut o[i0 * d..(i0 + nq) * d];
        match d {
            32 => pv_rows::<32, FMA>(s, &v, seq, o_rows),
            64 => pv_rows::<64, FMA>(s, &v, seq, o_rows),
            128 => pv_rows::<128, FMA>(s, &v, seq, o_rows),
            _ => {
                for (srow, orow) in s.chunks_exact(seq).zip(o_rows.chunks_exact_mut(d)) {
                    for (j, &p) in srow.iter().enumerate() {
                        orow.iter_mut().zip(&v[j * d..(j + 1) * d]).for_each(|(ov, &x)| *ov = madd::<FMA>(p, x, *ov));
                    }
                }
            }
        }
        // a query that saw no key is NaN, as PyTorch
        for (r, &m) in maxes[..nq].iter().enumerate() {
            if m == f32::NEG_INFINITY {
                o_rows[r * d..(r + 1) * d].fill(f32::NAN);
            }
        }
    }
    o
}

/// s (R, seq) = q (R, D) · kᵀ (D, seq) for R consecutive queries: per 16 keys, R register
/// accumulators over D, each load of kᵀ shared by the R queries; the last keys one by one.
#[inline(always)]
fn scores<const R: usize, const FMA: bool>(q: &[f32], kt: &[f32], d: usize, seq: usize, s: &mut [f32]) {
    let full = seq / LANES * LANES;
    for j0 in (0..full).step_by(LANES) {
        let mut acc = [[0.0f32; LANES]; R];
        for c in 0..d {
            let kr: &[f32; LANES] = kt[c * seq + j0..c * seq + j0 + LANES].try_into().expect("a full chunk");
            for (r, a) in acc.iter_mut().enumerate() {
                let qv = q[r * d + c];
                for l in 0..LANES {
                    a[l] = madd::<FMA>(qv, kr[l], a[l]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            s[r * seq + j0..r * seq + j0 + LANES].copy_from_slice(a);
        }
    }
    for j in full..seq {
        for r in 0..R {
            s[r * seq + j] = (0..d).map(|c| q[r * d + c] * kt[c * seq + j]).sum();
        }
    }
}

/// o (D) = p (seq) · v (seq, D) for one query, the D sums held in registers.
#[inline(always)]
fn pv<const D: usize, const FMA: bool>(p: &[f32], v: &[f32], o: &mut [f32]) {
    let mut acc = [0.0f32; D];
    for (&pj, vr) in p.iter().zip(v.chunks_exact(D)) {
        for c in 0..D {
            acc[c] = madd::<FMA>(pj, vr[c], acc[c]);
        }
    }
    o.copy_from_slice(&acc);
}

/// [`pv`] for each query row of p (seq wide) into o (D wide).
#[inline(always)]
fn pv_rows<const D: usize, const FMA: bool>(p: &[f32], v: &[f32], seq: usize, o: &mut [f32]) {
    for (prow, orow) in p.chunks_exact(seq).zip(o.chunks_exact_mut(D)) {
        pv::<D, FMA>(prow, v, orow);
    }
}

/// Lanes of the reductions below: f32 adds are not reassociated, so without them a row's sum
/// or max would be one serial chain.
const LANES: usize = 16;

/// The largest value of `v` (-inf for an empty or fully masked row).
#[inline(always)]
fn lanes_max(v: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for c in chunks {
        for (l, &x) in m.iter_mut().zip(c) {
            *l = if x > *l { x } else { *l };
        }
    }
    m.iter().fold(tail, |a, &b| a.max(b))
}

/// Σ v in [`LANES`] partial sums.
#[inline(always)]
fn lanes_sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, &x) in acc.iter_mut().zip(c) {
            *l += x;
        }
    }
    acc.iter().sum::<f32>() + tail
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

    /// The portable body (no AVX, no FMA: what a CPU without them runs) against the reference,
    /// masks included, so the path this machine never dispatches to is tested too.
    #[test]
    fn portable_attention_head_matches_reference() {
        let mut rng = Rng::new(27);
        for (seq, heads, d, causal) in [(1, 1, 8, false), (37, 2, 32, false), (21, 3, 64, true), (9, 1, 7, true)] {
            let cfg = AttentionConfig { batch: 1, seq, heads, head_dim: d, batch_first: true, causal };
            let e = cfg.embed();
            let qkv = rng.vec(seq * 3 * e, -1.0, 1.0);
            let pad: Vec<u32> = (0..seq).map(|j| (j > 0 && j % 4 == 0) as u32).collect();
            let mut want = vec![0.0; seq * e];
            crate::reference::attention::attention(&mut want, &qkv, Some(&pad), &cfg);
            for h in 0..heads {
                let got = head_body::<false>(&qkv, Head { first_row: 0, row_step: 1, seq, h }, Some(&pad), &cfg);
                let want_h: Vec<f32> = want.chunks(e).flat_map(|r| r[h * d..(h + 1) * d].to_vec()).collect();
                assert_close(&format!("portable head s{seq} h{h} d{d} causal={causal}"), &got, &want_h, ATTENTION_TOL);
            }
        }
    }

    /// Packed sequences of different lengths against each one alone through the reference.
    #[test]
    fn cpu_packed_attention_matches_each_sequence_alone() {
        let mut rng = Rng::new(26);
        for (lens, heads, d, causal) in
            [(vec![1usize], 1, 8, false), (vec![5, 1, 37, 12], 3, 32, false), (vec![9, 30], 2, 7, true)]
        {
            let cfg = AttentionConfig { batch: 1, seq: 0, heads, head_dim: d, batch_first: true, causal };
            let (e, t) = (cfg.embed(), lens.iter().sum::<usize>());
            let qkv = rng.vec(t * 3 * e, -1.0, 1.0);
            let mut got = vec![f32::NAN; t * e];
            attention_packed(&mut got, &qkv, &lens, &cfg);
            let mut start = 0;
            for &l in &lens {
                let one = AttentionConfig { seq: l, ..cfg };
                let mut want = vec![0.0; l * e];
                crate::reference::attention::attention(&mut want, &qkv[start * 3 * e..(start + l) * 3 * e], None, &one);
                assert_close(
                    &format!("packed {lens:?} h{heads} d{d} causal={causal} at {start}"),
                    &got[start * e..(start + l) * e],
                    &want,
                    ATTENTION_TOL,
                );
                start += l;
            }
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
