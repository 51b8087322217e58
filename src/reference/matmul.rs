use crate::ops::{Activation, MatmulShape};

/// GELU, exact erf form: 0.5 · v · (1 + erf(v / √2)).
pub fn gelu(v: f64) -> f64 {
    0.5 * v * (1.0 + libm::erf(v * std::f64::consts::FRAC_1_SQRT_2))
}

/// Applies `act` to one pre-activation value.
pub fn activate(v: f64, act: Activation) -> f64 {
    match act {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Gelu => gelu(v),
    }
}

/// out (batch, m, n) = act(x (batch, m, k) · wᵀ + bias), w (n, k) shared or (batch, n, k) when `w_batched`.
pub fn matmul(out: &mut [f32], x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, shape: MatmulShape) {
    let MatmulShape { batch, m, n, k, w_batched } = shape;
    for b in 0..batch {
        let w = if w_batched { &w[b * n * k..(b + 1) * n * k] } else { &w[..n * k] };
        for i in 0..m {
            let xr = &x[(b * m + i) * k..(b * m + i + 1) * k];
            for j in 0..n {
                let wr = &w[j * k..(j + 1) * k];
                let mut s = bias.map_or(0.0, |bb| bb[j] as f64);
                for (a, c) in xr.iter().zip(wr) {
                    s += *a as f64 * *c as f64;
                }
                out[(b * m + i) * n + j] = activate(s, act) as f32;
            }
        }
    }
}
