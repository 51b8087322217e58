// matmul: out[b, m, n] = act(sum_k x[b, m, k] * w[b, n, k] + bias[n])   (PyTorch nn.Linear: w is (N, K))
// bindings: 0 x (batch, M, K) | 1 w (N, K), or (batch, N, K) when w_batch_stride = N*K | 2 bias (N)
//           3 out (batch, M, N) read_write | 4 params
// dispatch: (ceil(N / TN), ceil(M / TM), batch); WG_X * WG_Y invocations, each an RM x RN register tile
// assumes: tiles are staged through workgroup memory TK deep; ragged edges load zeros and skip
//          their stores, so every M, N, K >= 1 is exact. act: 0 none, 1 relu, 2 gelu (erf form).
// shared: Params, the bindings and activate() live in matmul_io.wgsl, appended by src/shaders.rs.

const WG_X: u32 = 16u;
const WG_Y: u32 = 16u;
const RM: u32 = 4u;               // rows of out per invocation
const RN: u32 = 4u;               // columns of out per invocation
const TM: u32 = WG_Y * RM;        // 64 rows of out per workgroup
const TN: u32 = WG_X * RN;        // 64 columns of out per workgroup
const TK: u32 = 16u;              // depth of one staged tile
const THREADS: u32 = WG_X * WG_Y;

var<workgroup> xs: array<f32, TK * TM>;   // xs[kk * TM + mm]
var<workgroup> ws: array<f32, TK * TN>;   // ws[kk * TN + nn]

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let b = wg.z;
    let row0 = wg.y * TM;
    let col0 = wg.x * TN;
    let x_base = b * p.m * p.k;
    let w_base = b * p.w_batch_stride;

    var acc: array<f32, RM * RN>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // 1. stage a TM x TK slab of x and a TN x TK slab of w; consecutive invocations read consecutive k
        for (var i = li; i < TM * TK; i += THREADS) {
            let mm = i / TK;
            let kk = i % TK;
            let gm = row0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < p.m && gk < p.k) { v = x[x_base + gm * p.k + gk]; }
            xs[kk * TM + mm] = v;
        }
        for (var i = li; i < TN * TK; i += THREADS) {
            let nn = i / TK;
            let kk = i % TK;
            let gn = col0 + nn;
            let gk = k0 + kk;
            var v = 0.0;
            if (gn < p.n && gk < p.k) { v = w[w_base + gn * p.k + gk]; }
            ws[kk * TN + nn] = v;
        }
        workgroupBarrier();
        // 2. rank-1 updates of the register tile; rows lid.y + i * WG_Y, columns lid.x + j * WG_X
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, RM>;
            var c: array<f32, RN>;
            for (var i = 0u; i < RM; i++) { a[i] = xs[kk * TM + lid.y + i * WG_Y]; }
            for (var j = 0u; j < RN; j++) { c[j] = ws[kk * TN + lid.x + j * WG_X]; }
            for (var i = 0u; i < RM; i++) {
                for (var j = 0u; j < RN; j++) {
                    acc[i * RN + j] = fma(a[i], c[j], acc[i * RN + j]);
                }
            }
        }
        workgroupBarrier();
    }

    // 3. epilogue: bias, activation, bounded store
    for (var i = 0u; i < RM; i++) {
        let gm = row0 + lid.y + i * WG_Y;
        if (gm >= p.m) { continue; }
        for (var j = 0u; j < RN; j++) {
            let gn = col0 + lid.x + j * WG_X;
            if (gn >= p.n) { continue; }
            var v = acc[i * RN + j];
            if (p.has_bias != 0u) { v += bias[gn]; }
            out[(b * p.m + gm) * p.n + gn] = activate(v);
        }
    }
}
