// attention_io: what both attention shaders share, appended to each of them by src/kernels/attention.rs:
// the params and the bindings (the contract in attention_tiled.wgsl's header).

struct Params {
    seq: u32,
    head_dim: u32,
    row_seq: u32,
    row_batch: u32,
    qkv_stride: u32,
    out_stride: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    causal: u32,
    has_key_pad: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> key_pad: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
