// attention_subgroup8: the contract of attention_tiled.wgsl (same bindings, params, layout, masks and NaN
//   rule), for adapters whose subgroups are SG = 8 lanes wide: lavapipe, where every storage or
//   workgroup-memory load is a loop over the lanes. No workgroup memory, no barriers.
// dispatch: (ceil(seq / SG), heads, batch) workgroups of SG invocations, one subgroup each; lane l
//   owns query row s = wg.x * SG + l, with q and its accumulator in private arrays.
// per tile of SG keys: for each key the lanes load its k row cooperatively (lane l: elements
//   l, l + SG, ...) and every lane gets all of it by subgroupBroadcast; the same for v. So each k
//   and v element is loaded once per subgroup instead of once per query.
// assumes: the subgroup is exactly SG lanes (checked by the host), head_dim <= DMAX. The
//   broadcasts below are unrolled for SG = 8. naga 30 takes the subgroup builtins without
//   `enable subgroups;`.
// shared: Params and the bindings live in attention_io.wgsl, appended by src/kernels/attention.rs.
// constants: SG, DMAX, NEG_BIG, prepended by src/kernels/attention.rs.

// Element d of part `off` (k_off or v_off) of head h for key j of batch b, or 0 past the edges.
fn load_kv(b: u32, h: u32, j: u32, d: u32, off: u32) -> f32 {
    var v = 0.0;
    if (j < p.seq && d < p.head_dim) {
        v = qkv[(j * p.row_seq + b * p.row_batch) * p.qkv_stride + off + h * p.head_dim + d];
    }
    return v;
}

@compute @workgroup_size(SG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let h = wg.y;
    let b = wg.z;
    let d_n = p.head_dim;
    let chunks = (d_n + SG - 1u) / SG;
    let s = wg.x * SG + lane;
    let live = s < p.seq;

    // 1. this lane's query row, and its accumulator
    var q: array<f32, DMAX>;
    var acc: array<f32, DMAX>;
    if (live) {
        let q_base = (s * p.row_seq + b * p.row_batch) * p.qkv_stride + p.q_off + h * d_n;
        for (var d = 0u; d < d_n; d++) { q[d] = qkv[q_base + d]; }
    }
    var m = NEG_BIG;
    var l = 0.0;
    var kv_end = p.seq;
    if (p.causal != 0u) { kv_end = min(p.seq, (wg.x + 1u) * SG); }

    for (var j0 = 0u; j0 < kv_end; j0 += SG) {
        // 2. scores of keys j0 .. j0 + SG: k rows shared across the subgroup by broadcast
        var sc: array<f32, SG>;
        var visible = 0u;
        var tile_max = NEG_BIG;
        for (var jj = 0u; jj < SG; jj++) {
            let j = j0 + jj;
            var dot = 0.0;
            for (var c = 0u; c < chunks; c++) {
                let base = c * SG;
                let kv = load_kv(b, h, j, base + lane, p.k_off);
                dot = fma(q[base + 0u], subgroupBroadcast(kv, 0u), dot);
                dot = fma(q[base + 1u], subgroupBroadcast(kv, 1u), dot);
                dot = fma(q[base + 2u], subgroupBroadcast(kv, 2u), dot);
                dot = fma(q[base + 3u], subgroupBroadcast(kv, 3u), dot);
                dot = fma(q[base + 4u], subgroupBroadcast(kv, 4u), dot);
                dot = fma(q[base + 5u], subgroupBroadcast(kv, 5u), dot);
                dot = fma(q[base + 6u], subgroupBroadcast(kv, 6u), dot);
                dot = fma(q[base + 7u], subgroupBroadcast(kv, 7u), dot);
            }
            var ok = live && j < p.seq;
            if (ok && p.causal != 0u) { ok = j <= s; }
            if (ok && p.has_key_pad != 0u) { ok = key_pad[b * p.seq + j] == 0u; }
            if (ok) {
                sc[jj] = dot * p.scale;
                tile_max = max(tile_max, sc[jj]);
                visible |= 1u << jj;
            }
        }
        // 3. online softmax: one rescale per tile
        let m_new = max(m, tile_max);
        let correction = exp(m - m_new);
        l *= correction;
        var pj: array<f32, SG>;
        for (var jj = 0u; jj < SG; jj++) {
            pj[jj] = select(0.0, exp(sc[jj] - m_new), (visible & (1u << jj)) != 0u);
            l += pj[jj];
        }
        m = m_new;
        // 4. acc = acc * correction + sum_jj pj[jj] * v[j0 + jj]: v rows shared by broadcast
        for (var c = 0u; c < chunks; c++) {
            let base = c * SG;
            var vv: array<f32, SG>;
            for (var jj = 0u; jj < SG; jj++) { vv[jj] = load_kv(b, h, j0 + jj, base + lane, p.v_off); }
            {
                var a = acc[base + 0u] * correction;
                for (var jj = 0u; jj < SG; jj++) { a = fma(pj[jj], subgroupBroadcast(vv[jj], 0u), a); }
                acc[base + 0u] = a;
            }
            {
                var a = acc[base + 1u] * correction;
                for (var jj = 0u; jj < SG; jj++) { a = fma(pj[jj], subgroupBroadcast(vv[jj], 1u), a); }
                acc[base + 1u] = a;
            }
            {
                var a = acc[base + 2u] * correction;
                for (var jj = 0u; jj < SG; jj++) { a = fma(pj[jj], subgroupBroadcast(vv[jj], 2u), a); }
                acc[base + 2u] = a;
            }
            {
                var a = acc[base + 3u] * correction;
                for (var jj = 0u; jj < SG; jj++) { a = fma(pj[jj], subgroupBroadcast(vv[jj], 3u), a); }
                acc[base + 3u] = a;
            }
            {
                var a = acc[base + 4u] * correction;
                for (var jj = 0u; jj < SG; jj++) { a = fma(pj[jj], subgroupBroadcast(vv[jj], 4u), a); }
                acc[base + 4u] = a;
            }
            {
                var a = acc[base + 5u] * correction;
                for (var jj = 0u; jj < SG; jj++) { a = fma(pj[jj], subgroupBroadcast(vv[jj], 5u), a); }
                acc[base + 5u] = a;
            }
            {
                var a = acc[base + 6u] * correction;
                for (var jj = 0u; jj < SG; jj++) { a = fma(pj[jj], subgroupBroadcast(vv[jj], 6u), a); }
                acc[base + 6u] = a;
            }
            {
                var a = acc[base + 7u] * correction;
                for (var jj = 0u; jj < SG; jj++) { a = fma(pj[jj], subgroupBroadcast(vv[jj], 7u), a); }
                acc[base + 7u] = a;
            }
        }
    }

    // 5. normalise and store; no visible key -> NaN (0/0 in PyTorch's softmax)
    if (live) {
        let o_base = (s * p.row_seq + b * p.row_batch) * p.out_stride + h * d_n;
        // a runtime NaN: WGSL makes a constant expression that is NaN a shader-creation error
        // (Tint, in the browser, enforces it; naga does not)
        let nan = bitcast<f32>(0x7fc00000u | (p.seq & 0u));
        for (var d = 0u; d < d_n; d++) {
            out[o_base + d] = select(acc[d] / l, nan, l == 0.0);
        }
    }
}
