// attention_flash: the attention contract of attention_tiled.wgsl (same params, bindings, layout, masks and
//   NaN for a query that sees no key), flash-attention style for GPUs with subgroups of >= 4 lanes.
// dispatch: (ceil(seq / BQ), heads, batch) workgroups of WG = 4 * BQ invocations. Four lanes of one
//   subgroup (a quad) own one query: lane r holds q and the output accumulator for the vec4 chunks
//   r, r + 4, r + 8, ... of the head dim (interleaved, so a quad reads 64 contiguous bytes and every
//   quad reads the same key: no bank conflicts). A quad's dot product is summed with two
//   subgroupShuffleXor steps.
// per BKV-key tile: K and V are staged through workgroup memory as vec4 (zero past D and past seq);
//   each quad scores the tile's keys into registers, takes the tile max, rescales its running sum and
//   accumulator once (online softmax), and accumulates P . V; one division at the end.
// constants: src/kernels/attention.rs prepends DMAX (32, 64 or 128: the build's largest head dim), BKV (keys
//   per tile, 64 or 4096 / DMAX so the two tiles fit 32 KiB), BQ (queries per workgroup) and NEG_BIG.
// loops: every loop has a constant bound or stops at kv_end, fixed per workgroup; subgroup operations
//   run in uniform control flow (dead queries compute on clamped rows and skip only the store).
// assumes: D <= DMAX; subgroups of >= 4 lanes, full (WG is a multiple of the subgroup size).

const WG: u32 = 4u * BQ;          // invocations per workgroup: a quad per query
const D4: u32 = DMAX / 16u;       // vec4 chunks per lane

var<workgroup> ks: array<vec4<f32>, BKV * DMAX / 4u>;   // ks[j * DMAX / 4 + chunk]
var<workgroup> vs: array<vec4<f32>, BKV * DMAX / 4u>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    let h = wg.y;
    let b = wg.z;
    let d_n = p.head_dim;
    // the quad is defined by subgroup lanes, so its shuffles never leave it
    let flat = sg_id * sg_size + sg_lane;
    let r = flat % 4u;
    let s = wg.x * BQ + flat / 4u;
    let live = s < p.seq;
    let s_row = min(s, p.seq - 1u);
    let row_base = (s_row * p.row_seq + b * p.row_batch) * p.qkv_stride + h * d_n;

    // 1. this lane's chunks of the query, zero past D
    var q: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var i = 0u; i < D4; i++) {
        let d0 = (r + 4u * i) * 4u;
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            if (d0 + c < d_n) { v[c] = qkv[row_base + p.q_off + d0 + c]; }
        }
        q[i] = v;
        acc[i] = vec4<f32>(0.0);
    }
    var m = NEG_BIG;   // running max of the visible scores
    var l = 0.0;       // running sum of exp(score - m)

    // with a causal mask no query of this workgroup sees keys past its last row
    var kv_end = p.seq;
    if (p.causal != 0u) { kv_end = min(p.seq, (wg.x + 1u) * BQ); }

    for (var j0 = 0u; j0 < kv_end; j0 += BKV) {
        // 2. stage BKV keys and values of this head, vec4 chunk by chunk
        for (var slot = li; slot < BKV * DMAX / 4u; slot += WG) {
            let jj = slot / (DMAX / 4u);
            let d0 = (slot % (DMAX / 4u)) * 4u;
            let j = j0 + jj;
            var kv = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if (j < p.seq) {
                let base = (j * p.row_seq + b * p.row_batch) * p.qkv_stride + h * d_n + d0;
                for (var c = 0u; c < 4u; c++) {
                    if (d0 + c < d_n) {
                        kv[c] = qkv[base + p.k_off + c];
                        vv[c] = qkv[base + p.v_off + c];
                    }
                }
            }
            ks[slot] = kv;
            vs[slot] = vv;
        }
        workgroupBarrier();

        // 3. the tile's scores (quad-reduced), masked to NEG_BIG, and their max
        var sc: array<f32, BKV>;
        var tile_max = NEG_BIG;
        for (var jj = 0u; jj < BKV; jj++) {
            var part = 0.0;
            for (var i = 0u; i < D4; i++) { part += dot(q[i], ks[jj * (DMAX / 4u) + r + 4u * i]); }
            part += subgroupShuffleXor(part, 1u);
            part += subgroupShuffleXor(part, 2u);
            let j = j0 + jj;
            var ok = j < p.seq;
            if (p.causal != 0u) { ok = ok && j <= s; }
            if (p.has_key_pad != 0u) { ok = ok && key_pad[b * p.seq + min(j, p.seq - 1u)] == 0u; }
            sc[jj] = select(NEG_BIG, part * p.scale, ok);
            tile_max = max(tile_max, sc[jj]);
        }

        // 4. online softmax: rescale once per tile, then add the tile's P . V
        if (tile_max > NEG_BIG) {
            let m_new = max(m, tile_max);
            let correction = exp(m - m_new);
            l *= correction;
            for (var i = 0u; i < D4; i++) { acc[i] *= correction; }
            for (var jj = 0u; jj < BKV; jj++) {
                let pj = select(0.0, exp(sc[jj] - m_new), sc[jj] > NEG_BIG);
                l += pj;
                for (var i = 0u; i < D4; i++) {
                    acc[i] = fma(vec4<f32>(pj), vs[jj * (DMAX / 4u) + r + 4u * i], acc[i]);
                }
            }
            m = m_new;
        }
        workgroupBarrier();
    }

    // 5. normalise and store this lane's chunks; no visible key -> NaN (0/0 in PyTorch's softmax)
    if (live) {
        let o_base = (s * p.row_seq + b * p.row_batch) * p.out_stride + h * d_n;
        // a runtime NaN: WGSL makes a constant expression that is NaN a shader-creation error
        // (Tint, in the browser, enforces it; naga does not)
        let nan = bitcast<f32>(0x7fc00000u | (p.seq & 0u));
        for (var i = 0u; i < D4; i++) {
            let d0 = (r + 4u * i) * 4u;
            for (var c = 0u; c < 4u; c++) {
                if (d0 + c < d_n) { out[o_base + d0 + c] = select(acc[i][c] / l, nan, l == 0.0); }
            }
        }
    }
}
