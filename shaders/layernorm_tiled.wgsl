// layernorm: out[r, :] = (v[r, :] - mean_r) * rstd_r * gamma + beta,  v = x (+ residual when has_residual)
//            (PyTorch nn.LayerNorm: biased variance, rstd = 1 / sqrt(var + eps))
// bindings: 0 x (rows, C) | 1 residual (rows, C), x itself when unused | 2 gamma (C) | 3 beta (C)
//           4 out (rows, C) read_write | 5 params
// dispatch: (gx, gy, 1) workgroups, one per row, row = wg.y * gx + wg.x; WG invocations stride over C
// assumes: WG is a power of two; two passes (mean, then squared deviations) accumulate in f32
// shared: Params, the bindings and load() live in layernorm_io.wgsl, appended by src/kernels/layernorm.rs.
// constants: WG, prepended by src/kernels/layernorm.rs (ELEM = f32).

var<workgroup> partial: array<f32, WG>;

// Sum of `v` over the workgroup (tree reduction); every invocation gets the total.
fn workgroup_sum(v: f32, lane: u32) -> f32 {
    partial[lane] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s) { partial[lane] += partial[lane + s]; }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();   // partial is reused by the next reduction
    return total;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row = wg.y * p.groups_x + wg.x;
    // `row` is uniform across the workgroup, so this early exit keeps barriers uniform.
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let n = f32(p.cols);

    // 1. mean
    var s = 0.0;
    for (var c = lane; c < p.cols; c += WG) { s += load(base + c); }
    let mean = workgroup_sum(s, lane) / n;

    // 2. variance around the mean (no E[x^2] - E[x]^2 cancellation)
    var q = 0.0;
    for (var c = lane; c < p.cols; c += WG) {
        let d = load(base + c) - mean;
        q += d * d;
    }
    let rstd = 1.0 / sqrt(workgroup_sum(q, lane) / n + p.eps);

    // 3. normalise, scale, shift
    for (var c = lane; c < p.cols; c += WG) {
        out[base + c] = (load(base + c) - mean) * rstd * gamma[c] + beta[c];
    }
}
