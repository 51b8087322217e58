// attention: out[b, s, h, :] = softmax_j(q[b, s, h] . k[b, j, h] * scale + mask[b, s, j]) . v[b, j, h]
//            fused: scores live in registers, softmax is streamed (online), the T x T matrix never exists.
// layout (packed QKV, what the block's in-projection writes): qkv is (tokens, qkv_stride) row-major,
//   token row of (batch b, position s) = s * row_seq + b * row_batch   (seq-first: row_seq = batch,
//   row_batch = 1; batch-first: row_seq = 1, row_batch = seq); head h of q is columns
//   q_off + h * D .. q_off + (h + 1) * D, likewise k_off and v_off (0, E, 2E for PyTorch's in_proj).
//   out is (tokens, out_stride) with the same token rows; head h writes columns h * D .. (h + 1) * D.
// masks: causal hides keys j > s; key_pad (batch, seq) u32 hides key j of batch b where nonzero
//   (PyTorch's boolean key_padding_mask). A query that sees no key gets NaN, as PyTorch's softmax does.
// bindings: 0 qkv | 1 key_pad (batch, seq), or a dummy when has_key_pad = 0 | 2 out read_write | 3 params
// dispatch: (ceil(seq / BQ), heads, batch); one invocation per query row, BQ per workgroup
// assumes: D = head_dim <= DMAX; K and V tiles of BK keys are staged through workgroup memory
// shared: Params and the bindings live in attention_io.wgsl, appended by src/kernels/attention.rs.
// constants: BQ (queries per workgroup), BK (keys per tile), DMAX, NEG_BIG, prepended by
//   src/kernels/attention.rs (shaders::Prelude).

var<workgroup> ks: array<f32, BK * DMAX>;
var<workgroup> vs: array<f32, BK * DMAX>;

@compute @workgroup_size(BQ, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let h = wg.y;
    let b = wg.z;
    let d_n = p.head_dim;
    let s = wg.x * BQ + lane;
    let live = s < p.seq;

    // 1. this invocation's query row, in registers
    var q: array<f32, DMAX>;
    var acc: array<f32, DMAX>;
    if (live) {
        let q_base = (s * p.row_seq + b * p.row_batch) * p.qkv_stride + p.q_off + h * d_n;
        for (var d = 0u; d < d_n; d++) { q[d] = qkv[q_base + d]; }
    }
    var m = NEG_BIG;   // running max of the scores seen
    var l = 0.0;       // running sum of exp(score - m)

    // with a causal mask no query of this workgroup sees keys past its last row
    var kv_end = p.seq;
    if (p.causal != 0u) { kv_end = min(p.seq, (wg.x + 1u) * BQ); }

    for (var j0 = 0u; j0 < kv_end; j0 += BK) {
        // 2. stage BK keys and values of this workgroup's head (rows past seq are never read)
        for (var i = lane; i < BK * d_n; i += BQ) {
            let jj = i / d_n;
            let d = i % d_n;
            let j = j0 + jj;
            if (j < p.seq) {
                let base = (j * p.row_seq + b * p.row_batch) * p.qkv_stride + h * d_n + d;
                ks[jj * DMAX + d] = qkv[base + p.k_off];
                vs[jj * DMAX + d] = qkv[base + p.v_off];
            }
        }
        workgroupBarrier();

        if (live) {
            // 3. scores of this tile, its max, and which keys are visible
            var sc: array<f32, BK>;
            var visible = 0u;
            var tile_max = NEG_BIG;
            for (var jj = 0u; jj < BK; jj++) {
                let j = j0 + jj;
                var ok = j < p.seq;
                if (ok && p.causal != 0u) { ok = j <= s; }
                if (ok && p.has_key_pad != 0u) { ok = key_pad[b * p.seq + j] == 0u; }
                if (ok) {
                    var dot = 0.0;
                    for (var d = 0u; d < d_n; d++) { dot = fma(q[d], ks[jj * DMAX + d], dot); }
                    sc[jj] = dot * p.scale;
                    tile_max = max(tile_max, sc[jj]);
                    visible |= 1u << jj;
                }
            }
            // 4. online softmax: rescale what we have once per tile, then add the tile
            if (visible != 0u) {
                let m_new = max(m, tile_max);
                let correction = exp(m - m_new);
                l *= correction;
                for (var d = 0u; d < d_n; d++) { acc[d] *= correction; }
                for (var jj = 0u; jj < BK; jj++) {
                    if ((visible & (1u << jj)) == 0u) { continue; }
                    let pj = exp(sc[jj] - m_new);
                    l += pj;
                    for (var d = 0u; d < d_n; d++) { acc[d] = fma(pj, vs[jj * DMAX + d], acc[d]); }
                }
                m = m_new;
            }
        }
        workgroupBarrier();
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
