// residual_add: out[i] = a[i] + b[i]
// bindings: 0 a (len) | 1 b (len) | 2 out (len) read_write | 3 params; ELEM (prepended by
//   src/kernels/residual_add.rs) is f32, or vec4<f32> when the host's length is a multiple of 4 (len counts vec4s)
// dispatch: (gx, gy, 1) workgroups of WG, gx within the device's per-dimension limit;
//   element i = (wg.y * gx + wg.x) * WG + lane
// assumes: any len >= 1; invocations past len do nothing
// constants: WG, prepended by src/kernels/residual_add.rs.

struct Params {
    len: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<ELEM>;
@group(0) @binding(1) var<storage, read> b: array<ELEM>;
@group(0) @binding(2) var<storage, read_write> out: array<ELEM>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let i = (wg.y * p.groups_x + wg.x) * WG + lane;
    if (i < p.len) {
        out[i] = a[i] + b[i];
    }
}
