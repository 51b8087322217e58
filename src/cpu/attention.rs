use super::math::fast_exp;
use super::packed::{linear_serial, Isa, Out, PackedLinear};
use crate::ops::AttentionConfig;

/// out (tokens, E) = softmax(q · kᵀ · scale + masks) · v for every (batch, head), reading the
/// packed qkv (tokens, 3E): [`crate::reference::attention::attention`]'s contract (a query that
/// sees no key gets NaN). One rayon task per sequence and group of its heads ([`over_heads`]).
pub fn attention(out: &mut [f32], qkv: &[f32], key_pad: Option<&[u32]>, cfg: &AttentionConfig) {
    let seq = cfg.seq;
    assert!(
        qkv.len() >= cfg.tokens() * 3 * cfg.embed() && out.len() >= cfg.tokens() * cfg.embed(),
        "attention: short operands"
    );
    assert!(key_pad.is_none_or(|m| m.len() >= cfg.batch * seq), "attention: short key_pad");
    // consecutive positions of one batch element are this many token rows apart
    let row_step = if cfg.batch_first { 1 } else { cfg.batch };
    let seqs: Vec<Seq> = (0..cfg.batch).map(|b| Seq { first_row: cfg.row(b, 0), row_step, len: seq }).collect();
    over_heads(out, qkv, &seqs, |b| key_pad.map(|m| &m[b * seq..(b + 1) * seq]), cfg);
}

/// [`attention`] of sequences packed back to back without padding: sequence i is the `lens[i]`
/// token rows after the ones before it, and attends only to itself (variable-length attention,
/// nothing spent on padding). `cfg` gives heads, head_dim and causal; its batch and seq are not read.
pub fn attention_packed(out: &mut [f32], qkv: &[f32], lens: &[usize], cfg: &AttentionConfig) {
    let e = cfg.embed();
    let tokens: usize = lens.iter().sum();
    assert!(qkv.len() >= tokens * 3 * e && out.len() >= tokens * e, "attention_packed: short operands");
    let seqs: Vec<Seq> = lens
        .iter()
        .scan(0, |at, &len| Some(Seq { first_row: std::mem::replace(at, *at + len), row_step: 1, len }))
        .collect();
    over_heads(out, qkv, &seqs, |_| None, cfg);
}

/// Where one sequence lives in qkv and out: its first token row, the rows between consecutive
/// positions, and its length.
#[derive(Clone, Copy, Debug)]
struct Seq {
    first_row: usize,
    row_step: usize,
    len: usize,
}

impl Seq {
    /// The token row of position i.
    fn row(&self, i: usize) -> usize {
        self.first_row + i * self.row_step
    }
}

/// One task's work: heads `hs` of sequence `at` in `qkv`, with the sequence's key-padding
/// mask (nonzero hides a key).
#[derive(Clone)]
struct Group<'a> {
    qkv: &'a [f32],
    at: Seq,
    hs: std::ops::Range<usize>,
    pad: Option<&'a [u32]>,
    cfg: &'a AttentionConfig,
}

/// Every head of every sequence, shared out over rayon's pool as (sequence, group of heads)
/// tasks, the longest sequences first so the last tasks are short ones: a whole sequence per
/// task where there are sequences enough (each task then reads its qkv rows whole, which the
/// hardware prefetches), its heads split into groups where there are not (batch 1).
fn over_heads<'a>(
    out: &mut [f32],
    qkv: &[f32],
    seqs: &[Seq],
    pad: impl Fn(usize) -> Option<&'a [u32]> + Sync,
    cfg: &AttentionConfig,
) {
    if seqs.is_empty() || cfg.heads == 0 {
        return;
    }
    let groups = (4 * rayon::current_num_threads()).div_ceil(seqs.len()).clamp(1, cfg.heads);
    let per = cfg.heads.div_ceil(groups);
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&s| std::cmp::Reverse(seqs[s].len));
    let tasks: Vec<(usize, std::ops::Range<usize>)> =
        order.iter().flat_map(|&s| (0..cfg.heads).step_by(per).map(move |h| (s, h..cfg.heads.min(h + per)))).collect();
    let o = Out::new(out);
    super::par::for_each(tasks.len(), |task| {
        let (s, hs) = &tasks[task];
        let g = Group { qkv, at: seqs[*s], hs: hs.clone(), pad: pad(*s), cfg };
        // SAFETY: out holds every sequence's rows (asserted by the callers), and each task
        // writes only its own sequence's rows in its own heads' columns.
        unsafe { heads(&g, o) }
    });
}

/// A group's heads: writes each head's (len, D) output into its D columns of the sequence's
/// rows of out. Where the CPU has AVX-512 or AVX2 + FMA both products run on the packed linear
/// layers' micro-kernel ([`heads_tiled`]); elsewhere a portable body per head ([`head_body`]).
///
/// # Safety
/// `out` must point at the (tokens, E) output the group's sequence lies in, and no one else may
/// write the group's heads' columns of its rows meanwhile.
unsafe fn heads(g: &Group<'_>, out: Out) {
    match Isa::detect() {
        // SAFETY: the CPU has AVX-512F (detected); out as the caller's contract.
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx512) => unsafe { heads_avx512(g, out) },
        // SAFETY: the CPU has AVX2 and FMA (detected); out as the caller's contract.
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx2) => unsafe { heads_avx2(g, out) },
        // SAFETY: the caller's contract.
        _ => unsafe { heads_portable(g, out) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn heads_avx512(g: &Group<'_>, out: Out) {
    // SAFETY: the caller's contract.
    unsafe { heads_tiled::<true>(Isa::Avx512, g, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn heads_avx2(g: &Group<'_>, out: Out) {
    // SAFETY: the caller's contract.
    unsafe { heads_tiled::<true>(Isa::Avx2, g, out) }
}

/// [`heads`] one head at a time on [`head_body`].
///
/// # Safety
/// As [`heads`].
unsafe fn heads_portable(g: &Group<'_>, out: Out) {
    for (j, h) in g.hs.clone().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { place_head(out, g, j, &head_body(g.qkv, g.at, h, g.pad, g.cfg)) };
    }
}

/// Writes head j of the group's (len, D) output `oh` into its D columns of the sequence's rows
/// of out.
///
/// # Safety
/// As [`heads`].
unsafe fn place_head(out: Out, g: &Group<'_>, j: usize, oh: &[f32]) {
    let (e, d) = (g.cfg.embed(), g.cfg.head_dim);
    for (i, src) in oh.chunks_exact(d).enumerate().take(g.at.len) {
        // SAFETY: row i of the sequence lies in out, its columns (hs.start + j) · D.. are this
        // group's (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), out.at(g.at.row(i) * e + (g.hs.start + j) * d), d) };
    }
}

/// One attention task's buffers, kept per rayon thread and reused by its next task: nothing in
/// a forward's attention allocates once they have grown to its shapes. Every value a task reads
/// it has written first.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    oh: Vec<f32>,
    s: Vec<f32>,
    maxes: Vec<f32>,
    /// Per head of the group (as many as the largest group yet): its keys' packing, its values'.
    keys: Vec<PackedLinear>,
    values: Vec<PackedLinear>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// The first `len` values of `v`, grown to hold them (what it held stays: the caller writes
/// before it reads).
fn at_least(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Heads `hs` as two products each on `isa`'s micro-kernel. One pass over the sequence's rows
/// of qkv writes each head's q (scaled) into a contiguous block and packs its keys as the
/// weight of the scores (s = q · kᵀ: n = len keys, k = D) and vᵀ as the weight of the output
/// (o = p · v: n = D, k = len); then per head and per MR queries their score rows (in L1),
/// masks and softmax, and their output rows. `FMA`: softmax's exp fused. The
/// buffers are the thread's [`Scratch`], taken out for the task and put back after it (taken,
/// not borrowed in a closure: a closure would be compiled without the caller's target features,
/// and its fused multiply-adds would become calls).
///
/// # Safety
/// As [`heads`].
#[inline(always)]
unsafe fn heads_tiled<const FMA: bool>(isa: Isa, group: &Group<'_>, out: Out) {
    let Group { qkv, at, ref hs, pad, cfg } = *group;
    let (e, d, seq) = (cfg.embed(), cfg.head_dim, at.len);
    let mr = isa.mr();
    let scale = cfg.scale();
    let mut sc = SCRATCH.take();
    // one pass over the sequence's rows of qkv (three runs a row, prefetched): each q, scaled,
    // into its head's contiguous (len, D) block; each k into its head's key packing (key i is
    // column i of the scores' weight); each v into its head's value packing (row i of vᵀ's
    // panels: NR values at a time)
    let q = at_least(&mut sc.q, hs.len() * seq * d);
    if sc.keys.len() < hs.len() {
        sc.keys.resize_with(hs.len(), PackedLinear::empty);
        sc.values.resize_with(hs.len(), PackedLinear::empty);
    }
    let (keys, values) = (&mut sc.keys[..hs.len()], &mut sc.values[..hs.len()]);
    keys.iter_mut().for_each(|p| p.reshape(seq, d, isa));
    values.iter_mut().for_each(|p| p.reshape(d, seq, isa));
    let nr = isa.nr();
    for i in 0..seq {
        let r = at.row(i) * 3 * e + hs.start * d;
        for g in 0..hs.len() {
            let (qs, ks, vs) = (&qkv[r + g * d..][..d], &qkv[r + e + g * d..][..d], &qkv[r + 2 * e + g * d..][..d]);
            q[(g * seq + i) * d..][..d].iter_mut().zip(qs).for_each(|(o, &x)| *o = x * scale);
            let kp = &mut keys[g].panels_mut()[(i / nr) * d * nr + i % nr..];
            kp.iter_mut().step_by(nr).zip(ks).for_each(|(o, &x)| *o = x);
            let vp = values[g].panels_mut();
            for (p, chunk) in vs.chunks(nr).enumerate() {
                vp[(p * seq + i) * nr..][..chunk.len()].copy_from_slice(chunk);
            }
        }
    }
    let (oh, s, maxes) = (at_least(&mut sc.oh, seq * d), at_least(&mut sc.s, mr * seq), at_least(&mut sc.maxes, mr));
    for (g, (keys, values)) in keys.iter().zip(values.iter()).enumerate() {
        let q = &q[g * seq * d..(g + 1) * seq * d];
        for i0 in (0..seq).step_by(mr) {
            let nq = mr.min(seq - i0);
            let s = &mut s[..nq * seq];
            linear_serial(s, &q[i0 * d..(i0 + nq) * d], keys, nq);
            softmax_rows::<FMA>(s, seq, i0, pad, cfg.causal, &mut maxes[..nq]);
            let o_rows = &mut oh[i0 * d..(i0 + nq) * d];
            linear_serial(o_rows, s, values, nq);
            nan_unseen(o_rows, d, &maxes[..nq]);
        }
        // SAFETY: the caller's contract.
        unsafe { place_head(out, group, g, oh) };
    }
    SCRATCH.set(sc);
}

/// Masks and softmax of score rows `s` (seq wide) of queries i0..: causal hides the keys after
/// each query, `pad` the padded ones. `maxes` gets each row's largest score; a row that sees
/// no key (max -inf) is left all zero.
#[inline(always)]
fn softmax_rows<const FMA: bool>(
    s: &mut [f32],
    seq: usize,
    i0: usize,
    pad: Option<&[u32]>,
    causal: bool,
    maxes: &mut [f32],
) {
    for (r, srow) in s.chunks_exact_mut(seq).enumerate() {
        let i = i0 + r;
        if causal {
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
}

/// A query that saw no key (its row's max -inf) is NaN, as PyTorch.
fn nan_unseen(o_rows: &mut [f32], d: usize, maxes: &[f32]) {
    for (r, &m) in maxes.iter().enumerate() {
        if m == f32::NEG_INFINITY {
            o_rows[r * d..(r + 1) * d].fill(f32::NAN);
        }
    }
}

/// Queries whose score rows are computed together, sharing each load of Kᵀ.
const QUERIES: usize = 4;

/// The portable head (no AVX, no FMA): Q (scaled), Kᵀ and V copied out of the strided qkv
/// into small contiguous tiles, so every loop after that runs over contiguous rows.
fn head_body(qkv: &[f32], at: Seq, h: usize, pad: Option<&[u32]>, cfg: &AttentionConfig) -> Vec<f32> {
    let (e, d, seq) = (cfg.embed(), cfg.head_dim, at.len);
    let row = |i: usize| at.row(i) * 3 * e + h * d;
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
            QUERIES => scores::<QUERIES>(&q[i0 * d..], &kt, d, seq, s),
            _ => s
                .chunks_exact_mut(seq)
                .enumerate()
                .for_each(|(r, srow)| scores::<1>(&q[(i0 + r) * d..], &kt, d, seq, srow)),
        }
        // 3. masks and softmax per query row
        softmax_rows::<false>(s, seq, i0, pad, cfg.causal, &mut maxes[..nq]);
        // 4. o rows i0.. = p · v
        let o_rows = &mut o[i0 * d..(i0 + nq) * d];
        for (srow, orow) in s.chunks_exact(seq).zip(o_rows.chunks_exact_mut(d)) {
            for (j, &p) in srow.iter().enumerate() {
                orow.iter_mut().zip(&v[j * d..(j + 1) * d]).for_each(|(ov, &x)| *ov += p * x);
            }
        }
        nan_unseen(o_rows, d, &maxes[..nq]);
    }
    o
}

/// s (R, seq) = q (R, D) · kᵀ (D, seq) for R consecutive queries: per 16 keys, R accumulators
/// over D, each load of kᵀ shared by the R queries; the last keys one by one.
#[inline(always)]
fn scores<const R: usize>(q: &[f32], kt: &[f32], d: usize, seq: usize, s: &mut [f32]) {
    let full = seq / LANES * LANES;
    for j0 in (0..full).step_by(LANES) {
        let mut acc = [[0.0f32; LANES]; R];
        for c in 0..d {
            let kr: &[f32; LANES] = kt[c * seq + j0..c * seq + j0 + LANES].try_into().expect("a full chunk");
            for (r, a) in acc.iter_mut().enumerate() {
                let qv = q[r * d + c];
                for l in 0..LANES {
                    a[l] += qv * kr[l];
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

    /// Every body this CPU runs (the portable one, which a CPU without AVX2 + FMA runs, and the
    /// tiled one on each instruction set) against the reference, on ragged lengths and head
    /// sizes (edges of both tiles), causal and key-padded, each head alone and all together,
    /// into an output poisoned with NaN whose other heads' columns must stay NaN. One thread
    /// runs them all, so each shape finds the scratch a larger one left.
    #[test]
    fn every_attention_body_matches_reference_alone_and_grouped() {
        type Body = unsafe fn(&Group<'_>, Out);
        let mut bodies: Vec<(&str, Body)> = vec![("portable", heads_portable)];
        #[cfg(target_arch = "x86_64")]
        for isa in Isa::runnable() {
            // `runnable` lists only what this CPU runs
            match isa {
                Isa::Avx512 => bodies.push(("tiled avx512", heads_avx512)),
                Isa::Avx2 => bodies.push(("tiled avx2", heads_avx2)),
            }
        }
        let mut rng = Rng::new(27);
        for (seq, heads, d, causal) in [
            (1, 1, 8, false),
            (37, 2, 32, false),
            (21, 3, 64, true),
            (9, 1, 7, true),
            (130, 1, 33, false),
            (13, 3, 17, true),
        ] {
            let cfg = AttentionConfig { batch: 1, seq, heads, head_dim: d, batch_first: true, causal };
            let e = cfg.embed();
            let qkv = rng.vec(seq * 3 * e, -1.0, 1.0);
            let pad: Vec<u32> = (0..seq).map(|j| (j > 0 && j % 4 == 0) as u32).collect();
            let at = Seq { first_row: 0, row_step: 1, len: seq };
            let groups: Vec<std::ops::Range<usize>> =
                (0..heads).map(|h| h..h + 1).chain([0..heads, 1.min(heads - 1)..heads]).collect();
            for mask in [None, Some(&pad[..])] {
                let mut want = vec![0.0; seq * e];
                crate::reference::attention::attention(&mut want, &qkv, mask, &cfg);
                for hs in &groups {
                    let cols = hs.start * d..hs.end * d;
                    let want_g: Vec<f32> = want.chunks(e).flat_map(|r| r[cols.clone()].to_vec()).collect();
                    for (name, body) in &bodies {
                        let mut out = vec![f32::NAN; seq * e];
                        let g = Group { qkv: &qkv, at, hs: hs.clone(), pad: mask, cfg: &cfg };
                        // SAFETY: out is the sequence's whole (seq, E) output, and the bodies
                        // listed run on this CPU.
                        unsafe { body(&g, Out::new(&mut out)) };
                        let got: Vec<f32> = out.chunks(e).flat_map(|r| r[cols.clone()].to_vec()).collect();
                        let what = format!("{name} s{seq} heads {hs:?} d{d} causal={causal} padded={}", mask.is_some());
                        assert_close(&what, &got, &want_g, ATTENTION_TOL);
                        let others =
                            out.chunks(e).flat_map(|r| r.iter().enumerate().filter(|(c, _)| !cols.contains(c)));
                        assert!(others.into_iter().all(|(_, v)| v.is_nan()), "{what}: wrote outside its heads");
                    }
                }
            }
        }
    }

    /// Packed sequences of different lengths against each one alone through the reference.
    #[test]
    fn cpu_packed_attention_matches_each_sequence_alone() {
        let mut rng = Rng::new(26);
        for (lens, heads, d, causal) in
            [(vec![1usize], 1, 8, false), (vec![5, 1, 0, 37, 12], 3, 32, false), (vec![9, 30], 2, 7, true)]
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
