// matmul_coop: the matmul contract of the tiled family (out = act(x · wᵀ + bias), same params and
//   bindings as matmul_subgroup8.wgsl) on cooperative matrices (tensor cores), at f32 accuracy by
//   the split-f16 product of Ootomo and Yokota (2022): each f32 operand v becomes hi = f16(v) and
//   lo = f16((v - hi) * 2^11), and x · wᵀ = hi·hi + (hi·lo + lo·hi) / 2^11 (lo·lo dropped), three
//   f16 x f16 -> f32 products. The 2^11 keeps lo out of f16's subnormal range.
// dispatch: (ceil(N / BN), ceil(M / BM), batch) workgroups of WG = SG * 4 invocations: four
//   subgroups, 2 x 2 over the BM x BN = 64 x 64 block; subgroup s owns a 32 x 32 quarter as
//   2 x 2 tiles of 16 x 16, each with a main (hi·hi) and a correction accumulator.
// per BK = 32 slab of k: the workgroup loads x (BM x BK) and w (BN x BK) as f32, splits each value
//   once into hi and lo and stages the four f16 slabs row-major in workgroup memory (rows padded by
//   8 halves); two 16-deep steps of 3 coopMultiplyAdd per tile follow.
// epilogue: tile by tile, each subgroup stages a main and a correction accumulator in its corner of
//   workgroup memory; its lanes combine main + correction / 2^11, add the bias, apply the activation
//   and store what is in bounds (28 KiB of workgroup memory in all).
// constants: SG (the adapter's one subgroup width: min = max, checked by the host), BM, BN, BK,
//   PAD (halves of padding per staged row), ACT_*, and the directives `enable f16; enable
//   wgpu_cooperative_matrix;` are prepended by src/kernels/matmul.rs, which sizes the dispatch
//   and the workgroup memory from the same numbers. Ragged edges stage zeros and skip their stores: any M, N, K >= 1.
// loops: every loop runs to a constant or to the tile count of the params; the cooperative
//   operations run in uniform control flow (every subgroup of the workgroup, every step).
// needs: f16 and the adapter's cooperative matrices f16 x f16 -> f32 at 16 x 16 x 16; a device
//   self-test (src/kernels/matmul.rs) runs it against the reference before it may be chosen.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;

const WG: u32 = SG * 4u;
const LDS: u32 = BK + PAD;            // halves per staged row (padding against bank conflicts)
const SCALE: f32 = 2048.0;            // 2^11
const CT: u32 = 16u * 16u;            // floats of one staged 16 x 16 accumulator

var<workgroup> xh: array<f16, BM * LDS>;
var<workgroup> xl: array<f16, BM * LDS>;
var<workgroup> wh: array<f16, BN * LDS>;
var<workgroup> wl: array<f16, BN * LDS>;
// per subgroup: one main and one correction tile at a time, staged for the epilogue
var<workgroup> cs: array<f32, 4u * 2u * CT>;

// The 16 x 16 tile staged at cs[cb..] (main, then correction) whose top-left element is out[gm0, gn0]:
// main + correction / 2^11, bias, activation, stored where in bounds. The subgroup's lanes share it.
fn store_tile(cb: u32, gm0: u32, gn0: u32, b: u32, lane: u32) {
    for (var e = lane; e < CT; e += SG) {
        let gm = gm0 + e / 16u;
        let gn = gn0 + e % 16u;
        if (gm >= p.m || gn >= p.n) { continue; }
        var v = cs[cb + e] + cs[cb + CT + e] / SCALE;
        if (p.has_bias != 0u) { v += bias[gn]; }
        out[(b * p.m + gm) * p.n + gn] = activate(v);
    }
}

// hi and lo halves of one f32: v ~ hi + lo / 2^11
fn split(v: f32) -> vec2<f16> {
    let hi = f16(v);
    return vec2<f16>(hi, f16((v - f32(hi)) * SCALE));
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let b = wg.z;
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let x_base = b * p.m * p.k;
    let w_base = b * p.w_batch_stride;
    // this subgroup's 32 x 32 quarter of the block
    let sr = (sg / 2u) * 32u;
    let sc = (sg % 2u) * 32u;

    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var d00 = coop_mat16x16<f32, C>();
    var d01 = coop_mat16x16<f32, C>();
    var d10 = coop_mat16x16<f32, C>();
    var d11 = coop_mat16x16<f32, C>();

    let tiles = (p.k + BK - 1u) / BK;
    for (var t = 0u; t < tiles; t++) {
        let k0 = t * BK;
        // 1. stage x and w as hi / lo halves, zero past the edges
        for (var i = li; i < BM * BK; i += WG) {
            let r = i / BK;
            let kk = i % BK;
            var xv = 0.0;
            if (row0 + r < p.m && k0 + kk < p.k) { xv = x[x_base + (row0 + r) * p.k + k0 + kk]; }
            var wv = 0.0;
            if (col0 + r < p.n && k0 + kk < p.k) { wv = w[w_base + (col0 + r) * p.k + k0 + kk]; }
            let xs = split(xv);
            let ws = split(wv);
            xh[r * LDS + kk] = xs.x;
            xl[r * LDS + kk] = xs.y;
            wh[r * LDS + kk] = ws.x;
            wl[r * LDS + kk] = ws.y;
        }
        workgroupBarrier();
        // 2. two 16-deep steps: per tile hi·hi into c, hi·lo and lo·hi into d
        for (var kk = 0u; kk < BK; kk += 16u) {
            let a0 = (sr + 0u) * LDS + kk;
            let a1 = (sr + 16u) * LDS + kk;
            let b0 = (sc + 0u) * LDS + kk;
            let b1 = (sc + 16u) * LDS + kk;
            // A: x rows, row-major (coopLoadT); B: w rows read as a column-major K x N matrix
            let ah0 = coopLoadT<coop_mat16x16<f16, A>>(&xh[a0], LDS);
            let ah1 = coopLoadT<coop_mat16x16<f16, A>>(&xh[a1], LDS);
            let al0 = coopLoadT<coop_mat16x16<f16, A>>(&xl[a0], LDS);
            let al1 = coopLoadT<coop_mat16x16<f16, A>>(&xl[a1], LDS);
            let bh0 = coopLoad<coop_mat16x16<f16, B>>(&wh[b0], LDS);
            let bh1 = coopLoad<coop_mat16x16<f16, B>>(&wh[b1], LDS);
            let bl0 = coopLoad<coop_mat16x16<f16, B>>(&wl[b0], LDS);
            let bl1 = coopLoad<coop_mat16x16<f16, B>>(&wl[b1], LDS);
            c00 = coopMultiplyAdd(ah0, bh0, c00);
            c01 = coopMultiplyAdd(ah0, bh1, c01);
            c10 = coopMultiplyAdd(ah1, bh0, c10);
            c11 = coopMultiplyAdd(ah1, bh1, c11);
            d00 = coopMultiplyAdd(al0, bh0, coopMultiplyAdd(ah0, bl0, d00));
            d01 = coopMultiplyAdd(al0, bh1, coopMultiplyAdd(ah0, bl1, d01));
            d10 = coopMultiplyAdd(al1, bh0, coopMultiplyAdd(ah1, bl0, d10));
            d11 = coopMultiplyAdd(al1, bh1, coopMultiplyAdd(ah1, bl1, d11));
        }
        workgroupBarrier();
    }

    // 3. epilogue, one tile at a time: the subgroup stages its main and correction accumulators
    //    (16 x 16 each) in its own corner of workgroup memory; its lanes combine them
    let cb = sg * 2u * CT;
    coopStoreT(c00, &cs[cb], 16u);
    coopStoreT(d00, &cs[cb + CT], 16u);
    workgroupBarrier();
    store_tile(cb, row0 + sr, col0 + sc, b, lane);
    workgroupBarrier();
    coopStoreT(c01, &cs[cb], 16u);
    coopStoreT(d01, &cs[cb + CT], 16u);
    workgroupBarrier();
    store_tile(cb, row0 + sr, col0 + sc + 16u, b, lane);
    workgroupBarrier();
    coopStoreT(c10, &cs[cb], 16u);
    coopStoreT(d10, &cs[cb + CT], 16u);
    workgroupBarrier();
    store_tile(cb, row0 + sr + 16u, col0 + sc, b, lane);
    workgroupBarrier();
    coopStoreT(c11, &cs[cb], 16u);
    coopStoreT(d11, &cs[cb + CT], 16u);
    workgroupBarrier();
    store_tile(cb, row0 + sr + 16u, col0 + sc + 16u, b, lane);
}
