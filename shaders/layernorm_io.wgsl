// layernorm_io: what every layernorm shader shares, appended to each of them by src/kernels/layernorm.rs:
// the params, the bindings (the contract in layernorm_tiled.wgsl's header) and load(), x (+ residual).
// ELEM, prepended by src/kernels/layernorm.rs, is f32, or vec4<f32> for layernorm_rows (index i counts vec4s).

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    has_residual: u32,
    groups_x: u32,
    rows_per_group: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<ELEM>;
@group(0) @binding(1) var<storage, read> residual: array<ELEM>;
@group(0) @binding(2) var<storage, read> gamma: array<ELEM>;
@group(0) @binding(3) var<storage, read> beta: array<ELEM>;
@group(0) @binding(4) var<storage, read_write> out: array<ELEM>;
@group(0) @binding(5) var<uniform> p: Params;

fn load(i: u32) -> ELEM {
    var v = x[i];
    if (p.has_residual != 0u) { v += residual[i]; }
    return v;
}
