// layernorm_rows: the contract of layernorm_tiled.wgsl (same params; bindings as vec4, so C % 4 == 0), for
//   GPUs with subgroups: one subgroup per row, several rows per workgroup, statistics reduced with
//   subgroupAdd (no workgroup memory, no barriers), x, residual, gamma, beta and out read as vec4.
// dispatch: (gx, gy, 1) workgroups of WG; subgroup g of workgroup w = wg.y * gx + wg.x takes row
//   w * rows_per_group + g; rows_per_group = WG / (the adapter's largest subgroup size), so every row
//   is covered whatever size the device picks (extra subgroups of a smaller size idle).
// per row: a row of up to CACHE4 * 4 * subgroup-size values (1024 at 32 lanes) is loaded once into
//   registers by constant-trip loops; longer rows are loaded again for each pass.
// assumes: two passes in f32 (mean, then squared deviations); ELEM = vec4<f32> (prepended).
// shared: Params, the bindings and load() live in layernorm_io.wgsl, appended by src/kernels/layernorm.rs.
// constants: WG, CACHE4 (vec4s per lane held in registers), prepended by src/kernels/layernorm.rs.

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row = (wg.y * p.groups_x + wg.x) * p.rows_per_group + sg_id;
    // subgroup-uniform: the subgroupAdds below run with the whole subgroup or not at all
    if (sg_id >= p.rows_per_group || row >= p.rows) { return; }
    let cols4 = p.cols / 4u;
    let base = row * cols4;
    let n = f32(p.cols);
    let cached = cols4 <= CACHE4 * sg_size;
    var v: array<vec4<f32>, CACHE4>;

    // 1. mean (and the row into registers when it fits)
    var s = vec4<f32>(0.0);
    if (cached) {
        for (var k = 0u; k < CACHE4; k++) {
            let c = lane + k * sg_size;
            if (c < cols4) { v[k] = load(base + c); s += v[k]; }
        }
    } else {
        for (var c = lane; c < cols4; c += sg_size) { s += load(base + c); }
    }
    let mean = subgroupAdd(s.x + s.y + s.z + s.w) / n;

    // 2. variance around the mean
    var q = vec4<f32>(0.0);
    if (cached) {
        for (var k = 0u; k < CACHE4; k++) {
            let c = lane + k * sg_size;
            if (c < cols4) { let d = v[k] - mean; q += d * d; }
        }
    } else {
        for (var c = lane; c < cols4; c += sg_size) { let d = load(base + c) - mean; q += d * d; }
    }
    let rstd = 1.0 / sqrt(subgroupAdd(q.x + q.y + q.z + q.w) / n + p.eps);

    // 3. normalise, scale, shift
    if (cached) {
        for (var k = 0u; k < CACHE4; k++) {
            let c = lane + k * sg_size;
            if (c < cols4) { out[base + c] = (v[k] - mean) * rstd * gamma[c] + beta[c]; }
        }
    } else {
        for (var c = lane; c < cols4; c += sg_size) {
            out[base + c] = (load(base + c) - mean) * rstd * gamma[c] + beta[c];
        }
    }
}
