// matmul_io: what every matmul shader shares, appended to each of them by src/kernels/matmul.rs: the
// params, the bias / out / params bindings, and the fused activation (ACT_NONE, ACT_RELU, ACT_GELU
// in its erf form, ACT_GELU_TANH in its tanh approximation: the codes of shaders::consts, prepended by src/kernels/matmul.rs). Each shader binds x (0) and w (1)
// itself: the generated family reads them as vec4 when K % 4 == 0.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    w_batch_stride: u32,
    act: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// erf by Abramowitz & Stegun 7.1.26: |error| <= 1.5e-7, below f32 resolution of gelu's 0.5 * x * (1 + erf).
fn erf_approx(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-a * a);
    return select(r, -r, v < 0.0);
}

// tanh(u) = sign(u) (1 - 2 / (exp(2|u|) + 1)): exp's overflow gives 1, never inf / inf, whatever
// the driver's own tanh does at large |u|.
fn tanh_safe(u: f32) -> f32 {
    let t = 1.0 - 2.0 / (exp(2.0 * abs(u)) + 1.0);
    return select(t, -t, u < 0.0);
}

fn activate(v: f32) -> f32 {
    switch p.act {
        case ACT_RELU: { return max(v, 0.0); }
        case ACT_GELU: { return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752)); }
        case ACT_GELU_TANH: { return 0.5 * v * (1.0 + tanh_safe(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
        default: { return v; }
    }
}
