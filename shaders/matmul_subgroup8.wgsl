// matmul_subgroup8: the matmul contract of the tiled family (src/shaders/matmul_tile.rs: out =
//   act(x · wᵀ + bias), same bindings and params), for adapters whose subgroups are SG = 8 lanes
//   wide: lavapipe. There every storage or
//   workgroup-memory load is a loop over the lanes (about 5 ns per lane-value on 2 cores, against
//   well under 1 ns for an FMA) and a barrier switches coroutines, so this kernel has no workgroup
//   memory, no barriers, and each x element is loaded once per subgroup and broadcast.
// dispatch: (ceil(N / TN), ceil(M / RM), batch) workgroups of SG invocations, one subgroup each;
//   the subgroup computes an RM x TN tile, lane l owning columns col0 + j * SG + l (j < RN)
// per SG-deep step of k: lane l loads x[r, k0 + l] for its tile's RM rows (one load per row for the
//   whole subgroup) and hands them round with subgroupBroadcast; it loads its own RN rows of w.
// assumes: the subgroup is exactly SG lanes (checked by the host); ragged M, N, K read clamped
//   indices and select zero, so every M, N, K >= 1 is exact. naga 30 takes the subgroup builtins
//   without `enable subgroups;` (which it does not parse yet). The broadcasts below assume SG = 8.
// shared: Params, the bias / out bindings and activate() live in matmul_io.wgsl, appended by src/kernels/matmul.rs.
// constants: SG, RM (rows of out per subgroup), RN (columns per lane), ACT_*, prepended by
//   src/kernels/matmul.rs.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;

const TN: u32 = SG * RN;          // columns of out per subgroup

@compute @workgroup_size(SG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let b = wg.z;
    let row0 = wg.y * RM;
    let col0 = wg.x * TN;
    let x_base = b * p.m * p.k;
    let w_base = b * p.w_batch_stride;
    let last_x = arrayLength(&x) - 1u;
    let last_w = arrayLength(&w) - 1u;

    var acc: array<f32, RM * RN>;
    for (var k0 = 0u; k0 < p.k; k0 += SG) {
        // 1. this lane's slice of the x tile: column k0 + lane of each row
        let kx = k0 + lane;
        var xv: array<f32, RM>;
        for (var r = 0u; r < RM; r++) {
            let ok = kx < p.k && row0 + r < p.m;
            xv[r] = select(0.0, x[min(x_base + (row0 + r) * p.k + kx, last_x)], ok);
        }
        // 2. this lane's own RN rows of w, SG deep
        var wv: array<f32, RN * SG>;
        for (var j = 0u; j < RN; j++) {
            let n = col0 + j * SG + lane;
            for (var kk = 0u; kk < SG; kk++) {
                let ok = n < p.n && k0 + kk < p.k;
                wv[j * SG + kk] = select(0.0, w[min(w_base + n * p.k + k0 + kk, last_w)], ok);
            }
        }
        // 3. rank-1 updates: x[r, k0 + kk] comes from lane kk (constant lanes: a broadcast is a register splat)
        for (var r = 0u; r < RM; r++) {
            let a0 = subgroupBroadcast(xv[r], 0u);
            let a1 = subgroupBroadcast(xv[r], 1u);
            let a2 = subgroupBroadcast(xv[r], 2u);
            let a3 = subgroupBroadcast(xv[r], 3u);
            let a4 = subgroupBroadcast(xv[r], 4u);
            let a5 = subgroupBroadcast(xv[r], 5u);
            let a6 = subgroupBroadcast(xv[r], 6u);
            let a7 = subgroupBroadcast(xv[r], 7u);
            for (var j = 0u; j < RN; j++) {
                let base = j * SG;
                var s = acc[r * RN + j];
                s = fma(a0, wv[base], s);
                s = fma(a1, wv[base + 1u], s);
                s = fma(a2, wv[base + 2u], s);
                s = fma(a3, wv[base + 3u], s);
                s = fma(a4, wv[base + 4u], s);
                s = fma(a5, wv[base + 5u], s);
                s = fma(a6, wv[base + 6u], s);
                s = fma(a7, wv[base + 7u], s);
                acc[r * RN + j] = s;
            }
        }
    }

    // 4. epilogue: bias, activation, bounded store
    for (var j = 0u; j < RN; j++) {
        let n = col0 + j * SG + lane;
        if (n >= p.n) { continue; }
        var bn = 0.0;
        if (p.has_bias != 0u) { bn = bias[n]; }
        for (var r = 0u; r < RM; r++) {
            let m = row0 + r;
            if (m < p.m) {
                out[(b * p.m + m) * p.n + n] = activate(acc[r * RN + j] + bn);
            }
        }
    }
}
