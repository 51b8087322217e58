//! Linear layers on weights packed once, at load: out (t, n) = act(x (t, k) · wᵀ + bias) with
//! w (n, k) laid out as column panels of NR (k rows of NR contiguous values, zeros past n), so
//! no forward packs the weights again. A register-blocked micro-kernel keeps an MR × NR tile of
//! the output in registers over all of k, reading x's rows where they lie (no packing of x
//! either), and applies the bias and activation to the tile while it is in L1: 12 × 32 on
//! AVX-512, 6 × 16 on AVX2 + FMA, chosen at run time. On a CPU with neither (and in wasm32)
//! [`PackedLinear::new`] returns `None` and the caller keeps [`super::matmul::matmul`].

use crate::ops::Activation;

/// Values of a weight above which [`PackedLinear::rows_into`] packs its panels in parallel.
const PARALLEL_PACKING: usize = 1 << 16;

/// The fewest rows at which [`super::matmul::matmul`] packs its weight at every call for the
/// micro-kernel instead of calling sgemm: with the packing counted, MiniLM's and the bench's
/// shapes measured 0.96-1.26x of sgemm's time at 512 rows and 0.85-0.93x (three of five) at
/// 16 on this project's 2-core machine (PERFORMANCE.md entry 18).
pub const PACK_PER_CALL_ROWS: usize = 256;

/// The instruction set a packing was made for: it fixes the micro-kernel's tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F: 12 rows × 32 columns, 24 of the 32 zmm registers accumulating.
    Avx512,
    /// AVX2 and FMA: 6 rows × 16 columns, 12 of the 16 ymm registers accumulating.
    Avx2,
}

impl Isa {
    /// The widest instruction set this CPU runs, if it has one of the two.
    pub(crate) fn detect() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Some(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Some(Isa::Avx2);
            }
        }
        None
    }

    /// Every instruction set this CPU runs, widest first: the detected one and the narrower.
    #[cfg(test)]
    pub(crate) fn runnable() -> Vec<Isa> {
        match Isa::detect() {
            Some(Isa::Avx512) => vec![Isa::Avx512, Isa::Avx2],
            Some(Isa::Avx2) => vec![Isa::Avx2],
            None => vec![],
        }
    }

    /// The instruction set's name, for reports.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2 => "AVX2+FMA",
        }
    }

    /// Rows of the output tile.
    pub(crate) const fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Avx2 => 6,
        }
    }

    /// Columns of the output tile: the width of a weight panel.
    pub(crate) const fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 => 16,
        }
    }
}

/// A linear layer's weight w (n, k), packed for [`linear`]: panel p holds columns
/// p·NR .. p·NR + NR of wᵀ, k rows of NR values each.
#[derive(Clone, Debug)]
pub struct PackedLinear {
    n: usize,
    k: usize,
    isa: Isa,
    panels: Vec<f32>,
}

impl PackedLinear {
    /// Packs w (n, k) for this CPU's micro-kernel; `None` where there is none (no AVX2 + FMA).
    pub fn new(w: &[f32], n: usize, k: usize) -> Option<PackedLinear> {
        Isa::detect().map(|isa| PackedLinear::with_isa(w, n, k, isa))
    }

    /// Packs w (n, k) for `isa`'s tile (the caller makes sure the CPU runs it).
    pub(crate) fn with_isa(w: &[f32], n: usize, k: usize, isa: Isa) -> PackedLinear {
        assert!(w.len() >= n * k, "PackedLinear: w has {} values, expected {n} x {k}", w.len());
        PackedLinear::from_rows(n, k, isa, |col| &w[col * k..(col + 1) * k])
    }

    /// Packs the (n, k) weight whose row `col` (k values: what output column `col` sums over)
    /// is `row(col)`, its panels in parallel when it is large (a weight packed at load).
    pub(crate) fn from_rows<'a>(n: usize, k: usize, isa: Isa, row: impl Fn(usize) -> &'a [f32] + Sync) -> PackedLinear {
        PackedLinear::rows_into(Vec::new(), n, k, isa, row)
    }

    /// [`PackedLinear::from_rows`] into `panels`, reused (what it held is overwritten): a
    /// matmul's weight packed at its call.
    pub(crate) fn rows_into<'a>(
        panels: Vec<f32>,
        n: usize,
        k: usize,
        isa: Isa,
        row: impl Fn(usize) -> &'a [f32] + Sync,
    ) -> PackedLinear {
        let mut packed = PackedLinear::blank(panels, n, k, isa);
        let nr = isa.nr();
        let fill = |p: usize, panel: &mut [f32]| fill_panel(panel, p * nr..n.min(p * nr + nr), k, nr, &row);
        // a weight of a matmul packed at every call is worth both cores
        match n * k >= PARALLEL_PACKING {
            true => super::par::for_each_chunk(&mut packed.panels, k * nr, fill),
            false => packed.panels.chunks_mut(k * nr).enumerate().for_each(|(p, panel)| fill(p, panel)),
        }
        packed
    }

    /// An (n, k) packing over `panels` grown (never shrunk) to its size, the columns past n
    /// in its last panel zero: every other value is for the caller to write (through
    /// [`PackedLinear::panels_mut`]: panel p's row kk holds value kk of columns p·NR..).
    pub(crate) fn blank(mut panels: Vec<f32>, n: usize, k: usize, isa: Isa) -> PackedLinear {
        let nr = isa.nr();
        let len = n.div_ceil(nr) * k * nr;
        if panels.len() < len {
            panels.resize(len, 0.0);
        }
        panels.truncate(len);
        if !n.is_multiple_of(nr) {
            let last = &mut panels[(n / nr) * k * nr..];
            for kk in 0..k {
                last[kk * nr + n % nr..(kk + 1) * nr].fill(0.0);
            }
        }
        PackedLinear { n, k, isa, panels }
    }

    /// A packing of nothing (0 x 0), for [`PackedLinear::reshape`] to grow.
    pub(crate) fn empty() -> PackedLinear {
        PackedLinear { n: 0, k: 0, isa: Isa::Avx2, panels: Vec::new() }
    }

    /// This packing's storage made a [`PackedLinear::blank`] (n, k) packing for `isa`, to fill.
    pub(crate) fn reshape(&mut self, n: usize, k: usize, isa: Isa) {
        *self = PackedLinear::blank(std::mem::take(&mut self.panels), n, k, isa);
    }

    /// The panels, to fill a [`PackedLinear::blank`] packing.
    pub(crate) fn panels_mut(&mut self) -> &mut [f32] {
        &mut self.panels
    }

    /// The packing's storage, for a later [`PackedLinear::rows_into`].
    pub(crate) fn into_panels(self) -> Vec<f32> {
        self.panels
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input columns.
    pub fn k(&self) -> usize {
        self.k
    }
}

/// Panel `cols` (at most nr output columns): row kk of the panel holds value kk of each
/// column's weight row, `row(col)`.
fn fill_panel<'a>(
    panel: &mut [f32],
    cols: std::ops::Range<usize>,
    k: usize,
    nr: usize,
    row: &impl Fn(usize) -> &'a [f32],
) {
    for (j, col) in cols.enumerate() {
        for (slot, &v) in panel.iter_mut().skip(j).step_by(nr).zip(&row(col)[..k]) {
            *slot = v;
        }
    }
}

/// A raw output pointer shared by tasks that write disjoint parts of one buffer (tiles of a
/// linear layer's output, heads of attention's).
#[derive(Clone, Copy)]
pub(crate) struct Out(*mut f32);
// SAFETY: the tasks sharing an `Out` write disjoint parts of the buffer it points into.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// The output `out`, for tasks that each write their own part of it.
    pub(crate) fn new(out: &mut [f32]) -> Out {
        Out(out.as_mut_ptr())
    }

    /// The pointer, through a method so a closure captures the whole `Out` (Send), not its field.
    pub(crate) fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Where one micro-kernel call reads and writes: `rows` rows of x from `x` (row stride
/// `ldx`, at least k), the panel, and the tile's corner in out (row stride `ldc`), `cols` of
/// its NR columns.
struct Tile<'a> {
    x: &'a [f32],
    ldx: usize,
    rows: usize,
    panel: &'a [f32],
    out: *mut f32,
    ldc: usize,
    cols: usize,
    bias: Option<&'a [f32]>,
    act: Activation,
}

/// out (t, n) = act(x (t, k) · wᵀ + bias) on the packed weight: [`super::matmul::matmul`]'s
/// contract for one shared weight. Tiles are shared out over rayon's pool, about two tasks per
/// thread: by weight panels first (each thread then keeps its share of w in its own cache),
/// then by row blocks.
pub fn linear(out: &mut [f32], x: &[f32], w: &PackedLinear, bias: Option<&[f32]>, act: Activation, t: usize) {
    let (n, k, isa) = (w.n, w.k, w.isa);
    assert!(x.len() >= t * k && out.len() >= t * n, "linear: operands shorter than their shapes");
    assert!(bias.is_none_or(|b| b.len() >= n), "linear: bias shorter than n");
    if t == 0 || n == 0 {
        return;
    }
    let (panels, blocks) = (n.div_ceil(isa.nr()), t.div_ceil(isa.mr()));
    let want = 2 * rayon::current_num_threads();
    let gn = panels.min(want);
    let gm = (want / gn).clamp(1, blocks);
    let o = Out::new(out);
    let run = |task: usize| {
        // SAFETY: the ranges lie inside the shapes asserted above, and the tasks' tiles are
        // disjoint (each task its own blocks × panels).
        unsafe { tiles(o, x, w, bias, act, t, part(blocks, gm, task / gn), part(panels, gn, task % gn)) }
    };
    super::par::for_each(gm * gn, run);
}

/// out (t, n) = x (t, k) · wᵀ on the calling thread alone, no bias or activation: for callers
/// that already run one task per core (attention's heads).
pub(crate) fn linear_serial(out: &mut [f32], x: &[f32], w: &PackedLinear, t: usize) {
    assert!(x.len() >= t * w.k && out.len() >= t * w.n, "linear_serial: operands shorter than their shapes");
    let (panels, blocks) = (w.n.div_ceil(w.isa.nr()), t.div_ceil(w.isa.mr()));
    // SAFETY: the whole of out, inside the shapes asserted just above, on this thread.
    unsafe { tiles(Out::new(out), x, w, None, Activation::None, t, 0..blocks, 0..panels) }
}

/// Row strides of x that are a multiple of this many values put every row of a tile in one
/// set of L1 (64 sets of 64-byte lines: 4 KB apart), where the AVX-512 tile's 12 rows evict
/// each other from its 8 ways. Such row blocks are copied to [`ROW_PAD`] more apart first:
/// 504 x 64 x 1024 ran at 106 GFLOP/s on one Zen 4 core copied, against 80 read in place;
/// at k = 512 and 1536, where the rows share two sets, the copy cost 10-15% instead
/// (PERFORMANCE.md entry 19).
const ALIASING_STRIDE: usize = 1024;

/// Ways of L1 a set has (Zen 4, and Intel since Skylake): more tile rows than this in one set
/// evict each other.
const L1_WAYS: usize = 8;

/// Values between a copied block's rows beyond k: one cache line, so row r lands r sets on.
const ROW_PAD: usize = 16;

thread_local! {
    /// A rayon thread's copy of the row block it is on, reused by every call (no allocation
    /// once it has grown to the largest block).
    static ROW_COPY: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The tiles of row blocks `blocks` × weight panels `panels`, each on the micro-kernel.
///
/// # Safety
/// x holds t × k values and `out` points at t × n writable ones, bias (if any) n; the ranges
/// lie inside t.div_ceil(MR) and n.div_ceil(NR); nothing else writes these tiles meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn tiles(
    o: Out,
    x: &[f32],
    w: &PackedLinear,
    bias: Option<&[f32]>,
    act: Activation,
    t: usize,
    blocks: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    let (n, k, isa) = (w.n, w.k, w.isa);
    let (mr, nr) = (isa.mr(), isa.nr());
    let copy = k > 0 && k.is_multiple_of(ALIASING_STRIDE) && mr > L1_WAYS;
    let mut buf = if copy { ROW_COPY.take() } else { Vec::new() };
    let ldx = if copy { k + ROW_PAD } else { k };
    if copy && buf.len() < mr * ldx {
        buf.resize(mr * ldx, 0.0);
    }
    for blk in blocks {
        let r0 = blk * mr;
        let rows = mr.min(t - r0);
        let block = &x[r0 * k..(r0 + rows) * k];
        let x = match copy {
            true => {
                for (dst, src) in buf.chunks_mut(ldx).zip(block.chunks(k)) {
                    dst[..k].copy_from_slice(src);
                }
                &buf[..(rows - 1) * ldx + k]
            }
            false => block,
        };
        for p in panels.clone() {
            let c0 = p * nr;
            let tile = Tile {
                x,
                ldx,
                rows,
                panel: &w.panels[p * k * nr..(p + 1) * k * nr],
                // (r0, c0) is inside out: r0 < t, c0 < n (the caller's contract).
                out: o.at(r0 * n + c0),
                ldc: n,
                cols: nr.min(n - c0),
                bias: bias.map(|b| &b[c0..]),
                act,
            };
            // SAFETY: the packing was made for a detected ISA; the tile lies inside x (or
            // its copy), the panel and out, and no one else writes it (the caller's contract).
            unsafe { micro_kernel(isa, k, &tile) };
        }
    }
    if copy {
        ROW_COPY.set(buf);
    }
}

/// Part `i` of `0..len` cut into `parts` near-equal ranges.
fn part(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    (len * i / parts)..(len * (i + 1) / parts)
}

/// One tile on `isa`'s kernel.
///
/// # Safety
/// The CPU must run `isa`, and `tile` must describe memory inside its operands.
unsafe fn micro_kernel(isa: Isa, k: usize, tile: &Tile<'_>) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the caller's contract.
        Isa::Avx512 => unsafe { x86::tile_avx512(k, tile) },
        // SAFETY: the caller's contract.
        Isa::Avx2 => unsafe { x86::tile_avx2(k, tile) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, k, tile);
        unreachable!("no packed kernel off x86-64: Isa::detect returns None");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Tile;
    use crate::cpu::math::bias_act_body;

    /// The tile's epilogue, in L1: act(tile + bias) row by row over its `cols` columns.
    ///
    /// # Safety
    /// `tile.out` must point at `tile.rows` rows of `tile.cols` writable values, `ldc` apart.
    #[inline(always)]
    unsafe fn epilogue(tile: &Tile<'_>) {
        if tile.bias.is_none() && tile.act == crate::ops::Activation::None {
            return;
        }
        for r in 0..tile.rows {
            // SAFETY: row r of the tile, inside out (the caller's contract).
            let row = unsafe { std::slice::from_raw_parts_mut(tile.out.add(r * tile.ldc), tile.cols) };
            bias_act_body::<true>(row, tile.cols, tile.bias, tile.act);
        }
    }

    /// How many k-steps ahead the AVX-512 kernel prefetches its panel (2 KB at 32 columns).
    const PREFETCH: usize = 16;

    /// Row pointers for an MR-row kernel: rows past the tile's repeat its last row (computed,
    /// never stored), so one kernel serves every edge.
    #[inline(always)]
    fn rows<const MR: usize>(tile: &Tile<'_>, k: usize) -> [*const f32; MR] {
        std::array::from_fn(|r| tile.x[r.min(tile.rows - 1) * tile.ldx..][..k].as_ptr())
    }

    /// 12 × 32 tile: C += x rows · panel over all of k, stored under a column mask, then the
    /// epilogue.
    ///
    /// # Safety
    /// AVX-512F, and `tile` inside its operands with a panel of k × 32 values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_avx512(k: usize, tile: &Tile<'_>) {
        const MR: usize = 12;
        let a = rows::<MR>(tile, k);
        let b = tile.panel.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for kk in 0..k {
            // SAFETY: kk < k: inside the panel (k × 32) and inside each row of x.
            unsafe {
                // the panel streams from L2: ask for its rows PREFETCH k-steps ahead (a hint,
                // never a fault, so the address may run past the panel)
                let ahead = b.wrapping_add((kk + PREFETCH) * 32) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                let b0 = _mm512_loadu_ps(b.add(kk * 32));
                let b1 = _mm512_loadu_ps(b.add(kk * 32 + 16));
                for r in 0..MR {
                    let av = _mm512_set1_ps(*a[r].add(kk));
                    acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
                }
            }
        }
        let mask = |from: usize| -> __mmask16 {
            let c = tile.cols.saturating_sub(from).min(16);
            ((1u32 << c) - 1) as __mmask16
        };
        let (m0, m1) = (mask(0), mask(16));
        for (r, acc) in acc.iter().enumerate().take(tile.rows) {
            // SAFETY: row r < rows of the tile, its first `cols` columns (masked).
            unsafe {
                let c = tile.out.add(r * tile.ldc);
                _mm512_mask_storeu_ps(c, m0, acc[0]);
                _mm512_mask_storeu_ps(c.add(16), m1, acc[1]);
            }
        }
        // SAFETY: the tile was just written.
        unsafe { epilogue(tile) }
    }

    /// 6 × 16 tile, as [`tile_avx512`] on 256-bit vectors.
    ///
    /// # Safety
    /// AVX2 and FMA, and `tile` inside its operands with a panel of k × 16 values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(k: usize, tile: &Tile<'_>) {
        const MR: usize = 6;
        let a = rows::<MR>(tile, k);
        let b = tile.panel.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for kk in 0..k {
            // SAFETY: kk < k: inside the panel (k × 16) and inside each row of x.
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(kk * 16));
                let b1 = _mm256_loadu_ps(b.add(kk * 16 + 8));
                for r in 0..MR {
                    let av = _mm256_set1_ps(*a[r].add(kk));
                    acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
                }
            }
        }
        let mut tmp = [0.0f32; 16];
        for (r, acc) in acc.iter().enumerate().take(tile.rows) {
            // SAFETY: row r < rows of the tile; only its first `cols` columns are copied out.
            unsafe {
                let c = tile.out.add(r * tile.ldc);
                if tile.cols == 16 {
                    _mm256_storeu_ps(c, acc[0]);
                    _mm256_storeu_ps(c.add(8), acc[1]);
                } else {
                    _mm256_storeu_ps(tmp.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), acc[1]);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), c, tile.cols);
                }
            }
        }
        // SAFETY: the tile was just written.
        unsafe { epilogue(tile) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{assert_close, MatmulShape, Tol};
    use crate::rng::Rng;

    /// f32 sums in k order (FMA) against f64 sums.
    const LINEAR_TOL: Tol = Tol { atol: 2e-5, rtol: 1e-4 };

    /// Every ISA this CPU runs, on ragged shapes (edges of both tile sizes, k = 1), every
    /// activation with and without a bias, on 1 and 3 threads (so both ways of sharing tiles
    /// out run), k = 1024 (row blocks copied), over NaN-poisoned outputs, against the reference.
    #[test]
    fn packed_linear_matches_reference_on_every_isa_ragged_and_threaded() {
        let isas = Isa::runnable();
        if isas.is_empty() {
            assert!(PackedLinear::new(&[0.0], 1, 1).is_none());
            eprintln!("no AVX2 + FMA on this CPU: the packed kernels are not used here");
            return;
        }
        let mut rng = Rng::new(61);
        // 25 x 40 x 1024: row blocks copied out of their aliasing stride, the last of one row
        for (t, n, k) in [(1, 1, 1), (7, 63, 65), (13, 33, 9), (65, 17, 257), (130, 100, 40), (25, 40, 1024)] {
            let x = rng.vec(t * k, -1.0, 1.0);
            let w = rng.vec(n * k, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            for &isa in &isas {
                let packed = PackedLinear::with_isa(&w, n, k, isa);
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    for act in Activation::ALL {
                        for b in [None, Some(&bias[..])] {
                            let mut got = vec![f32::NAN; t * n];
                            let mut want = vec![0.0; t * n];
                            pool.install(|| linear(&mut got, &x, &packed, b, act, t));
                            crate::reference::matmul::matmul(&mut want, &x, &w, b, act, MatmulShape::linear(t, n, k));
                            let tol = Tol { atol: LINEAR_TOL.atol * (k as f32).sqrt(), ..LINEAR_TOL };
                            let what = format!("{isa:?} {t}x{n}x{k} {threads} threads {act:?} bias={}", b.is_some());
                            assert_close(&what, &got, &want, tol);
                        }
                    }
                }
            }
        }
    }
}
