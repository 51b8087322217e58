// layernorm_subgroup8: the contract of layernorm_tiled.wgsl (same bindings and params), for adapters
//   whose subgroups are SG = 8 lanes wide: lavapipe, where workgroup memory and barriers are
//   costly. One subgroup per row, statistics reduced with subgroupAdd: no workgroup memory, no
//   barriers. The row's values (x + residual) stay in a private array when cols <= SG * CACHE,
//   so they are loaded once; longer rows are loaded again for each pass.
// dispatch: (gx, gy, 1) workgroups of SG invocations, one per row, row = wg.y * gx + wg.x
// assumes: the subgroup is exactly SG lanes (checked by the host); two passes in f32.
// shared: Params, the bindings and load() live in layernorm_io.wgsl, appended by src/kernels/layernorm.rs.
// constants: SG, CACHE (row values per lane held in registers), prepended by src/kernels/layernorm.rs.

@compute @workgroup_size(SG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let n = f32(p.cols);
    let cached = p.cols <= SG * CACHE;
    var v: array<f32, CACHE>;

    // 1. mean (and the row into registers when it fits)
    var s = 0.0;
    var i = 0u;
    for (var c = lane; c < p.cols; c += SG) {
        let a = load(base + c);
        if (cached) { v[i] = a; }
        s += a;
        i++;
    }
    let mean = subgroupAdd(s) / n;

    // 2. variance around the mean
    var q = 0.0;
    i = 0u;
    for (var c = lane; c < p.cols; c += SG) {
        var a: f32;
        if (cached) { a = v[i]; } else { a = load(base + c); }
        let d = a - mean;
        q += d * d;
        i++;
    }
    let rstd = 1.0 / sqrt(subgroupAdd(q) / n + p.eps);

    // 3. normalise, scale, shift
    i = 0u;
    for (var c = lane; c < p.cols; c += SG) {
        var a: f32;
        if (cached) { a = v[i]; } else { a = load(base + c); }
        out[base + c] = (a - mean) * rstd * gamma[c] + beta[c];
        i++;
    }
}
